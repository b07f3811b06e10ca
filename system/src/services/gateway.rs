//! The API gateway: the system's only public entry.
//!
//! For each request it: finds the route (path prefix -> upstream service; a known path asked
//! with a method it does not take is answered 405 with `Allow` here), checks the bearer
//! JWT where the route needs one (signature and expiry) and passes the user on as
//! `x-user-id` (a client's own `x-user-id` is dropped), applies a per-user token bucket
//! (429 with Retry-After), picks a replica round-robin among those in rotation
//! ([`upstreams`]: the set a deployment changes while the gateway runs) that pass active
//! health checks (all of them when none does) and whose circuit breaker lets calls through,
//! forwards with a timeout, and carries
//! `traceparent` and `x-request-id` through (the [`observe`] middleware creates them).
//! Idempotent requests (GET, HEAD) that fail to connect are tried once more on another
//! replica; others are not, since they may have been applied. Public GETs that the
//! upstream marks cacheable are answered from the [`cache::ResponseCache`] while fresh.
//! A body whose declared length is past what the route's service takes is answered 413
//! before it is read. Connections come in through [`front`] (HTTPS by [`tls`], a header
//! read timeout, a connection limit).

mod cache;
pub mod front;
pub mod tls;
pub mod upstreams;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ALLOW, CONTENT_LENGTH, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use hyper_util::client::legacy::connect::HttpConnector;
use prometheus::{IntGaugeVec, Opts};
use tokio_util::sync::CancellationToken;

use self::cache::ResponseCache;
use self::upstreams::{Replica, ReplicaSet};
use super::runtime::{ServiceContext, ServiceError};
use crate::platform::auth::{AuthError, Tokens};
use crate::platform::http::{
    answers_ready, client_over, ApiError, HttpClient, RouteLabel, TraceContext, REQUEST_ID,
    TRACEPARENT, USER_ID,
};
use crate::platform::metrics::Metrics;

pub const NAME: &str = "gateway";

/// The upstream services the gateway routes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Upstream {
    Users,
    Inventory,
    Orders,
    Analytics,
    Ingest,
}

impl Upstream {
    pub const ALL: [Upstream; 5] = [
        Upstream::Users,
        Upstream::Inventory,
        Upstream::Orders,
        Upstream::Analytics,
        Upstream::Ingest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Upstream::Users => "users",
            Upstream::Inventory => "inventory",
            Upstream::Orders => "orders",
            Upstream::Analytics => "analytics",
            Upstream::Ingest => "ingest",
        }
    }

    pub fn from_name(name: &str) -> Option<Upstream> {
        Upstream::ALL.into_iter().find(|u| u.name() == name)
    }
}

/// Where a public path goes: the upstream, whether it needs a token, and the route's
/// pattern (the metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub upstream: Upstream,
    pub authenticated: bool,
    pub pattern: &'static str,
    /// A long-poll: its timeout is the longest wait it may ask for, plus a margin.
    pub long_poll: bool,
}

/// The public API's routing table. Paths are forwarded without the `/api` prefix. HEAD is
/// routed wherever GET is (the services answer it as a GET without a body).
pub fn route(method: &Method, path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/api/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let r = |upstream, authenticated, pattern| {
        Some(Route {
            upstream,
            authenticated,
            pattern,
            long_poll: false,
        })
    };
    match (method, segments.as_slice()) {
        (&Method::POST, ["users", "register"]) => r(Upstream::Users, false, "/api/users/register"),
        (&Method::POST, ["users", "login"]) => r(Upstream::Users, false, "/api/users/login"),
        (&Method::GET | &Method::PUT, ["users", "me"]) => r(Upstream::Users, true, "/api/users/me"),
        (&Method::GET, ["products"]) => r(Upstream::Inventory, false, "/api/products"),
        (&Method::GET, ["products", _]) => r(Upstream::Inventory, false, "/api/products/{id}"),
        (&Method::POST, ["orders"]) => r(Upstream::Orders, true, "/api/orders"),
        (&Method::GET, ["orders", _]) => r(Upstream::Orders, true, "/api/orders/{id}"),
        (&Method::GET, ["orders", _, "view"]) => Some(Route {
            upstream: Upstream::Analytics,
            authenticated: true,
            pattern: "/api/orders/{id}/view",
            long_poll: true,
        }),
        (&Method::GET, ["analytics", "summary"]) => {
            r(Upstream::Analytics, true, "/api/analytics/summary")
        }
        (&Method::POST, ["ingest", "events"]) => r(Upstream::Ingest, true, "/api/ingest/events"),
        _ => None,
    }
}

