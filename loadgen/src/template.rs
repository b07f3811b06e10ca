//! Request templates: values filled in per request in the path, headers and body.
//!
//! `{{seq}}` (the arrival's number), `{{uuid}}` (random, v4), `{{randint 1 100}}`
//! (both bounds included), `{{choice a,b,c}}`, `{{now_ms}}` (Unix milliseconds),
//! `{{env NAME}}` (read once at start) and `{{NAME}}` (a column of the feeder, module
//! `feeder`); text in double quotes is sent as written, so `{{"{{"}}` is a literal
//! `{{` ([`escape_literal`] escapes a recorded request). A [`Template`] is compiled once at start, so an unknown function, a
//! missing column, a bad range or an unset variable is a usage error naming the
//! request, the part and the column before anything is sent. The engine keeps a request
//! without `{{` on its pre-encoded path; a templated one (`CompiledRequest`) is
//! rendered per send into the worker's reused buffers.

use std::io::Write as _;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, Method, Request, Uri};
use http_body_util::Full;
use rand::{rngs::SmallRng, Rng};

use crate::{error::LoadError, target::RequestSpec};

/// `text` with every `{{` escaped as `{{"{{"}}`, so its template renders it as written.
pub fn escape_literal(text: &str) -> String {
    text.replace("{{", "{{\"{{\"}}")
}

/// Whether `text` holds any placeholder (and so needs compiling and rendering).
pub fn has_placeholders(text: &[u8]) -> bool {
    text.windows(2).any(|pair| pair == b"{{")
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// Text sent as written (and `{{env NAME}}`, resolved at start).
    Literal(Vec<u8>),
    Seq,
    Uuid,
    RandInt(i64, i64),
    Choice(Vec<String>),
    NowMs,
    /// A feeder column, by its index in the row.
    Column(usize),
}

/// Where a rendered value goes, which decides what must be escaped in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// Percent-encode what may not appear in a request line (space, controls, `%`
    /// and non-ASCII), so a feeder value cannot break the request.
    Path,
    /// A line break would end the header: it becomes a space.
    Header,
    Body,
}

/// A compiled template: literals and placeholders in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// What placeholders of one request are filled with.
pub(crate) struct Values<'a> {
    pub seq: u64,
    /// The feeder row this request took (`None` when it uses no column).
    pub row: Option<&'a [String]>,
    pub rng: &'a mut SmallRng,
}

const FUNCTIONS: &str =
    "seq, uuid, randint LOW HIGH, choice a,b,c, now_ms, env NAME, \"text\" as written";

impl Template {
    /// Compiles `text`; `place` names it in errors (e.g. `request 1 (GET /) path`),
    /// `columns` are the feeder's (empty without a feeder).
    pub fn compile(text: &str, place: &str, columns: &[String]) -> Result<Template, LoadError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest.as_bytes()[..open].to_vec()));
            }
            let offset = text.len() - rest.len() + open;
            let bad = |reason: String| LoadError::Template {
                place: place.to_string(),
                column: text[..offset].chars().count() + 1,
                reason,
            };
            let inner = &rest[open + 2..];
            let close = inner
                .find("}}")
                .ok_or_else(|| bad("`{{` is not closed by `}}`".into()))?;
            parts.push(placeholder(inner[..close].trim(), columns).map_err(bad)?);
            rest = &inner[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.as_bytes().to_vec()));
        }
        Ok(Template { parts })
    }

    /// Whether rendering needs a feeder row.
    pub(crate) fn uses_row(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Column(_)))
    }

    fn render(&self, values: &mut Values<'_>, escape: Escape, out: &mut Vec<u8>) {
        for part in &self.parts {
            let start = out.len();
            match part {
                Part::Literal(bytes) => {
                    out.extend_from_slice(bytes);
                    continue;
                }
                Part::Seq => push_decimal(out, values.seq),
                Part::RandInt(low, high) => {
                    let value = values.rng.random_range(*low..=*high);
                    if value < 0 {
                        out.push(b'-');
                    }
                    push_decimal(out, value.unsigned_abs());
                }
                Part::NowMs => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    push_decimal(out, u64::try_from(now.as_millis()).unwrap_or(u64::MAX));
                }
                Part::Uuid => {
                    let uuid = uuid::Builder::from_random_bytes(values.rng.random()).into_uuid();
                    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                    out.extend_from_slice(uuid.hyphenated().encode_lower(&mut text).as_bytes());
                }
                Part::Choice(options) => {
                    let chosen = &options[values.rng.random_range(0..options.len())];
                    out.extend_from_slice(chosen.as_bytes());
                }
                Part::Column(index) => {
                    let value = values.row.and_then(|row| row.get(*index));
                    out.extend_from_slice(value.map_or(&b""[..], |v| v.as_bytes()));
                }
            }
            escape_from(out, start, escape);
        }
    }
}

