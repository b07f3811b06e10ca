//! A TCP fault proxy: forwards every connection it accepts to one upstream address and
//! injects faults into the traffic, changeable at runtime while it flows (the Toxiproxy
//! set: latency with jitter, bandwidth, partition, reset, slicer, timeout).
//!
//! [`FaultProxy::start`] binds the listener; [`FaultProxy::handle`] gives a cloneable
//! [`ProxyHandle`] that sets faults and reads counters. Faults live in a
//! `tokio::sync::watch` channel: every connection task reads the current [`Faults`] before
//! it forwards a chunk, and waits on the channel when a fault holds traffic, so a change
//! takes effect at once on existing connections as well as new ones.
//!
//! Each connection is one task (module `link`). Per direction, a reader stamps every chunk with the
//! instant it arrived and a writer delivers chunks in order, applying the faults of that
//! direction; the two are decoupled by a small bounded queue so latency delays data
//! without cutting throughput to one chunk per delay (as a real long link would).
//!
//! Semantics worth knowing:
//! - **Partition holds data, it does not drop it**: nothing is read or forwarded in either
//!   direction and new connections are accepted but not connected upstream until the
//!   partition heals; then everything held flows, in order. This is what a real network
//!   partition shorter than TCP's retransmission give-up looks like to applications.
//! - **Bandwidth and slicing are per connection and per direction** (as in Toxiproxy).
//! - **Reset** closes every current connection with RST on both sides (zero linger); with
//!   `refuse_new` set, connections accepted meanwhile are reset at once.
//! - **Timeout** holds data like a partition and closes each connection (plain close) once
//!   it has been held for the timeout.
//! - An I/O error on either side closes both sides with RST: the stream is broken, and a
//!   clean FIN would tell the other peer it ended normally.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;

use crate::spec::FaultAction;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod link;

use link::{abort, connection};

/// Which way data flows through the proxy (Toxiproxy's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client to upstream (requests).
    Upstream,
    /// Upstream to client (responses).
    Downstream,
    /// Both ways.
    #[default]
    Both,
}

impl Direction {
    /// Whether this direction includes `one` (which is `Upstream` or `Downstream`).
    pub fn includes(self, one: Direction) -> bool {
        self == Direction::Both || self == one
    }

    /// Whether two directions share a way.
    pub fn overlaps(self, other: Direction) -> bool {
        self == Direction::Both || other == Direction::Both || self == other
    }

    pub fn name(self) -> &'static str {
        match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
            Direction::Both => "both",
        }
    }
}

/// A delay added to every chunk, with uniform jitter of ± `jitter` (never below zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    pub delay: Duration,
    pub jitter: Duration,
}

impl Latency {
    /// The delay for a chunk whose jitter draw is `draw` in [-1, 1].
    fn delay_for(&self, draw: f64) -> Duration {
        let jitter = self.jitter.as_secs_f64() * draw;
        Duration::from_secs_f64((self.delay.as_secs_f64() + jitter).max(0.0))
    }
}

/// Data is written in slices of about `size` bytes (± `size_variation`), with `delay`
/// between slices: stresses parsers that assume whole messages arrive together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slicer {
    pub size: usize,
    pub size_variation: usize,
    pub delay: Duration,
}

impl Slicer {
    fn next_size(&self) -> usize {
        let size = if self.size_variation == 0 {
            self.size
        } else {
            let low = self.size.saturating_sub(self.size_variation);
            let high = self.size.saturating_add(self.size_variation);
            rand::rng().random_range(low..=high)
        };
        size.max(1)
    }
}

/// The faults of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkFaults {
    pub latency: Option<Latency>,
    /// Bytes per second.
    pub bandwidth: Option<u64>,
    pub slicer: Option<Slicer>,
}

/// Everything the proxy does to its traffic right now. `Faults::default()` forwards
/// untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// Client to upstream.
    pub upstream: LinkFaults,
    /// Upstream to client.
    pub downstream: LinkFaults,
    /// Nothing flows either way; data is held, not dropped (see the module comment).
    pub partition: bool,
    /// New connections are reset as soon as they are accepted.
    pub refuse_new: bool,
    /// Data is held and each connection is closed once it has been held this long.
    pub timeout: Option<Duration>,
}

impl Faults {
    /// The faults of one way (`Upstream` or `Downstream`; `Both` reads upstream's).
    pub fn link(&self, direction: Direction) -> &LinkFaults {
        match direction {
            Direction::Downstream => &self.downstream,
            Direction::Upstream | Direction::Both => &self.upstream,
        }
    }