/// The methods [`route`] takes on `path`, as an `Allow` header lists them; empty when the
/// path is not the API's at all. Asked of the one table, so the two cannot disagree.
pub fn allowed_methods(path: &str) -> Vec<Method> {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ]
    .into_iter()
    .filter(|method| route(method, path).is_some())
    .collect()
}

/// The answer for a path the API has, asked with a method it does not take: 405 with `Allow`
/// (RFC 9110 15.5.6), or for OPTIONS, 204 with `Allow` (RFC 9110 9.3.7). `None` when the
/// path is not the API's.
fn method_not_routed(method: &Method, path: &str) -> Option<Response> {
    let allowed = allowed_methods(path);
    if allowed.is_empty() {
        return None;
    }
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if method == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Ok(value) = HeaderValue::from_str(&allow) {
            response.headers_mut().insert(ALLOW, value);
        }
        return Some(response);
    }
    Some(
        ApiError::MethodNotAllowed {
            message: format!("{path} does not take {method}; it takes {allow}"),
            allow,
        }
        .into_response(),
    )
}

/// A token bucket per key (user id, or client address for anonymous calls), in shards so
/// that concurrent requests rarely meet on one lock.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<String, (f64, Instant)>>>,
}

impl RateLimiter {
    pub fn new(rate_per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: rate_per_second,
            burst: f64::from(burst.max(1)),
            shards: (0..16).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// `Ok` if `key` may make a call now, else how long until it may.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(()); // limiting off
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let shard = &self.shards[(hasher.finish() % self.shards.len() as u64) as usize];
        let mut buckets = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

/// Gateway settings.
#[derive(Clone)]
pub struct GatewayConfig {
    pub upstreams: HashMap<Upstream, Vec<String>>,
    pub tokens: Tokens,
    pub rate_per_user: f64,
    pub burst: u32,
    pub request_timeout: Duration,
    pub health_interval: Duration,
    /// Public responses kept by the response cache; 0 keeps none.
    pub cache_entries: usize,
    /// Under mutual TLS: the gateway's identity and the system CA, for `https://` upstreams.
    pub upstream_tls: Option<Arc<rustls::ClientConfig>>,
}

#[derive(Clone)]
pub struct Gateway {
    sets: Arc<HashMap<Upstream, ReplicaSet>>,
    client: HttpClient,
    tokens: Tokens,
    limiter: Arc<RateLimiter>,
    timeout: Duration,
    cache: Arc<ResponseCache>,
}

impl Gateway {
    pub fn new(config: &GatewayConfig) -> Gateway {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let mut client = client_over(connector, config.upstream_tls.clone());
        // Its pool's idle timeout is every client's (`client_over`).
        client.builder.pool_max_idle_per_host(256);
        let client = client.build();
        Gateway {
            sets: Arc::new(
                config
                    .upstreams
                    .iter()
                    .map(|(u, bases)| (*u, ReplicaSet::new(bases)))
                    .collect(),
            ),
            client,
            tokens: config.tokens.clone(),
            limiter: Arc::new(RateLimiter::new(config.rate_per_user, config.burst)),
            timeout: config.request_timeout,
            cache: Arc::new(ResponseCache::new(config.cache_entries)),
        }
    }

    /// Checks every replica's `/health/ready` every `interval` until `shutdown`, and keeps
    /// the breaker-state gauge current.
    pub async fn health_checks(
        self,
        interval: Duration,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) {
        let breaker_gauge = breaker_gauge(&metrics);
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            // A round waits on each replica in turn (up to 1 s each): a stop must not.
            let round = async {
                for (upstream, set) in self.sets.iter() {
                    for replica in set.current().iter() {
                        let healthy =
                            answers_ready(&self.client, &replica.base, Duration::from_secs(1))
                                .await;
                        if replica.healthy.swap(healthy, Ordering::Relaxed) != healthy {
                            tracing::info!(upstream = upstream.name(), replica = %replica.base, healthy, "replica health changed");
                        }
                        breaker_gauge
                            .with_label_values(&[upstream.name(), &replica.base])
                            .set(replica.breaker.state().as_gauge());
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = round => {}
            }
        }
    }
}

fn breaker_gauge(metrics: &Metrics) -> IntGaugeVec {
    metrics.register(IntGaugeVec::new(
        Opts::new(
            "circuit_breaker_state",
            "Circuit breaker per upstream replica: 0 closed, 1 open, 2 half-open",
        ),
        &["upstream", "replica"],
    ))
}

/// Starts the gateway in front of the replicas named by `--upstream`, checking each one's
/// health in the background.
pub(crate) async fn start(ctx: &mut ServiceContext<'_>) -> Result<Router, ServiceError> {
    let args = ctx.args;
    let config = GatewayConfig {
        upstreams: parse_upstreams(&args.upstreams).map_err(|reason| ctx.invalid(reason))?,
        tokens: ctx.tokens()?,
        rate_per_user: args.rate_limit,
        burst: args.burst,
        request_timeout: args.request_timeout,
        health_interval: Duration::from_secs(1),
        cache_entries: args.response_cache,
        upstream_tls: ctx.mesh_client()?,
    };
    let gateway = Gateway::new(&config);
    let health_checks =
        gateway
            .clone()
            .health_checks(config.health_interval, ctx.metrics(), ctx.background());
    ctx.spawn(health_checks);
    if let Some(path) = &args.upstreams_file {
        let watch = upstreams::watch_file(path.clone(), gateway.sets.clone(), ctx.background());
        ctx.spawn(watch);
    }
    Ok(routes(gateway))
}

/// Parses `--upstream service=url,url`.
pub fn parse_upstreams(values: &[String]) -> Result<HashMap<Upstream, Vec<String>>, String> {
    let mut upstreams: HashMap<Upstream, Vec<String>> = HashMap::new();
    for value in values {
        let (name, urls) = value
            .split_once('=')
            .ok_or_else(|| format!("--upstream {value:?}: expected SERVICE=URL[,URL...]"))?;
        let upstream = Upstream::from_name(name.trim())
            .ok_or_else(|| format!("--upstream {value:?}: unknown service {name:?}"))?;
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "--upstream {value:?}: {url:?} is not an http:// or https:// URL"
                ));
            }
            upstreams.entry(upstream).or_default().push(url.to_string());
        }
    }
    Ok(upstreams)
}

