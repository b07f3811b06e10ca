//! The engine's HTTP/1.1 client connection: one request at a time on one
//! keep-alive TCP connection, with nothing per request but one write, the reads the
//! response needs, and a parse.
//!
//! A load generator sends the same few requests millions of times, so each endpoint's
//! request is serialized once per run ([`encode_request`]) and written as it is.
//! Responses are read whole, as any client must before reusing the connection:
//! the head is parsed with `httparse` (the parser hyper uses), and the body is
//! framed as RFC 9112 §6.3 says — none for `HEAD` requests and 1xx/204/304
//! statuses, `Transfer-Encoding: chunked` (decoded and discarded), `Content-Length`,
//! or else until the server closes the connection. Interim 1xx responses are
//! skipped. A connection is not reused after `Connection: close` (or an HTTP/1.0
//! answer without keep-alive), a close-delimited body, unexpected bytes, or any
//! failure: the engine opens a new one for the next request.
//!
//! Errors are classified as hyper's are: a connection that ends before the whole
//! response is `reset`, an answer that is not HTTP/1.x is `protocol`.

use std::mem::MaybeUninit;

use bytes::{BufMut as _, Bytes, BytesMut};
use http::{header, HeaderMap, Method, StatusCode};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    time::Instant,
};

use faultline_results::ErrorClass;

use crate::classify::Classify as _;

/// Most header lines a response head may have (hyper's limit too).
const MAX_HEADERS: usize = 100;
/// Largest response head, or chunk-size / trailer line, accepted.
const MAX_HEAD_BYTES: usize = 1 << 20;
/// Read buffer size of a new connection; it grows for larger heads, and for large
/// bodies (while reads fill it) up to [`MAX_BODY_READ`].
const READ_BUFFER: usize = 16 * 1024;
/// Largest buffer grown for reading bodies (fewer reads for large responses).
const MAX_BODY_READ: usize = 256 * 1024;

