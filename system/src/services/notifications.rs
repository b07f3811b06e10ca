//! Notifications: consumes order and user events and "sends" them through pluggable
//! channels — a log channel, and an HTTP webhook channel.
//!
//! Each channel has a circuit breaker; each send is tried up to `max_attempts` times with
//! exponential backoff and full jitter (so many consumers recovering at once do not retry in
//! lockstep). An event a channel still could not take after the last attempt goes to the
//! dead-letter topic (through the consumer's poison path) and the consumer goes on.
//! Sending happens inside the consumer's transaction, before the event id is committed as
//! processed: delivery is at least once.

use std::sync::Arc;
use std::time::Duration;

use crate::platform::outbox::OutboxTx;
use axum::body::Body;
use axum::Router;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus::{IntCounterVec, Opts};
use serde::Serialize;

use super::messages::{self, types, OrderChanged, UserRegistered, V1};
use super::runtime::{ServiceContext, ServiceError};
use crate::platform::breaker::CircuitBreaker;
use crate::platform::consumer::{expect_version, EventHandler, HandleError};
use crate::platform::envelope::Envelope;
use crate::platform::metrics::Metrics;
use crate::platform::migrate::Migration;

pub const NAME: &str = "notifications";

pub const MIGRATIONS: &[Migration] = &[Migration::processed_events(1)];

pub const TOPICS: &[&str] = &[messages::ORDERS_EVENTS, messages::USERS_EVENTS];

/// What is sent.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub kind: String,
    pub subject: String,
    pub message: String,
    pub event_id: String,
}

/// A way to send notifications.
/// A send in progress: `Err` says why the channel did not deliver.
pub type Sending<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;

pub trait Channel: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn send<'a>(&'a self, notification: &'a Notification) -> Sending<'a>;
}

/// Writes notifications to the log.
pub struct LogChannel;

impl Channel for LogChannel {
    fn name(&self) -> &str {
        "log"
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> Sending<'a> {
        Box::pin(async move {
            tracing::info!(kind = %notification.kind, subject = %notification.subject, "{}", notification.message);
            Ok(())
        })
    }
}

/// POSTs notifications as JSON to a URL; any 2xx is a delivery.
pub struct WebhookChannel {
    url: String,
    client: Client<HttpConnector, Body>,
    timeout: Duration,
}

impl WebhookChannel {
    pub fn new(url: &str) -> WebhookChannel {
        WebhookChannel {
            url: url.to_string(),
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            timeout: Duration::from_secs(5),
        }
    }
}

impl Channel for WebhookChannel {
    fn name(&self) -> &str {
        "webhook"
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> Sending<'a> {
        Box::pin(async move {
            let body = serde_json::to_vec(notification).map_err(|e| e.to_string())?;
            let request = axum::http::Request::post(&self.url)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .map_err(|e| e.to_string())?;
            match tokio::time::timeout(self.timeout, self.client.request(request)).await {
                Err(_) => Err(format!("no answer within {:?}", self.timeout)),
                Ok(Err(error)) => Err(error.to_string()),
                Ok(Ok(response)) if response.status().is_success() => Ok(()),
                Ok(Ok(response)) => Err(format!("answered {}", response.status())),
            }
        })
    }
}

/// Retry policy of every channel.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: a random wait in [0, min(cap, base * 2^attempt)].
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

struct ChannelWithBreaker {
    channel: Box<dyn Channel>,
    breaker: CircuitBreaker,
}

/// Starts notifications: its database and its consumer of order and user events, sending
/// to the log and, when asked, to a webhook.
pub(crate) async fn start(ctx: &mut ServiceContext<'_>) -> Result<Router, ServiceError> {
    let platform = ctx.platform(MIGRATIONS, TOPICS).await?;
    let mut channels: Vec<Box<dyn Channel>> = vec![Box::new(LogChannel)];
    if let Some(url) = &ctx.args.webhook_url {
        channels.push(Box::new(WebhookChannel::new(url)));
    }
    let policy = RetryPolicy {
        max_attempts: ctx.args.max_attempts.max(1),
        ..RetryPolicy::default()
    };
    let notifier = Notifier::new(channels, policy, &platform.metrics);
    ctx.consume(&platform, "notifications", TOPICS, notifier)?;
    Ok(Router::new())
}

/// Turns events into notifications and sends them on every channel.
pub struct Notifier {
    channels: Vec<Arc<ChannelWithBreaker>>,
    policy: RetryPolicy,
    sent: IntCounterVec,
}

