//! Error classes: what kind of failure a request met, and counts of each.
//!
//! Results count errors per class and endpoint. The classes are the ones an
//! operator acts on differently: the server refused connections (`connect`), did not
//! answer in time (`timeout`), dropped a connection mid-request (`reset`), rejected
//! the request (`http_4xx`), failed (`http_5xx`), answered something that is not
//! HTTP (`protocol`), or the TLS handshake or session failed (`tls`: the results'
//! `tls.failures` count it by cause). Which HTTP or I/O error falls in which class is the load
//! engine's to say (`faultline_loadgen::classify`).

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
    use super::*;

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