/// Appends `value` in decimal, as `write!` would, without the formatting machinery:
/// numbers are most of what a templated request fills in, once or twice per request.
fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Escapes `out[start..]` (one filled-in value) for where it goes.
fn escape_from(out: &mut Vec<u8>, start: usize, escape: Escape) {
    match escape {
        Escape::Body => {}
        Escape::Header => {
            for byte in &mut out[start..] {
                if matches!(*byte, b'\r' | b'\n') {
                    *byte = b' ';
                }
            }
        }
        Escape::Path => {
            let unsafe_byte = |b: u8| b <= b' ' || b >= 0x7f || b == b'%';
            if out[start..].iter().any(|&b| unsafe_byte(b)) {
                let value = out.split_off(start);
                for byte in value {
                    if unsafe_byte(byte) {
                        _ = write!(out, "%{byte:02X}");
                    } else {
                        out.push(byte);
                    }
                }
            }
        }
    }
}

/// Compiles what is between `{{` and `}}`.
fn placeholder(inner: &str, columns: &[String]) -> Result<Part, String> {
    if let Some(text) = inner.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return Ok(Part::Literal(text.as_bytes().to_vec()));
    }
    let (name, args) = inner
        .split_once(char::is_whitespace)
        .map_or((inner, ""), |(name, args)| (name, args.trim()));
    let no_args = |part: Part| {
        if args.is_empty() {
            Ok(part)
        } else {
            Err(format!("{name} takes no arguments, got {args:?}"))
        }
    };
    match name {
        "seq" => no_args(Part::Seq),
        "uuid" => no_args(Part::Uuid),
        "now_ms" => no_args(Part::NowMs),
        "randint" => {
            let bounds: Vec<&str> = args.split_whitespace().collect();
            let [low, high] = bounds[..] else {
                return Err(format!("randint takes two integers, got {args:?}"));
            };
            let number = |text: &str| {
                text.parse::<i64>()
                    .map_err(|_| format!("randint: {text:?} is not an integer"))
            };
            let (low, high) = (number(low)?, number(high)?);
            if low > high {
                return Err(format!(
                    "bad range randint {low} {high}: the low bound comes first"
                ));
            }
            Ok(Part::RandInt(low, high))
        }
        "choice" => {
            let options: Vec<String> = args.split(',').map(|o| o.trim().to_string()).collect();
            if options.iter().any(String::is_empty) {
                return Err(format!(
                    "choice takes a comma-separated list of values, got {args:?}"
                ));
            }
            Ok(Part::Choice(options))
        }
        "env" => {
            if args.is_empty() || args.contains(char::is_whitespace) {
                return Err(format!("env takes one variable name, got {args:?}"));
            }
            std::env::var(args)
                .map(|value| Part::Literal(value.into_bytes()))
                .map_err(|_| format!("environment variable {args} is not set"))
        }
        _ if args.is_empty() => match columns.iter().position(|c| c == name) {
            Some(index) => Ok(Part::Column(index)),
            None if columns.is_empty() => Err(format!(
                "{name:?} is no function ({FUNCTIONS}) and there is no feeder for a column"
            )),
            None => Err(format!(
                "{name:?} is no function ({FUNCTIONS}) and no feeder column ({})",
                columns.join(", ")
            )),
        },
        _ => Err(format!(
            "unknown function {name:?} (functions: {FUNCTIONS})"
        )),
    }
}

/// A request with placeholders, compiled: rendered per send.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRequest {
    method: Method,
    path: Template,
    headers: Vec<(HeaderName, Template)>,
    body: Template,
    /// Whether the request takes a feeder row.
    pub uses_row: bool,
}

