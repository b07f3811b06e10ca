//! Tests of the fault injectors against real sockets on 127.0.0.1 and real child
//! processes. Each test is bounded in time ([`within`]); waits are on events (bytes read,
//! a process state, a change of the active faults), with fixed waits only where the
//! test asserts that nothing happens for a while.

#![allow(clippy::unwrap_used)]

mod cli;
mod control;
mod process;
mod proxy;
mod spec;
mod timeline;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The bound on anything a test awaits.
const LIMIT: Duration = Duration::from_secs(20);

/// Awaits `future`, failing the test if it takes longer than [`LIMIT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {LIMIT:?}: {what}"),
    }
}

/// An echo server on a free port: every connection gets back what it sends, and its
/// end of stream once the client's has arrived.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                    let _ = write.shutdown().await;
                }
            });
        }
    });
    addr
}

/// A server that sends `bytes` bytes to every connection, then closes it.
pub async fn source_server(bytes: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let data = pattern(bytes);
                let _ = stream.write_all(&data).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// Deterministic bytes that are not all alike, so reordering or loss would show.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes `message` and reads exactly as many bytes back (through an echo server).
pub async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).await.unwrap();
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back).await.unwrap();
    back
}
