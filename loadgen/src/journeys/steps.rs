//! The journeys themselves, written once against [`Transport`], so the open-model
//! driver (reqwest) and the goose driver (a `GooseUser`) run the same steps and
//! record them the same way.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, Rng as _};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;

use faultline_results::{
    histogram::{new_histogram, record},
    ErrorClass,
};

use crate::{
    classify::Classify as _,
    recorder::{lock, Clock, Outcome, SharedLog},
};

use super::{
    ledger::Ledger,
    session::{Session, Token},
    JourneyKind, Step,
};

/// How a journey's requests leave: a plain reqwest client, or goose's user (which
/// also keeps goose's own metrics).
pub trait Transport: Send {
    /// A request builder for `path` (relative to the target's base URL).
    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, String>;

    /// Sends a request of `step`; resolves when the response headers arrived.
    fn send(
        &mut self,
        step: Step,
        request: RequestBuilder,
    ) -> impl Future<Output = Result<Response, SendFailure>> + Send;
}

/// A request that got no response: its class and what happened.
#[derive(Debug)]
pub struct SendFailure {
    pub class: ErrorClass,
    pub message: String,
}

impl From<reqwest::Error> for SendFailure {
    fn from(error: reqwest::Error) -> Self {
        SendFailure {
            class: classify(&error),
            message: error.to_string(),
        }
    }
}

/// A registered user of the reference system that journeys act as.
#[derive(Debug)]
pub struct VirtualUser {
    pub email: String,
    pub password: String,
    /// The user's login, shared by all its journeys.
    pub session: Session,
}

impl VirtualUser {
    /// A registered user, not logged in yet (the first journey that needs it will).
    pub fn new(email: String, password: String) -> VirtualUser {
        VirtualUser {
            email,
            password,
            session: Session::default(),
        }
    }
}

/// What every journey of a run shares.
pub struct JourneyContext {
    /// Product ids found in the catalogue at set-up.
    pub products: Vec<i64>,
    pub users: Vec<VirtualUser>,
    pub ingest_batch: usize,
    /// Longest a checkout waits for the read model to show its order.
    pub consistency_deadline: Duration,
    pub tally: JourneyTally,
    pub ledger: Option<Ledger>,
    /// Endpoint index of each step in the results (`None`: the step is not in the mix).
    pub endpoint_of: [Option<usize>; Step::ALL.len()],
    pub clock: Clock,
    /// Trace context sent with each request, and the slowest kept (tracing on).
    pub exemplars: Option<crate::exemplars::Exemplars>,
}

/// What journeys count while they run, beyond their requests, for the results.
pub struct JourneyTally {
    /// Write acknowledged → read model serves it, microseconds.
    pub consistency: Mutex<Histogram<u64>>,
    /// Reads that never saw their write within the deadline.
    pub consistency_unseen: AtomicU64,
    /// Journeys started, by [`JourneyKind`] index.
    pub started: [AtomicU64; JourneyKind::ALL.len()],
    /// Journeys started, by the Unix second of their intended start.
    pub started_by_second: Mutex<BTreeMap<u64, u64>>,
    /// Journeys never started (open model: no free slot in time).
    pub dropped: AtomicU64,
}

impl Default for JourneyTally {
    fn default() -> Self {
        JourneyTally {
            consistency: Mutex::new(new_histogram()),
            consistency_unseen: AtomicU64::new(0),
            started: Default::default(),
            started_by_second: Default::default(),
            dropped: AtomicU64::new(0),
        }
    }
}

/// One journey in progress: where it records and when it was due.
pub struct Journey<'a, T> {
    pub context: &'a JourneyContext,
    pub transport: &'a mut T,
    pub log: &'a SharedLog,
    /// When the journey was due (open model) or started (closed model): the first
    /// request's latency is measured from here.
    pub intended: Instant,
    pub late_threshold: Duration,
    pub user: usize,
    pub rng: &'a mut SmallRng,
    /// Set once the first request has gone: later steps wait on earlier answers, so
    /// their latency is measured from their own send.
    first_sent: bool,
}

/// A step's answer: status and body, or `None` when it failed (already recorded).
struct Answer {
    status: StatusCode,
    body: bytes::Bytes,
}

impl<'a, T: Transport> Journey<'a, T> {
    pub fn new(
        context: &'a JourneyContext,
        transport: &'a mut T,
        log: &'a SharedLog,
        intended: Instant,
        late_threshold: Duration,
        user: usize,
        rng: &'a mut SmallRng,
    ) -> Self {
        Journey {
            context,
            transport,
            log,
            intended,
            late_threshold,
            user,
            rng,
            first_sent: false,
        }
    }

