//! The HTTP side every service shares: one error type that becomes a JSON response, JSON body
//! and query extractors whose rejections use it (so every error a client sees has the one
//! body the OpenAPI document declares), health and metrics routes, and a middleware that
//! carries the W3C trace context and a request id and times every request.
//!
//! A 500 says little to the client ("internal error" and the request id); the cause is
//! logged with the trace id, so the two can be matched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Serialize;

use super::metrics::Metrics;

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Set by the gateway after it validated the caller's token; services behind it trust it.
pub const USER_ID: HeaderName = HeaderName::from_static("x-user-id");

/// Every error a handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    /// The caller is known (its mutual-TLS identity) but may not call this route (403).
    #[error("{0}")]
    Forbidden(String),
    /// The path exists but not with this method (405); `allow` lists the methods it has,
    /// sent as the `Allow` header (RFC 9110 15.5.6).
    #[error("{message}")]
    MethodNotAllowed { message: String, allow: String },
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the route takes (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("rate limit exceeded")]
    TooManyRequests { retry_after: Duration },
    /// The server gave up waiting for something upstream (504).
    #[error("{0}")]
    Timeout(String),
    /// A long-poll's wait ran out before the condition held (408).
    #[error("{0}")]
    WaitExpired(String),
    #[error("{0}")]
    Unavailable(String),
    /// Shedding load on purpose (503 with `Retry-After`): the service is healthy but takes
    /// no more work of this kind for now. A gateway does not count it against the replica.
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after: Duration,
    },
    /// Logged in full; the client sees only "internal error".
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(error.to_string())
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::WaitExpired(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) | ApiError::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        // A text PostgreSQL cannot store (a NUL character) came from the request: its
        // sender's mistake, whichever field a handler forgot to check.
        let unstorable = [
            SqlState::CHARACTER_NOT_IN_REPERTOIRE,
            SqlState::UNTRANSLATABLE_CHARACTER,
        ];
        if error.code().is_some_and(|code| unstorable.contains(code)) {
            return ApiError::BadRequest(format!("a text the database cannot store: {error}"));
        }
        ApiError::Internal(format!("database: {error}"))
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        ApiError::Unavailable(format!("database unavailable: {error}"))
    }
}

/// The body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    /// The status' reason phrase, e.g. "Bad Request".
    pub error: &'a str,
    /// What went wrong, for a person.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let kind = status.canonical_reason().unwrap_or("error");
        let mut response = (
            status,
            axum::Json(ErrorBody {
                error: kind,
                message,
            }),
        )
            .into_response();
        if let ApiError::TooManyRequests { retry_after }
        | ApiError::Overloaded { retry_after, .. } = &self
        {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
        }
        if let ApiError::MethodNotAllowed { allow, .. } = &self {
            if let Ok(value) = HeaderValue::from_str(allow) {
                response
                    .headers_mut()
                    .insert(axum::http::header::ALLOW, value);
            }
        }
        response
    }
}

/// `axum::Json` whose rejection is an [`ApiError::BadRequest`] naming the field and the
/// position (axum reports serde's path, e.g. `items[0].quantity: invalid type`), or
/// [`ApiError::PayloadTooLarge`] past the route's body limit. A missing or wrong
/// `Content-Type` is a 400 as well (axum's own answer is 415): the document declares one
/// status for "this body is not what the route takes".
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge(rejection.body_text()))
            }
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// Reads a JSON integer as JSON Schema (and so the OpenAPI document) counts them: `2` and
/// `2.0` alike, a number without a fractional part, if it fits `T`. serde alone refuses
/// `2.0` for an integer field, which would refuse a body the document allows. For
/// `#[serde(deserialize_with = "whole_number")]`.
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    struct Whole<T>(std::marker::PhantomData<T>);

    impl<T: TryFrom<i64>> serde::de::Visitor<'_> for Whole<T> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<T, E> {
            T::try_from(value).map_err(|_| E::custom(format!("{value} is out of range")))
        }

        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<T, E> {
            let value =
                i64::try_from(value).map_err(|_| E::custom(format!("{value} is out of range")))?;
            self.visit_i64(value)
        }

        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<T, E> {
            // Exactly representable and whole: within ±2^53 every whole f64 is an i64.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if value.fract() != 0.0 || value.abs() > EXACT {
                return Err(E::invalid_type(serde::de::Unexpected::Float(value), &self));
            }
            self.visit_i64(value as i64)
        }
    }

    deserializer.deserialize_any(Whole(std::marker::PhantomData))
}