/// The bytes of one request, as written on the wire, built once per run.
///
/// The request line carries the path, the `Host` header the authority (the caller
/// puts it in `headers`), the headers follow as given, and the body is framed by a
/// `Content-Length` computed here (replacing any framing header given), sent for a
/// non-empty body and for the methods that expect one.
pub(crate) fn encode_request(
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Bytes {
    let mut out = BytesMut::with_capacity(256 + body.len());
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(path_and_query.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    let expects_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if !body.is_empty() || expects_body {
        out.put_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
    out.freeze()
}

/// How the body of a response is delimited.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// One HTTP/1.1 connection over a stream: a `TcpStream`, or a TLS connection on
/// one. Generic, so each kind gets its own monomorphic copy and the plain path
/// pays nothing for the other.
pub(crate) struct H1Connection<S> {
    stream: S,
    /// Bytes read; `buffer[start..end]` is not consumed yet.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// Whether another request may be sent on this connection.
    reusable: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> H1Connection<S> {
    pub(crate) fn new(stream: S) -> H1Connection<S> {
        H1Connection {
            stream,
            buffer: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            reusable: true,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        !self.reusable
    }

    /// Waits until `deadline` while watching the idle connection, so that a server
    /// closing it (or sending anything unasked) is noticed before the next request
    /// instead of failing it. (A TLS stream reads the records it expects while idle,
    /// such as session tickets, without returning them.)
    pub(crate) async fn idle_until(&mut self, deadline: Instant) {
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        if self.reusable {
            let mut probe = [0u8; 1];
            tokio::select! {
                biased;
                () = &mut sleep => return,
                // End of stream, an error, or bytes nobody asked for. Reads are
                // cancel-safe: nothing is lost when the sleep wins.
                _ = self.stream.read(&mut probe) => self.reusable = false,
            }
        }
        sleep.await;
    }

    /// Sends one encoded request and reads its whole response; returns the status.
    /// (`head`: the request is a `HEAD`, whose response has no body.) The caller
    /// bounds the time it takes.
    pub(crate) async fn exchange(
        &mut self,
        request: &[u8],
        head: bool,
    ) -> Result<StatusCode, ErrorClass> {
        let result = self.exchange_inner(request, head).await;
        if result.is_err() {
            self.reusable = false;
        }
        result
    }

    async fn exchange_inner(
        &mut self,
        request: &[u8],
        head: bool,
    ) -> Result<StatusCode, ErrorClass> {
        if self.start != self.end {
            // Bytes after the last response: whatever they are, the connection's
            // state is unknown (the engine reconnects for closed connections first).
            return Err(ErrorClass::Protocol);
        }
        self.start = 0;
        self.end = 0;
        self.stream
            .write_all(request)
            .await
            .map_err(|e| ErrorClass::of_io_error(&e))?;
        // TLS may keep records buffered that the socket did not take at once; for a
        // TcpStream flushing is a no-op.
        self.stream
            .flush()
            .await
            .map_err(|e| ErrorClass::of_io_error(&e))?;
        let (status, framing) = self.read_head(head).await?;
        match framing {
            Framing::None => {}
            Framing::Length(length) => self.skip_body(length).await?,
            Framing::Chunked => self.skip_chunked().await?,
            Framing::UntilClose => {
                self.reusable = false;
                self.start = self.end;
                while self.fill().await? > 0 {
                    self.start = self.end;
                }
            }
        }
        if self.start != self.end {
            // More than the response: not something to send the next request after.
            self.reusable = false;
        }
        Ok(status)
    }

    /// Reads more bytes after `end`, making room first; `Ok(0)` is the end of stream.
    async fn fill(&mut self) -> Result<usize, ErrorClass> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buffer.len() {
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buffer.len() < MAX_HEAD_BYTES {
                self.buffer.resize(self.buffer.len() * 2, 0);
            } else {
                return Err(ErrorClass::Protocol);
            }
        }
        let room = self.buffer.len() - self.end;
        let read = self
            .stream
            .read(&mut self.buffer[self.end..])
            .await
            .map_err(|e| ErrorClass::of_io_error(&e))?;
        self.end += read;
        if read == room && self.buffer.len() < MAX_BODY_READ {
            // A large response: read it in larger pieces.
            self.buffer.resize(self.buffer.len() * 2, 0);
        }
        Ok(read)
    }

    /// Like [`fill`](Self::fill), but the end of stream is an error: the connection
    /// ended before the response did.
    async fn fill_more(&mut self) -> Result<(), ErrorClass> {
        match self.fill().await? {
            0 => Err(ErrorClass::Reset),
            _ => Ok(()),
        }
    }

    /// Reads the head of the final response (skipping interim 1xx ones).
    async fn read_head(&mut self, head: bool) -> Result<(StatusCode, Framing), ErrorClass> {
        loop {
            let parsed = {
                // Uninitialized header slots: nothing to clear for every response.
                let mut headers =
                    [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut []);
                let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                    &mut response,
                    &self.buffer[self.start..self.end],
                    &mut headers,
                );
                match parsed {
                    Ok(httparse::Status::Complete(length)) => {
                        Some((length, interpret(&response, head)?))
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(_) => return Err(ErrorClass::Protocol),
                }
            };
            match parsed {
                None => self.fill_more().await?,
                Some((length, (status, framing, keep_alive))) => {
                    self.start += length;
                    // 101 ends HTTP on this connection; other 1xx precede the answer.
                    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
                        continue;
                    }
                    if !keep_alive || status == StatusCode::SWITCHING_PROTOCOLS {
                        self.reusable = false;
                    }
                    return Ok((status, framing));
                }
            }
        }
    }

    /// Consumes `length` body bytes.
    async fn skip_body(&mut self, mut length: u64) -> Result<(), ErrorClass> {
        loop {
            let available = (self.end - self.start) as u64;
            if available >= length {
                self.start += length as usize;
                return Ok(());
            }
            length -= available;
            self.start = self.end;
            self.fill_more().await?;
        }
    }

    /// Consumes a chunked body and its trailers.
    async fn skip_chunked(&mut self) -> Result<(), ErrorClass> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buffer[self.start..self.end]) {
                    Ok(httparse::Status::Complete((length, size))) => {
                        self.start += length;
                        break size;
                    }
                    Ok(httparse::Status::Partial) => self.fill_more().await?,
                    Err(_) => return Err(ErrorClass::Protocol),
                }
            };
            if size == 0 {
                break;
            }
            self.skip_body(size).await?;
            self.expect_crlf().await?;
        }
        // Trailer fields, up to the empty line.
        loop {
            let line = loop {
                let pending = &self.buffer[self.start..self.end];
                if let Some(at) = pending.windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                self.fill_more().await?;
            };
            self.start += line + 2;
            if line == 0 {
                return Ok(());
            }
        }
    }

    async fn expect_crlf(&mut self) -> Result<(), ErrorClass> {
        while self.end - self.start < 2 {
            self.fill_more().await?;
        }
        if &self.buffer[self.start..self.start + 2] != b"\r\n" {
            return Err(ErrorClass::Protocol);
        }
        self.start += 2;
        Ok(())
    }
}

/// The status, body framing and keep-alive of a parsed response head.
fn interpret(
    response: &httparse::Response<'_, '_>,
    head: bool,
) -> Result<(StatusCode, Framing, bool), ErrorClass> {
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(ErrorClass::Protocol)?;
    let http10 = response.version == Some(0);
    let mut keep_alive = !http10;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    for field in response.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(field.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(ErrorClass::Protocol)?;
            if length.is_some_and(|seen| seen != value) {
                return Err(ErrorClass::Protocol);
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // Chunked only when it is the last coding applied.
            chunked = field
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in field.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    keep_alive = true;
                }
            }
        }
    }
    let code = status.as_u16();
    let framing = if head || status.is_informational() || code == 204 || code == 304 {
        Framing::None
    } else if transfer_encoding {
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match length {
            Some(0) => Framing::None,
            Some(length) => Framing::Length(length),
            None => Framing::UntilClose,
        }
    };
    Ok((status, framing, keep_alive))
}

