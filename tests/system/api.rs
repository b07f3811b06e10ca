//! The public API's refusals: tokens, ownership, bodies, rate limits; and /metrics.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use faultline_system::platform::auth::{Secret, Tokens};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::programs::which;
use crate::support::{Harness, BURST};

pub async fn bad_tokens_are_refused(h: Arc<Harness>) -> anyhow::Result<()> {
    let user = h.user().await?;
    let me = h.api("/users/me");
    let status = h.http.get(&me).send().await?.status();
    ensure!(status == StatusCode::UNAUTHORIZED, "no token: {status}");

    let forger = Tokens::new(
        &Secret::new("a different secret, long enough to sign"),
        Duration::from_secs(60),
    )?;
    let forged = forger.issue(uuid::Uuid::parse_str(&user.id)?)?;
    let status = h.http.get(&me).bearer_auth(forged).send().await?.status();
    ensure!(status == StatusCode::UNAUTHORIZED, "forged token: {status}");

    let real = Tokens::new(
        &Secret::new(h.system.jwt_secret.clone()),
        Duration::from_secs(60),
    )?;
    let expired = real.issue_expired(uuid::Uuid::parse_str(&user.id)?)?;
    let response = h.http.get(&me).bearer_auth(expired).send().await?;
    ensure!(
        response.status() == StatusCode::UNAUTHORIZED,
        "expired token: {}",
        response.status()
    );
    let body: Value = response.json().await?;
    ensure!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{body}"
    );

    // A client cannot claim to be someone by sending the header the gateway sets.
    let status = h
        .http
        .get(&me)
        .header("x-user-id", &user.id)
        .send()
        .await?
        .status();
    ensure!(
        status == StatusCode::UNAUTHORIZED,
        "x-user-id without a token: {status}"
    );

    // The sound token works, so the refusals above are about the tokens.
    let status = h
        .http
        .get(&me)
        .bearer_auth(&user.token)
        .send()
        .await?
        .status();
    ensure!(status == StatusCode::OK, "valid token: {status}");
    Ok(())
}

pub async fn another_users_order_is_not_found(h: Arc<Harness>) -> anyhow::Result<()> {
    let owner = h.user().await?;
    let stranger = h.user().await?;
    let (status, placed) = h
        .place_order(&owner, "mine", json!([{ "product_id": 2, "quantity": 1 }]))
        .await?;
    ensure!(status == StatusCode::ACCEPTED);
    let id = placed["id"].as_str().context("id")?;
    let status = h
        .http
        .get(h.api(&format!("/orders/{id}")))
        .bearer_auth(&stranger.token)
        .send()
        .await?
        .status();
    ensure!(
        status == StatusCode::NOT_FOUND,
        "stranger reading the order: {status}"
    );
    h.terminal_view(&owner, id).await?;
    let (status, _) = h.view(&stranger, id, 1).await?;
    ensure!(
        status == StatusCode::NOT_FOUND,
        "stranger reading the view: {status}"
    );
    let status = h
        .http
        .get(h.api(&format!("/orders/{id}")))
        .bearer_auth(&owner.token)
        .send()
        .await?
        .status();
    ensure!(status == StatusCode::OK, "owner: {status}");
    Ok(())
}

pub async fn bad_bodies_are_400_naming_the_field(h: Arc<Harness>) -> anyhow::Result<()> {
    let user = h.user().await?;
    let post = |body: &'static str| {
        h.http
            .post(h.api("/orders"))
            .bearer_auth(&user.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let response = post("{\"items\": [").await?;
    ensure!(
        response.status() == StatusCode::BAD_REQUEST,
        "malformed JSON: {}",
        response.status()
    );
    let response = post("{\"items\": [{\"product_id\": 1, \"quantity\": \"two\"}]}").await?;
    ensure!(
        response.status() == StatusCode::BAD_REQUEST,
        "wrong type: {}",
        response.status()
    );
    let body: Value = response.json().await?;
    let message = body["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("items[0].quantity"),
        "the message does not name the field: {message}"
    );
    let response = post("{\"items\": [{\"product_id\": 1, \"quantity\": 0}]}").await?;
    ensure!(response.status() == StatusCode::BAD_REQUEST);
    let body: Value = response.json().await?;
    ensure!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("items[0].quantity")),
        "{body}"
    );
    let response = h
        .http
        .post(h.api("/users/register"))
        .json(&json!({ "email": "not-an-address", "password": "long enough", "name": "x" }))
        .send()
        .await?;
    ensure!(response.status() == StatusCode::BAD_REQUEST);
    let body: Value = response.json().await?;
    ensure!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("email")),
        "{body}"
    );
    Ok(())
}

