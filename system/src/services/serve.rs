//! `faultline serve <service>`: one service process, from settings to graceful shutdown.
//!
//! Every service has the same shape: its module's `start` connects and migrates
//! ([`ServiceContext::platform`]) and starts its background work (outbox relay, consumers);
//! then [`serve`] serves its routes plus `/health/*` and `/metrics` behind the [`observe`]
//! middleware, and on shutdown stops accepting, lets in-flight requests finish, then stops
//! the background work so consumers commit offsets.

use std::net::SocketAddr;
use std::time::Duration;

use axum::middleware;
use axum::Router;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::runtime::{ServiceContext, ServiceError, Started};
use super::{
    analytics, gateway, ingest, inventory, notifications, orders, payments, shipping, users,
    ServiceKind,
};
use crate::platform::http::{self, observe, Operational};
use crate::platform::mesh;
use crate::platform::tls::TlsError;

/// A service's acceptor under mutual TLS (`--mesh-*`), requiring a client certificate of
/// the system CA; `None` without it.
fn mesh_acceptor(args: &ServeArgs) -> Result<Option<tokio_rustls::TlsAcceptor>, TlsError> {
    let identity = args.mesh.identity()?;
    let config = identity.map(|m| m.server_config()).transpose()?;
    Ok(config.map(tokio_rustls::TlsAcceptor::from))
}

/// Settings of one service process. Flags, or the environment variables named.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct ServeArgs {
    /// Which service to run.
    #[arg(value_enum)]
    pub service: ServiceKind,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// The service's own PostgreSQL database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP")]
    pub kafka_bootstrap: Option<String>,

    /// Kafka principal (SASL/SCRAM-SHA-512); anonymous when absent.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,

    /// Password of the Kafka principal.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,

    /// Redis (users: profile cache).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// HS256 secret shared by users (signs tokens) and the gateway (checks them); at least
    /// 32 bytes.
    #[arg(long, env = "FAULTLINE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Lifetime of issued tokens.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,

    /// Gateway: an upstream's replicas, `service=URL[,URL...]` (repeatable).
    #[arg(long = "upstream", value_name = "SERVICE=URLS")]
    pub upstreams: Vec<String>,

    /// Gateway: a file whose newer generations replace the `--upstream` replicas while it
    /// runs (a rollout or blue-green switch; see `gateway::upstreams`).
    #[arg(long)]
    pub upstreams_file: Option<std::path::PathBuf>,

    /// Gateway: requests per second allowed per user (0: no limit).
    #[arg(long, default_value_t = 100.0)]
    pub rate_limit: f64,

    /// Gateway: burst size of each user's token bucket.
    #[arg(long, default_value_t = 200)]
    pub burst: u32,

    /// Gateway: public responses kept in memory while fresh, for GETs that need no token
    /// and that the upstream marks `Cache-Control: public, max-age=N`; 0 keeps none.
    #[arg(long, default_value_t = 10_000)]
    pub response_cache: usize,

    /// Gateway: timeout of a forwarded request.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Payments and shipping: probability that an operation fails.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,

    /// Payments and shipping: time each operation takes, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Orders: take a new order only while the pending sagas can finish within this time
    /// at the recent completion rate (at least 500 pending); otherwise answer 503 with
    /// Retry-After. 0s takes every order.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub saga_deadline: Duration,

    /// Orders: a fixed limit on pending sagas instead of the one from --saga-deadline
    /// (at least 1: a limit of 0 would refuse every order).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_pending_orders: Option<i64>,

    /// Notifications: also POST every notification to this URL.
    #[arg(long)]
    pub webhook_url: Option<String>,

    /// Notifications: attempts per channel before dead-lettering.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,

    /// Gateway: HTTPS and the limits of its public listener.
    #[command(flatten)]
    pub front: gateway::front::FrontArgs,

    /// Mutual TLS between the services: this service's certificate and the system CA.
    #[command(flatten)]
    pub mesh: crate::platform::mesh::MeshArgs,

    /// Where this process' spans are exported (OTLP), and how many traces are sampled.
    #[command(flatten)]
    pub telemetry: crate::platform::telemetry::TelemetryArgs,

    /// How long in-flight requests may take to finish on shutdown.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