/// `axum::extract::Query` whose rejection is an [`ApiError::BadRequest`] naming the
/// parameter (axum's own is plain text, which the document does not declare).
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Query<T>
where
    axum::extract::Query<T>: axum::extract::FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// One readiness check: a name and a probe that says what is wrong.
pub type ReadinessProbe =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Health and metrics routes, with the probes `/health/ready` runs.
#[derive(Clone)]
pub struct Operational {
    pub metrics: Metrics,
    pub probes: Vec<(&'static str, ReadinessProbe)>,
}

/// `/health/live`, `/health/ready` and `/metrics`.
pub fn operational_routes(operational: Operational) -> Router {
    Router::new()
        .route("/health/live", get(|| async { "live" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(operational)
}

async fn ready(State(operational): State<Operational>) -> Response {
    let mut failures = Vec::new();
    for (name, probe) in &operational.probes {
        match tokio::time::timeout(Duration::from_secs(2), probe()).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => failures.push(format!("{name}: {reason}")),
            Err(_) => failures.push(format!("{name}: no answer within 2 s")),
        }
    }
    if failures.is_empty() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, failures.join("; ")).into_response()
    }
}

/// How long a server of ours keeps an idle keep-alive connection: the default of
/// `--header-read-timeout`, whose timer hyper also runs between a connection's requests
/// (the gateway's front door, and every service under mutual TLS).
pub const SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long our clients keep an idle pooled connection: well under
/// [`SERVER_IDLE_TIMEOUT`], so that a client gives a connection up before the server
/// closes it. Otherwise a request sent just as the server closes its end fails, an error
/// of no fault of either (and one the client cannot retry: the request may have arrived).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(SERVER_IDLE_TIMEOUT.as_secs() / 2);

/// An HTTP/1 client for `http://` and `https://` URLs, as the gateway forwards with and
/// readiness is asked with.
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<HttpConnector>,
    axum::body::Body,
>;

/// A client with default settings, for asking services whether they are ready; plain
/// HTTP only.
pub fn http_client() -> HttpClient {
    client_over(HttpConnector::new(), None).build()
}

/// A client with default settings that speaks to `https://` URLs with `tls` (under mutual
/// TLS: the caller's identity and the system CA) and to `http://` ones in plain.
pub fn https_client(tls: Arc<rustls::ClientConfig>) -> HttpClient {
    client_over(HttpConnector::new(), Some(tls)).build()
}

/// A client builder over `connector` for callers that set their own pool limits (the
/// gateway); `tls` as for [`https_client`], `None` for plain HTTP only.
pub fn client_over(
    mut connector: HttpConnector,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> ClientBuilder {
    // The TCP connector must hand `https://` URLs on to the TLS layer.
    connector.enforce_http(false);
    let mut builder =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    builder.pool_idle_timeout(POOL_IDLE_TIMEOUT);
    ClientBuilder {
        builder,
        connector,
        tls,
    }
}

/// [`client_over`]'s builder: hyper's, plus the connector it wraps.
pub struct ClientBuilder {
    pub builder: hyper_util::client::legacy::Builder,
    connector: HttpConnector,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl ClientBuilder {
    pub fn build(self) -> HttpClient {
        let tls = match self.tls {
            Some(config) => (*config).clone(),
            // Trusting nothing: no `https://` URL is given to a plain client, and should
            // one be, the call fails rather than trust an unknown server.
            None => rustls::ClientConfig::builder_with_provider(super::tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("aws-lc-rs offers TLS 1.3")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(self.connector);
        self.builder.build(https)
    }
}

/// Whether the service at `base` (`http://host:port`, or `https://` with a client that
/// speaks it) answers `/health/ready` with a
/// success within `timeout`: the one readiness check of a service, asked by the gateway of
/// its replicas, by the supervisor at start and after a restart.
pub async fn answers_ready(client: &HttpClient, base: &str, timeout: Duration) -> bool {
    let Ok(uri) = format!("{base}/health/ready").parse::<axum::http::Uri>() else {
        return false;
    };
    matches!(
        tokio::time::timeout(timeout, client.get(uri)).await,
        Ok(Ok(response)) if response.status().is_success()
    )
}

async fn render_metrics(State(operational): State<Operational>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        operational.metrics.render(),
    )
        .into_response()
}

/// The trace context of one request, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct TraceContext {
    pub trace_id: String,
    pub traceparent: String,
    pub request_id: String,
}

impl TraceContext {
    /// Continues the caller's `traceparent` (with a new span id) or starts a trace.
    pub fn from_headers(headers: &HeaderMap) -> TraceContext {
        let incoming = headers
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let trace_id = incoming.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let span_id = &uuid::Uuid::new_v4().simple().to_string()[..16];
        let request_id = headers
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        TraceContext {
            traceparent: format!("00-{trace_id}-{span_id}-01"),
            trace_id,
            request_id,
        }
    }
}

/// The trace id of a valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
fn parse_traceparent(value: &str) -> Option<String> {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit());
    match parts.as_slice() {
        [version, trace, span, flags]
            if hex(version, 2)
                && hex(trace, 32)
                && hex(span, 16)
                && hex(flags, 2)
                && *trace != "0".repeat(32) =>
        {
            Some(trace.to_ascii_lowercase())
        }
        _ => None,
    }
}

/// The route pattern of a response, for handlers that route by themselves (the gateway);
/// [`observe`] prefers it to the label "unmatched".
#[derive(Debug, Clone, Copy)]
pub struct RouteLabel(pub &'static str);

/// Middleware (install with `Router::route_layer`, so that the matched route is known):
/// trace context in and out, a span with the trace id around the handler, and
/// the request timed into `http_request_duration_seconds` by route, method and status.
pub async fn observe(State(metrics): State<Metrics>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let mut context = TraceContext::from_headers(request.headers());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().to_string();
    let span = super::telemetry::request_span(request.headers(), &mut context, &method, &route);
    request.extensions_mut().insert(context.clone());
    let mut response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let status = response.status();
    // The gateway routes by itself: its handler names the route afterwards.
    let renamed = response
        .extensions()
        .get::<RouteLabel>()
        .map(|label| label.0);
    let route = renamed.map_or(route, str::to_string);
    metrics
        .http_requests
        .with_label_values(&[&route, &method, status.as_str()])
        .observe(started.elapsed().as_secs_f64());
    super::telemetry::record_response(&span, &method, renamed, status.as_u16());
    if status.is_server_error() {
        span.in_scope(|| tracing::warn!(status = status.as_u16(), "request failed"));
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&context.traceparent) {
        headers.insert(TRACEPARENT, value);
    }
    if let Ok(value) = HeaderValue::from_str(&context.request_id) {
        headers.insert(REQUEST_ID, value);
    }
    response
}

/// Serves `router` on `listener` until `shutdown`, then lets in-flight requests finish
/// (for at most `drain`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: tokio_util::sync::CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    let stopping = shutdown.clone();
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(async move { stopping.cancelled().await });
    let server = tokio::spawn(async move { server.await });
    shutdown.cancelled().await;
    match tokio::time::timeout(drain, server).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(std::io::Error::other(join.to_string())),
        Err(_) => {
            tracing::warn!(?drain, "in-flight requests did not finish in time");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_are_integers_written_either_way_and_fractions_are_not() {
        #[derive(serde::Deserialize)]
        struct Item {
            #[serde(deserialize_with = "whole_number")]
            quantity: i32,
        }
        let read = |json: &str| serde_json::from_str::<Item>(json).map(|item| item.quantity);
        assert_eq!(read(r#"{"quantity": 2}"#).ok(), Some(2));
        assert_eq!(read(r#"{"quantity": 2.0}"#).ok(), Some(2));
        assert_eq!(read(r#"{"quantity": -3e0}"#).ok(), Some(-3));
        assert!(read(r#"{"quantity": 2.5}"#).is_err());
        assert!(read(r#"{"quantity": "2"}"#).is_err());
        assert!(read(r#"{"quantity": 3000000000}"#).is_err(), "past i32");
    }

    #[test]
    fn a_valid_traceparent_is_continued_and_garbage_starts_a_new_trace() {
        let mut headers = HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        let context = TraceContext::from_headers(&headers);
        assert_eq!(context.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert!(context
            .traceparent
            .starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
        assert!(
            !context.traceparent.contains("b7ad6b7169203331"),
            "a new span id"
        );

        headers.insert(TRACEPARENT, HeaderValue::from_static("00-zz-yy-01"));
        let fresh = TraceContext::from_headers(&headers);
        assert_eq!(fresh.trace_id.len(), 32);
        assert_ne!(fresh.trace_id, "0af7651916cd43dd8448eb211c80319c");
    }
}