    /// Applies `change` to the links `direction` includes.
    pub fn update_links(&mut self, direction: Direction, change: impl Fn(&mut LinkFaults)) {
        if direction.includes(Direction::Upstream) {
            change(&mut self.upstream);
        }
        if direction.includes(Direction::Downstream) {
            change(&mut self.downstream);
        }
    }

    /// Whether traffic is held (partition or timeout).
    fn holds(&self) -> bool {
        self.partition || self.timeout.is_some()
    }
}

/// What connection tasks watch: the faults plus what only the proxy itself sets.
#[derive(Debug, Clone, Copy)]
struct State {
    faults: Faults,
    /// Bumped by [`ProxyHandle::reset_connections`]: connections opened before the bump
    /// reset themselves.
    reset_generation: u64,
    /// When the current timeout fault began.
    timeout_since: Option<Instant>,
}

/// Counters since the proxy started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyStats {
    pub connections_accepted: u64,
    /// Open right now.
    pub connections_active: u64,
    /// Closed with RST by a reset fault (current connections, and new ones refused).
    pub connections_reset: u64,
    /// Closed by a timeout fault.
    pub connections_timed_out: u64,
    /// Bytes forwarded client to upstream.
    pub bytes_upstream: u64,
    /// Bytes forwarded upstream to client.
    pub bytes_downstream: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    active: AtomicU64,
    reset: AtomicU64,
    timed_out: AtomicU64,
    bytes_upstream: AtomicU64,
    bytes_downstream: AtomicU64,
}

impl Counters {
    /// The bytes counter of the way a pump forwards. A pump runs `Upstream` or
    /// `Downstream`; `Both` only ever scopes a fault, so it counts nowhere on its own.
    fn forwarded(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::Upstream => &self.bytes_upstream,
            Direction::Downstream | Direction::Both => &self.bytes_downstream,
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: watch::Sender<State>,
    counters: Counters,
    listen: SocketAddr,
    upstream: SocketAddr,
}

/// Errors starting a proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot resolve upstream {upstream:?}: {reason}")]
    Resolve { upstream: String, reason: String },
}

/// A running proxy. Dropping it (or [`FaultProxy::stop`]) closes the listener and every
/// connection; handles cloned from it then change nothing.
#[derive(Debug)]
pub struct FaultProxy {
    handle: ProxyHandle,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl FaultProxy {
    /// Binds `listen` (port 0 picks a free port: see [`FaultProxy::local_addr`]) and
    /// forwards every accepted connection to `upstream`, with no faults.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Result<FaultProxy, ProxyError> {
        let (listener, bound) = bind(listen).await?;
        let (state, _) = watch::channel(State {
            faults: Faults::default(),
            reset_generation: 0,
            timeout_since: None,
        });
        let shared = Arc::new(Shared {
            state,
            counters: Counters::default(),
            listen: bound,
            upstream,
        });
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(accept_loop(
            listener,
            shared.clone(),
            cancel.clone(),
            tasks.clone(),
        ));
        Ok(FaultProxy {
            handle: ProxyHandle { shared },
            cancel,
            tasks,
        })
    }

    /// The address the proxy listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// A handle to change faults and read counters while traffic flows.
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    /// Closes the listener and every connection, and waits until they are closed.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl std::ops::Deref for FaultProxy {
    type Target = ProxyHandle;

    fn deref(&self) -> &ProxyHandle {
        &self.handle
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The tasks see this at their next await and close their sockets.
        self.cancel.cancel();
    }
}

/// Binds a listener on `listen`; the address it got (port 0 picks a free one).
pub(crate) async fn bind(listen: SocketAddr) -> Result<(TcpListener, SocketAddr), ProxyError> {
    let failed = |source| ProxyError::Bind {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    Ok((listener, bound))
}

/// What heals a fault in force on a proxy (see [`ProxyHandle::apply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeal {
    Partition,
    RefuseNew,
    Latency(Direction),
    Bandwidth(Direction),
    Slicer(Direction),
    Timeout,
}

/// Changes a proxy's faults at runtime. Cheap to clone; every change applies at once to
/// existing connections and to new ones.
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

