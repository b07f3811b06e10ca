//! One proxied connection: connecting upstream once traffic may flow, forwarding both
//! directions through a bounded queue, and applying each direction's faults (latency,
//! bandwidth, slicing, holds) as chunks are delivered. The listener, the handle and the
//! fault types are in the parent module; this is what every accepted connection runs.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Counters, Direction, Shared, State};

/// Largest chunk read at once from a socket.
const CHUNK_SIZE: usize = 16 * 1024;
/// Chunks in flight per direction between reader and writer: with latency, this is the
/// data "on the wire" (64 × 16 KiB = 1 MiB per direction per connection).
const CHUNKS_IN_FLIGHT: usize = 64;
/// Bandwidth is enforced in pieces of 1/50 s worth of data, so a limited stream is smooth
/// rather than bursty at one-second granularity.
const BANDWIDTH_PIECES_PER_SECOND: u64 = 50;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Both sides finished.
    Done,
    /// A reset fault: RST both sides.
    Reset,
    /// A timeout fault: plain close.
    TimedOut,
    /// The proxy stopped.
    Stopped,
    /// An I/O error on either side (or upstream refused): RST both sides.
    Broken,
}

/// Decrements the active-connection gauge however the task ends (even if aborted).
struct ActiveGuard<'a>(&'a Counters);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) async fn connection(
    mut client: TcpStream,
    generation: u64,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    shared.counters.active.fetch_add(1, Ordering::Relaxed);
    let _active = ActiveGuard(&shared.counters);
    // The proxy should add only the faults it is asked for, not Nagle's delay.
    let _ = client.set_nodelay(true);
    let opened = Instant::now();
    let mut upstream: Option<TcpStream> = None;
    let end = {
        let control = control(shared.state.subscribe(), generation, opened, &cancel);
        let work = forward(&mut client, &mut upstream, &shared);
        tokio::select! {
            end = control => end,
            end = work => end,
        }
    };
    match end {
        End::Reset | End::Broken => {
            abort(&client);
            if let Some(upstream) = &upstream {
                abort(upstream);
            }
            if end == End::Reset {
                shared.counters.reset.fetch_add(1, Ordering::Relaxed);
            }
        }
        End::TimedOut => {
            shared.counters.timed_out.fetch_add(1, Ordering::Relaxed);
        }
        End::Done | End::Stopped => {}
    }
    // Dropping the streams closes them (with RST where zero linger was set above).
}

/// Zero linger: closing the socket sends RST instead of FIN.
pub(super) fn abort(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Ends the connection when a reset or timeout fault says so, or the proxy stops.
async fn control(
    mut state: watch::Receiver<State>,
    generation: u64,
    opened: Instant,
    cancel: &CancellationToken,
) -> End {
    loop {
        let (current_generation, close_at) = {
            let s = state.borrow_and_update();
            let close_at = match (s.faults.timeout, s.timeout_since) {
                // A connection opened during the fault is held from its opening.
                (Some(timeout), Some(since)) => Some(since.max(opened) + timeout),
                _ => None,
            };
            (s.reset_generation, close_at)
        };
        if current_generation != generation {
            return End::Reset;
        }
        tokio::select! {
            _ = cancel.cancelled() => return End::Stopped,
            _ = changed(&mut state) => {}
            _ = sleep_until_some(close_at) => return End::TimedOut,
        }
    }
}

/// Connects upstream (once traffic may flow) and forwards both ways until both end.
async fn forward(
    client: &mut TcpStream,
    upstream_slot: &mut Option<TcpStream>,
    shared: &Shared,
) -> End {
    let mut state = shared.state.subscribe();
    // A partitioned upstream cannot be reached: wait, like a SYN nobody answers.
    wait_until_flowing(&mut state).await;
    let upstream = match TcpStream::connect(shared.upstream).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::debug!(%error, upstream = %shared.upstream, "fault proxy: upstream refused");
            return End::Broken;
        }
    };
    let _ = upstream.set_nodelay(true);
    let upstream = upstream_slot.insert(upstream);
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let up = pump(client_read, upstream_write, Direction::Upstream, shared);
    let down = pump(upstream_read, client_write, Direction::Downstream, shared);
    match tokio::try_join!(up, down) {
        Ok(_) => End::Done,
        Err(_) => End::Broken,
    }
}