#[cfg(test)]
#[path = "h1_props.rs"]
mod props;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    /// Serves `answers` on one connection, one per request head received, and
    /// returns the client connected to it.
    async fn serve(answers: Vec<&'static [u8]>, close_after: bool) -> H1Connection<TcpStream> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0u8; 4096];
            for answer in answers {
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buffer).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buffer[..n]);
                }
                // Write in two parts so reads see partial responses.
                let half = answer.len() / 2;
                stream.write_all(&answer[..half]).await.unwrap();
                stream.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                stream.write_all(&answer[half..]).await.unwrap();
            }
            if !close_after {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        });
        H1Connection::new(TcpStream::connect(addr).await.unwrap())
    }

    fn get() -> Bytes {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "example.invalid".parse().unwrap());
        encode_request(&Method::GET, "/", &headers, &Bytes::new())
    }

    #[test]
    fn requests_are_encoded_with_their_framing() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "h:1".parse().unwrap());
        headers.insert(header::CONTENT_LENGTH, "99".parse().unwrap());
        let post = encode_request(&Method::POST, "/a?b=1", &headers, &Bytes::from("xyz"));
        assert_eq!(
            &post[..],
            b"POST /a?b=1 HTTP/1.1\r\nhost: h:1\r\ncontent-length: 3\r\n\r\nxyz"
        );
        assert_eq!(
            &get()[..],
            b"GET / HTTP/1.1\r\nhost: example.invalid\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn every_framing_is_read_whole_and_the_connection_reused() {
        let mut conn = serve(
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
                b"HTTP/1.1 204 No Content\r\n\r\n",
                b"HTTP/1.1 503 Unavailable\r\ncontent-length: 0\r\n\r\n",
                b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
            ],
            true,
        )
        .await;
        let request = get();
        for expected in [200, 404, 204, 503] {
            let status = conn.exchange(&request, false).await.unwrap();
            assert_eq!(status.as_u16(), expected);
            assert!(!conn.is_closed(), "after {expected}");
        }
        assert_eq!(conn.exchange(&request, false).await.unwrap().as_u16(), 200);
        assert!(
            conn.is_closed(),
            "a close-delimited body ends the connection"
        );
    }

    #[tokio::test]
    async fn large_bodies_are_read_whole() {
        const SIZE: usize = 3 << 20;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0u8; 4096];
            let body = vec![b'x'; SIZE];
            for chunked in [false, true, false] {
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buffer).await.unwrap();
                    got.extend_from_slice(&buffer[..n]);
                }
                if chunked {
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                        .await
                        .unwrap();
                    for piece in body.chunks(100_000) {
                        let size = format!("{:x}\r\n", piece.len());
                        stream.write_all(size.as_bytes()).await.unwrap();
                        stream.write_all(piece).await.unwrap();
                        stream.write_all(b"\r\n").await.unwrap();
                    }
                    stream.write_all(b"0\r\n\r\n").await.unwrap();
                } else {
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {SIZE}\r\n\r\n");
                    stream.write_all(head.as_bytes()).await.unwrap();
                    stream.write_all(&body).await.unwrap();
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        });
        let mut conn = H1Connection::new(TcpStream::connect(addr).await.unwrap());
        for _ in 0..3 {
            assert_eq!(conn.exchange(&get(), false).await.unwrap().as_u16(), 200);
            assert!(!conn.is_closed());
        }
        assert!(conn.buffer.len() <= MAX_BODY_READ);
    }

    #[tokio::test]
    async fn a_connection_ending_mid_response_is_a_reset_and_garbage_is_protocol() {
        let mut conn = serve(
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nshort"],
            true,
        )
        .await;
        assert_eq!(conn.exchange(&get(), false).await, Err(ErrorClass::Reset));
        assert!(conn.is_closed());
        let mut conn = serve(vec![b"SSH-2.0-OpenSSH_9.6\r\n\r\n"], true).await;
        assert_eq!(
            conn.exchange(&get(), false).await,
            Err(ErrorClass::Protocol)
        );
    }

    #[tokio::test]
    async fn connection_close_and_head_responses() {
        let mut conn = serve(
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 2\r\n\r\nok",
            ],
            true,
        )
        .await;
        assert_eq!(conn.exchange(&get(), true).await.unwrap().as_u16(), 200);
        assert!(!conn.is_closed());
        assert_eq!(conn.exchange(&get(), false).await.unwrap().as_u16(), 200);
        assert!(conn.is_closed());
    }

    #[tokio::test]
    async fn an_idle_connection_closed_by_the_server_is_noticed() {
        let mut conn = serve(vec![], true).await;
        conn.idle_until(Instant::now() + std::time::Duration::from_millis(200))
            .await;
        assert!(conn.is_closed());
    }
}