pub async fn rate_limit_answers_429(h: Arc<Harness>) -> anyhow::Result<()> {
    let user = h.user().await?;
    let calls = BURST as usize + 100;
    let statuses = futures::future::join_all((0..calls).map(|_| {
        h.http
            .get(h.api("/users/me"))
            .bearer_auth(&user.token)
            .send()
    }))
    .await;
    let mut limited = None;
    let mut ok = 0;
    for response in statuses {
        let response = response?;
        match response.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited = Some(response),
            other => bail!("unexpected {other}"),
        }
    }
    let limited = limited.context(format!("{calls} calls at once, none limited"))?;
    let retry_after: u64 = limited
        .headers()
        .get("retry-after")
        .context("429 without Retry-After")?
        .to_str()?
        .parse()?;
    ensure!(retry_after >= 1, "Retry-After {retry_after}");
    ensure!(
        ok >= BURST as usize - 5 && ok < calls,
        "{ok} of {calls} allowed with a burst of {BURST}"
    );
    Ok(())
}

pub async fn metrics_pass_promtool(h: Arc<Harness>) -> anyhow::Result<()> {
    let promtool = which("promtool")
        .context("promtool is not installed: run `make setup` (Debian's prometheus package)")?;
    for (name, url, _) in h.system.services() {
        let text = h.metrics(&url).await?;
        // Every service has been asked /health/ready by the supervisor, so each has
        // request metrics by now, notifications (no API of its own) included.
        ensure!(
            text.contains("faultline_http_request_duration_seconds"),
            "{name} has no request metrics"
        );
        let mut child = tokio::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(text.as_bytes()).await?;
        drop(stdin);
        let output = child.wait_with_output().await?;
        ensure!(
            output.status.success(),
            "promtool rejects the metrics of {name}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

pub async fn openapi_document_lists_the_public_api(h: Arc<Harness>) -> anyhow::Result<()> {
    let document: Value = h
        .http
        .get(format!("{}/openapi.json", h.system.gateway_url))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    ensure!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "not OpenAPI 3: {}",
        document["openapi"]
    );
    for (path, method) in [
        ("/api/users/register", "post"),
        ("/api/users/login", "post"),
        ("/api/users/me", "get"),
        ("/api/products", "get"),
        ("/api/products/{id}", "get"),
        ("/api/orders", "post"),
        ("/api/orders/{id}", "get"),
        ("/api/orders/{id}/view", "get"),
        ("/api/ingest/events", "post"),
        ("/api/analytics/summary", "get"),
    ] {
        ensure!(
            document["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    Ok(())
}

/// A catalogue read is kept by the gateway for the second inventory allows
/// (`Cache-Control: public, max-age=1`): the next read is a hit without reaching
/// inventory, and `no-cache` goes upstream again.
pub async fn public_catalogue_reads_are_served_from_the_gateway_cache(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    let url = h.api("/products/11");
    let read = |cache_control: Option<&'static str>| {
        let mut request = h.http.get(&url);
        if let Some(value) = cache_control {
            request = request.header("cache-control", value);
        }
        request.send()
    };
    let x_cache = |response: &reqwest::Response| {
        response
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    // Retried: a second of scheduling noise between the two reads would expire the entry.
    let mut outcome = Err(anyhow::anyhow!("not tried"));
    for _ in 0..3 {
        outcome = async {
            let first = read(Some("no-cache")).await?.error_for_status()?;
            ensure!(
                x_cache(&first) == "miss",
                "a no-cache read was {:?}",
                x_cache(&first)
            );
            let first_body: Value = first.json().await?;
            let second = read(None).await?.error_for_status()?;
            ensure!(
                x_cache(&second) == "hit",
                "the second read was {:?}",
                x_cache(&second)
            );
            let second_body: Value = second.json().await?;
            ensure!(first_body == second_body, "{first_body} then {second_body}");
            let bypass = read(Some("no-cache")).await?.error_for_status()?;
            ensure!(
                x_cache(&bypass) == "miss",
                "no-cache was answered {:?}",
                x_cache(&bypass)
            );
            Ok(())
        }
        .await;
        if outcome.is_ok() {
            break;
        }
    }
    outcome
}
