//! Which error class a failed request falls in, from what the HTTP client met.
//!
//! The classes themselves ([`ErrorClass`], counted in [`faultline_results::ErrorCounts`])
//! are part of the results contract; how a hyper error, an I/O error or a status
//! maps onto them is the load engine's, here. The classes are the ones an operator
//! acts on differently: refused connections (`connect`), no answer in time
//! (`timeout`), a connection dropped mid-request (`reset`), a rejected request
//! (`http_4xx`), a failure (`http_5xx`), something that is not HTTP (`protocol`),
//! or a failed TLS handshake or session (`tls`: the results' `tls.failures` count
//! it by cause).

use std::error::Error as _;

use faultline_results::ErrorClass;

/// The class of what went wrong, from the error or status the client met.
pub trait Classify: Sized {
    /// The class of a response status, or `None` when the status is a success
    /// (1xx–3xx: redirects are not followed, and count as answers).
    fn of_status(status: http::StatusCode) -> Option<Self>;
    /// The class of an I/O error met while connecting.
    fn of_connect_error(error: &std::io::Error) -> Self;
    /// The class of a hyper error met on an established connection.
    fn of_hyper_error(error: &hyper::Error) -> Self;
    /// The class of an I/O error met on an established connection.
    fn of_io_error(error: &std::io::Error) -> Self;
}

impl Classify for ErrorClass {
    fn of_status(status: http::StatusCode) -> Option<ErrorClass> {
        if status.is_client_error() {
            Some(ErrorClass::Http4xx)
        } else if status.is_server_error() {
            Some(ErrorClass::Http5xx)
        } else {
            None
        }
    }

    fn of_connect_error(_error: &std::io::Error) -> ErrorClass {
        // Whatever stops a connection from being made (refused, unreachable, no
        // route, handshake failure) is the same fact for the operator.
        ErrorClass::Connect
    }

    fn of_hyper_error(error: &hyper::Error) -> ErrorClass {
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

    fn of_io_error(error: &std::io::Error) -> ErrorClass {
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
}
