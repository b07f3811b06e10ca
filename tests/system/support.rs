//! The shared system and a typed client of its public API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use faultline_system::supervisor::{System, SystemSpec};
use reqwest::StatusCode;
use serde_json::{json, Value};

pub type TestFn = crate::shared::Test<Harness>;

pub struct Harness {
    pub system: System,
    pub http: reqwest::Client,
    pub webhook: Webhook,
}

/// A local HTTP endpoint the notifications service posts to; it keeps what it received and
/// can be told to fail (answer 500).
#[derive(Clone, Default)]
pub struct Webhook {
    pub received: Arc<std::sync::Mutex<Vec<Value>>>,
    pub failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Webhook {
    async fn start(&self) -> anyhow::Result<String> {
        use axum::extract::State;
        async fn receive(
            State(hook): State<Webhook>,
            axum::Json(body): axum::Json<Value>,
        ) -> StatusCode {
            if hook.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
            hook.received.lock().unwrap().push(body);
            StatusCode::NO_CONTENT
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(format!("http://{address}/hook"))
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits until a received notification satisfies `found`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        found: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(hit) = self.received.lock().unwrap().iter().find(|n| found(n)) {
                return Ok(hit.clone());
            }
            if Instant::now() >= deadline {
                bail!("no such notification within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Gateway limits of the test system: low enough for a test to hit, high enough for the
/// others, which spread their calls over users of their own.
pub const RATE_LIMIT: f64 = 50.0;
pub const BURST: u32 = 200;

impl crate::shared::SharedHarness for Harness {
    async fn start() -> anyhow::Result<Harness> {
        Harness::start().await
    }

    async fn stop(self) {
        self.system.stop().await;
    }
}

impl Harness {
    /// Sets the payments service's failure rate and latency (its admin endpoint).
    pub async fn set_payments(&self, fail_rate: f64, latency_ms: u64) -> anyhow::Result<()> {
        let url = self
            .system
            .service_url(faultline_system::services::ServiceKind::Payments, 1)
            .context("payments")?;
        self.http
            .put(format!("{url}/admin/behaviour"))
            .json(&json!({ "fail_rate": fail_rate, "latency_ms": latency_ms }))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    pub async fn start() -> anyhow::Result<Harness> {
        let webhook = Webhook::default();
        let webhook_url = webhook.start().await?;
        let mut spec = SystemSpec::new(env!("CARGO_BIN_EXE_faultline").into());
        spec.extra_args.insert(
            faultline_system::services::ServiceKind::Notifications,
            vec![
                "--webhook-url".into(),
                webhook_url,
                "--max-attempts".into(),
                "3".into(),
            ],
        );
        spec.rate_limit = RATE_LIMIT;
        spec.burst = BURST;
        spec.products = 20;
        spec.stock = 100_000;
        let system = System::start(spec).await?;
        Ok(Harness {
            system,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            webhook,
        })
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api{path}", self.system.gateway_url)
    }

    /// Registers and logs in a fresh user.
    pub async fn user(&self) -> anyhow::Result<User> {
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        let response = self
            .http
            .post(self.api("/users/register"))
            .json(&json!({ "email": email, "password": "correct horse", "name": "Test User" }))
            .send()
            .await?;
        if response.status() != StatusCode::CREATED {
            bail!(
                "register answered {}: {}",
                response.status(),
                response.text().await?
            );
        }
        let id = response.json::<Value>().await?["id"]
            .as_str()
            .context("no id")?
            .to_string();
        let response = self
            .http
            .post(self.api("/users/login"))
            .json(&json!({ "email": email, "password": "correct horse" }))
            .send()
            .await?;
        if response.status() != StatusCode::OK {
            bail!("login answered {}", response.status());
        }
        let token = response.json::<Value>().await?["token"]
            .as_str()
            .context("no token")?
            .to_string();
        Ok(User { id, token })
    }

    /// A service replica's `/metrics` text (`url` is its base URL).
    pub async fn metrics(&self, url: &str) -> anyhow::Result<String> {
        let response = self.http.get(format!("{url}/metrics")).send().await?;
        Ok(response.error_for_status()?.text().await?)
    }

    pub async fn place_order(
        &self,
        user: &User,
        key: &str,
        items: Value,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .http
            .post(self.api("/orders"))
            .bearer_auth(&user.token)
            .header("idempotency-key", key)
            .json(&json!({ "items": items }))
            .send()
            .await?;
        let status = response.status();
        Ok((status, response.json().await?))
    }

    pub async fn order(&self, user: &User, id: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(self.api(&format!("/orders/{id}")))
            .bearer_auth(&user.token)
            .send()
            .await?;
        if response.status() != StatusCode::OK {
            bail!("GET order answered {}", response.status());
        }
        Ok(response.json().await?)
    }

    /// The read model's view once it reached `min_version` (long-poll, no sleeping).
    pub async fn view(
        &self,
        user: &User,
        id: &str,
        min_version: i64,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .http
            .get(self.api(&format!(
                "/orders/{id}/view?min_version={min_version}&wait=20s"
            )))
            .bearer_auth(&user.token)
            .send()
            .await?;
        let status = response.status();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// Follows the view until the order is COMPLETED or CANCELLED.
    pub async fn terminal_view(&self, user: &User, id: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut min_version = 1;
        loop {
            let (status, view) = self.view(user, id, min_version).await?;
            if status == StatusCode::OK {
                let state = view["status"].as_str().unwrap_or_default();
                if state == "COMPLETED" || state == "CANCELLED" {
                    return Ok(view);
                }
                min_version = view["version"].as_i64().unwrap_or(min_version) + 1;
            } else if status != StatusCode::REQUEST_TIMEOUT {
                bail!("view of {id} answered {status}: {view}");
            }
            if Instant::now() >= deadline {
                bail!("order {id} did not reach a terminal state in the read model within 120 s");
            }
        }
    }

    /// The product as inventory has it now (`no-cache`: not the gateway's cached copy).
    pub async fn product(&self, id: i64) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(self.api(&format!("/products/{id}")))
            .header("cache-control", "no-cache")
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    pub fn database(
        &self,
        kind: faultline_system::services::ServiceKind,
    ) -> anyhow::Result<deadpool_postgres::Pool> {
        let url = self
            .system
            .database_urls
            .get(&kind)
            .context("no database")?;
        Ok(faultline_system::platform::migrate::pool(url, 4)?)
    }
}

pub struct User {
    pub id: String,
    pub token: String,
}