    /// Runs the journey to its end or its first failed step.
    pub async fn run(mut self, kind: JourneyKind) {
        let tally = &self.context.tally;
        tally.started[kind as usize].fetch_add(1, Ordering::Relaxed);
        *tally
            .started_by_second
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(self.context.clock.second_of(self.intended))
            .or_default() += 1;
        match kind {
            JourneyKind::Browse => self.browse().await,
            JourneyKind::Checkout => self.checkout().await,
            JourneyKind::Ingest => self.ingest().await,
            JourneyKind::Login => self.login_again().await,
            JourneyKind::Profile => self.read_as(Step::Profile, "/api/users/me").await,
            JourneyKind::Analytics => {
                self.read_as(Step::AnalyticsSummary, "/api/analytics/summary")
                    .await
            }
        }
    }

    fn user(&self) -> Option<&'a VirtualUser> {
        let users = &self.context.users;
        (!users.is_empty()).then(|| &users[self.user % users.len()])
    }

    fn product(&mut self) -> i64 {
        let products = &self.context.products;
        products[self.rng.random_range(0..products.len())]
    }

    /// Sends one request of `step` and records it; `None` when it failed.
    async fn call(&mut self, step: Step, request: RequestBuilder) -> Option<Answer> {
        let endpoint = self.context.endpoint_of[step as usize]?;
        let sent = Instant::now();
        let (origin, send_delay) = if self.first_sent {
            (sent, Duration::ZERO)
        } else {
            self.first_sent = true;
            (
                self.intended.min(sent),
                sent.saturating_duration_since(self.intended),
            )
        };
        let traced = (self.context.exemplars.as_ref()).map(|e| e.traceparent(&mut *self.rng));
        let request = match &traced {
            Some(traced) => request.header("traceparent", &traced.header),
            None => request,
        };
        let result = match self.transport.send(step, request).await {
            Ok(response) => {
                let status = response.status();
                response
                    .bytes()
                    .await
                    .map(|body| Answer { status, body })
                    .map_err(SendFailure::from)
            }
            Err(failure) => Err(failure),
        };
        let now = Instant::now();
        let outcome = match &result {
            Ok(answer) => Outcome::Answered {
                latency: now.saturating_duration_since(origin),
                error: ErrorClass::of_status(answer.status),
            },
            Err(failure) => {
                tracing::debug!(step = step.name(), error = %failure.message, "journey request failed");
                Outcome::Failed(failure.class)
            }
        };
        let second = self.context.clock.second_of(now);
        if let (Some(exemplars), Some(traced), Outcome::Answered { latency, .. }) =
            (&self.context.exemplars, &traced, outcome)
        {
            exemplars.offer(endpoint, second, latency, traced);
        }
        lock(self.log).record(
            endpoint,
            second,
            send_delay,
            send_delay > self.late_threshold,
            outcome,
        );
        result.ok()
    }

    fn build(&self, method: Method, path: &str) -> Option<RequestBuilder> {
        match self.transport.request(method, path) {
            Ok(builder) => Some(builder),
            Err(error) => {
                tracing::warn!(%error, path, "journey request could not be built");
                None
            }
        }
    }

    /// List the catalogue, then look at two products from it.
    async fn browse(&mut self) {
        let Some(list) = self.build(Method::GET, "/api/products") else {
            return;
        };
        let Some(answer) = self.call(Step::ListProducts, list).await else {
            return;
        };
        #[derive(Deserialize)]
        struct Listed {
            id: i64,
        }
        let listed: Vec<Listed> = serde_json::from_slice(&answer.body).unwrap_or_default();
        for _ in 0..2 {
            let id = if listed.is_empty() {
                self.product()
            } else {
                listed[self.rng.random_range(0..listed.len())].id
            };
            let Some(get) = self.build(Method::GET, &format!("/api/products/{id}")) else {
                return;
            };
            if self.call(Step::GetProduct, get).await.is_none() {
                return;
            }
        }
    }

    /// The user's token: the session's, or a fresh login (recorded under
    /// [`Step::Login`]) when it has none fit for use.
    async fn token(&mut self, user: &'a VirtualUser) -> Option<Arc<str>> {
        user.session.token(self.login(user)).await
    }

    /// Logs in as `user`; the token it got, `None` when the login failed.
    async fn login(&mut self, user: &VirtualUser) -> Option<Token> {
        let login = self
            .build(Method::POST, "/api/users/login")?
            .json(&serde_json::json!({"email": user.email, "password": user.password}));
        let answer = self.call(Step::Login, login).await?;
        #[derive(Deserialize)]
        struct LoggedIn {
            token: String,
        }
        let LoggedIn { token } = serde_json::from_slice(&answer.body).ok()?;
        Some(Token::new(&token))
    }

    /// The `login` journey: one login, every time, so that the login rate (an argon2
    /// verification per login on the server) can be measured; its token replaces the
    /// session's, as a shopper logging in again would.
    async fn login_again(&mut self) {
        let Some(user) = self.user() else { return };
        if let Some(token) = self.login(user).await {
            user.session.keep(token).await;
        }
    }

    /// Sends a request of `step` as `user` with the session's token, built by
    /// `request` from the token. A refused token (401) is forgotten and the request
    /// sent once more with a fresh login: the users service may have restarted with
    /// another secret, and no request of these journeys changes anything when refused.
    async fn call_as(
        &mut self,
        step: Step,
        user: &'a VirtualUser,
        request: impl Fn(&Self, &str) -> Option<RequestBuilder>,
    ) -> Option<Answer> {
        let mut token = self.token(user).await?;
        let mut refused_once = false;
        loop {
            let answer = self.call(step, request(&*self, &token)?).await;
            match answer {
                Some(answer) if answer.status == StatusCode::UNAUTHORIZED && !refused_once => {
                    refused_once = true;
                    user.session.forget(&token).await;
                    token = self.token(user).await?;
                }
                answer => return answer,
            }
        }
    }

    /// Place an order as the user (logged in once, see [`Session`]) and long-poll the
    /// read model until it shows the order: the time from the order's acknowledgement
    /// to the view is the consistency window.
    async fn checkout(&mut self) {
        let Some(user) = self.user() else { return };
        let product_id = self.product();
        let key = format!("{:032x}", self.rng.random::<u128>());
        let placed = self
            .call_as(Step::PlaceOrder, user, |journey, token| {
                let place = journey.build(Method::POST, "/api/orders")?;
                Some(
                    place
                        .bearer_auth(token)
                        .header("idempotency-key", &key)
                        .json(&serde_json::json!({"items": [{"product_id": product_id, "quantity": 1}]})),
                )
            })
            .await;
        let acked_at = Instant::now();
        let Some(placed) = placed else {
            // No answer: the order may or may not exist.
            if let Some(ledger) = &self.context.ledger {
                ledger.indeterminate(&key, &user.email, product_id, "no response");
            }
            return;
        };
        if placed.status.is_server_error() {
            if let Some(ledger) = &self.context.ledger {
                ledger.indeterminate(
                    &key,
                    &user.email,
                    product_id,
                    &format!("status {}", placed.status.as_u16()),
                );
            }
            return;
        }
        if !placed.status.is_success() {
            return;
        }
        #[derive(Deserialize)]
        struct Placed {
            id: String,
        }
        let response: serde_json::Value =
            serde_json::from_slice(&placed.body).unwrap_or(serde_json::Value::Null);
        let Ok(Placed { id }) = serde_json::from_value::<Placed>(response.clone()) else {
            tracing::warn!(body = %String::from_utf8_lossy(&placed.body), "order acknowledged without an id");
            return;
        };
        if let Some(ledger) = &self.context.ledger {
            ledger.acknowledged(
                &id,
                &key,
                &user.email,
                product_id,
                placed.status.as_u16(),
                response,
            );
        }
        self.view_order(user, &id, acked_at).await;
    }

    /// Long-polls the read model for order `id`, acknowledged at `acked_at`, until it
    /// shows it or the consistency deadline passes, and records the window.
    async fn view_order(&mut self, user: &'a VirtualUser, id: &str, acked_at: Instant) {
        // The service caps one long-poll at 30 s; poll again until the deadline.
        let context = self.context;
        let deadline = acked_at + context.consistency_deadline;
        let tally = &context.tally;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                tally.consistency_unseen.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let wait = remaining.min(Duration::from_secs(30));
            let path = format!(
                "/api/orders/{id}/view?min_version=1&wait={}ms",
                wait.as_millis()
            );
            let answer = self
                .call_as(Step::OrderView, user, |journey, token| {
                    let view = journey.build(Method::GET, &path)?;
                    Some(
                        view.bearer_auth(token)
                            .timeout(wait + Duration::from_secs(5)),
                    )
                })
                .await;
            let Some(answer) = answer else { return };
            if answer.status.is_success() {
                let window = Instant::now().saturating_duration_since(acked_at);
                let mut histogram = tally
                    .consistency
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                record(&mut histogram, window);
                return;
            }
            if answer.status != StatusCode::REQUEST_TIMEOUT {
                return;
            }
        }
    }

    /// One authenticated read of `path` as the journey's user.
    async fn read_as(&mut self, step: Step, path: &str) {
        let Some(user) = self.user() else { return };
        let _ = self
            .call_as(step, user, |journey, token| {
                Some(journey.build(Method::GET, path)?.bearer_auth(token))
            })
            .await;
    }

    /// Post a batch of telemetry events.
    async fn ingest(&mut self) {
        let Some(user) = self.user() else { return };
        let source = format!("loadgen-user-{}", self.user);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let events: Vec<serde_json::Value> = (0..self.context.ingest_batch)
            .map(|seq| {
                serde_json::json!({
                    "source": source,
                    "kind": "page_view",
                    "seq": seq,
                    "at_ms": now_ms,
                    "value": self.rng.random_range(0..1000),
                })
            })
            .collect();
        let _ = self
            .call_as(Step::Ingest, user, |journey, token| {
                let post = journey.build(Method::POST, "/api/ingest/events")?;
                Some(post.bearer_auth(token).json(&events))
            })
            .await;
    }
}