/// The gateway's router: everything goes through [`proxy`].
pub fn routes(gateway: Gateway) -> Router {
    Router::new()
        .route("/openapi.json", axum::routing::get(openapi))
        .fallback(proxy)
        .with_state(gateway)
}

async fn openapi() -> Response {
    let mut response = (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        super::openapi::document(),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(RouteLabel("/openapi.json"));
    response
}

/// Headers that describe one connection, not the message (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn proxy(
    State(gateway): State<Gateway>,
    Extension(trace): Extension<TraceContext>,
    request: Request,
) -> Response {
    let path = request.uri().path().to_string();
    let Some(route) = route(request.method(), &path) else {
        return method_not_routed(request.method(), &path).unwrap_or_else(|| {
            ApiError::NotFound(format!("no route for {} {path}", request.method())).into_response()
        });
    };
    let forwarded = match too_large(route, request.headers()) {
        Some(refused) => Err(refused),
        None => forward(&gateway, route, &trace, request).await,
    };
    let mut response = forwarded.unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(RouteLabel(route.pattern));
    response
}

/// The largest body the services take: axum's default limit of their JSON extractor.
const MAX_BODY_BYTES: u64 = 2 * 1024 * 1024;

/// The largest body `route` takes: what its service would read before answering 413.
fn body_limit(route: Route) -> u64 {
    match route.upstream {
        Upstream::Ingest => super::ingest::MAX_BODY_BYTES as u64,
        _ => MAX_BODY_BYTES,
    }
}

/// A 413 for a request whose declared `Content-Length` is past the route's limit, answered
/// before any of the body is read (hyper then closes the connection rather than read the
/// rest). A chunked body is streamed to the service, which stops at the same limit.
fn too_large(route: Route, headers: &HeaderMap) -> Option<ApiError> {
    let length = headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    let limit = body_limit(route);
    (length > limit).then(|| {
        ApiError::PayloadTooLarge(format!(
            "the body is {length} bytes; {} takes at most {limit}",
            route.pattern
        ))
    })
}

