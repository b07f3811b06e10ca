//! What the stack tests share: the stack's spec, quiet logging, test function types.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use faultline_system::stack::{Stack, StackSpec};

pub type TestResult = anyhow::Result<()>;
pub type StackTest = fn(Arc<Stack>) -> Pin<Box<dyn Future<Output = TestResult> + Send>>;
pub type PlainTest = Pin<Box<dyn Future<Output = TestResult> + Send>>;

pub fn single_broker_spec() -> StackSpec {
    StackSpec {
        ready_timeout: Duration::from_secs(120),
        ..StackSpec::default()
    }
}

/// Logs only when TEST_LOG is set, so a passing run stays quiet.
pub fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_writer(std::io::stderr)
            .try_init();
    }
}
