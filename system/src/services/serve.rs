//! `faultline serve <service>`: one service process, from settings to graceful shutdown.
//!
//! Every service has the same shape: connect and migrate ([`Platform::start`]), start its
//! background work (outbox relay, consumers), serve its routes plus `/health/*` and
//! `/metrics` behind the [`observe`] middleware, and on shutdown stop accepting, let
//! in-flight requests finish, then stop the background work so consumers commit offsets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::middleware;
use axum::Router;
use clap::{Args, ValueEnum};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::behaviour::{Behaviour, SharedBehaviour};
use super::gateway::{Gateway, GatewayConfig, Upstream};
use super::notifications::{Channel, LogChannel, Notifier, RetryPolicy, WebhookChannel};
use super::runtime::{producer, Platform, ServiceError};
use super::{
    analytics, gateway, ingest, inventory, notifications, orders, payments, shipping, users,
};
use crate::platform::auth::{Secret, Tokens};
use crate::platform::http::{self, observe, Operational, ReadinessProbe};
use crate::platform::metrics::Metrics;
use crate::platform::notify::Listener;

/// The services `faultline serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum ServiceKind {
    Gateway,
    Users,
    Orders,
    Inventory,
    Payments,
    Shipping,
    Notifications,
    Analytics,
    Ingest,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 9] = [
        ServiceKind::Users,
        ServiceKind::Inventory,
        ServiceKind::Payments,
        ServiceKind::Shipping,
        ServiceKind::Orders,
        ServiceKind::Analytics,
        ServiceKind::Notifications,
        ServiceKind::Ingest,
        ServiceKind::Gateway,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Gateway => gateway::NAME,
            ServiceKind::Users => users::NAME,
            ServiceKind::Orders => orders::NAME,
            ServiceKind::Inventory => inventory::NAME,
            ServiceKind::Payments => payments::NAME,
            ServiceKind::Shipping => shipping::NAME,
            ServiceKind::Notifications => notifications::NAME,
            ServiceKind::Analytics => analytics::NAME,
            ServiceKind::Ingest => ingest::NAME,
        }
    }

    /// Whether the service has a database of its own.
    pub fn has_database(self) -> bool {
        !matches!(self, ServiceKind::Gateway | ServiceKind::Ingest)
    }
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

    /// Gateway: requests per second allowed per user (0: no limit).
    #[arg(long, default_value_t = 100.0)]
    pub rate_limit: f64,

    /// Gateway: burst size of each user's token bucket.
    #[arg(long, default_value_t = 200)]
    pub burst: u32,

    /// Gateway: timeout of a forwarded request.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Payments and shipping: probability that an operation fails.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,

    /// Payments and shipping: time each operation takes, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Notifications: also POST every notification to this URL.
    #[arg(long)]
    pub webhook_url: Option<String>,

    /// Notifications: attempts per channel before dead-lettering.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,

    /// How long in-flight requests may take to finish on shutdown.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

fn required<'a>(
    service: ServiceKind,
    value: &'a Option<String>,
    what: &'static str,
    flag: &'static str,
    env: &'static str,
) -> Result<&'a str, ServiceError> {
    value.as_deref().ok_or(ServiceError::Missing {
        service: service.name().to_string(),
        what,
        flag,
        env,
    })
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
            if !url.starts_with("http://") {
                return Err(format!(
                    "--upstream {value:?}: {url:?} is not an http:// URL"
                ));
            }
            upstreams.entry(upstream).or_default().push(url.to_string());
        }
    }
    Ok(upstreams)
}