/// Who the caller is, as the rate limiter keys it: the token's user (passed on as
/// `x-user-id`) on a route that needs one, else the client's address.
fn caller(
    gateway: &Gateway,
    route: Route,
    parts: &mut axum::http::request::Parts,
) -> Result<String, ApiError> {
    // Never trust a client's claim to be someone.
    parts.headers.remove(&USER_ID);
    let key = if route.authenticated {
        let token = bearer(&parts.headers)
            .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
        let user = gateway.tokens.validate(token).map_err(|e| match e {
            AuthError::Expired => ApiError::Unauthorized("the token has expired".into()),
            // Says which part is wrong; nothing in it is secret.
            other => ApiError::Unauthorized(other.to_string()),
        })?;
        let value = HeaderValue::from_str(&user.to_string()).map_err(ApiError::internal)?;
        parts.headers.insert(USER_ID, value);
        user.to_string()
    } else {
        // Anonymous calls are limited per client address as the gateway saw it.
        parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "anonymous".into())
    };
    Ok(key)
}

async fn forward(
    gateway: &Gateway,
    route: Route,
    trace: &TraceContext,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let limit_key = caller(gateway, route, &mut parts)?;
    gateway
        .limiter
        .check(&limit_key)
        .map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;

    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    parts.headers.insert(
        TRACEPARENT,
        HeaderValue::from_str(&trace.traceparent).map_err(ApiError::internal)?,
    );
    parts.headers.insert(
        REQUEST_ID,
        HeaderValue::from_str(&trace.request_id).map_err(ApiError::internal)?,
    );
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| {
            pq.as_str()
                .strip_prefix("/api")
                .unwrap_or(pq.as_str())
                .to_string()
        })
        .unwrap_or_else(|| "/".into());

    let set = gateway.sets.get(&route.upstream).ok_or_else(|| {
        ApiError::Unavailable(format!(
            "no replicas of {} are configured",
            route.upstream.name()
        ))
    })?;
    // Only what anyone may read is shared between callers.
    let cacheable = parts.method == Method::GET && !route.authenticated;
    if cacheable && gateway.cache.may_serve(&parts.headers) {
        if let Some(hit) = gateway.cache.get(&path_and_query) {
            return Ok(hit);
        }
    }
    let response = send(gateway, route, set, parts, body, &path_and_query).await?;
    if cacheable {
        return Ok(keep(&gateway.cache, path_and_query, response).await);
    }
    Ok(response)
}

/// Keeps a cacheable upstream answer (one whose declared length is small enough to hold)
/// and passes it on, marked as a miss.
async fn keep(cache: &ResponseCache, key: String, response: Response) -> Response {
    let Some(max_age) = cache.lifetime(response.status(), response.headers()) else {
        return response;
    };
    let small = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|length| length <= cache::MAX_BODY);
    if !small {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    match axum::body::to_bytes(body, cache::MAX_BODY).await {
        Ok(bytes) => {
            cache.put(key, &parts.headers, bytes.clone(), max_age);
            parts
                .headers
                .insert(cache::X_CACHE, HeaderValue::from_static("miss"));
            Response::from_parts(parts, Body::from(bytes))
        }
        // The upstream broke off mid-body: so does this answer.
        Err(error) => {
            ApiError::Unavailable(format!("reading the upstream answer: {error}")).into_response()
        }
    }
}

