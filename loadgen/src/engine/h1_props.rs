//! Property tests of the engine's HTTP/1.1 response reader ([`H1Connection::exchange`]).
//!
//! A server under test is the input here, so the reader must survive anything one sends:
//! arbitrary bytes, and responses built to break it (a huge head, bad or overflowing chunk
//! sizes, a body cut short, `Content-Length` together with `chunked`). Every such answer
//! ends in `Ok` or in one of the two classes a broken answer has (`protocol`, `reset`),
//! never a panic. And any well-formed response, however the network splits it, is read
//! whole: its status comes back, and a second response right behind it is read too, which
//! only works when the first one's body was framed exactly.
//!
//! The stream is [`Scripted`]: it hands out the response in pieces of the sizes drawn, then
//! ends, so each case runs without sockets on a current-thread runtime. `PROPTEST_CASES`
//! raises the case counts (`make fuzz`).

#![allow(clippy::unwrap_used)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::*;

/// A stream that answers each write (a request) with the next of `answers`, in reads of
/// the sizes in `pieces` (cycled), and ends when what it was given is read. A server
/// answers only what it was asked, so bytes beyond an answer are something else.
struct Scripted {
    answers: std::collections::VecDeque<Vec<u8>>,
    input: Vec<u8>,
    at: usize,
    pieces: Vec<usize>,
    piece: usize,
}

impl AsyncRead for Scripted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let wanted = self.pieces[self.piece % self.pieces.len()].max(1);
        self.piece += 1;
        let n = wanted.min(buf.remaining()).min(self.input.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.input[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(answer) = self.answers.pop_front() {
            self.input.extend(answer);
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// The outcomes of up to `requests` exchanges over one connection that answers with
/// `answers` in turn, stopping at the first error or closed connection.
fn exchanges(
    runtime: &tokio::runtime::Runtime,
    answers: Vec<Vec<u8>>,
    pieces: Vec<usize>,
    requests: usize,
) -> Vec<Result<StatusCode, ErrorClass>> {
    runtime.block_on(async move {
        let mut connection = H1Connection::new(Scripted {
            answers: answers.into(),
            input: Vec::new(),
            at: 0,
            pieces,
            piece: 0,
        });
        let mut outcomes = Vec::new();
        for _ in 0..requests {
            let outcome = connection.exchange(b"GET / HTTP/1.1\r\n\r\n", false).await;
            let stop = outcome.is_err() || connection.is_closed();
            outcomes.push(outcome);
            if stop {
                break;
            }
        }
        outcomes
    })
}

fn read_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1..8usize, 1..70_000usize], 1..6)
}

/// How a well-formed response delimits its body.
#[derive(Debug, Clone)]
enum Framing {
    Length,
    /// Chunked, cut into chunks of these sizes (cycled); `also_length` adds a
    /// `Content-Length` that `chunked` must override (RFC 9112 §6.3).
    Chunked {
        sizes: Vec<usize>,
        also_length: bool,
    },
}

fn encode(
    status: u16,
    body: &[u8],
    framing: &Framing,
    extra_headers: &[(String, String)],
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} Whatever\r\n").into_bytes();
    for (name, value) in extra_headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    match framing {
        Framing::Length => {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(body);
        }
        Framing::Chunked { sizes, also_length } => {
            if *also_length {
                out.extend_from_slice(format!("Content-Length: {}\r\n", body.len() + 7).as_bytes());
            }
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            let mut rest = body;
            let mut index = 0;
            while !rest.is_empty() {
                let size = sizes[index % sizes.len()].clamp(1, rest.len());
                index += 1;
                out.extend_from_slice(format!("{size:x}\r\n").as_bytes());
                out.extend_from_slice(&rest[..size]);
                out.extend_from_slice(b"\r\n");
                rest = &rest[size..];
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
    out
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::Length),
        (prop::collection::vec(1..300usize, 1..4), any::<bool>())
            .prop_map(|(sizes, also_length)| Framing::Chunked { sizes, also_length }),
    ]
}

fn header() -> impl Strategy<Value = (String, String)> {
    ("x-[a-z]{1,12}", "[ -~]{0,40}").prop_map(|(name, value)| (name, value.trim().to_string()))
}

/// A status with a body: not 1xx, 204 or 304.
fn status() -> impl Strategy<Value = u16> {
    (200u16..600).prop_filter("has a body", |s| *s != 204 && *s != 304)
}

