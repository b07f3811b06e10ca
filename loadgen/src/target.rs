//! What the engine sends and where: the target's address and the requests.
//!
//! A [`Target`] is parsed once from an `http://` or `https://` URL and holds what
//! the connection pool needs (the TLS itself is module `tls`'s); a [`Host`] is one
//! of several targets with its weight (`3*http://10.0.0.1:8080`). A [`RequestSpec`]
//! is one endpoint: method, path, headers and body (any of them may hold `{{...}}`
//! placeholders, module `template`), its weight in the mix, and the name its results
//! go under. [`parse_request_arg`] reads the command line's `--request` form.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use tokio::net::TcpStream;

use faultline_results::FileError;

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
    /// Parses and checks an `http[s]://host[:port][/path]` URL. The path and query may
    /// hold `{{...}}` placeholders (module `template`), kept as written.
    pub fn parse(url: &str) -> Result<Target, LoadError> {
        let bad = |reason: &str| LoadError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        // A URI cannot hold `{{`: the scheme and host are checked on their own and the
        // templated path is taken as written (its placeholders compile at start).
        let mut templated_path = None;
        let mut checked = url;
        if crate::template::has_placeholders(url.as_bytes()) {
            let after_scheme = url.find("://").map_or(0, |i| i + 3);
            let start = url[after_scheme..]
                .find(['/', '?'])
                .map(|i| i + after_scheme)
                .filter(|start| !url[..*start].contains("{{"))
                .ok_or_else(|| bad("placeholders go in the path and query, not the host"))?;
            checked = &url[..start];
            templated_path = Some(&url[start..]);
        }
        let uri: Uri = checked.parse().map_err(|e: http::uri::InvalidUri| {
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
        let path_and_query = templated_path
            .or(uri.path_and_query().map(|p| p.as_str()))
            .unwrap_or("/");
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
    /// Its share of the arrivals against the other requests' weights (at least 1).
    pub weight: u32,
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
            weight: 1,
        }
    }
}

/// One of several hosts the requests are spread over, with its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub target: Target,
    /// Its share of the arrivals against the other hosts' weights (at least 1).
    pub weight: u32,
}

impl Host {
    /// Parses `URL` or `N*URL` (weight `N`, e.g. `3*http://10.0.0.1:8080`).
    pub fn parse(text: &str) -> Result<Host, LoadError> {
        let text = text.trim();
        let (weight, url) = match text.split_once('*') {
            Some((weight, url)) if !weight.contains(':') => {
                let weight = weight.trim().parse::<u32>().ok().filter(|w| *w > 0);
                let weight = weight.ok_or_else(|| LoadError::BadUrl {
                    url: text.to_string(),
                    reason: "the weight before `*` must be a whole number from 1, e.g. 3*http://HOST:PORT".into(),
                })?;
                (weight, url.trim())
            }
            _ => (1, text),
        };
        Ok(Host {
            target: Target::parse(url)?,
            weight,
        })
    }

    /// Parses a comma-separated list of hosts (`--target-list`); every host must have
    /// the same path, which the requests' paths go under.
    pub fn parse_list<'a>(
        items: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Host>, LoadError> {
        let hosts: Vec<Host> = items
            .into_iter()
            .flat_map(|item| item.split(','))
            .filter(|item| !item.trim().is_empty())
            .map(Host::parse)
            .collect::<Result<_, _>>()?;
        let first = hosts.first().ok_or_else(|| LoadError::InvalidArgument {
            option: "--target-list",
            reason: "no target URL given".into(),
        })?;
        if let Some(other) = hosts
            .iter()
            .find(|h| h.target.path_and_query != first.target.path_and_query)
        {
            return Err(LoadError::BadUrl {
                url: other.target.url.clone(),
                reason: format!(
                    "every target of a list needs the same path (the first has {:?})",
                    first.target.path_and_query
                ),
            });
        }
        Ok(hosts)
    }
}