/// Sends the request to a replica of `set`, once more to another one when an idempotent
/// request could not connect, and records the outcome in the replica's breaker.
async fn send(
    gateway: &Gateway,
    route: Route,
    set: &ReplicaSet,
    parts: axum::http::request::Parts,
    body: Body,
    path_and_query: &str,
) -> Result<Response, ApiError> {
    let retryable = matches!(parts.method, Method::GET | Method::HEAD);
    let mut body = Some(body);
    let mut tried: Option<Arc<Replica>> = None;
    let timeout = if route.long_poll {
        gateway
            .timeout
            .max(super::analytics::MAX_WAIT + Duration::from_secs(5))
    } else {
        gateway.timeout
    };
    for attempt in 0..2 {
        let replica = set.pick(tried.as_ref()).ok_or_else(|| {
            ApiError::Unavailable(format!(
                "no healthy replica of {} is available",
                route.upstream.name()
            ))
        })?;
        let uri: Uri = format!("{}{}", replica.base, path_and_query)
            .parse()
            .map_err(ApiError::internal)?;
        let mut outgoing =
            axum::http::Request::from_parts(parts.clone(), body.take().unwrap_or_default());
        *outgoing.uri_mut() = uri;
        match tokio::time::timeout(timeout, gateway.client.request(outgoing)).await {
            Err(_) => {
                replica.breaker.record_failure();
                return Err(ApiError::Timeout(format!(
                    "{} did not answer within {timeout:?}",
                    route.upstream.name()
                )));
            }
            Ok(Err(error)) => {
                replica.breaker.record_failure();
                tracing::warn!(upstream = route.upstream.name(), replica = %replica.base, %error, "upstream request failed");
                // Only a failure to connect proves the request was not sent.
                if retryable && attempt == 0 && error.is_connect() {
                    tried = Some(replica);
                    continue;
                }
                return Err(ApiError::Unavailable(format!(
                    "{} is unavailable",
                    route.upstream.name()
                )));
            }
            Ok(Ok(response)) => {
                // A 503 with Retry-After is a healthy replica shedding load on purpose:
                // opening its breaker would refuse everything else it serves too.
                let shedding = response.status() == StatusCode::SERVICE_UNAVAILABLE
                    && response.headers().contains_key(RETRY_AFTER);
                if !shedding {
                    if response.status().is_server_error() {
                        replica.breaker.record_failure();
                    } else {
                        replica.breaker.record_success();
                    }
                }
                let (mut parts, body) = response.into_parts();
                for name in HOP_BY_HOP {
                    parts.headers.remove(name);
                }
                return Ok(Response::from_parts(parts, Body::new(body)));
            }
        }
    }
    Err(ApiError::Unavailable(format!(
        "{} is unavailable",
        route.upstream.name()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routing_table_sends_paths_to_their_services() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(
            route(&post, "/api/users/login").map(|r| (r.upstream, r.authenticated)),
            Some((Upstream::Users, false))
        );
        assert_eq!(
            route(&get, "/api/products/7").map(|r| r.upstream),
            Some(Upstream::Inventory)
        );
        assert_eq!(
            route(&get, "/api/orders/abc").map(|r| (r.upstream, r.authenticated)),
            Some((Upstream::Orders, true))
        );
        assert_eq!(
            route(&get, "/api/orders/abc/view").map(|r| r.upstream),
            Some(Upstream::Analytics)
        );
        assert_eq!(
            route(&post, "/api/ingest/events").map(|r| r.upstream),
            Some(Upstream::Ingest)
        );
        assert_eq!(route(&get, "/api/admin/secret"), None);
        assert_eq!(route(&get, "/health/ready"), None);
    }

    #[test]
    fn a_known_path_with_a_method_it_does_not_take_is_405_with_allow() {
        let trace = Method::from_bytes(b"TRACE").expect("a method");
        let answer = method_not_routed(&trace, "/api/orders").expect("a known path");
        assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(answer.headers()[ALLOW], "POST");
        let answer = method_not_routed(&Method::DELETE, "/api/users/me").expect("a known path");
        assert_eq!(answer.headers()[ALLOW], "GET, HEAD, PUT");
        let answer = method_not_routed(&Method::OPTIONS, "/api/orders/7/view").expect("known");
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        assert_eq!(answer.headers()[ALLOW], "GET, HEAD");
        assert!(method_not_routed(&trace, "/api/nothing/here").is_none());
        assert!(method_not_routed(&Method::GET, "/metrics").is_none());
        assert!(
            route(&Method::HEAD, "/api/products").is_some(),
            "HEAD goes where GET does"
        );
    }

    #[test]
    fn the_token_bucket_allows_a_burst_then_limits_to_the_rate() {
        let limiter = RateLimiter::new(10.0, 3);
        assert!(limiter.check("u").is_ok());
        assert!(limiter.check("u").is_ok());
        assert!(limiter.check("u").is_ok());
        let wait = limiter.check("u").expect_err("the burst is spent");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(limiter.check("someone else").is_ok(), "buckets are per key");
    }
}