/// Bytes meant to break the reader: heads and bodies that lie about their framing.
fn adversarial() -> impl Strategy<Value = Vec<u8>> {
    let chunk_size = prop_oneof![
        "[0-9a-fA-F]{1,20}",
        "[0-9a-fA-F]{0,4}[^0-9a-fA-F\r\n]{1,3}",
        Just("ffffffffffffffffffff".to_string()),
        Just("-1".to_string()),
        Just(String::new()),
    ];
    prop_oneof![
        // A head larger than the reader accepts, or a little under it (rare: each case
        // moves a megabyte).
        1 => (0usize..2, 1usize..3).prop_map(|(over, lines)| {
            let size = if over == 1 { MAX_HEAD_BYTES + 10 } else { MAX_HEAD_BYTES / 2 };
            let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
            for _ in 0..lines {
                out.extend_from_slice(b"x-big: ");
                out.resize(out.len() + size / lines, b'a');
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"content-length: 0\r\n\r\n");
            out
        }),
        // A bad, overflowing or empty chunk size, with a body or trailers after it.
        40 => (chunk_size, "[ -~\r\n]{0,64}", any::<bool>()).prop_map(|(size, rest, with_length)| {
            let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n".to_vec();
            if with_length {
                out.extend_from_slice(b"content-length: 3\r\n");
            }
            out.extend_from_slice(format!("\r\n{size}\r\n{rest}").as_bytes());
            out
        }),
        // A declared length longer than the body sent.
        20 => (any::<u64>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(length, body)| {
            let mut out = format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n").into_bytes();
            out.extend_from_slice(&body);
            out
        }),
        // Framing headers that disagree or do not parse.
        40 => (
            prop::collection::vec(
                prop_oneof![
                    "content-length: [0-9 ,a-z-]{0,24}",
                    "transfer-encoding: [a-z, ]{0,24}",
                    "connection: [a-z, -]{0,16}",
                ],
                1..5
            ),
            "[ -~\r\n]{0,64}"
        )
            .prop_map(|(lines, body)| {
                let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
                for line in lines {
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(body.as_bytes());
                out
            }),
    ]
}

/// An error is one of the two classes a broken answer has.
fn broken_answer(outcome: &Result<StatusCode, ErrorClass>) -> bool {
    matches!(
        outcome,
        Ok(_) | Err(ErrorClass::Protocol | ErrorClass::Reset)
    )
}

proptest! {
    // PROPTEST_CASES, when set, overrides the count (`make fuzz`).
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn arbitrary_bytes_end_in_a_status_or_a_broken_answer(
        input in prop::collection::vec(any::<u8>(), 0..2048),
        pieces in read_sizes(),
    ) {
        let runtime = runtime();
        for outcome in exchanges(&runtime, vec![input], pieces, 3) {
            prop_assert!(broken_answer(&outcome), "{outcome:?}");
        }
    }

    #[test]
    fn adversarial_answers_end_in_a_status_or_a_broken_answer(
        input in adversarial(),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        pieces in read_sizes(),
    ) {
        let mut input = input;
        if truncate {
            input.truncate(cut.index(input.len() + 1));
        }
        // A megabyte read a few bytes at a time would be parsed again after every read.
        let pieces = if input.len() > 1 << 16 { vec![1 << 16] } else { pieces };
        let runtime = runtime();
        for outcome in exchanges(&runtime, vec![input], pieces, 2) {
            prop_assert!(broken_answer(&outcome), "{outcome:?}");
        }
    }

    #[test]
    fn a_well_formed_response_is_read_whole_and_the_next_one_after_it(
        first in (status(), prop::collection::vec(any::<u8>(), 0..600), framing(), prop::collection::vec(header(), 0..4)),
        second in (status(), prop::collection::vec(any::<u8>(), 0..600), framing()),
        pieces in read_sizes(),
    ) {
        let answers = vec![
            encode(first.0, &first.1, &first.2, &first.3),
            encode(second.0, &second.1, &second.2, &[]),
        ];
        let runtime = runtime();
        let outcomes = exchanges(&runtime, answers, pieces, 2);
        let statuses: Vec<u16> = outcomes
            .iter()
            .map(|o| o.map(|s| s.as_u16()))
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(statuses, vec![first.0, second.0]);
    }

    #[test]
    fn a_response_cut_short_is_a_reset(
        response in (status(), prop::collection::vec(any::<u8>(), 1..600), framing()),
        cut in any::<prop::sample::Index>(),
        pieces in read_sizes(),
    ) {
        let whole = encode(response.0, &response.1, &response.2, &[]);
        let mut input = whole.clone();
        input.truncate(cut.index(whole.len()));
        let runtime = runtime();
        let outcomes = exchanges(&runtime, vec![input], pieces, 1);
        prop_assert_eq!(outcomes, vec![Err(ErrorClass::Reset)]);
    }
}
