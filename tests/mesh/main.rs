//! Mutual TLS between the services (`system up --mtls`): one system started with it for the
//! whole binary. A checkout through the gateway must still complete (the gateway calls its
//! upstreams over mutual TLS); calling orders directly must fail the handshake without a
//! client certificate or with one from another CA, and must get 403 naming the caller
//! with a valid certificate of a service that may not call it. Each test also makes the
//! same call in the way that must work, so that a failure is the certificate's and not a
//! down service's. Set TEST_LOG=1 for the logs.

#![allow(clippy::unwrap_used)]

#[path = "../common/harness.rs"]
mod harness;

mod prometheus;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use axum::http::StatusCode;
use faultline_system::platform::http::{https_client, HttpClient};
use faultline_system::platform::mesh::{self, MeshFiles, MeshIdentity};
use faultline_system::platform::tls;
use faultline_system::services::ServiceKind;
use faultline_system::supervisor::{System, SystemSpec};

type Harness = harness::Running<Mesh>;

/// The system's certificates, and orders' own address (not the gateway's).
struct Mesh {
    files: MeshFiles,
    orders: String,
}

impl harness::Setup for Mesh {
    fn spec() -> SystemSpec {
        let mut spec = harness::base_spec();
        spec.mtls = true;
        spec
    }

    fn extra(system: &System) -> anyhow::Result<Mesh> {
        let files = system.mesh.clone().context("--mtls made no certificates")?;
        let orders = system
            .service_url(ServiceKind::Orders, 1)
            .context("no orders replica")?;
        Ok(Mesh { files, orders })
    }
}

fn main() -> ExitCode {
    let tests: Vec<(&'static str, harness::Test<Harness>)> = vec![
        (
            "a_checkout_through_the_gateway_completes_with_the_services_on_mutual_tls",
            |h| Box::pin(checkout_completes(h)),
        ),
        (
            "a_call_to_orders_without_a_client_certificate_fails_the_handshake",
            |h| Box::pin(no_certificate_fails(h)),
        ),
        (
            "a_call_to_orders_with_the_payments_certificate_gets_403_naming_payments",
            |h| Box::pin(wrong_caller_is_forbidden(h)),
        ),
        (
            "a_call_to_orders_with_a_certificate_of_another_ca_fails_the_handshake",
            |h| Box::pin(another_ca_fails(h)),
        ),
        (
            "prometheus_scrapes_every_replica_over_mutual_tls_with_its_own_certificate",
            |h| Box::pin(prometheus::prometheus_scrapes_every_replica_over_mutual_tls(h)),
        ),
    ];
    harness::run(tests)
}

/// A path of orders' own (it answers 404 for an unknown order to a caller it admits).
const ORDER_PATH: &str = "/orders/00000000-0000-0000-0000-000000000000";

impl Harness {
    /// A client of the system CA presenting `identity`'s certificate.
    fn client_as(&self, identity: &str) -> anyhow::Result<HttpClient> {
        let config = MeshIdentity::of(&self.extra.files, identity)?.client_config()?;
        Ok(https_client(config))
    }

    /// Orders' answer to `GET path` from `client`: its status and body, or the error of a
    /// connection that gave none.
    async fn ask_orders(
        &self,
        client: &HttpClient,
        path: &str,
    ) -> anyhow::Result<Result<(StatusCode, String), String>> {
        let uri: axum::http::Uri = format!("{}{path}", self.extra.orders).parse()?;
        let asked = tokio::time::timeout(Duration::from_secs(10), client.get(uri)).await;
        let response = match asked.context("orders gave no answer within 10 s")? {
            Ok(response) => response,
            Err(error) => return Ok(Err(format!("{error:?}"))),
        };
        let status = response.status();
        let body = axum::body::Body::new(response.into_body());
        let body = axum::body::to_bytes(body, 64 * 1024).await?;
        Ok(Ok((status, String::from_utf8_lossy(&body).into_owned())))
    }