/// The error class of a request that got no response.
pub fn classify(error: &reqwest::Error) -> ErrorClass {
    if error.is_timeout() {
        ErrorClass::Timeout
    } else if error.is_connect() {
        ErrorClass::Connect
    } else if error.is_body() || error.is_decode() {
        ErrorClass::Protocol
    } else {
        ErrorClass::Reset
    }
}

/// A plain reqwest client, for the open-model driver.
#[derive(Clone)]
pub struct ReqwestTransport {
    pub client: reqwest::Client,
    pub base_url: Arc<str>,
}

impl Transport for ReqwestTransport {
    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, String> {
        Ok(self
            .client
            .request(method, format!("{}{path}", self.base_url)))
    }

    async fn send(
        &mut self,
        _step: Step,
        request: RequestBuilder,
    ) -> Result<Response, SendFailure> {
        request.send().await.map_err(SendFailure::from)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::SeedableRng as _;

    use super::*;
    use crate::recorder::Collected;

    /// Answers the reference system's journey requests from memory, stalling the
    /// first one by `stall`; `fail_orders` makes order placement fail without answer,
    /// and the first `refuse_orders` orders are refused as unauthorized (401).
    struct FakeSystem {
        stall: Duration,
        fail_orders: bool,
        refuse_orders: usize,
        calls: Vec<Step>,
        /// The `traceparent` each request carried.
        traceparents: Vec<Option<String>>,
        client: reqwest::Client,
    }

    impl Transport for FakeSystem {
        fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, String> {
            Ok(self
                .client
                .request(method, format!("http://fake.invalid{path}")))
        }

        async fn send(
            &mut self,
            step: Step,
            request: RequestBuilder,
        ) -> Result<Response, SendFailure> {
            if self.calls.is_empty() {
                tokio::time::sleep(self.stall).await;
            }
            self.calls.push(step);
            let built = request.build().unwrap();
            let traceparent = built.headers().get("traceparent");
            (self.traceparents).push(traceparent.map(|v| v.to_str().unwrap().to_string()));
            let (status, body) = match step {
                Step::ListProducts => (200, r#"[{"id": 3}]"#),
                Step::GetProduct => (200, r#"{"id": 3}"#),
                Step::Login => (200, r#"{"token": "t"}"#),
                Step::PlaceOrder if self.fail_orders => {
                    return Err(SendFailure {
                        class: ErrorClass::Reset,
                        message: "connection reset".into(),
                    })
                }
                Step::PlaceOrder if self.refuse_orders > 0 => {
                    self.refuse_orders -= 1;
                    (401, r#"{"error": "token expired"}"#)
                }
                Step::PlaceOrder => (202, r#"{"id": "o-1", "status": "PENDING"}"#),
                Step::OrderView => (200, r#"{"version": 1}"#),
                Step::Ingest => (202, r#"{"accepted": 1}"#),
                Step::Profile => (200, r#"{"id": "u-1"}"#),
                Step::AnalyticsSummary => (200, r#"{"orders": 0}"#),
            };
            Ok(Response::from(
                http::Response::builder().status(status).body(body).unwrap(),
            ))
        }
    }

    fn context(ledger: Option<Ledger>) -> JourneyContext {
        JourneyContext {
            products: vec![3],
            users: vec![VirtualUser::new("u@x".into(), "p".into())],
            ingest_batch: 2,
            consistency_deadline: Duration::from_secs(1),
            tally: JourneyTally::default(),
            ledger,
            endpoint_of: [
                Some(0),
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                Some(6),
                Some(7),
            ],
            clock: Clock {
                start: Instant::now(),
                start_unix_nanos: 0,
            },
            exemplars: None,
        }
    }

    fn fake(stall: Duration, fail_orders: bool) -> FakeSystem {
        FakeSystem {
            stall,
            fail_orders,
            refuse_orders: 0,
            calls: Vec::new(),
            traceparents: Vec::new(),
            client: reqwest::Client::new(),
        }
    }

    #[tokio::test]
    async fn with_tracing_each_request_has_its_own_trace_and_the_slowest_is_kept() {
        let mut context = context(None);
        let limits = crate::exemplars::ExemplarLimits::sampling(1.0).unwrap();
        context.exemplars = Some(crate::exemplars::Exemplars::new(limits));
        // The first request (listing the catalogue) stalls: it is the slowest.
        let mut transport = fake(Duration::from_millis(50), false);
        run_times(&context, &mut transport, JourneyKind::Browse, 1).await;
        let sent: Vec<String> = transport.traceparents.iter().flatten().cloned().collect();
        assert_eq!(sent.len(), transport.calls.len(), "every request is traced");
        let trace_ids: std::collections::HashSet<&str> =
            sent.iter().map(|header| &header[3..35]).collect();
        assert_eq!(trace_ids.len(), sent.len(), "a trace per request");
        let names: Vec<String> = Step::ALL.iter().map(|s| s.name().to_string()).collect();
        let traces = context.exemplars.as_ref().unwrap().traces(&names);
        let listing = &names[context.endpoint_of[Step::ListProducts as usize].unwrap()];
        let slowest = traces
            .exemplars
            .iter()
            .filter(|e| e.kept == faultline_results::Kept::Slowest)
            .max_by_key(|e| e.latency_us)
            .unwrap();
        assert_eq!(&slowest.endpoint, listing);
        assert_eq!(slowest.trace_id, &sent[0][3..35]);
    }

    #[tokio::test]
    async fn a_late_journey_counts_its_wait_in_the_first_step_only() {
        let context = context(None);
        let log = SharedLog::default();
        let mut transport = fake(Duration::from_millis(50), false);
        let mut rng = SmallRng::seed_from_u64(1);
        // Due 300 ms ago: the generator was late, so the system is charged for it.
        let intended = Instant::now() - Duration::from_millis(300);
        Journey::new(
            &context,
            &mut transport,
            &log,
            intended,
            Duration::from_millis(10),
            0,
            &mut rng,
        )
        .run(JourneyKind::Browse)
        .await;
        assert_eq!(
            transport.calls,
            [Step::ListProducts, Step::GetProduct, Step::GetProduct]
        );
        let mut collected = Collected::default();
        collected.collect(std::slice::from_ref(&log), None);
        let first: Vec<_> = collected
            .buckets
            .iter()
            .filter(|((endpoint, _), _)| *endpoint == 0)
            .map(|(_, bucket)| bucket)
            .collect();
        assert_eq!(first.len(), 1);
        // From the intended start: the 300 ms of lateness plus the 50 ms stall.
        assert!(
            first[0].latency.min() >= 340_000,
            "{}",
            first[0].latency.min()
        );
        assert_eq!(first[0].late, 1);
        assert!(first[0].send_delay.max() >= 290_000);
        let gets: u64 = collected
            .buckets
            .iter()
            .filter(|((endpoint, _), _)| *endpoint == 1)
            .map(|(_, bucket)| bucket.latency.max())
            .max()
            .unwrap();
        assert!(
            gets < 100_000,
            "later steps run from their own send: {gets} us"
        );
    }

    #[tokio::test]
    async fn checkouts_go_to_the_ledger_acknowledged_or_indeterminate() {
        let dir = std::env::temp_dir().join(format!("faultline-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.jsonl");
        let context = context(Some(Ledger::create(&path).unwrap()));
        let log = SharedLog::default();
        let mut rng = SmallRng::seed_from_u64(2);
        for fail_orders in [false, true] {
            let mut transport = fake(Duration::ZERO, fail_orders);
            Journey::new(
                &context,
                &mut transport,
                &log,
                Instant::now(),
                Duration::from_millis(10),
                0,
                &mut rng,
            )
            .run(JourneyKind::Checkout)
            .await;
        }
        let entries = Ledger::read(&path).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0].outcome,
            super::super::ledger::WriteOutcome::Acknowledged
        );
        assert_eq!(entries[0].order_id.as_deref(), Some("o-1"));
        assert_eq!(entries[0].status, Some(202));
        assert_eq!(
            entries[1].outcome,
            super::super::ledger::WriteOutcome::Indeterminate
        );
        assert_ne!(entries[0].idempotency_key, entries[1].idempotency_key);
        // Only the acknowledged order was looked for in the read model.
        assert_eq!(context.tally.consistency.lock().unwrap().len(), 1);
        assert_eq!(
            context.tally.started[JourneyKind::Checkout as usize].load(Ordering::Relaxed),
            2
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Runs `kind` `times` times as the context's one user, on one transport.
    async fn run_times(
        context: &JourneyContext,
        transport: &mut FakeSystem,
        kind: JourneyKind,
        times: usize,
    ) {
        let log = SharedLog::default();
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..times {
            Journey::new(
                context,
                transport,
                &log,
                Instant::now(),
                Duration::from_millis(10),
                0,
                &mut rng,
            )
            .run(kind)
            .await;
        }
    }

    fn count(calls: &[Step], step: Step) -> usize {
        calls.iter().filter(|call| **call == step).count()
    }

    #[tokio::test]
    async fn profile_and_analytics_journeys_read_as_the_user_logged_in_once() {
        let context = context(None);
        let mut transport = fake(Duration::ZERO, false);
        run_times(&context, &mut transport, JourneyKind::Profile, 2).await;
        run_times(&context, &mut transport, JourneyKind::Analytics, 2).await;
        assert_eq!(
            transport.calls,
            [
                Step::Login,
                Step::Profile,
                Step::Profile,
                Step::AnalyticsSummary,
                Step::AnalyticsSummary
            ]
        );
    }

    #[tokio::test]
    async fn a_user_logs_in_on_its_first_checkout_only() {
        let context = context(None);
        let mut transport = fake(Duration::ZERO, false);
        run_times(&context, &mut transport, JourneyKind::Checkout, 3).await;
        assert_eq!(
            transport.calls[..3],
            [Step::Login, Step::PlaceOrder, Step::OrderView]
        );
        assert_eq!(count(&transport.calls, Step::Login), 1);
        assert_eq!(count(&transport.calls, Step::PlaceOrder), 3);
        assert_eq!(context.tally.consistency.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_refused_token_logs_in_again_and_the_order_is_sent_once_more() {
        let context = context(None);
        let mut transport = fake(Duration::ZERO, false);
        run_times(&context, &mut transport, JourneyKind::Checkout, 1).await;
        transport.refuse_orders = 1;
        transport.calls.clear();
        run_times(&context, &mut transport, JourneyKind::Checkout, 1).await;
        assert_eq!(
            transport.calls,
            [
                Step::PlaceOrder,
                Step::Login,
                Step::PlaceOrder,
                Step::OrderView
            ]
        );
        // Refused twice in a row: no loop of logins, the journey ends.
        transport.refuse_orders = 2;
        transport.calls.clear();
        run_times(&context, &mut transport, JourneyKind::Checkout, 1).await;
        assert_eq!(
            transport.calls,
            [Step::PlaceOrder, Step::Login, Step::PlaceOrder]
        );
    }

    #[tokio::test]
    async fn the_login_journey_logs_in_every_time_and_checkouts_use_its_token() {
        let context = context(None);
        let mut transport = fake(Duration::ZERO, false);
        run_times(&context, &mut transport, JourneyKind::Login, 4).await;
        run_times(&context, &mut transport, JourneyKind::Checkout, 2).await;
        assert_eq!(count(&transport.calls, Step::Login), 4);
        assert_eq!(count(&transport.calls, Step::PlaceOrder), 2);
        assert_eq!(
            context.tally.started[JourneyKind::Login as usize].load(Ordering::Relaxed),
            4
        );
    }
}
