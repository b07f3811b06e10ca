//! What the engine sends and where: the target's address and the requests.
//!
//! A [`Target`] is parsed once from an `http://` or `https://` URL and holds what
//! the connection pool needs (the TLS itself is module `tls`'s). A [`RequestSpec`] is one
//! endpoint: method, path, headers and body, with the name its results go under.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use tokio::net::TcpStream;

use crate::error::LoadError;

/// The HTTP server under load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, for results and messages.
    pub url: String,
    /// `host:port` to connect to.
    pub authority: String,
    /// The path and query of the URL (`/` when it had none).
    pub path_and_query: String,
    /// The host name, which a TLS server's certificate must be valid for.
    pub host: String,
    /// `https://`: every connection speaks TLS.
    pub https: bool,
}

impl Target {
    /// Parses and checks an `http[s]://host[:port][/path]` URL.
    pub fn parse(url: &str) -> Result<Target, LoadError> {
        let bad = |reason: &str| LoadError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| {
            bad(&format!("{e} (expected e.g. http://127.0.0.1:8080/)"))
        })?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => return Err(bad(&format!("scheme {other:?} is not HTTP"))),
            None => return Err(bad("no scheme: write http://HOST:PORT/PATH")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if port == 0 {
            return Err(bad("port 0 cannot be connected to"));
        }
        let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let path_and_query = if path_and_query.is_empty() {
            "/"
        } else {
            path_and_query
        };
        Ok(Target {
            url: url.to_string(),
            authority: format!("{host}:{port}"),
            path_and_query: path_and_query.to_string(),
            host: host.to_string(),
            https,
        })
    }

    /// Opens one TCP connection to the target (with `TCP_NODELAY`, as every request
    /// is one small write that must not wait for Nagle).
    pub async fn connect(&self) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect(self.authority.as_str()).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Connects once, within `timeout`, to prove the target is reachable before a run.
    pub async fn check_reachable(&self, timeout: Duration) -> Result<SocketAddr, LoadError> {
        let unreachable = |source| LoadError::Unreachable {
            target: self.url.clone(),
            source,
        };
        let stream = tokio::time::timeout(timeout, self.connect())
            .await
            .map_err(|_| {
                unreachable(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no connection within {}",
                        humantime::format_duration(timeout)
                    ),
                ))
            })?
            .map_err(unreachable)?;
        stream.peer_addr().map_err(unreachable)
    }
}

/// One endpoint to load: its requests are built from this template.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// The name results are kept under, e.g. `GET /orders`.
    pub name: String,
    pub method: Method,
    /// Path and query sent in the request line.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RequestSpec {
    /// A request to the target's own path, named `METHOD /path`.
    pub fn for_target(
        target: &Target,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
    ) -> RequestSpec {
        RequestSpec {
            name: format!("{method} {}", target.path_and_query),
            method,
            path_and_query: target.path_and_query.clone(),
            headers,
            body,
        }
    }
}

/// Parses `Name: value` header arguments.
pub fn parse_headers(raw: &[String]) -> Result<HeaderMap, LoadError> {
    let mut headers = HeaderMap::new();
    for line in raw {
        let bad = |reason: String| LoadError::InvalidArgument {
            option: "--header",
            reason: format!("{line:?}: {reason}"),
        };
        let (name, value) = line.split_once(':').ok_or_else(|| {
            bad("expected NAME:VALUE, e.g. \"content-type: application/json\"".into())
        })?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| bad(format!("bad header name: {e}")))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|e| bad(format!("bad header value: {e}")))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Parses a method name (`GET`, `post`, ...).
pub fn parse_method(raw: &str) -> Result<Method, LoadError> {
    Method::from_bytes(raw.to_ascii_uppercase().as_bytes()).map_err(|_| {
        LoadError::InvalidArgument {
            option: "--method",
            reason: format!("{raw:?} is not an HTTP method"),
        }
    })
}

/// Reads a body argument: `@path` reads a file, anything else is the body itself.
pub fn read_body(raw: Option<&str>) -> Result<Bytes, LoadError> {
    match raw {
        None => Ok(Bytes::new()),
        Some(text) => match text.strip_prefix('@') {
            Some(path) => std::fs::read(path)
                .map(Bytes::from)
                .map_err(|source| LoadError::File {
                    action: "reading the body from",
                    path: path.into(),
                    source,
                }),
            None => Ok(Bytes::copy_from_slice(text.as_bytes())),
        },
    }
}

/// Adds `content-type` for a body given without one, as curl does for `-d`.
pub(crate) fn default_content_type(headers: &mut HeaderMap, body: &Bytes) {
    if !body.is_empty() && !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_plain_http_url_parses_with_default_port_and_path() {
        let target = Target::parse("http://localhost").unwrap();
        assert_eq!(target.authority, "localhost:80");
        assert_eq!(target.path_and_query, "/");
        let target = Target::parse("http://127.0.0.1:8080/orders?id=3").unwrap();
        assert_eq!(target.authority, "127.0.0.1:8080");
        assert_eq!(target.path_and_query, "/orders?id=3");
        assert!(!target.https);
    }

    #[test]
    fn an_https_url_parses_with_port_443_and_its_host_name() {
        let target = Target::parse("https://shop.example.com/api").unwrap();
        assert!(target.https);
        assert_eq!(target.authority, "shop.example.com:443");
        assert_eq!(target.host, "shop.example.com");
        assert_eq!(target.path_and_query, "/api");
    }

    #[test]
    fn urls_the_engine_cannot_drive_are_rejected_with_the_reason() {
        for (url, reason) in [
            ("not a url", "invalid"),
            ("localhost:8080", "no scheme"),
            ("wss://example.invalid/", "not HTTP"),
            ("ftp://host/", "not HTTP"),
            ("http://", "empty"),
            ("http://host:0/", "port 0"),
        ] {
            let err = Target::parse(url).unwrap_err();
            assert!(matches!(err, LoadError::BadUrl { .. }), "{url}: {err}");
            assert!(err.to_string().contains(reason), "{url}: {err}");
        }
    }

    #[test]
    fn headers_parse_and_bad_ones_are_named() {
        let headers =
            parse_headers(&["Content-Type: application/json".into(), "x-a:1".into()]).unwrap();
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-a"], "1");
        let err = parse_headers(&["novalue".into()]).unwrap_err();
        assert!(err.to_string().contains("--header"), "{err}");
    }
}
