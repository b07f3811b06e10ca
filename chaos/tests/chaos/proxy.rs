//! The TCP fault proxy: forwarding, and each fault's effect on live connections.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use faultline_chaos::proxy::{Direction, FaultProxy, Latency, Slicer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::{echo_server, pattern, round_trip, source_server, within};

async fn proxy_to(upstream: SocketAddr) -> FaultProxy {
    FaultProxy::start("127.0.0.1:0".parse().unwrap(), upstream)
        .await
        .unwrap()
}

#[tokio::test]
async fn bytes_round_trip_unchanged_in_both_directions() {
    let proxy = proxy_to(echo_server().await).await;
    assert_ne!(proxy.local_addr().port(), 0, "the bound port is reported");
    let stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let sent = pattern(4 * 1024 * 1024);
    let expected = sent.clone();
    // Write and read at once: a payload this large would fill every buffer otherwise.
    let writer = tokio::spawn(async move {
        write.write_all(&sent).await.unwrap();
        // End of stream travels through the proxy too (half-close), and back.
        write.shutdown().await.unwrap();
    });
    let mut received = Vec::new();
    within("echo of 4 MiB", read.read_to_end(&mut received))
        .await
        .unwrap();
    writer.await.unwrap();
    assert!(received == expected, "the echo differs from what was sent");
    let stats = proxy.stats();
    assert_eq!(stats.bytes_upstream, 4 * 1024 * 1024);
    assert_eq!(stats.bytes_downstream, 4 * 1024 * 1024);
    assert_eq!(stats.connections_accepted, 1);
}

#[tokio::test]
async fn latency_delays_each_way_by_at_least_the_configured_delay() {
    let proxy = proxy_to(echo_server().await).await;
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    assert_eq!(round_trip(&mut stream, b"warm up").await, b"warm up");

    // 300ms ± 100ms each way: a round trip takes at least 2 × 200ms.
    proxy.set_latency(
        Direction::Both,
        Some(Latency {
            delay: Duration::from_millis(300),
            jitter: Duration::from_millis(100),
        }),
    );
    let started = Instant::now();
    assert_eq!(
        within("delayed echo", round_trip(&mut stream, b"ping")).await,
        b"ping"
    );
    let delayed = started.elapsed();
    assert!(
        delayed >= Duration::from_millis(400),
        "round trip took {delayed:?}"
    );
    assert!(
        delayed < Duration::from_secs(5),
        "round trip took {delayed:?}"
    );

    // Upstream only: one way delayed.
    proxy.clear();
    proxy.set_latency(
        Direction::Upstream,
        Some(Latency {
            delay: Duration::from_millis(300),
            jitter: Duration::ZERO,
        }),
    );
    let started = Instant::now();
    assert_eq!(
        within("one-way delay", round_trip(&mut stream, b"pong")).await,
        b"pong"
    );
    let one_way = started.elapsed();
    assert!(
        one_way >= Duration::from_millis(300),
        "round trip took {one_way:?}"
    );

    // Healed on the same connection: far below one delay again.
    proxy.clear();
    let started = Instant::now();
    assert_eq!(
        within("healed echo", round_trip(&mut stream, b"again")).await,
        b"again"
    );
    let healed = started.elapsed();
    assert!(
        healed < Duration::from_millis(300),
        "round trip took {healed:?} after heal"
    );
}

#[tokio::test]
async fn bandwidth_limit_paces_a_megabyte() {
    const MEGABYTE: usize = 1024 * 1024;
    const RATE: u64 = 2 * 1024 * 1024;
    let proxy = proxy_to(source_server(MEGABYTE).await).await;
    proxy.set_bandwidth(Direction::Downstream, Some(RATE));
    let started = Instant::now();
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut received = Vec::new();
    within("1 MiB at 2 MiB/s", stream.read_to_end(&mut received))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(received == pattern(MEGABYTE), "data changed on the way");
    // 0.5 s at the rate; the first piece (1/50 s worth) goes at once.
    assert!(
        took >= Duration::from_millis(450),
        "1 MiB took only {took:?}"
    );
    assert!(took < Duration::from_secs(10), "1 MiB took {took:?}");
}

