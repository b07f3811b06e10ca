//! The runner of a test binary whose tests share one harness: a stack or a whole system
//! takes seconds to start, so it is started once per binary (libtest-mimic,
//! `harness = false`), stopped after the last test, and never started when the tests are
//! only listed. Set TEST_LOG=1 to see the logs.
//!
//! Used by the test binaries of both `faultline-system` (`system/tests/*`) and the root
//! crate (`tests/*`), through `#[path]`.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};

/// One test: an async function of the shared harness.
pub type Test<H> = fn(Arc<H>) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// What the tests share: started before the first test, stopped after the last.
pub trait SharedHarness: Send + Sync + Sized + 'static {
    fn start() -> impl Future<Output = anyhow::Result<Self>>;
    fn stop(self) -> impl Future<Output = ()>;
}

/// How the tests take turns on the harness.
#[allow(dead_code)] // each binary uses one of them
pub enum Turns {
    /// For tests that change the harness's behaviour (faults, settings).
    OneAtATime,
    /// For tests that only use it, each with its own topics, databases or keys.
    Concurrently,
}

/// The stack with one broker, PostgreSQL and Redis: what the stack and platform tests share.
impl SharedHarness for faultline_system::stack::Stack {
    async fn start() -> anyhow::Result<Self> {
        Ok(Self::start(faultline_system::stack::StackSpec {
            ready_timeout: std::time::Duration::from_secs(120),
            ..Default::default()
        })
        .await?)
    }

    async fn stop(self) {
        Self::stop(self).await;
    }
}

/// Starts the harness (not when only listing), runs `tests` one at a time, stops it.
#[allow(dead_code)] // each binary uses `run` or `run_in`
pub fn run<H: SharedHarness>(tests: Vec<(&'static str, Test<H>)>) -> ExitCode {
    run_in(Turns::OneAtATime, tests)
}

/// Starts the harness (not when only listing), runs `tests` taking `turns`, stops it.
pub fn run_in<H: SharedHarness>(turns: Turns, tests: Vec<(&'static str, Test<H>)>) -> ExitCode {
    let mut args = Arguments::from_args();
    if matches!(turns, Turns::OneAtATime) {
        args.test_threads = Some(1);
    }
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter("info").try_init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Arc::new(runtime),
        Err(error) => {
            eprintln!("error: no async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let harness = if args.list {
        Err("listing only".to_string())
    } else {
        runtime
            .block_on(H::start())
            .map(Arc::new)
            .map_err(|e| format!("the harness did not start: {e:#}"))
    };
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            let runtime = runtime.clone();
            let harness = harness.clone();
            Trial::test(name, move || {
                let harness = harness.map_err(Failed::from)?;
                runtime
                    .block_on(test(harness))
                    .map_err(|e| format!("{e:#}").into())
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Ok(harness) = harness {
        if let Ok(harness) = Arc::try_unwrap(harness) {
            runtime.block_on(harness.stop());
        }
    }
    conclusion.exit_code()
}

/// Polls `check` each second for up to `within`; its last error if it never passes.
#[allow(dead_code)] // not every binary polls
pub async fn eventually<F, Fut>(within: std::time::Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(error) if std::time::Instant::now() >= deadline => return Err(error),
            Err(_) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
        }
    }
}

/// The `service` label of each series of `metric` that `prometheus` holds now.
#[allow(dead_code)] // only the binaries that run a Prometheus ask
pub async fn services_with_series(
    prometheus: &faultline_system::stack::PrometheusQuery,
    metric: &str,
) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let series = prometheus.query(metric).await.map_err(anyhow::Error::msg)?;
    Ok((series.iter())
        .filter_map(|s| s.labels.get("service").cloned())
        .collect())
}