/// How long background work (consumers finishing their batch and committing, the relay
/// settling what it sent) may take to stop once the HTTP server drained.
const BACKGROUND_GRACE: Duration = Duration::from_secs(10);

/// How each service starts: its module's `start`, looked up by kind.
async fn start(kind: ServiceKind, ctx: &mut ServiceContext<'_>) -> Result<Router, ServiceError> {
    match kind {
        ServiceKind::Gateway => gateway::start(ctx).await,
        ServiceKind::Users => users::start(ctx).await,
        ServiceKind::Orders => orders::start(ctx).await,
        ServiceKind::Inventory => inventory::start(ctx).await,
        ServiceKind::Payments => payments::start(ctx).await,
        ServiceKind::Shipping => shipping::start(ctx).await,
        ServiceKind::Notifications => notifications::start(ctx).await,
        ServiceKind::Analytics => analytics::start(ctx).await,
        ServiceKind::Ingest => ingest::start(ctx).await,
    }
}

/// Runs one service on `listener` until `shutdown`.
pub async fn serve(
    args: ServeArgs,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let service = args.service;
    let name = service.name();
    let mut ctx = ServiceContext::new(&args);
    // Before anything starts: a certificate that cannot be read is a usage error.
    let tls = match service {
        ServiceKind::Gateway => {
            gateway::front::acceptor(&args.front).map_err(|e| ctx.invalid(e.to_string()))?
        }
        _ => mesh_acceptor(&args).map_err(|e| ctx.invalid(e.to_string()))?,
    };
    let routes = start(service, &mut ctx).await?;
    let Started {
        background,
        tasks,
        probes,
        metrics,
    } = ctx.finish();

    let router = routes.merge(http::operational_routes(Operational {
        metrics: metrics.clone(),
        probes,
    }));
    let observed = middleware::from_fn_with_state(metrics, observe);
    // `route_layer` sees the matched route (the metrics label) but does not wrap a fallback,
    // and the gateway routes by itself in one: it labels its responses instead.
    let router = if service == ServiceKind::Gateway {
        router.layer(observed)
    } else {
        router.route_layer(observed)
    };
    // Under mutual TLS every request is admitted by its caller's identity first, whatever
    // its path (so `layer`: unmatched paths too).
    let mutual_tls = service != ServiceKind::Gateway && tls.is_some();
    let router = if mutual_tls {
        router.layer(middleware::from_fn_with_state(service, mesh::admit))
    } else {
        router
    };
    let address = listener.local_addr().map_err(|source| ServiceError::Http {
        service: name.into(),
        source,
    })?;
    tracing::info!(service = name, %address, "serving");
    // The gateway's loop is the one that serves TLS (and puts each connection's client
    // identity into its requests), so mutual-TLS services are served by it too.
    let served = match service {
        _ if service == ServiceKind::Gateway || mutual_tls => {
            let front = &args.front;
            gateway::front::serve(listener, router, tls, front, shutdown, args.drain_timeout).await
        }
        _ => http::serve(listener, router, shutdown, args.drain_timeout).await,
    };
    tracing::info!(service = name, "requests drained; stopping background work");
    background.cancel();
    // Together, not one after another: each consumer's last batch and offset commit and the
    // relay's last acknowledgements overlap instead of adding up.
    let stopped = futures::future::join_all(tasks);
    if tokio::time::timeout(BACKGROUND_GRACE, stopped)
        .await
        .is_err()
    {
        tracing::warn!(service = name, grace = ?BACKGROUND_GRACE, "background work did not stop in time");
    }
    tracing::info!(service = name, "stopped");
    served.map_err(|source| ServiceError::Http {
        service: name.into(),
        source,
    })
}