#[tokio::test]
async fn partition_stalls_an_existing_connection_and_heal_delivers_everything() {
    let proxy = proxy_to(echo_server().await).await;
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"before").await, b"before");
    let upstream_bytes = proxy.stats().bytes_upstream;

    proxy.set_partition(true);
    let held = pattern(64 * 1024);
    stream.write_all(&held).await.unwrap();
    // A new connection is accepted but goes nowhere either.
    let mut late = TcpStream::connect(proxy.local_addr()).await.unwrap();
    late.write_all(b"late").await.unwrap();

    // Nothing arrives while partitioned (a fixed wait: the absence of an event).
    let mut byte = [0u8; 1];
    let stalled = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut byte)).await;
    assert!(stalled.is_err(), "data crossed a partition: {stalled:?}");
    let stalled = tokio::time::timeout(Duration::from_millis(100), late.read(&mut byte)).await;
    assert!(stalled.is_err(), "a new connection crossed a partition");
    assert_eq!(proxy.stats().bytes_upstream, upstream_bytes);

    proxy.set_partition(false);
    let mut back = vec![0u8; held.len()];
    within("held data after heal", stream.read_exact(&mut back))
        .await
        .unwrap();
    assert!(
        back == held,
        "data held by the partition changed or was lost"
    );
    let mut late_back = [0u8; 4];
    within(
        "late connection after heal",
        late.read_exact(&mut late_back),
    )
    .await
    .unwrap();
    assert_eq!(&late_back, b"late");
    assert_eq!(round_trip(&mut stream, b"after").await, b"after");
}

#[tokio::test]
async fn reset_closes_current_connections_with_rst_and_refuses_new_ones_while_active() {
    let proxy = proxy_to(echo_server().await).await;
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"hello").await, b"hello");

    proxy.set_refuse_new(true);
    proxy.reset_connections();
    let mut byte = [0u8; 1];
    let read = within("read after reset", stream.read(&mut byte)).await;
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset),
        "the client sees a reset"
    );

    let mut refused = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let read = within("read on a refused connection", refused.read(&mut byte)).await;
    assert_eq!(read.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    assert_eq!(proxy.stats().connections_reset, 2);

    proxy.set_refuse_new(false);
    let mut fresh = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(
        within("after reset", round_trip(&mut fresh, b"again")).await,
        b"again"
    );
}

#[tokio::test]
async fn timeout_holds_data_and_closes_connections_after_the_timeout() {
    let proxy = proxy_to(echo_server().await).await;
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"hello").await, b"hello");

    let started = Instant::now();
    proxy.set_timeout(Some(Duration::from_millis(300)));
    stream.write_all(b"held").await.unwrap();
    let mut buffer = [0u8; 16];
    // The close arrives as EOF, or as a reset when the proxy had unread data.
    let read = within("close after timeout", stream.read(&mut buffer)).await;
    let waited = started.elapsed();
    assert!(
        matches!(read, Ok(0)) || matches!(&read, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "expected the connection closed, got {read:?}"
    );
    assert!(
        waited >= Duration::from_millis(300),
        "closed after {waited:?}"
    );
    assert_eq!(proxy.stats().connections_timed_out, 1);
}

#[tokio::test]
async fn slicer_splits_data_into_small_delayed_writes() {
    // An upstream that records the size of every read.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let reads = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut sizes = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await.unwrap() {
                0 => return sizes,
                n => sizes.push(n),
            }
        }
    });
    let proxy = proxy_to(upstream).await;
    proxy.set_slicer(
        Direction::Upstream,
        Some(Slicer {
            size: 10,
            size_variation: 0,
            delay: Duration::from_millis(10),
        }),
    );
    let started = Instant::now();
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    stream.write_all(&pattern(100)).await.unwrap();
    stream.shutdown().await.unwrap();
    let sizes = within("sliced upload", reads).await.unwrap();
    let took = started.elapsed();
    assert_eq!(sizes.iter().sum::<usize>(), 100);
    // Nine pauses between ten slices; reads may merge slices when the reader is late.
    assert!(took >= Duration::from_millis(90), "100 bytes took {took:?}");
    assert!(sizes.len() >= 2, "data arrived in one piece: {sizes:?}");
    assert!(sizes.iter().all(|n| *n <= 100), "{sizes:?}");
}

#[tokio::test]
async fn an_unreachable_upstream_resets_the_client() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let proxy = proxy_to(closed).await;
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut byte = [0u8; 1];
    let read = within("read without upstream", stream.read(&mut byte)).await;
    assert_eq!(read.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
}

#[tokio::test]
async fn stopping_the_proxy_closes_its_listener_and_connections() {
    let proxy = proxy_to(echo_server().await).await;
    let addr = proxy.local_addr();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"hello").await, b"hello");
    let handle = proxy.handle();
    within("stop", proxy.stop()).await;
    let mut byte = [0u8; 1];
    let read = within("read after stop", stream.read(&mut byte)).await;
    assert!(matches!(read, Ok(0)), "expected EOF, got {read:?}");
    let connect = TcpStream::connect(addr).await;
    assert!(connect.is_err(), "the listener still accepts");
    assert_eq!(handle.stats().connections_active, 0);
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let proxy = proxy_to(echo_server().await).await;
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"hello").await, b"hello");
    drop(proxy);
    let mut byte = [0u8; 1];
    let read = within("read after drop", stream.read(&mut byte)).await;
    assert!(matches!(read, Ok(0)), "expected EOF, got {read:?}");
}