    /// Orders as the gateway sees it: the call every refusal is compared with.
    async fn admitted(&self) -> anyhow::Result<()> {
        let gateway = self.client_as("gateway")?;
        let answer = self.ask_orders(&gateway, ORDER_PATH).await?;
        let (status, body) = answer.map_err(anyhow::Error::msg)?;
        ensure!(
            status != StatusCode::FORBIDDEN && !status.is_server_error(),
            "the gateway's own certificate was refused: {status} {body}"
        );
        Ok(())
    }
}

async fn checkout_completes(h: Arc<Harness>) -> anyhow::Result<()> {
    for (name, url, _) in h.system.services() {
        if !name.starts_with("SERVICE_GATEWAY") {
            ensure!(url.starts_with("https://"), "{name} serves {url}");
        }
    }
    let token = h.token().await?;
    let key = uuid::Uuid::new_v4().to_string();
    let id = h.place_order(&token, 1, &key, None).await?;
    // The first order of a fresh system waits for its consumers to join their groups,
    // which takes long on a busy machine: a generous deadline.
    h.completed(&token, &id, Duration::from_secs(240)).await
}

async fn no_certificate_fails(h: Arc<Harness>) -> anyhow::Result<()> {
    h.admitted().await?;
    let roots = tls::read_roots("CA", &h.extra.files.ca)?;
    let anonymous = https_client(tls::client_config(roots, None)?);
    // The server is trusted (the system CA) and the gateway's certificate was just
    // admitted (above): a failure here is for want of a certificate.
    for path in [ORDER_PATH, "/health/ready"] {
        match h.ask_orders(&anonymous, path).await? {
            Err(error) => eprintln!("{path} refused as it should be: {error}"),
            Ok((status, body)) => bail!("{path} without a certificate: {status} {body}"),
        }
    }
    Ok(())
}

async fn wrong_caller_is_forbidden(h: Arc<Harness>) -> anyhow::Result<()> {
    h.admitted().await?;
    let payments = h.client_as("payments")?;
    let (status, body) = h
        .ask_orders(&payments, ORDER_PATH)
        .await?
        .map_err(anyhow::Error::msg)?;
    ensure!(status == StatusCode::FORBIDDEN, "{status} {body}");
    ensure!(body.contains("payments"), "the 403 names no caller: {body}");
    // The operational routes take any identity of the system: the supervisor probes, and
    // Prometheus scrapes, with certificates of their own.
    for (identity, path) in [
        ("payments", "/health/live"),
        (mesh::SUPERVISOR, "/health/ready"),
        (mesh::PROMETHEUS, "/metrics"),
    ] {
        let client = h.client_as(identity)?;
        let (status, body) = h
            .ask_orders(&client, path)
            .await?
            .map_err(anyhow::Error::msg)?;
        ensure!(
            status == StatusCode::OK,
            "{identity} {path}: {status} {body}"
        );
    }
    Ok(())
}

async fn another_ca_fails(h: Arc<Harness>) -> anyhow::Result<()> {
    h.admitted().await?;
    // The gateway's own name, signed by a CA of another system: the name is right, the CA
    // is not. The server is still trusted (the system CA), so only the client side fails.
    let elsewhere = tempfile::tempdir()?;
    let other = mesh::write_mesh(elsewhere.path())?;
    let roots = tls::read_roots("CA", &h.extra.files.ca)?;
    let chain = tls::read_chain("cert", &other.cert("gateway"))?;
    let key = tls::read_key("key", &other.key("gateway"))?;
    let client = https_client(tls::client_config(roots, Some((chain, key)))?);
    // The gateway's certificate of the system CA was just admitted (above): a failure here
    // is the other CA's.
    match h.ask_orders(&client, ORDER_PATH).await? {
        Err(error) => {
            eprintln!("refused as it should be: {error}");
            Ok(())
        }
        Ok((status, body)) => bail!("a certificate of another CA was taken: {status} {body}"),
    }
}