impl Notifier {
    pub fn new(
        channels: Vec<Box<dyn Channel>>,
        policy: RetryPolicy,
        metrics: &Metrics,
    ) -> Notifier {
        let sent = metrics.register(IntCounterVec::new(
            Opts::new(
                "notifications_total",
                "Notification sends by channel and outcome",
            ),
            &["channel", "outcome"],
        ));
        Notifier {
            channels: channels
                .into_iter()
                .map(|channel| {
                    Arc::new(ChannelWithBreaker {
                        channel,
                        breaker: CircuitBreaker::new(5, Duration::from_secs(10)),
                    })
                })
                .collect(),
            policy,
            sent,
        }
    }

    async fn deliver(
        &self,
        channel: &ChannelWithBreaker,
        notification: &Notification,
    ) -> Result<(), String> {
        let name = channel.channel.name().to_string();
        let mut last_error = String::from("the circuit breaker is open");
        for attempt in 0..self.policy.max_attempts {
            if attempt > 0 {
                tokio::time::sleep(self.policy.backoff(attempt)).await;
            }
            if !channel.breaker.try_acquire() {
                self.sent
                    .with_label_values(&[&name, "refused_by_breaker"])
                    .inc();
                continue;
            }
            match channel.channel.send(notification).await {
                Ok(()) => {
                    channel.breaker.record_success();
                    self.sent.with_label_values(&[&name, "sent"]).inc();
                    return Ok(());
                }
                Err(error) => {
                    channel.breaker.record_failure();
                    self.sent
                        .with_label_values(&[&name, "failed_attempt"])
                        .inc();
                    last_error = error;
                }
            }
        }
        self.sent.with_label_values(&[&name, "gave_up"]).inc();
        Err(format!(
            "channel {name} gave up after {} attempts: {last_error}",
            self.policy.max_attempts
        ))
    }
}

fn notification_for(event: &Envelope) -> Result<Option<Notification>, HandleError> {
    match event.event_type.as_str() {
        types::ORDER_CREATED => Ok(None),
        types::ORDER_UPDATED => {
            let order: OrderChanged = event.payload_as()?;
            let message = match order.status.as_str() {
                "COMPLETED" => format!("Your order {} is on its way.", order.order_id),
                "CANCELLED" => format!(
                    "Your order {} was cancelled: {}.",
                    order.order_id,
                    order.reason.as_deref().unwrap_or("no reason given")
                ),
                _ => return Ok(None), // intermediate saga steps are not news to the customer
            };
            Ok(Some(Notification {
                kind: format!("order.{}", order.status.to_lowercase()),
                subject: order.user_id.to_string(),
                message,
                event_id: event.id.to_string(),
            }))
        }
        types::USER_REGISTERED => {
            let user: UserRegistered = event.payload_as()?;
            Ok(Some(Notification {
                kind: "user.welcome".into(),
                subject: user.user_id.to_string(),
                message: format!("Welcome, {}!", user.name),
                event_id: event.id.to_string(),
            }))
        }
        other => Err(HandleError::Poison(format!(
            "notifications does not handle {other}"
        ))),
    }
}

impl EventHandler for Notifier {
    /// A key's notifications go out in order and one at a time, as webhooks expect.
    const PIPELINED: bool = false;

    /// Three of a checkout's four order events are not news to the customer; passing
    /// over them spares a transaction each (an event that does not decode is not passed
    /// over: `handle` refuses it).
    fn passes_over(&self, event: &Envelope) -> bool {
        expect_version(event, V1).is_ok() && matches!(notification_for(event), Ok(None))
    }

    async fn handle(&self, _tx: &OutboxTx<'_>, event: &Envelope) -> Result<(), HandleError> {
        expect_version(event, V1)?;
        let Some(notification) = notification_for(event)? else {
            return Ok(());
        };
        for channel in &self.channels {
            self.deliver(channel, &notification)
                .await
                .map_err(HandleError::Poison)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_with_jitter_below_it() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for attempt in 0..10 {
            let ceiling = Duration::from_millis(100 * (1 << attempt)).min(Duration::from_secs(1));
            for _ in 0..50 {
                assert!(policy.backoff(attempt) <= ceiling);
            }
        }
        let waits: Vec<Duration> = (0..50).map(|_| policy.backoff(3)).collect();
        assert!(
            waits.iter().any(|w| *w != waits[0]),
            "jitter varies the waits"
        );
    }
}
