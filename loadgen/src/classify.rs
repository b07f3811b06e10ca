//! Error classes: what kind of failure a request met.
//!
//! Results count errors per class and endpoint. The classes are the ones an
//! operator acts on differently: the server refused connections (`connect`), did not
//! answer in time (`timeout`), dropped a connection mid-request (`reset`), rejected
//! the request (`http_4xx`), failed (`http_5xx`), answered something that is not
//! HTTP (`protocol`), or the TLS handshake or session failed (`tls`: the results'
//! `tls.failures` count it by cause).

use std::error::Error as _;

use serde::{Deserialize, Serialize};

/// The class of a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    Connect,
    Timeout,
    Reset,
    Http4xx,
    Http5xx,
    Protocol,
    Tls,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 7] = [
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::Reset,
        ErrorClass::Http4xx,
        ErrorClass::Http5xx,
        ErrorClass::Protocol,
        ErrorClass::Tls,
    ];

    /// The name used in results and output.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Reset => "reset",
            ErrorClass::Http4xx => "http_4xx",
            ErrorClass::Http5xx => "http_5xx",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Tls => "tls",
        }
    }

    /// The class of a response status, or `None` when the status is a success
    /// (1xx–3xx: redirects are not followed, and count as answers).
    pub fn of_status(status: http::StatusCode) -> Option<ErrorClass> {
        if status.is_client_error() {
            Some(ErrorClass::Http4xx)
        } else if status.is_server_error() {
            Some(ErrorClass::Http5xx)
        } else {
            None
        }
    }

    /// The class of an I/O error met while connecting.
    pub fn of_connect_error(_error: &std::io::Error) -> ErrorClass {
        // Whatever stops a connection from being made (refused, unreachable, no
        // route, handshake failure) is the same fact for the operator.
        ErrorClass::Connect
    }

    /// The class of a hyper error met on an established connection.
    pub fn of_hyper_error(error: &hyper::Error) -> ErrorClass {
        if error.is_timeout() {
            return ErrorClass::Timeout;
        }
        if error.is_parse() || error.is_parse_status() {
            return ErrorClass::Protocol;
        }
        // An I/O error underneath decides (refused on a reconnect, timed out, reset).
        let mut source = error.source();
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                return ErrorClass::of_io_error(io);
            }
            source = cause.source();
        }
        // Closed, canceled or incomplete: the connection went away under the request.
        ErrorClass::Reset
    }

    /// The class of an I/O error met on an established connection.
    pub fn of_io_error(error: &std::io::Error) -> ErrorClass {
        use std::io::ErrorKind;
        if crate::tls::TlsCause::of_io_error(error).is_some() {
            return ErrorClass::Tls;
        }
        match error.kind() {
            ErrorKind::ConnectionRefused => ErrorClass::Connect,
            ErrorKind::TimedOut | ErrorKind::WouldBlock => ErrorClass::Timeout,
            ErrorKind::InvalidData => ErrorClass::Protocol,
            _ => ErrorClass::Reset,
        }
    }
}

/// Error counts by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    pub connect: u64,
    pub timeout: u64,
    pub reset: u64,
    pub http_4xx: u64,
    pub http_5xx: u64,
    pub protocol: u64,
    /// Absent in results written before TLS was supported.
    #[serde(default)]
    pub tls: u64,
}

impl ErrorCounts {
    /// Counts one error.
    pub fn add(&mut self, class: ErrorClass) {
        *self.get_mut(class) += 1;
    }

    /// The count of one class.
    pub fn get(&self, class: ErrorClass) -> u64 {
        match class {
            ErrorClass::Connect => self.connect,
            ErrorClass::Timeout => self.timeout,
            ErrorClass::Reset => self.reset,
            ErrorClass::Http4xx => self.http_4xx,
            ErrorClass::Http5xx => self.http_5xx,
            ErrorClass::Protocol => self.protocol,
            ErrorClass::Tls => self.tls,
        }
    }

    fn get_mut(&mut self, class: ErrorClass) -> &mut u64 {
        match class {
            ErrorClass::Connect => &mut self.connect,
            ErrorClass::Timeout => &mut self.timeout,
            ErrorClass::Reset => &mut self.reset,
            ErrorClass::Http4xx => &mut self.http_4xx,
            ErrorClass::Http5xx => &mut self.http_5xx,
            ErrorClass::Protocol => &mut self.protocol,
            ErrorClass::Tls => &mut self.tls,
        }
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for class in ErrorClass::ALL {
            *self.get_mut(class) += other.get(class);
        }
    }

    /// All errors together.
    pub fn total(&self) -> u64 {
        ErrorClass::ALL.iter().map(|c| self.get(*c)).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use http::StatusCode;

    use super::*;

    #[test]
    fn statuses_are_classified_by_their_hundreds() {
        assert_eq!(ErrorClass::of_status(StatusCode::OK), None);
        assert_eq!(ErrorClass::of_status(StatusCode::MOVED_PERMANENTLY), None);
        assert_eq!(
            ErrorClass::of_status(StatusCode::NOT_FOUND),
            Some(ErrorClass::Http4xx)
        );
        assert_eq!(
            ErrorClass::of_status(StatusCode::TOO_MANY_REQUESTS),
            Some(ErrorClass::Http4xx)
        );
        assert_eq!(
            ErrorClass::of_status(StatusCode::INTERNAL_SERVER_ERROR),
            Some(ErrorClass::Http5xx)
        );
        assert_eq!(
            ErrorClass::of_status(StatusCode::SERVICE_UNAVAILABLE),
            Some(ErrorClass::Http5xx)
        );
    }

    #[test]
    fn io_errors_are_classified_by_kind() {
        let class = |kind| ErrorClass::of_io_error(&Error::new(kind, "x"));
        assert_eq!(class(ErrorKind::ConnectionRefused), ErrorClass::Connect);
        assert_eq!(class(ErrorKind::ConnectionReset), ErrorClass::Reset);
        assert_eq!(class(ErrorKind::BrokenPipe), ErrorClass::Reset);
        assert_eq!(class(ErrorKind::UnexpectedEof), ErrorClass::Reset);
        assert_eq!(class(ErrorKind::TimedOut), ErrorClass::Timeout);
        assert_eq!(
            ErrorClass::of_connect_error(&Error::other("x")),
            ErrorClass::Connect
        );
    }

    #[test]
    fn error_counts_add_merge_and_total() {
        let mut a = ErrorCounts::default();
        a.add(ErrorClass::Timeout);
        a.add(ErrorClass::Http5xx);
        let mut b = ErrorCounts::default();
        b.add(ErrorClass::Timeout);
        a.merge(&b);
        assert_eq!(a.timeout, 2);
        assert_eq!(a.http_5xx, 1);
        assert_eq!(a.total(), 3);
    }
}