/// Runs one service on `listener` until `shutdown`.
pub async fn serve(
    args: ServeArgs,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let service = args.service;
    let name = service.name();
    let invalid = |reason: String| ServiceError::Invalid {
        service: name.to_string(),
        reason,
    };
    // Background work stops only after the HTTP server drained.
    let background = CancellationToken::new();
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();

    let (routes, metrics, probes): (Router, Metrics, Vec<(&'static str, ReadinessProbe)>) =
        match service {
            ServiceKind::Gateway => {
                let secret = required(
                    service,
                    &args.jwt_secret,
                    "a JWT secret",
                    "jwt-secret",
                    "FAULTLINE_JWT_SECRET",
                )?;
                let tokens = Tokens::new(&Secret::new(secret), args.token_ttl)
                    .map_err(|e| invalid(e.to_string()))?;
                let upstreams = parse_upstreams(&args.upstreams).map_err(invalid)?;
                let config = GatewayConfig {
                    upstreams,
                    tokens,
                    rate_per_user: args.rate_limit,
                    burst: args.burst,
                    request_timeout: args.request_timeout,
                    health_interval: Duration::from_secs(1),
                };
                let metrics = Metrics::new(name);
                let gateway = Gateway::new(&config);
                tasks.push(tokio::spawn(gateway.clone().health_checks(
                    config.health_interval,
                    metrics.clone(),
                    background.clone(),
                )));
                (gateway::routes(gateway), metrics, Vec::new())
            }
            ServiceKind::Ingest => {
                let bootstrap = required(
                    service,
                    &args.kafka_bootstrap,
                    "Kafka",
                    "kafka-bootstrap",
                    "KAFKA_BOOTSTRAP",
                )?;
                super::runtime::ensure_topics(bootstrap, ingest::TOPICS)
                    .await
                    .map_err(|reason| ServiceError::Kafka {
                        service: name.into(),
                        reason,
                    })?;
                let producer = producer(bootstrap).map_err(|reason| ServiceError::Kafka {
                    service: name.into(),
                    reason,
                })?;
                let metrics = Metrics::new(name);
                let kafka_bootstrap = bootstrap.to_string();
                let kafka: ReadinessProbe = Arc::new(move || {
                    let bootstrap = kafka_bootstrap.clone();
                    Box::pin(async move {
                        match crate::stack::kafka::broker_count(bootstrap).await? {
                            0 => Err("no broker listed".to_string()),
                            _ => Ok(()),
                        }
                    })
                });
                (ingest::routes(producer), metrics, vec![("kafka", kafka)])
            }
            _ => {
                let database_url = required(
                    service,
                    &args.database_url,
                    "a database",
                    "database-url",
                    "DATABASE_URL",
                )?;
                let bootstrap = required(
                    service,
                    &args.kafka_bootstrap,
                    "Kafka",
                    "kafka-bootstrap",
                    "KAFKA_BOOTSTRAP",
                )?;
                let (migrations, topics): (&[_], &[&str]) = match service {
                    ServiceKind::Users => (users::MIGRATIONS, users::TOPICS),
                    ServiceKind::Orders => (orders::MIGRATIONS, orders::TOPICS),
                    ServiceKind::Inventory => (inventory::MIGRATIONS, inventory::TOPICS),
                    ServiceKind::Payments => (payments::MIGRATIONS, payments::TOPICS),
                    ServiceKind::Shipping => (shipping::MIGRATIONS, shipping::TOPICS),
                    ServiceKind::Notifications => {
                        (notifications::MIGRATIONS, notifications::TOPICS)
                    }
                    ServiceKind::Analytics => (analytics::MIGRATIONS, analytics::TOPICS),
                    ServiceKind::Gateway | ServiceKind::Ingest => (&[], &[]),
                };
                let platform =
                    Platform::start(name, database_url, bootstrap, migrations, topics).await?;
                let metrics = platform.metrics.clone();
                let mut probes = platform.probes();
                let behaviour = || {
                    let behaviour = Behaviour {
                        fail_rate: args.fail_rate,
                        latency_ms: args.latency_ms,
                    };
                    behaviour
                        .validate()
                        .map(|()| SharedBehaviour::new(behaviour))
                        .map_err(invalid)
                };
                let routes = match service {
                    ServiceKind::Users => {
                        tasks.push(platform.spawn_relay(background.clone()));
                        let secret = required(
                            service,
                            &args.jwt_secret,
                            "a JWT secret",
                            "jwt-secret",
                            "FAULTLINE_JWT_SECRET",
                        )?;
                        let tokens = Tokens::new(&Secret::new(secret), args.token_ttl)
                            .map_err(|e| invalid(e.to_string()))?;
                        let redis_url =
                            required(service, &args.redis_url, "Redis", "redis-url", "REDIS_URL")?;
                        let redis_error = |e: redis::RedisError| ServiceError::Redis {
                            service: name.into(),
                            reason: e.to_string(),
                        };
                        let client = redis::Client::open(redis_url).map_err(redis_error)?;
                        let connection = redis::aio::ConnectionManager::new(client)
                            .await
                            .map_err(redis_error)?;
                        let probe_connection = connection.clone();
                        let redis_probe: ReadinessProbe = Arc::new(move || {
                            let mut connection = probe_connection.clone();
                            Box::pin(async move {
                                redis::cmd("PING")
                                    .query_async::<String>(&mut connection)
                                    .await
                                    .map(|_| ())
                                    .map_err(|e| e.to_string())
                            })
                        });
                        probes.push(("redis", redis_probe));
                        users::routes(users::UsersState::new(
                            platform.pool.clone(),
                            connection,
                            tokens,
                            &metrics,
                        ))
                    }
                    ServiceKind::Orders => {
                        tasks.push(platform.spawn_relay(background.clone()));
                        let saga_metrics = orders::SagaMetrics::register(&metrics);
                        tasks.push(tokio::spawn(
                            saga_metrics
                                .clone()
                                .refresh(platform.pool.clone(), background.clone()),
                        ));
                        tasks.push(platform.spawn_consumer(
                            "orders-saga",
                            orders::REPLY_TOPICS,
                            orders::SagaHandler {
                                metrics: saga_metrics,
                            },
                            background.clone(),
                        )?);
                        orders::routes(platform.pool.clone())
                    }
                    ServiceKind::Inventory => {
                        tasks.push(platform.spawn_relay(background.clone()));
                        tasks.push(platform.spawn_consumer(
                            "inventory-commands",
                            &[super::messages::INVENTORY_COMMANDS],
                            inventory::CommandHandler,
                            background.clone(),
                        )?);
                        inventory::routes(platform.pool.clone())
                    }
                    ServiceKind::Payments => {
                        tasks.push(platform.spawn_relay(background.clone()));
                        let behaviour = behaviour()?;
                        tasks.push(platform.spawn_consumer(
                            "payments-commands",
                            &[super::messages::PAYMENTS_COMMANDS],
                            payments::CommandHandler {
                                behaviour: behaviour.clone(),
                            },
                            background.clone(),
                        )?);
                        payments::routes(platform.pool.clone())
                            .merge(super::behaviour::routes(behaviour))
                    }
                    ServiceKind::Shipping => {
                        tasks.push(platform.spawn_relay(background.clone()));
                        let behaviour = behaviour()?;
                        tasks.push(platform.spawn_consumer(
                            "shipping-commands",
                            &[super::messages::SHIPPING_COMMANDS],
                            shipping::CommandHandler {
                                behaviour: behaviour.clone(),
                            },
                            background.clone(),
                        )?);
                        super::behaviour::routes(behaviour)
                    }
                    ServiceKind::Notifications => {
                        let mut channels: Vec<Box<dyn Channel>> = vec![Box::new(LogChannel)];
                        if let Some(url) = &args.webhook_url {
                            channels.push(Box::new(WebhookChannel::new(url)));
                        }
                        let policy = RetryPolicy {
                            max_attempts: args.max_attempts.max(1),
                            ..RetryPolicy::default()
                        };
                        tasks.push(platform.spawn_consumer(
                            "notifications",
                            notifications::TOPICS,
                            Notifier::new(channels, policy, &metrics),
                            background.clone(),
                        )?);
                        Router::new()
                    }
                    ServiceKind::Analytics => {
                        let views = Listener::spawn(
                            database_url,
                            analytics::VIEW_CHANNEL,
                            background.clone(),
                        );
                        tasks.push(platform.spawn_consumer(
                            "analytics-projector",
                            analytics::TOPICS,
                            analytics::Projector::new(&metrics),
                            background.clone(),
                        )?);
                        analytics::routes(platform.pool.clone(), views)
                    }
                    ServiceKind::Gateway | ServiceKind::Ingest => Router::new(),
                };
                (routes, metrics, probes)
            }
        };

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
    let address = listener.local_addr().map_err(|source| ServiceError::Http {
        service: name.into(),
        source,
    })?;
    tracing::info!(service = name, %address, "serving");
    let served = http::serve(listener, router, shutdown, args.drain_timeout).await;
    background.cancel();
    for task in tasks {
        if tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .is_err()
        {
            tracing::warn!(service = name, "a background task did not stop within 10 s");
        }
    }
    tracing::info!(service = name, "stopped");
    served.map_err(|source| ServiceError::Http {
        service: name.into(),
        source,
    })
}
