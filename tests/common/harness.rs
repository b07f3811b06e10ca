//! The reference system as the root crate's system-level test binaries share it: started
//! once per binary by [`run`] ([`Running`] is a `SharedHarness`), an HTTP client of
//! it, and the calls several binaries make (a new user's token, an order followed until it
//! completes, a replica's request count). Each binary says what it starts and keeps beside
//! the system through a [`Setup`].
//!
//! Included with `#[path = "../common/harness.rs"] mod harness;`; it brings the runner
//! shared with the system crate's test binaries (`run`, `Test`).

// Each binary uses only part of this module, and dead code is an error under clippy.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use faultline_system::services::ServiceKind;
use faultline_system::supervisor::{System, SystemSpec};
use serde_json::{json, Value};

#[path = "../../system/tests/common/shared.rs"]
mod shared;

// Each binary uses a part of these (see dead_code above).
#[allow(unused_imports)]
pub use shared::{eventually, run, services_with_series, Test};

/// What a test binary starts and keeps beside the system.
pub trait Setup: Send + Sync + Sized + 'static {
    /// The system the binary's tests need, from [`base_spec`].
    fn spec() -> SystemSpec {
        base_spec()
    }

    /// What the binary keeps of the started system.
    fn extra(system: &System) -> anyhow::Result<Self>;
}

/// The `faultline` under test, without the gateway's rate limit (tests send in bursts) and
/// with a small catalogue.
pub fn base_spec() -> SystemSpec {
    let mut spec = SystemSpec::new(env!("CARGO_BIN_EXE_faultline").into());
    spec.rate_limit = 0.0;
    spec.products = 10;
    spec
}

/// Two replicas of inventory and of orders, for the binaries that watch the gateway spread
/// requests over replicas or replace them.
pub struct Replicated;

impl Setup for Replicated {
    fn spec() -> SystemSpec {
        let mut spec = base_spec();
        spec.replicas = HashMap::from([(ServiceKind::Inventory, 2), (ServiceKind::Orders, 2)]);
        spec
    }

    fn extra(_: &System) -> anyhow::Result<Self> {
        Ok(Replicated)
    }
}

/// A started system, a client of it and what the binary keeps beside it.
pub struct Running<X> {
    pub system: System,
    pub http: reqwest::Client,
    pub extra: X,
}

impl<X: Setup> shared::SharedHarness for Running<X> {
    async fn start() -> anyhow::Result<Self> {
        let system = System::start(X::spec()).await?;
        let extra = X::extra(&system)?;
        Ok(Running {
            system,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            extra,
        })
    }

    async fn stop(self) {
        self.system.stop().await;
    }
}

impl<X> Running<X> {
    /// `path` of the public API, through the gateway.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api{path}", self.system.gateway_url)
    }

    /// A new user's token, through the gateway.
    pub async fn token(&self) -> anyhow::Result<String> {
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        self.http
            .post(self.api("/users/register"))
            .json(&json!({ "email": email, "password": "correct horse", "name": "T" }))
            .send()
            .await?
            .error_for_status()?;
        let login: Value = self
            .http
            .post(self.api("/users/login"))
            .json(&json!({ "email": email, "password": "correct horse" }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(login["token"].as_str().context("token")?.to_string())
    }

    /// Places an order of one unit of `product` under the idempotency `key` (and the
    /// caller's trace context, if any); the order's id.
    pub async fn place_order(
        &self,
        token: &str,
        product: i64,
        key: &str,
        traceparent: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut request = self
            .http
            .post(self.api("/orders"))
            .bearer_auth(token)
            .header("idempotency-key", key);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let placed: Value = request
            .json(&json!({ "items": [{ "product_id": product, "quantity": 1 }] }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(placed["id"].as_str().context("order id")?.to_string())
    }

    /// Waits up to `within` for order `id`'s view to reach its last version, which must
    /// say COMPLETED; the view's last answer if it never does.
    pub async fn completed(&self, token: &str, id: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let response = self
                .http
                .get(self.api(&format!("/orders/{id}/view?min_version=4&wait=10s")))
                .bearer_auth(token)
                .send()
                .await?;
            let status = response.status();
            let body = response.text().await?;
            if status.is_success() {
                let view: Value = serde_json::from_str(&body)?;
                ensure!(view["status"] == "COMPLETED", "{view}");
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("order {id} did not complete; its view answered {status} {body}");
            }
        }
    }

    /// A read of product 1 through the gateway, past its response cache: to a replica
    /// every time.
    pub fn uncached_product(&self) -> reqwest::RequestBuilder {
        self.http
            .get(self.api("/products/1"))
            .header("cache-control", "no-cache")
    }

    /// Requests the replica at `url` answered on its product route, from its own /metrics,
    /// asked with `timeout`.
    pub async fn served(&self, url: &str, timeout: Duration) -> anyhow::Result<f64> {
        let text = self
            .http
            .get(format!("{url}/metrics"))
            .timeout(timeout)
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| {
                l.starts_with("faultline_http_request_duration_seconds_count")
                    && l.contains("route=\"/products/{id}\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}