/// Parses one `--request` argument, `[weight=N] [METHOD] /path [@BODY_FILE]`, into a
/// request under the target's path with `headers` (the `-H` ones, for every request).
pub fn parse_request_arg(
    text: &str,
    target: &Target,
    headers: &HeaderMap,
) -> Result<RequestSpec, LoadError> {
    let bad = |reason: String| LoadError::InvalidArgument {
        option: "--request",
        reason: format!(
            "{text:?}: {reason} (expected e.g. 'weight=3 POST /api/orders @body.json')"
        ),
    };
    let mut words = words_outside_placeholders(text).into_iter().peekable();
    let mut weight = 1;
    if let Some(value) = words.peek().and_then(|w| w.strip_prefix("weight=")) {
        weight = value
            .parse::<u32>()
            .ok()
            .filter(|w| *w > 0)
            .ok_or_else(|| bad(format!("weight {value:?} is not a whole number from 1")))?;
        words.next();
    }
    let mut method = Method::GET;
    if let Some(word) = words.peek().filter(|w| !w.starts_with('/')) {
        method = parse_method(word).map_err(|e| bad(e.to_string()))?;
        words.next();
    }
    let path = words
        .next()
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| bad("the path, starting with /, is missing".into()))?;
    let body = match words.next() {
        Some(file) if file.starts_with('@') => read_body(Some(file))?,
        Some(other) => return Err(bad(format!("{other:?} is neither the path nor @BODY_FILE"))),
        None => Bytes::new(),
    };
    if let Some(extra) = words.next() {
        return Err(bad(format!("unexpected {extra:?} after the body")));
    }
    let mut headers = headers.clone();
    default_content_type(&mut headers, &body);
    let mut spec = RequestSpec::for_target(&target.with_subpath(path), method, headers, body);
    spec.weight = weight;
    Ok(spec)
}

/// Splits `text` at whitespace, except inside `{{...}}` (`{{randint 1 9}}` is one
/// placeholder of a path).
fn words_outside_placeholders(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = None;
    let mut depth = 0usize;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        if bytes[i..].starts_with(b"{{") {
            depth += 1;
        } else if depth > 0 && i > 0 && bytes[i - 1..].starts_with(b"}}") {
            depth -= 1;
        }
        match (c.is_whitespace() && depth == 0, start) {
            (true, Some(from)) => {
                words.push(&text[from..i]);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(from) = start {
        words.push(&text[from..]);
    }
    words
}

impl Target {
    /// This target with `path` appended to its own path (a base URL's requests).
    pub fn with_subpath(&self, path: &str) -> Target {
        let base = self.path_and_query.trim_end_matches('/');
        Target {
            path_and_query: format!("{base}{path}"),
            ..self.clone()
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
                .map_err(|source| FileError::new("reading the body from", path, source).into()),
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
        let target = Target::parse("http://127.0.0.1:8080/n/{{randint 1 9}}?u={{id}}").unwrap();
        assert_eq!(target.authority, "127.0.0.1:8080");
        assert_eq!(target.path_and_query, "/n/{{randint 1 9}}?u={{id}}");
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
            ("http://{{host}}/", "not the host"),
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

    #[test]
    fn request_arguments_take_a_weight_a_method_a_path_and_a_body_file() {
        let target = Target::parse("http://127.0.0.1:1/api").unwrap();
        let spec = parse_request_arg("/products", &target, &HeaderMap::new()).unwrap();
        assert_eq!((spec.name.as_str(), spec.weight), ("GET /api/products", 1));
        let body = std::env::temp_dir().join(format!("faultline-body-{}.json", std::process::id()));
        std::fs::write(&body, "{}").unwrap();
        let text = format!("weight=3 post /orders/{{{{seq}}}} @{}", body.display());
        let spec = parse_request_arg(&text, &target, &HeaderMap::new()).unwrap();
        std::fs::remove_file(&body).unwrap();
        assert_eq!(spec.name, "POST /api/orders/{{seq}}");
        assert_eq!((spec.weight, &spec.body[..]), (3, &b"{}"[..]));
        let spec = parse_request_arg(
            "PUT /n/{{randint 1 9}}?c={{ choice a,b }}",
            &target,
            &HeaderMap::new(),
        )
        .unwrap();
        assert_eq!(
            spec.path_and_query,
            "/api/n/{{randint 1 9}}?c={{ choice a,b }}"
        );
        for (bad, reason) in [
            ("weight=0 /a", "weight"),
            ("POST", "path"),
            ("GET /a extra", "neither"),
            ("GE:T /a", "method"),
        ] {
            let err = parse_request_arg(bad, &target, &HeaderMap::new()).unwrap_err();
            assert!(
                err.is_usage() && err.to_string().contains(reason),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn host_lists_take_weights_and_need_one_path() {
        let hosts = Host::parse_list(["http://127.0.0.1:1,3*http://127.0.0.1:2"]).unwrap();
        assert_eq!(hosts[0].weight, 1);
        assert_eq!(
            (hosts[1].weight, hosts[1].target.authority.as_str()),
            (3, "127.0.0.1:2")
        );
        let err = Host::parse_list(["http://a:1/x,http://b:1/y"]).unwrap_err();
        assert!(err.to_string().contains("same path"), "{err}");
        let err = Host::parse_list(["0*http://a:1"]).unwrap_err();
        assert!(err.to_string().contains("weight"), "{err}");
    }
}
