//! `faultline proxy`: a standalone fault proxy in front of any TCP endpoint, with faults
//! from the command line and, with `--control`, an HTTP API that changes them while it
//! runs (see [`crate::control`]); it runs until Ctrl-C or SIGTERM.
//!
//! The binary flattens [`ProxyArgs`] into its own subcommand and calls [`run_proxy`];
//! everything else (parsing, resolving, the proxy) is here so tests can drive it.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use crate::proxy::{Direction, FaultProxy, Faults, Latency, ProxyError, Slicer};
use faultline_results::quantity::{parse_byte_rate, parse_bytes, parse_duration};

use crate::units::{format_bytes, format_duration, format_rate};

fn parse_size(text: &str) -> Result<usize, String> {
    let bytes = parse_bytes(text).map_err(|e| e.to_string())?;
    usize::try_from(bytes).map_err(|_| format!("{text:?} is too large"))
}

/// Arguments of `faultline proxy`.
///
/// No argument group of its own (`group(skip)`), so the binary can flatten it into a
/// struct of the same name.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
pub struct ProxyArgs {
    /// Address to listen on, e.g. 127.0.0.1:19092 (port 0 picks a free port).
    #[arg(long)]
    pub listen: SocketAddr,

    /// Where to forward connections: HOST:PORT.
    #[arg(long)]
    pub upstream: String,

    /// Delay added to data, e.g. 100ms.
    #[arg(long, value_parser = parse_duration)]
    pub latency: Option<Duration>,

    /// Uniform jitter around --latency (± this much), e.g. 10ms.
    #[arg(long, value_parser = parse_duration, requires = "latency")]
    pub jitter: Option<Duration>,

    /// Bandwidth limit per connection, e.g. 1MB/s, 512KiB/s or bytes per second.
    #[arg(long, value_parser = parse_byte_rate)]
    pub bandwidth: Option<u64>,

    /// Write data in slices of this size, e.g. 64B.
    #[arg(long, value_parser = parse_size)]
    pub slice_size: Option<usize>,

    /// Pause between slices, e.g. 1ms.
    #[arg(long, value_parser = parse_duration, requires = "slice_size")]
    pub slice_delay: Option<Duration>,

    /// Which way --latency, --bandwidth and slicing apply: upstream (client to server),
    /// downstream or both.
    #[arg(long, default_value = "both")]
    pub direction: Direction,

    /// Hold all data and close each connection after this long, e.g. 5s.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// Serve the control API on this address, e.g. 127.0.0.1:8474: GET /faults, POST
    /// /faults with a fault as JSON ({"kind": "partition", "duration": "5s"}), DELETE
    /// /faults (heal all) and DELETE /faults/KIND.
    #[arg(long, value_name = "ADDR")]
    pub control: Option<SocketAddr>,
}

impl ProxyArgs {
    /// The faults these flags ask for.
    pub fn faults(&self) -> Faults {
        let mut faults = Faults::default();
        let latency = self.latency.map(|delay| Latency {
            delay,
            jitter: self.jitter.unwrap_or_default(),
        });
        let slicer = self.slice_size.map(|size| Slicer {
            size,
            size_variation: 0,
            delay: self.slice_delay.unwrap_or_default(),
        });
        let bandwidth = self.bandwidth.filter(|rate| *rate > 0);
        faults.update_links(self.direction, |link| {
            link.latency = latency;
            link.bandwidth = bandwidth;
            link.slicer = slicer;
        });
        faults.timeout = self.timeout;
        faults
    }

    /// e.g. `latency 100ms±10ms, bandwidth 1MB/s` or `no faults`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(delay) = self.latency {
            let jitter = self
                .jitter
                .filter(|j| !j.is_zero())
                .map(|j| format!("±{}", format_duration(j)))
                .unwrap_or_default();
            parts.push(format!("latency {}{jitter}", format_duration(delay)));
        }
        if let Some(rate) = self.bandwidth {
            parts.push(format!("bandwidth {}", format_rate(rate)));
        }
        if let Some(size) = self.slice_size {
            let delay = format_duration(self.slice_delay.unwrap_or_default());
            parts.push(format!(
                "slices of {} every {delay}",
                format_bytes(size as u64)
            ));
        }
        if let Some(timeout) = self.timeout {
            parts.push(format!("timeout {}", format_duration(timeout)));
        }
        if parts.is_empty() {
            return "no faults".into();
        }
        let mut text = parts.join(", ");
        if self.direction != Direction::Both {
            text.push_str(&format!(" ({} only)", self.direction.name()));
        }
        text
    }
}

/// Runs the proxy until Ctrl-C or SIGTERM. Prints the bound address first (a line
/// `listening on ADDR`), and the counters at the end.
pub async fn run_proxy(args: ProxyArgs) -> Result<(), ProxyError> {
    run_proxy_until(args, terminated()).await
}

/// [`run_proxy`] until `shutdown` resolves.
pub async fn run_proxy_until(
    args: ProxyArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let upstream = resolve(&args.upstream).await?;
    let proxy = FaultProxy::start(args.listen, upstream).await?;
    proxy.set_faults(args.faults());
    let stop_control = tokio_util::sync::CancellationToken::new();
    let control = match args.control {
        Some(address) => {
            Some(crate::control::serve(address, proxy.handle(), stop_control.clone()).await?)
        }
        None => None,
    };
    // Dropped on every way out, so the API never outlives the proxy.
    let _stop_control = stop_control.drop_guard();
    {
        // In a block: the stdout lock must not live across an await (the future stays
        // `Send`).
        let mut out = std::io::stdout().lock();
        // Scripts read this line to learn the port when --listen asked for port 0.
        let _ = writeln!(
            out,
            "listening on {} -> {} ({upstream}), {}",
            proxy.local_addr(),
            args.upstream,
            args.describe()
        );
        if let Some(control) = control {
            // Scripts read this line to learn the control port too.
            let _ = writeln!(out, "control API on http://{control}/faults");
        }
        let _ = out.flush();
    }
    shutdown.await;
    let stats = proxy.stats();
    proxy.stop().await;
    println!(
        "stopped: {} connections, {} bytes upstream, {} bytes downstream",
        stats.connections_accepted, stats.bytes_upstream, stats.bytes_downstream
    );
    Ok(())
}

/// Resolves `HOST:PORT` once, at start (the first address wins).
pub async fn resolve(upstream: &str) -> Result<SocketAddr, ProxyError> {
    let fail = |reason: String| ProxyError::Resolve {
        upstream: upstream.to_string(),
        reason,
    };
    let mut addresses = tokio::net::lookup_host(upstream)
        .await
        .map_err(|e| fail(format!("{e} (expected HOST:PORT)")))?;
    addresses
        .next()
        .ok_or_else(|| fail("no address found".into()))
}

/// Resolves on Ctrl-C or SIGTERM: the one way every long-running `faultline` command
/// (the proxy here, and the binary's `serve`, `system` and `run`) learns it should stop.
pub async fn terminated() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
