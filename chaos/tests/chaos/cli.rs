//! `faultline proxy` arguments and the standalone proxy's lifecycle.

use std::time::Duration;

use clap::Parser;
use faultline_chaos::cli::{resolve, run_proxy_until, ProxyArgs};
use faultline_chaos::proxy::{Latency, ProxyError};

use crate::within;

#[derive(Debug, Parser)]
struct Command {
    #[command(flatten)]
    proxy: ProxyArgs,
}

fn parse(args: &[&str]) -> Result<ProxyArgs, clap::Error> {
    Command::try_parse_from(std::iter::once("proxy").chain(args.iter().copied())).map(|c| c.proxy)
}

#[test]
fn flags_become_faults_in_the_chosen_direction() {
    let args = parse(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "localhost:9092",
        "--latency",
        "100ms",
        "--jitter",
        "10ms",
        "--bandwidth",
        "1MB/s",
        "--direction",
        "upstream",
    ])
    .unwrap();
    let faults = args.faults();
    assert_eq!(
        faults.upstream.latency,
        Some(Latency {
            delay: Duration::from_millis(100),
            jitter: Duration::from_millis(10)
        })
    );
    assert_eq!(faults.upstream.bandwidth, Some(1_000_000));
    assert_eq!(faults.downstream, Default::default());
    assert_eq!(
        args.describe(),
        "latency 100ms±10ms, bandwidth 1MB/s (upstream only)"
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    let base = ["--listen", "127.0.0.1:0", "--upstream", "localhost:1"];
    let with = |extra: &[&'static str]| {
        let mut all: Vec<&str> = base.to_vec();
        all.extend_from_slice(extra);
        parse(&all)
    };
    assert!(with(&["--bandwidth", "0"]).is_err());
    assert!(with(&["--bandwidth", "fast"]).is_err());
    assert!(with(&["--jitter", "10ms"]).is_err(), "jitter needs latency");
    assert!(with(&["--direction", "sideways"]).is_err());
    assert!(parse(&["--listen", "nowhere", "--upstream", "x:1"]).is_err());
    assert!(with(&[]).unwrap().faults() == Default::default());
}

#[tokio::test]
async fn the_proxy_runs_until_shutdown_and_an_unresolvable_upstream_is_an_error() {
    let args = parse(&["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9"]).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(run_proxy_until(args, async {
        let _ = stopped.await;
    }));
    stop.send(()).unwrap();
    within("proxy shutdown", run).await.unwrap().unwrap();

    assert!(matches!(
        resolve("no port here").await,
        Err(ProxyError::Resolve { .. })
    ));
}