/// One chunk read from a socket, with when it arrived.
struct Chunk {
    data: Vec<u8>,
    arrived: Instant,
    /// This chunk's jitter draw in [-1, 1], fixed so that re-evaluating its delay after
    /// a fault change does not draw again.
    jitter_draw: f64,
}

/// Forwards one direction: reads chunks, delivers them with this direction's faults, and
/// passes the end of stream on (half-close) once everything read is delivered.
async fn pump<R, W>(
    mut reader: R,
    mut writer: W,
    direction: Direction,
    shared: &Shared,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let state = shared.state.subscribe();
    let forwarded = shared.counters.forwarded(direction);
    let (sender, mut chunks) = mpsc::channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let mut read_state = state.clone();
    let read = async move {
        loop {
            // While held, leave data in the kernel's buffers: the peer's sends then stall
            // the way they would behind a partition.
            wait_until_flowing(&mut read_state).await;
            let mut data = vec![0u8; CHUNK_SIZE];
            let n = reader.read(&mut data).await?;
            if n == 0 {
                return Ok::<(), io::Error>(());
            }
            data.truncate(n);
            let chunk = Chunk {
                data,
                arrived: Instant::now(),
                jitter_draw: rand::rng().random_range(-1.0..=1.0),
            };
            if sender.send(chunk).await.is_err() {
                // The writer has failed; its error ends the connection.
                return Ok(());
            }
        }
    };
    let mut write_state = state;
    let write = async move {
        let mut pacer = Pacer::default();
        while let Some(chunk) = chunks.recv().await {
            deliver(
                &mut writer,
                chunk,
                direction,
                &mut write_state,
                &mut pacer,
                forwarded,
            )
            .await?;
        }
        writer.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}

/// When the next piece may be written under a bandwidth limit.
#[derive(Default)]
struct Pacer {
    next: Option<Instant>,
}

async fn deliver<W: AsyncWrite + Unpin>(
    writer: &mut W,
    chunk: Chunk,
    direction: Direction,
    state: &mut watch::Receiver<State>,
    pacer: &mut Pacer,
    forwarded: &AtomicU64,
) -> io::Result<()> {
    // Latency: the chunk is due `delay` after it arrived. A fault change (healed, or a
    // new delay) re-evaluates the due time at once.
    loop {
        let faults = state.borrow_and_update().faults;
        if faults.holds() {
            changed(state).await;
            continue;
        }
        let due = faults
            .link(direction)
            .latency
            .map(|latency| chunk.arrived + latency.delay_for(chunk.jitter_draw));
        match due {
            Some(due) if due > Instant::now() => {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => break,
                    _ = changed(state) => continue,
                }
            }
            _ => break,
        }
    }
    let mut rest = &chunk.data[..];
    while !rest.is_empty() {
        let faults = state.borrow_and_update().faults;
        if faults.holds() {
            changed(state).await;
            continue;
        }
        let link = *faults.link(direction);
        let mut n = rest.len();
        if let Some(slicer) = link.slicer {
            n = n.min(slicer.next_size());
        }
        if let Some(rate) = link.bandwidth {
            let piece = (rate / BANDWIDTH_PIECES_PER_SECOND).max(1);
            n = n.min(usize::try_from(piece).unwrap_or(usize::MAX));
            if let Some(next) = pacer.next {
                if next > Instant::now() {
                    tokio::select! {
                        _ = tokio::time::sleep_until(next) => {}
                        // The limit may have been lifted or changed: look again.
                        _ = changed(state) => continue,
                    }
                }
            }
        }
        writer.write_all(&rest[..n]).await?;
        forwarded.fetch_add(n as u64, Ordering::Relaxed);
        rest = &rest[n..];
        pacer.next = link.bandwidth.map(|rate| {
            let start = pacer
                .next
                .map_or(Instant::now(), |next| next.max(Instant::now()));
            start + Duration::from_secs_f64(n as f64 / rate as f64)
        });
        if let Some(slicer) = link.slicer {
            if !rest.is_empty() && !slicer.delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(slicer.delay) => {}
                    _ = changed(state) => {}
                }
            }
        }
    }
    Ok(())
}

/// Waits while a partition or timeout holds traffic.
async fn wait_until_flowing(state: &mut watch::Receiver<State>) {
    while state.borrow_and_update().faults.holds() {
        changed(state).await;
    }
}

/// Waits for the next change. The sender lives as long as any connection (it is in
/// `Shared`), so a closed channel cannot happen; if it did, nothing would change again.
async fn changed(state: &mut watch::Receiver<State>) {
    if state.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
