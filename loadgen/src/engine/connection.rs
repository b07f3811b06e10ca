//! One connection to the target and the send of one request on it, for the engine's
//! workers (module `engine`): the engine's own HTTP/1.1 client (module `h1`) or hyper's
//! HTTP/2 client driven inside the worker's task, and the [`Watchdog`] that bounds
//! each request by the timeout.

use std::{
    future::{poll_fn, Future},
    pin::{pin, Pin},
    task::Poll,
};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

use super::h1::H1Connection;
use faultline_results::{ErrorClass, HttpVersion};

use crate::{classify::Classify as _, target::Target};

/// Bounds each request by the timeout without a timer registration per request:
/// one sleep per worker, set to the deadline of the request in flight when it was
/// armed. Deadlines only move forward, so when it fires, the request in flight
/// has either passed its own deadline (a timeout) or the sleep is re-armed for it.
#[derive(Default)]
pub(super) struct Watchdog {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Watchdog {
    /// Runs `future` until it ends (`Some`) or `deadline` passes (`None`).
    pub(super) async fn run<F: Future>(
        &mut self,
        deadline: Instant,
        future: F,
    ) -> Option<F::Output> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        let mut future = pin!(future);
        poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            while sleep.as_mut().poll(cx).is_ready() {
                if Instant::now() >= deadline {
                    return Poll::Ready(None);
                }
                sleep.as_mut().reset(deadline);
            }
            Poll::Pending
        })
        .await
    }
}

type ConnectionDriver = Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>;

/// What one send writes: encoded HTTP/1.1 bytes, or an HTTP/2 request's parts.
// It lives on the stack for one send: boxing the larger HTTP/2 variant would add an
// allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Message<'a> {
    Http1 {
        bytes: &'a [u8],
        /// A `HEAD`, whose response has no body.
        head: bool,
    },
    Http2(Request<Full<Bytes>>),
}

/// One connection to the target.
pub(super) enum Connection {
    /// The engine's own HTTP/1.1 client (module `h1`).
    Http1(H1Connection),
    /// hyper's HTTP/2 client: the handle requests are sent through, and the
    /// connection future that does the I/O, driven by the worker's own task
    /// (`None` once the connection has ended).
    Http2 {
        sender: http2::SendRequest<Full<Bytes>>,
        driver: Option<ConnectionDriver>,
    },
}

impl Connection {
    pub(super) async fn open(
        target: &Target,
        version: HttpVersion,
    ) -> Result<Connection, std::io::Error> {
        let stream = target.connect().await?;
        Ok(match version {
            HttpVersion::Http1 => Connection::Http1(H1Connection::new(stream)),
            HttpVersion::Http2 => {
                let (sender, driver) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .map_err(std::io::Error::other)?;
                Connection::Http2 {
                    sender,
                    driver: Some(Box::pin(driver)),
                }
            }
        })
    }

    pub(super) fn is_closed(&self) -> bool {
        match self {
            Connection::Http1(conn) => conn.is_closed(),
            Connection::Http2 { sender, driver } => driver.is_none() || sender.is_closed(),
        }
    }

    /// Waits until `deadline` while watching (HTTP/1.1) or driving (HTTP/2) the
    /// idle connection.
    pub(super) async fn idle_until(&mut self, deadline: Instant) {
        match self {
            Connection::Http1(conn) => conn.idle_until(deadline).await,
            Connection::Http2 { driver, .. } => {
                drive(driver, tokio::time::sleep_until(deadline)).await
            }
        }
    }

    /// Sends one request and reads its whole response before `deadline`.
    pub(super) async fn send(
        &mut self,
        message: Message<'_>,
        deadline: Instant,
        watchdog: &mut Watchdog,
    ) -> Result<http::StatusCode, ErrorClass> {
        match (self, message) {
            (Connection::Http1(conn), Message::Http1 { bytes, head }) => watchdog
                .run(deadline, conn.exchange(bytes, head))
                .await
                .unwrap_or(Err(ErrorClass::Timeout)),
            (Connection::Http2 { sender, driver }, Message::Http2(request)) => {
                let exchange = async {
                    sender
                        .ready()
                        .await
                        .map_err(|e| ErrorClass::of_hyper_error(&e))?;
                    let response = sender
                        .send_request(request)
                        .await
                        .map_err(|e| ErrorClass::of_hyper_error(&e))?;
                    let status = response.status();
                    let mut body = response.into_body();
                    // Read frames and drop them: the body must be consumed for the
                    // stream to finish, but nothing needs it kept.
                    while let Some(frame) = body.frame().await {
                        frame.map_err(|e| ErrorClass::of_hyper_error(&e))?;
                    }
                    Ok(status)
                };
                drive(driver, watchdog.run(deadline, exchange))
                    .await
                    .unwrap_or(Err(ErrorClass::Timeout))
            }
            // The engine builds the message for its connections' version.
            _ => Err(ErrorClass::Protocol),
        }
    }
}

/// Polls `future` to completion while also polling the connection driver (until it
/// ends, when it is set to `None`; pending requests then fail on their own).
async fn drive<F: Future>(driver: &mut Option<ConnectionDriver>, future: F) -> F::Output {
    let mut future = pin!(future);
    poll_fn(|cx| {
        if let Some(connection) = driver.as_mut() {
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended");
                }
                *driver = None;
            }
        }
        future.as_mut().poll(cx)
    })
    .await
}