impl ProxyHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.state.borrow().faults
    }

    /// Replaces all faults (a timeout that was already in force keeps its start).
    pub fn set_faults(&self, faults: Faults) {
        self.update(|current| *current = faults);
    }

    /// Changes the faults in place.
    pub fn update(&self, change: impl FnOnce(&mut Faults)) {
        self.shared.state.send_modify(|state| {
            let before = state.faults.timeout;
            change(&mut state.faults);
            if state.faults.timeout != before {
                state.timeout_since = state.faults.timeout.map(|_| Instant::now());
            }
        });
    }

    /// Removes every fault (does not undo resets that already happened).
    pub fn clear(&self) {
        self.set_faults(Faults::default());
    }

    pub fn set_latency(&self, direction: Direction, latency: Option<Latency>) {
        self.update(|f| f.update_links(direction, |link| link.latency = latency));
    }

    /// `bytes_per_second` of `None` lifts the limit; `Some(0)` is treated as no limit
    /// too (use a partition to stop traffic).
    pub fn set_bandwidth(&self, direction: Direction, bytes_per_second: Option<u64>) {
        let limit = bytes_per_second.filter(|rate| *rate > 0);
        self.update(|f| f.update_links(direction, |link| link.bandwidth = limit));
    }

    pub fn set_slicer(&self, direction: Direction, slicer: Option<Slicer>) {
        self.update(|f| f.update_links(direction, |link| link.slicer = slicer));
    }

    /// Starts (`true`) or heals (`false`) a partition.
    pub fn set_partition(&self, partitioned: bool) {
        self.update(|f| f.partition = partitioned);
    }

    /// Resets new connections as they arrive while `true`.
    pub fn set_refuse_new(&self, refuse: bool) {
        self.update(|f| f.refuse_new = refuse);
    }

    /// Holds data and closes each connection after `timeout`; `None` ends the fault.
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        self.update(|f| f.timeout = timeout);
    }

    /// Puts a fault of a scenario in force. `hold_reset`: a reset also refuses new
    /// connections until healed (a reset with a duration); without it a reset is
    /// instantaneous. Returns what heals the fault, `None` when nothing is left to heal (an
    /// instantaneous reset, or a process fault, which a proxy ignores).
    pub fn apply(&self, action: FaultAction, hold_reset: bool) -> Option<ProxyHeal> {
        match action {
            FaultAction::Partition => {
                self.set_partition(true);
                Some(ProxyHeal::Partition)
            }
            FaultAction::Reset => {
                self.reset_connections();
                hold_reset.then(|| {
                    self.set_refuse_new(true);
                    ProxyHeal::RefuseNew
                })
            }
            FaultAction::Latency { direction, latency } => {
                self.set_latency(direction, Some(latency));
                Some(ProxyHeal::Latency(direction))
            }
            FaultAction::Bandwidth {
                direction,
                bytes_per_second,
            } => {
                self.set_bandwidth(direction, Some(bytes_per_second));
                Some(ProxyHeal::Bandwidth(direction))
            }
            FaultAction::Slicer { direction, slicer } => {
                self.set_slicer(direction, Some(slicer));
                Some(ProxyHeal::Slicer(direction))
            }
            FaultAction::Timeout { timeout } => {
                self.set_timeout(Some(timeout));
                Some(ProxyHeal::Timeout)
            }
            FaultAction::Kill
            | FaultAction::Terminate
            | FaultAction::Pause
            | FaultAction::Restart
            | FaultAction::Rollout { .. }
            | FaultAction::BlueGreen { .. } => None,
        }
    }

    /// Ends one fault [`ProxyHandle::apply`] put in force.
    pub fn heal(&self, heal: ProxyHeal) {
        match heal {
            ProxyHeal::Partition => self.set_partition(false),
            ProxyHeal::RefuseNew => self.set_refuse_new(false),
            ProxyHeal::Latency(direction) => self.set_latency(direction, None),
            ProxyHeal::Bandwidth(direction) => self.set_bandwidth(direction, None),
            ProxyHeal::Slicer(direction) => self.set_slicer(direction, None),
            ProxyHeal::Timeout => self.set_timeout(None),
        }
    }

    /// Closes every current connection with RST (both the client's and upstream's side).
    pub fn reset_connections(&self) {
        self.shared
            .state
            .send_modify(|state| state.reset_generation += 1);
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            connections_accepted: c.accepted.load(Ordering::Relaxed),
            connections_active: c.active.load(Ordering::Relaxed),
            connections_reset: c.reset.load(Ordering::Relaxed),
            connections_timed_out: c.timed_out.load(Ordering::Relaxed),
            bytes_upstream: c.bytes_upstream.load(Ordering::Relaxed),
            bytes_downstream: c.bytes_downstream.load(Ordering::Relaxed),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, _peer)) => {
                shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
                if shared.state.borrow().faults.refuse_new {
                    abort(&client);
                    shared.counters.reset.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // Read here, not in the task: a reset issued after this accept must
                // reach this connection even if its task has not run yet.
                let generation = shared.state.borrow().reset_generation;
                tasks.spawn(connection(
                    client,
                    generation,
                    shared.clone(),
                    cancel.clone(),
                ));
            }
            Err(error) => {
                // Out of file descriptors and the like: the listener itself is fine, so
                // back off briefly instead of spinning or giving up.
                tracing::warn!(%error, listen = %shared.listen, "fault proxy: accept failed");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}