impl CompiledRequest {
    /// Compiles `spec` if it has placeholders (`None`: it is sent as it is).
    /// `headers` are the spec's with the engine's defaults added; `number` counts
    /// requests from 1 for messages.
    pub(crate) fn compile(
        spec: &RequestSpec,
        headers: &HeaderMap,
        number: usize,
        columns: &[String],
    ) -> Result<Option<CompiledRequest>, LoadError> {
        let templated = has_placeholders(spec.path_and_query.as_bytes())
            || headers.values().any(|v| has_placeholders(v.as_bytes()))
            || has_placeholders(&spec.body);
        if !templated {
            return Ok(None);
        }
        let place = |part: &str| format!("request {number} ({}) {part}", spec.name);
        let path = Template::compile(&spec.path_and_query, &place("path"), columns)?;
        let mut compiled_headers = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            let text = value.to_str().map_err(|_| LoadError::Template {
                place: place(&format!("header {name}")),
                column: 1,
                reason: "the value is not text".into(),
            })?;
            let template = Template::compile(text, &place(&format!("header {name}")), columns)?;
            compiled_headers.push((name.clone(), template));
        }
        // A body that is not UTF-8 (a binary file) is sent as it is.
        let body = match std::str::from_utf8(&spec.body) {
            Ok(text) => Template::compile(text, &place("body"), columns)?,
            Err(_) => Template {
                parts: vec![Part::Literal(spec.body.to_vec())],
            },
        };
        let uses_row = path.uses_row()
            || body.uses_row()
            || compiled_headers.iter().any(|(_, t)| t.uses_row());
        Ok(Some(CompiledRequest {
            method: spec.method.clone(),
            path,
            headers: compiled_headers,
            body,
            uses_row,
        }))
    }

    pub(crate) fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }

    /// Renders the whole HTTP/1.1 request into `out` (cleared first); `body` is a
    /// scratch buffer, as the length goes before the body.
    pub(crate) fn encode_http1(
        &self,
        values: &mut Values<'_>,
        body: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) {
        body.clear();
        self.body.render(values, Escape::Body, body);
        out.clear();
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        self.path.render(values, Escape::Path, out);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &self.headers {
            // The length is the rendered body's, written below.
            if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            value.render(values, Escape::Header, out);
            out.extend_from_slice(b"\r\n");
        }
        let expects_body = matches!(self.method, Method::POST | Method::PUT | Method::PATCH);
        if !body.is_empty() || expects_body {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, body.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }

    /// Renders an HTTP/2 request to `scheme_authority` (`http://host:port`); `None`
    /// when the filled-in path is not a valid URI.
    pub(crate) fn build_http2(
        &self,
        values: &mut Values<'_>,
        scheme_authority: &str,
    ) -> Option<Request<Full<Bytes>>> {
        let mut uri = scheme_authority.as_bytes().to_vec();
        self.path.render(values, Escape::Path, &mut uri);
        let uri = Uri::from_maybe_shared(Bytes::from(uri)).ok()?;
        let mut body = Vec::new();
        self.body.render(values, Escape::Body, &mut body);
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        for (name, template) in &self.headers {
            let mut value = Vec::new();
            template.render(values, Escape::Header, &mut value);
            let value = http::HeaderValue::from_bytes(&value).ok()?;
            request.headers_mut().append(name.clone(), value);
        }
        Some(request)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::SeedableRng as _;

    use super::*;

    /// Runs `f` with the values of arrival 7 and `row`, from a seeded RNG.
    fn with_values<T>(row: Option<&[String]>, f: impl FnOnce(&mut Values<'_>) -> T) -> T {
        let mut rng = SmallRng::seed_from_u64(1);
        f(&mut Values {
            seq: 7,
            row,
            rng: &mut rng,
        })
    }

    fn render(template: &Template, row: Option<&[String]>) -> String {
        let mut out = Vec::new();
        with_values(row, |values| {
            template.render(values, Escape::Body, &mut out)
        });
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_function_and_a_column_fill_in() {
        let columns = ["user".to_string(), "sku".to_string()];
        let template = Template::compile(
            "/u/{{ user }}/{{seq}}?n={{randint 5 5}}&c={{choice x}}&t={{now_ms}}&id={{uuid}}",
            "test",
            &columns,
        )
        .unwrap();
        let row = ["ann".to_string(), "s1".to_string()];
        let text = render(&template, Some(&row));
        assert!(text.starts_with("/u/ann/7?n=5&c=x&t=1"), "{text}");
        let uuid = text.rsplit("id=").next().unwrap();
        assert_eq!(uuid.len(), 36, "{text}");
        assert_eq!(&uuid[14..15], "4", "a v4 UUID: {text}");
        assert!(template.uses_row());
    }

    #[test]
    fn numbers_render_as_display_writes_them() {
        for value in [0, 7, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, value);
            assert_eq!(out, format!("x{value}").into_bytes());
        }
        let template = Template::compile("{{randint -5 -5}} {{randint 0 0}}", "test", &[]).unwrap();
        assert_eq!(render(&template, None), "-5 0");
    }

    #[test]
    fn escaped_text_renders_as_written_whatever_braces_it_holds() {
        for text in [
            "{{seq}}",
            "a {{ b }} c",
            "{{{x}}}",
            "{{{{",
            "}} {{",
            "{\"k\": {}}",
            "plain",
        ] {
            let template = Template::compile(&escape_literal(text), "test", &[]).unwrap();
            assert_eq!(render(&template, None), text);
            assert!(!template.uses_row());
        }
        let quoted = Template::compile(r#"a{{ "{{x}" }}b"#, "test", &[]).unwrap();
        assert_eq!(render(&quoted, None), "a{{x}b");
    }

    #[test]
    fn env_is_read_once_at_compile_time() {
        // PATH is set in every test environment.
        let path = std::env::var("PATH").unwrap();
        let template = Template::compile("{{env PATH}}", "test", &[]).unwrap();
        assert_eq!(template.parts, [Part::Literal(path.into_bytes())]);
        let err = Template::compile("{{env FAULTLINE_SURELY_UNSET_VAR}}", "test", &[]).unwrap_err();
        assert!(err.to_string().contains("not set"), "{err}");
    }

    #[test]
    fn bad_templates_are_usage_errors_naming_the_place_and_column() {
        let columns = ["user".to_string()];
        for (text, column, reason) in [
            ("/a/{{nope 1}}", 4, "unknown function \"nope\""),
            ("/ab/{{sku}}", 5, "no feeder column (user)"),
            ("x{{randint 5 1}}", 2, "bad range randint 5 1"),
            ("{{randint 1}}", 1, "two integers"),
            ("{{randint a 2}}", 1, "not an integer"),
            ("é{{choice a,,b}}", 2, "comma-separated"),
            ("{{seq 3}}", 1, "no arguments"),
            ("ok {{uuid", 4, "not closed"),
        ] {
            let err = Template::compile(text, "request 2 (POST /o) body", &columns).unwrap_err();
            assert!(err.is_usage(), "{text}: {err}");
            let message = err.to_string();
            assert!(
                message.contains("request 2 (POST /o) body")
                    && message.contains(&format!("column {column}:"))
                    && message.contains(reason),
                "{text}: {message}"
            );
        }
        let err = Template::compile("{{user}}", "request 1 (GET /) path", &[]).unwrap_err();
        assert!(err.to_string().contains("no feeder"), "{err}");
    }

    #[test]
    fn filled_in_values_cannot_break_the_request_line_or_a_header() {
        let columns = ["v".to_string()];
        let template = Template::compile("/q?{{v}}", "test", &columns).unwrap();
        let row = ["a b\r\n%".to_string()];
        let (mut path, mut header) = (Vec::new(), Vec::new());
        with_values(Some(&row), |values| {
            template.render(values, Escape::Path, &mut path);
            template.render(values, Escape::Header, &mut header);
        });
        assert_eq!(path, b"/q?a%20b%0D%0A%25");
        assert_eq!(header, b"/q?a b  %");
    }

    #[test]
    fn a_templated_request_encodes_with_the_rendered_length() {
        let spec = RequestSpec {
            name: "POST /o/{{id}}".into(),
            method: Method::POST,
            path_and_query: "/o/{{id}}".into(),
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"{\"id\":\"{{id}}\"}"),
            weight: 1,
        };
        let columns = ["id".to_string()];
        let compiled = CompiledRequest::compile(&spec, &HeaderMap::new(), 1, &columns)
            .unwrap()
            .unwrap();
        assert!(compiled.uses_row);
        let row = ["42".to_string()];
        let (mut body, mut out) = (Vec::new(), Vec::new());
        with_values(Some(&row), |values| {
            compiled.encode_http1(values, &mut body, &mut out)
        });
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /o/42 HTTP/1.1\r\ncontent-length: 11\r\n\r\n{\"id\":\"42\"}"
        );
        let plain = RequestSpec {
            path_and_query: "/o".into(),
            body: Bytes::new(),
            ..spec
        };
        assert!(
            CompiledRequest::compile(&plain, &HeaderMap::new(), 1, &columns)
                .unwrap()
                .is_none()
        );
    }
}
