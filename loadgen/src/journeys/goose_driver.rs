//! The journeys as goose scenarios: one scenario per journey, weighted as the mix,
//! one goose user per `concurrency`, for the run's duration.
//!
//! Goose sends through its own reqwest client and keeps its own metrics; every
//! request also goes into faultline's recorder, so results are comparable with the
//! open-model driver's. Goose is a closed model: a user waits for each answer before
//! the next request and latency runs from the actual send, so a stalled server
//! slows the users down instead of showing in full (coordinated omission). That is
//! why this driver accepts only a closed schedule. Against an `https://` gateway each
//! goose user starts by taking a client with the run's rustls settings (the
//! engine's and the open driver's), so all three trust and present the same.

use std::{sync::Arc, time::Duration};

use goose::{config::GooseConfiguration, prelude::*};
use rand::{rngs::SmallRng, SeedableRng as _};
use reqwest::{Method, RequestBuilder, Response};
use tokio::time::Instant;

use faultline_results::ErrorClass;

use crate::{error::LoadError, recorder::SharedLog};

use super::{
    steps::{Journey, JourneyContext, SendFailure, Transport},
    JourneyConfig, JourneyKind, Step,
};

/// A goose user as a journey transport: goose builds and sends (and counts) the request.
struct GooseTransport<'u> {
    user: &'u mut GooseUser,
}

impl Transport for GooseTransport<'_> {
    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, String> {
        let method = match method {
            Method::GET => GooseMethod::Get,
            Method::POST => GooseMethod::Post,
            Method::PUT => GooseMethod::Put,
            Method::DELETE => GooseMethod::Delete,
            other => {
                return Err(format!(
                    "goose transport: method {other} is not used by journeys"
                ))
            }
        };
        self.user
            .get_request_builder(&method, path)
            .map_err(|e| e.to_string())
    }

    async fn send(&mut self, step: Step, request: RequestBuilder) -> Result<Response, SendFailure> {
        let request = GooseRequest::builder()
            .set_request_builder(request)
            .name(step.name())
            .build();
        match self.user.request(request).await {
            Ok(answer) => answer.response.map_err(SendFailure::from),
            Err(error) => Err(match *error {
                TransactionError::Reqwest(error) => SendFailure::from(error),
                other => SendFailure {
                    class: ErrorClass::Protocol,
                    message: other.to_string(),
                },
            }),
        }
    }
}

fn journey_transaction(
    kind: JourneyKind,
    context: Arc<JourneyContext>,
    logs: Arc<Vec<SharedLog>>,
    late_threshold: Duration,
) -> Transaction {
    let function: TransactionFunction = Arc::new(move |user: &mut GooseUser| {
        let context = context.clone();
        let logs = logs.clone();
        Box::pin(async move {
            let index = user.weighted_users_index;
            let log = &logs[index % logs.len()];
            let mut rng = SmallRng::from_rng(&mut rand::rng());
            let mut transport = GooseTransport { user };
            Journey::new(
                &context,
                &mut transport,
                log,
                Instant::now(),
                late_threshold,
                index,
                &mut rng,
            )
            .run(kind)
            .await;
            Ok(())
        })
    });
    Transaction::new(function).set_name(kind.name())
}

/// Gives each goose user, as it starts, a reqwest client with the run's TLS
/// settings (`tls`: a rustls `ClientConfig`, built once and cloned per user).
fn tls_client_transaction(tls: rustls::ClientConfig, timeout: Duration) -> Transaction {
    let tls = Arc::new(tls);
    let function: TransactionFunction = Arc::new(move |user: &mut GooseUser| {
        let builder = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .timeout(timeout);
        Box::pin(async move { user.set_client_builder(builder).await.map_err(Box::new) })
    });
    Transaction::new(function)
        .set_name("tls client")
        .set_on_start()
}

/// Runs the journeys with goose until the schedule's duration has passed.
pub(super) async fn drive(
    config: JourneyConfig,
    context: Arc<JourneyContext>,
    logs: Vec<SharedLog>,
) -> Result<(), LoadError> {
    let goose_error = |e: GooseError| LoadError::Goose(e.to_string());
    let seconds = config.schedule.duration().as_secs().max(1);
    let mut goose_config = GooseConfiguration::default();
    goose_config.host = Some(config.base_url.clone());
    goose_config.users = Some(config.concurrency);
    // Every user starts in the first second.
    goose_config.increase_rate = Some(config.concurrency.to_string());
    goose_config.run_time = Some(seconds.to_string());
    goose_config.quiet = 1;
    goose_config.no_print_metrics = true;
    goose_config.no_error_summary = true;
    let logs = Arc::new(logs);
    let https = config.base_url.starts_with("https://");
    let tls = https.then(|| config.tls.reqwest_config()).transpose()?;
    let mut attack = GooseAttack::initialize_with_config(goose_config).map_err(goose_error)?;
    for (kind, weight) in config.mix.weights() {
        let mut scenario = Scenario::new(kind.name())
            .set_weight(*weight as usize)
            .map_err(goose_error)?;
        if let Some(tls) = &tls {
            scenario =
                scenario.register_transaction(tls_client_transaction(tls.clone(), config.timeout));
        }
        let scenario = scenario.register_transaction(journey_transaction(
            *kind,
            context.clone(),
            logs.clone(),
            config.late_threshold,
        ));
        attack = attack.register_scenario(scenario);
    }
    attack.execute().await.map_err(goose_error)?;
    Ok(())
}
