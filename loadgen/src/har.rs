//! HAR import: a browser recording (`.har`, HAR 1.2 as Chrome, Firefox and Safari
//! export it) turned into the project's requests file ([`RequestsFile`]), so
//! `faultline load --har FILE` replays a real site flow and `faultline har FILE -o
//! requests.toml` writes that file for a user to edit and run with `--requests`.
//!
//! How the parts fit: [`convert`] reads each `log.entries[i]` (method, URL, headers,
//! `postData`) in recorded order, drops what a load test of the site should not send
//! (the filters of [`HarFilter`]: third-party hosts, static assets, `--har-exclude`
//! globs, WebSockets), cleans the headers (pseudo-headers of h2 recordings, hop-by-hop
//! and browser-only ones, `cookie` unless asked), and keeps the rest as
//! [`RequestEntry`]s, the very entries `--requests` parses. So a run from the HAR and a
//! run from its saved file are the same run: [`Conversion::to_toml`] writes the entries,
//! and [`RequestsFile::read`] reads them back unchanged. Identical requests (a page that
//! polls) become one entry whose weight counts them, so the mix keeps the recorded
//! proportions and each request is recorded under one name.
//!
//! Each request keeps the origin it was recorded at ([`Conversion::origins`]): a
//! recording spanning `www.` and `api.` sends each request to its own host, unless a
//! target URL is given. [`Conversion::steps`] keeps the recorded order and the think
//! times between entries, which `--har-replay ordered` replays (module `replay`
//! reads the entries' times). A `{{` in a recorded request is escaped (`{{"{{"}}`,
//! module `template`), so it is sent as recorded rather than read as a placeholder.
//!
//! Bad input (not JSON, no `log.entries`, an entry without a method or URL, a base64
//! body that does not decode, a scheme other than HTTP, a `startedDateTime` that is no
//! time) is a usage error naming the file and `log.entries[i]`. Entries that are fine
//! but cannot be replayed as written (a binary body, a WebSocket) are dropped and
//! listed, as every dropped entry is, in [`Conversion::dropped`].

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    path::Path,
};

use base64::Engine as _;
use serde::Deserialize;

use crate::{
    error::LoadError,
    scenario::{RequestEntry, RequestsFile},
    target::{parse_method, Host, Target},
    template::escape_literal,
};

mod replay;

pub use replay::ReplayStep;

/// Which recorded entries and headers to keep: the `--har-*` options, shared by
/// `faultline load --har` and `faultline har`.
///
/// No argument group of its own (`group(skip)`), so both commands can flatten it.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct HarFilter {
    /// HAR: keep entries to these hosts too (comma-separated; `*.example.com` takes its
    /// subdomains). Only the first entry's host is kept by default: the others are
    /// third parties (analytics, CDNs, fonts). Each kept entry goes to the host it was
    /// recorded at, unless a target URL is given (then every one goes to it).
    #[arg(
        long = "har-include-hosts",
        value_name = "HOSTS",
        value_delimiter = ',',
        requires = "har"
    )]
    pub include_hosts: Vec<String>,

    /// HAR: drop entries whose URL or response content type matches this glob (`*`
    /// matches anything), e.g. '*/analytics/*' or 'text/html'. Repeatable.
    #[arg(long = "har-exclude", value_name = "GLOB", requires = "har")]
    pub exclude: Vec<String>,

    /// HAR: keep static assets (scripts, stylesheets, images, fonts, media), which are
    /// dropped by default as a CDN or cache usually serves them.
    #[arg(long = "har-include-static", requires = "har")]
    pub include_static: bool,

    /// HAR: keep the recorded `cookie` headers. Off by default, as a recorded session
    /// has usually expired; `authorization` is always kept. Pseudo-headers (`:path`),
    /// hop-by-hop headers, `host`, `content-length`, `accept-encoding` (the engine does
    /// not decode), `sec-*` and cache validators are never kept.
    #[arg(long = "har-cookies", requires = "har")]
    pub cookies: bool,
}

/// How `faultline load --har` replays a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HarReplay {
    /// The kept requests as a weighted mix, each weighing as often as it was recorded.
    #[default]
    Mix,
    /// Each connection a virtual user that sends the kept entries in recorded order,
    /// waiting the recorded think time before each, and starts over at the end.
    Ordered,
}

/// A recording converted: the requests file and what was left out.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// `scheme://host[:port]` of the first kept entry: the target when none is given.
    pub origin: String,
    pub requests: RequestsFile,
    /// Per request, the `scheme://host[:port]` it was recorded at.
    pub origins: Vec<String>,
    /// The kept entries in recorded order, each as its request and the think time
    /// recorded before it: what `--har-replay ordered` sends.
    pub steps: Vec<ReplayStep>,
    /// The `log.entries` indexes each request was made from (more than one when
    /// identical requests were merged into one weight).
    pub sources: Vec<Vec<usize>>,
    /// Every entry left out, in recorded order.
    pub dropped: Vec<Dropped>,
}

/// An entry left out of the requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Its index in `log.entries`.
    pub index: usize,
    /// What kind of entry it is (`third-party`, `static`, ...), for the summary.
    pub kind: &'static str,
    /// Why, in words.
    pub reason: String,
}

/// Reads and converts the HAR file at `path`.
pub fn read(path: &Path, filter: &HarFilter) -> Result<Conversion, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::InvalidArgument {
        option: "HAR",
        reason: format!("{}: cannot be read: {e}", path.display()),
    })?;
    convert(&text, filter, &path.display().to_string())
}

/// Converts HAR text; `source` names it in errors.
pub fn convert(text: &str, filter: &HarFilter, source: &str) -> Result<Conversion, LoadError> {
    let bad = |reason: String| LoadError::InvalidArgument {
        option: "HAR",
        reason: format!("{source}: {reason}"),
    };
    let document: HarDocument = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => bad(format!("not a HAR: {e}")),
        _ => bad(format!("not JSON: {e}")),
    })?;
    let entries = document
        .log
        .and_then(|log| log.entries)
        .ok_or_else(|| bad("not a HAR: it has no log.entries array".into()))?;
    let count = entries.len();
    let mut timings = replay::Timings::default();
    let mut converter = Converter {
        filter,
        site_host: None,
        namesakes: HashMap::new(),
        conversion: Conversion {
            origin: String::new(),
            requests: RequestsFile {
                requests: Vec::new(),
            },
            origins: Vec::new(),
            steps: Vec::new(),
            sources: Vec::new(),
            dropped: Vec::new(),
        },
    };
    for (index, entry) in entries.into_iter().enumerate() {
        // Each entry on its own, so a bad one is named by its index.
        let entry: HarEntry =
            serde_json::from_value(entry).map_err(|e| bad(format!("log.entries[{index}]: {e}")))?;
        match converter.entry(&entry) {
            Ok((request, origin)) => {
                let kept = converter.keep(index, request, origin);
                let recorded = replay::Recorded::of(entry.started.as_deref(), entry.time)
                    .map_err(|reason| bad(format!("log.entries[{index}]: {reason}")))?;
                converter
                    .conversion
                    .steps
                    .push(timings.step(kept, recorded));
            }
            Err(Skip::Drop(kind, reason)) => converter.conversion.dropped.push(Dropped {
                index,
                kind,
                reason,
            }),
            Err(Skip::Bad(reason)) => return Err(bad(format!("log.entries[{index}]: {reason}"))),
        }
    }
    let conversion = converter.conversion;
    if conversion.requests.requests.is_empty() {
        return Err(bad(format!(
            "no entry left to send of {count} ({})",
            conversion.dropped_summary()
        )));
    }
    Ok(conversion)
}

/// A HAR file down to its entries, each read on its own ([`HarEntry`]).
#[derive(Debug, Deserialize)]
struct HarDocument {
    log: Option<HarLog>,
}

#[derive(Debug, Deserialize)]
struct HarLog {
    entries: Option<Vec<serde_json::Value>>,
}

/// The parts of a HAR entry the conversion reads; the rest (timings, cache, ...) is
/// ignored, and absent fields are reported by [`Converter::entry`], with the index.
#[derive(Debug, Deserialize)]
struct HarEntry {
    /// When the request started (ISO 8601), and how long it took to its response's
    /// end (ms): the think times of an ordered replay.
    #[serde(rename = "startedDateTime")]
    started: Option<String>,
    time: Option<f64>,
    request: Option<HarRequest>,
    response: Option<HarResponse>,
    /// Chrome's own field: `document`, `fetch`, `script`, `image`, ...
    #[serde(rename = "_resourceType")]
    resource_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HarRequest {
    method: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: Vec<HarHeader>,
    #[serde(rename = "postData")]
    post_data: Option<HarPostData>,
}

#[derive(Debug, Deserialize)]
struct HarHeader {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
struct HarPostData {
    #[serde(rename = "mimeType")]
    mime_type: Option<String>,
    text: Option<String>,
    /// `base64` for a binary body (not in HAR 1.2, but some tools write it).
    encoding: Option<String>,
    #[serde(default)]
    params: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct HarResponse {
    content: Option<HarContent>,
}

#[derive(Debug, Deserialize)]
struct HarContent {
    #[serde(rename = "mimeType")]
    mime_type: Option<String>,
}

/// Why an entry is not kept: left out on purpose, or bad input that stops the import.
enum Skip {
    /// Left out: its kind (for the summary) and why.
    Drop(&'static str, String),
    Bad(String),
}

/// The state of one conversion: the site's host (the first entry's) and the result.
struct Converter<'a> {
    filter: &'a HarFilter,
    site_host: Option<String>,
    /// The kept requests of each method and path, by index: where an identical
    /// request or a namesake is looked for.
    namesakes: HashMap<(String, String), Vec<usize>>,
    conversion: Conversion,
}

/// Headers never replayed, lower-case: set by the engine itself (`host`,
/// `content-length`), hop-by-hop (RFC 9110 7.6.1), an encoding the engine would not
/// decode, and browser cache validators, which would turn answers into 304s.
const DROPPED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "accept-encoding",
    "upgrade-insecure-requests",
    "priority",
    "purpose",
    "if-none-match",
    "if-modified-since",
];

/// Chrome's resource types of static assets.
const STATIC_RESOURCE_TYPES: &[&str] = &[
    "script",
    "stylesheet",
    "image",
    "font",
    "media",
    "manifest",
    "texttrack",
];

/// Path endings of static assets, for recordings without `_resourceType`.
const STATIC_EXTENSIONS: &[&str] = &[
    "js", "mjs", "css", "map", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "avif", "bmp",
    "woff", "woff2", "ttf", "otf", "eot", "mp4", "webm", "mp3", "ogg", "wav", "wasm",
];

impl Converter<'_> {
    /// The entry as a request to keep, with the origin it was recorded at, or why not.
    fn entry(&mut self, entry: &HarEntry) -> Result<(RequestEntry, String), Skip> {
        let request = entry
            .request
            .as_ref()
            .ok_or_else(|| Skip::Bad("no request".into()))?;
        let method = request
            .method
            .as_deref()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| Skip::Bad("request.method is missing".into()))?;
        let method = parse_method(method)
            .map_err(|_| Skip::Bad(format!("request.method {method:?} is not an HTTP method")))?;
        let url = request
            .url
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Skip::Bad("request.url is missing".into()))?;
        let url = Url::parse(url)?;
        let site = self.site_host.get_or_insert_with(|| url.host.clone());
        if url.host != *site && !self.filter.includes_host(&url.host) {
            return Err(Skip::Drop(
                "third-party",
                format!("third-party host {} (see --har-include-hosts)", url.host),
            ));
        }
        let response_type = entry
            .response
            .as_ref()
            .and_then(|r| r.content.as_ref())
            .and_then(|c| c.mime_type.as_deref())
            .unwrap_or("")
            .to_ascii_lowercase();
        if let Some(glob) = self
            .filter
            .exclude
            .iter()
            .find(|glob| glob_matches(glob, url.text) || glob_matches(glob, &response_type))
        {
            return Err(Skip::Drop(
                "excluded",
                format!("matches --har-exclude {glob}"),
            ));
        }
        if !self.filter.include_static {
            if let Some(kind) = static_asset(entry.resource_type.as_deref(), &response_type, &url) {
                return Err(Skip::Drop(
                    "static",
                    format!("static asset ({kind}; see --har-include-static)"),
                ));
            }
        }
        let mut headers = self.headers(&request.headers)?;
        let body = match &request.post_data {
            Some(post_data) => body(post_data, &mut headers)?,
            None => None,
        };
        // Sent as recorded: a `{{` is escaped, not read as a placeholder.
        for value in headers.values_mut() {
            *value = escape_literal(value);
        }
        let origin = url.origin();
        if self.conversion.origin.is_empty() {
            self.conversion.origin = origin.clone();
        }
        let request = RequestEntry {
            method: method.to_string(),
            path: escape_literal(&url.path_and_query),
            headers,
            body: body.as_deref().map(escape_literal),
            name: None,
            weight: None,
        };
        Ok((request, origin))
    }

    /// The headers to replay, lower-case; repeated ones joined as HTTP joins them.
    fn headers(&self, recorded: &[HarHeader]) -> Result<BTreeMap<String, String>, Skip> {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for header in recorded {
            let name = header.name.trim().to_ascii_lowercase();
            let browser_only = name.starts_with(':') || name.starts_with("sec-");
            if browser_only
                || DROPPED_HEADERS.contains(&name.as_str())
                || (name == "cookie" && !self.filter.cookies)
            {
                continue;
            }
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_str(header.value.trim()).is_err()
            {
                return Err(Skip::Bad(format!(
                    "header {:?} is not a valid HTTP header",
                    header.name
                )));
            }
            let value = header.value.trim();
            headers
                .entry(name.clone())
                .and_modify(|joined| {
                    // h2 recordings split cookies into one header each (RFC 9113 8.2.3).
                    joined.push_str(if name == "cookie" { "; " } else { ", " });
                    joined.push_str(value);
                })
                .or_insert_with(|| value.to_string());
        }
        Ok(headers)
    }

    /// Keeps `request`, made from entry `index` recorded at `origin`: merged into an
    /// identical earlier one (its weight counts them), or named apart from an earlier
    /// one of the same method and path, so results keep each under its own name.
    /// Returns the index of the request it is.
    fn keep(&mut self, index: usize, mut request: RequestEntry, origin: String) -> usize {
        let kept = &mut self.conversion.requests.requests;
        let origins = &self.conversion.origins;
        let namesakes = self
            .namesakes
            .entry((request.method.clone(), request.path.clone()))
            .or_default();
        if let Some(&same) = namesakes
            .iter()
            .find(|&&k| same_request(&kept[k], &request) && origins[k] == origin)
        {
            kept[same].weight = Some(kept[same].weight.unwrap_or(1) + 1);
            self.conversion.sources[same].push(index);
            return same;
        }
        if !namesakes.is_empty() {
            request.name = Some(format!(
                "{} {} ({})",
                request.method,
                request.path,
                namesakes.len() + 1
            ));
        }
        namesakes.push(kept.len());
        kept.push(request);
        self.conversion.origins.push(origin);
        self.conversion.sources.push(vec![index]);
        kept.len() - 1
    }
}

fn same_request(a: &RequestEntry, b: &RequestEntry) -> bool {
    (&a.method, &a.path, &a.headers, &a.body) == (&b.method, &b.path, &b.headers, &b.body)
}

impl HarFilter {
    /// Whether `--har-include-hosts` keeps `host`.
    fn includes_host(&self, host: &str) -> bool {
        self.include_hosts.iter().any(|pattern| {
            let pattern = pattern.trim().to_ascii_lowercase();
            match pattern.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.')),
                None => host == pattern,
            }
        })
    }
}

/// The body of `postData` as text, with its `content-type` header when the
/// recording's headers lack one.
fn body(
    post_data: &HarPostData,
    headers: &mut BTreeMap<String, String>,
) -> Result<Option<String>, Skip> {
    let text = match (&post_data.text, post_data.params.is_empty()) {
        (Some(text), _) => text,
        (None, true) => return Ok(None),
        (None, false) => {
            return Err(Skip::Drop(
                "form",
                "postData has params but no text (write the body in the saved file)".into(),
            ))
        }
    };
    let text = match post_data.encoding.as_deref() {
        Some("base64") => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| Skip::Bad(format!("request.postData.text is not base64: {e}")))?;
            String::from_utf8(bytes).map_err(|_| {
                Skip::Drop(
                    "binary",
                    "a binary body, and a requests file holds text bodies".into(),
                )
            })?
        }
        Some(other) => {
            return Err(Skip::Bad(format!(
                "request.postData.encoding {other:?} is not base64"
            )))
        }
        None => text.clone(),
    };
    if let Some(mime) = post_data.mime_type.as_deref().filter(|m| !m.is_empty()) {
        headers
            .entry("content-type".into())
            .or_insert_with(|| mime.to_string());
    }
    Ok(Some(text))
}

/// A recorded URL, split as a requests file needs it.
struct Url<'a> {
    text: &'a str,
    https: bool,
    /// Lower-case host name, without the port.
    host: String,
    /// The port when the URL gives one that is not the scheme's default.
    port: Option<u16>,
    path_and_query: String,
}

impl Url<'_> {
    fn parse(text: &str) -> Result<Url<'_>, Skip> {
        let scheme = text.split_once(':').map_or("", |(scheme, _)| scheme);
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            "ws" | "wss" => {
                return Err(Skip::Drop(
                    "websocket",
                    "a WebSocket, which the engine does not speak".into(),
                ))
            }
            _ => {
                return Err(Skip::Bad(format!(
                    "request.url {text:?}: scheme {scheme:?} is not http or https"
                )))
            }
        };
        // Browsers do not send the fragment; some recordings keep it.
        let sent = text.split_once('#').map_or(text, |(sent, _)| sent);
        let uri: http::Uri = sent
            .parse()
            .map_err(|e| Skip::Bad(format!("request.url {text:?}: {e}")))?;
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Skip::Bad(format!("request.url {text:?} has no host")))?;
        let default_port = if https { 443 } else { 80 };
        Ok(Url {
            text,
            https,
            host: host.to_ascii_lowercase(),
            port: uri.port_u16().filter(|port| *port != default_port),
            path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        })
    }

    /// `scheme://host[:port]`.
    fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        match self.port {
            Some(port) => format!("{scheme}://{}:{port}", self.host),
            None => format!("{scheme}://{}", self.host),
        }
    }
}

/// What kind of static asset the entry is, if it is one.
fn static_asset(resource_type: Option<&str>, response_type: &str, url: &Url) -> Option<String> {
    if let Some(kind) = resource_type.filter(|kind| STATIC_RESOURCE_TYPES.contains(kind)) {
        return Some(kind.to_string());
    }
    let mime = response_type.split(';').next().unwrap_or("").trim();
    let static_mime = ["image/", "font/", "audio/", "video/", "application/font"]
        .iter()
        .any(|prefix| mime.starts_with(prefix))
        || mime == "text/css"
        || mime.ends_with("javascript")
        || mime == "application/wasm";
    if static_mime {
        return Some(mime.to_string());
    }
    let path = url.path_and_query.split('?').next().unwrap_or("");
    let extension = path
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())?;
    (!extension.contains('/') && STATIC_EXTENSIONS.contains(&extension.as_str()))
        .then(|| format!(".{extension}"))
}

/// Whether `text` matches `glob` whole, where `*` matches any run of characters.
fn glob_matches(glob: &str, text: &str) -> bool {
    let mut pieces = glob.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl Conversion {
    /// The recorded hosts as targets when there are several (empty for one), and
    /// each request's host among them: where each request goes when no target URL
    /// replaces the recording's.
    pub fn hosts(&self) -> Result<(Vec<Host>, Vec<usize>), LoadError> {
        let distinct = self.distinct_origins();
        if distinct.len() < 2 {
            return Ok((Vec::new(), Vec::new()));
        }
        let request_hosts = self
            .origins
            .iter()
            .map(|origin| distinct.iter().position(|d| d == origin).unwrap_or(0))
            .collect();
        let hosts = distinct
            .iter()
            .map(|origin| {
                let target = Target::parse(origin)?;
                Ok(Host { target, weight: 1 })
            })
            .collect::<Result<_, LoadError>>()?;
        Ok((hosts, request_hosts))
    }

    /// The origins the kept requests were recorded at, first seen first.
    fn distinct_origins(&self) -> Vec<&str> {
        let mut distinct: Vec<&str> = Vec::new();
        for origin in &self.origins {
            if !distinct.contains(&origin.as_str()) {
                distinct.push(origin);
            }
        }
        distinct
    }

    /// "3 static assets, 1 third-party host, ..." from the dropped entries' reasons.
    pub fn dropped_summary(&self) -> String {
        if self.dropped.is_empty() {
            return "none dropped".into();
        }
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for dropped in &self.dropped {
            *kinds.entry(dropped.kind).or_default() += 1;
        }
        let parts: Vec<String> = kinds
            .iter()
            .map(|(kind, count)| format!("{count} {kind}"))
            .collect();
        format!("{} dropped: {}", self.dropped.len(), parts.join(", "))
    }

    /// One line for the terminal: what was kept of how many entries.
    pub fn summary(&self, source: &str) -> String {
        let entries: usize = self.sources.iter().map(Vec::len).sum::<usize>() + self.dropped.len();
        format!(
            "HAR {source}: {} requests from {} of {entries} entries, recorded at {}; {}",
            self.requests.requests.len(),
            entries - self.dropped.len(),
            self.distinct_origins().join(", "),
            self.dropped_summary()
        )
    }

    /// The requests file, in the format `--requests` reads: a comment on where it came
    /// from and what was dropped, then one `[[requests]]` table per request, each
    /// naming the `log.entries` it was made from.
    pub fn to_toml(&self, source: &str, saved_as: &str) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = writeln!(out, "# {}", self.summary(source));
        let _ = writeln!(
            out,
            "# Run: faultline load {} --requests {saved_as} --rate 10 --duration 60s",
            self.origin
        );
        for dropped in &self.dropped {
            let _ = writeln!(
                out,
                "# dropped log.entries[{}]: {}",
                dropped.index, dropped.reason
            );
        }
        let origins = self.origins.iter().map(|o| Some(o.as_str()));
        let requests = self
            .requests
            .requests
            .iter()
            .zip(&self.sources)
            .zip(origins);
        for ((request, sources), origin) in requests {
            let _ = writeln!(out, "\n[[requests]]");
            let _ = writeln!(out, "# log.entries{sources:?}");
            if let Some(origin) = origin.filter(|o| *o != self.origin) {
                // A requests file has one target: the saved file sends this to it too.
                let _ = writeln!(out, "# recorded at {origin}");
            }
            let _ = writeln!(out, "method = {}", toml_string(&request.method));
            let _ = writeln!(out, "path = {}", toml_string(&request.path));
            if let Some(name) = &request.name {
                let _ = writeln!(out, "name = {}", toml_string(name));
            }
            if let Some(weight) = request.weight {
                let _ = writeln!(out, "weight = {weight}");
            }
            if let Some(body) = &request.body {
                let _ = writeln!(out, "body = {}", toml_string(body));
            }
            if !request.headers.is_empty() {
                let _ = writeln!(out, "[requests.headers]");
                for (name, value) in &request.headers {
                    let _ = writeln!(out, "{} = {}", toml_key(name), toml_string(value));
                }
            }
        }
        out
    }
}

/// `text` as a TOML string, quoted and escaped by the toml crate.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A header name as a TOML key: bare when TOML allows it (`content-type`), else quoted.
fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        name.to_string()
    } else {
        toml_string(name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A Chrome recording (h2, so with pseudo-headers) of a shop: a page, its static
    /// assets, a third-party beacon and font, API calls with JSON bodies (one base64),
    /// a repeated GET, two different POSTs to one path and a WebSocket.
    const SHOP: &str = include_str!("../tests/fixtures/shop.har");

    fn shop(filter: &HarFilter) -> Conversion {
        convert(SHOP, filter, "shop.har").unwrap()
    }

    fn kept_paths(conversion: &Conversion) -> Vec<&str> {
        let requests = conversion.requests.requests.iter();
        requests.map(|r| r.path.as_str()).collect()
    }

    fn dropped(conversion: &Conversion) -> Vec<(usize, &str)> {
        let dropped = conversion.dropped.iter();
        dropped.map(|d| (d.index, d.kind)).collect()
    }

    #[test]
    fn a_chrome_recording_keeps_the_sites_own_requests() {
        let conversion = shop(&HarFilter::default());
        assert_eq!(conversion.origin, "https://shop.example.com");
        let kept: Vec<(&str, &str, Option<u32>)> = conversion
            .requests
            .requests
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str(), r.weight))
            .collect();
        assert_eq!(
            kept,
            [
                ("GET", "/", None),
                ("GET", "/api/products?page=1", Some(2)),
                ("POST", "/api/cart", None),
                ("POST", "/api/cart", None),
                ("POST", "/api/checkout", None),
            ]
        );
        assert_eq!(
            conversion.sources,
            [vec![0], vec![4, 6], vec![5], vec![7], vec![8]]
        );
        assert_eq!(
            dropped(&conversion),
            [
                (1, "static"),
                (2, "static"),
                (3, "third-party"),
                (9, "websocket"),
                (10, "third-party")
            ]
        );
        let requests = &conversion.requests.requests;
        assert_eq!(
            requests[2].body.as_deref(),
            Some(r#"{"sku":"A-1","qty":2}"#)
        );
        assert_eq!(requests[3].name.as_deref(), Some("POST /api/cart (2)"));
        // The base64 body decoded, its content type taken from postData.
        assert_eq!(requests[4].body.as_deref(), Some(r#"{"payment":"card"}"#));
        assert_eq!(requests[4].headers["content-type"], "application/json");
        // A header name that is no bare TOML key, for the saved file's round trip.
        assert_eq!(requests[4].headers["x.client-version"], "web 4.2");
    }

    #[test]
    fn browser_only_and_hop_by_hop_headers_are_dropped_and_authorization_kept() {
        let conversion = shop(&HarFilter::default());
        let requests = &conversion.requests.requests;
        let page: Vec<&str> = requests[0].headers.keys().map(String::as_str).collect();
        assert_eq!(page, ["accept", "accept-language", "user-agent"]);
        let cart: Vec<&str> = requests[2].headers.keys().map(String::as_str).collect();
        assert_eq!(cart, ["authorization", "content-type", "origin"]);
        assert!(requests[1].headers["authorization"].starts_with("Bearer "));
        assert!(!requests[1].headers.contains_key("if-none-match"));

        let cookies = shop(&HarFilter {
            cookies: true,
            ..HarFilter::default()
        });
        // h2 splits cookies into one header each; they are sent joined.
        let page = &cookies.requests.requests[0];
        assert_eq!(page.headers["cookie"], "session=abc123; theme=dark");
    }

    #[test]
    fn filters_keep_static_assets_other_hosts_and_drop_what_is_excluded() {
        let all = shop(&HarFilter {
            include_static: true,
            include_hosts: vec!["*.gstatic.com".into()],
            ..HarFilter::default()
        });
        let paths = kept_paths(&all);
        assert!(paths.contains(&"/static/app.3f2a.js"), "{paths:?}");
        assert!(paths.contains(&"/img/logo"), "{paths:?}");
        assert!(paths.contains(&"/s/roboto/v30/font.woff2"), "{paths:?}");
        assert_eq!(dropped(&all), [(3, "third-party"), (9, "websocket")]);

        let excluded = shop(&HarFilter {
            exclude: vec!["*/api/cart".into(), "text/html".into()],
            ..HarFilter::default()
        });
        let paths = kept_paths(&excluded);
        assert_eq!(paths, ["/api/products?page=1", "/api/checkout"]);
        let kinds = dropped(&excluded);
        for index in [0, 5, 7] {
            assert!(kinds.contains(&(index, "excluded")), "{kinds:?}");
        }
    }

    #[test]
    fn globs_match_the_whole_text() {
        for (glob, text, matches) in [
            ("*/api/*", "https://a.example/api/x", true),
            ("*/api/*", "https://a.example/apix", false),
            ("image/*", "image/png", true),
            ("image/*", "text/html", false),
            ("text/html", "text/html", true),
            ("text/html", "text/html; charset=utf-8", false),
            ("*.js", "https://a/app.js", true),
            ("*a*a", "a", false),
        ] {
            assert_eq!(glob_matches(glob, text), matches, "{glob} {text}");
        }
    }

    #[test]
    fn bad_recordings_are_usage_errors_naming_the_entry() {
        let entry = |request: &str| {
            format!(
                r#"{{"log": {{"entries": [
                    {{"request": {{"method": "GET", "url": "http://a.example/"}}}},
                    {{"request": {request}}}]}}}}"#
            )
        };
        for (text, expected) in [
            ("<html>".to_string(), "not JSON"),
            (r#"{"log": {"pages": []}}"#.to_string(), "no log.entries"),
            (r#"{"log": {"entries": {}}}"#.to_string(), "not a HAR"),
            (
                r#"{"log": {"entries": [7]}}"#.to_string(),
                "log.entries[0]: invalid type",
            ),
            (
                entry(r#"{"url": "http://a.example/x"}"#),
                "log.entries[1]: request.method is missing",
            ),
            (
                entry(r#"{"method": "GET"}"#),
                "log.entries[1]: request.url is missing",
            ),
            (
                entry(r#"{"method": "GET", "url": "ftp://a.example/f"}"#),
                "log.entries[1]: request.url \"ftp://a.example/f\": scheme \"ftp\"",
            ),
            (
                entry(
                    r#"{"method": "POST", "url": "http://a.example/x",
                        "postData": {"encoding": "base64", "text": "not*base64"}}"#,
                ),
                "log.entries[1]: request.postData.text is not base64",
            ),
            (
                entry(r#"{"method": "G T", "url": "http://a.example/x"}"#),
                "log.entries[1]: request.method \"G T\"",
            ),
        ] {
            let error = convert(&text, &HarFilter::default(), "rec.har").unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains(expected) && message.contains("rec.har"),
                "{message}"
            );
            assert_eq!(error.exit_code(), 2, "{message}");
        }
    }

    #[test]
    fn a_recording_with_nothing_left_to_send_says_what_was_dropped() {
        let error = convert(
            &SHOP.replace("shop.example.com", "cdn.example.net"),
            &HarFilter {
                exclude: vec!["*".into()],
                ..HarFilter::default()
            },
            "shop.har",
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("no entry left to send of 11"),
            "{error}"
        );
        assert!(error.to_string().contains("excluded"), "{error}");
    }

    #[test]
    fn the_recorded_order_keeps_each_entry_with_the_think_time_before_it() {
        let conversion = shop(&HarFilter::default());
        let steps: Vec<(usize, u128)> = conversion
            .steps
            .iter()
            .map(|step| (step.request, step.think.as_millis()))
            .collect();
        // Entries 0, 4, 5, 6, 7, 8 are kept; 4 and 6 are the same request (1). Each
        // think time runs from the end (start + time) of the entry kept before.
        assert_eq!(
            steps,
            [(0, 0), (1, 380), (2, 1565), (1, 852), (3, 970), (4, 1950)]
        );
    }

    #[test]
    fn a_recording_over_two_hosts_sends_each_request_to_its_own_and_escapes_braces() {
        let text = r#"{"log": {"entries": [
            {"startedDateTime": "2026-12-01T10:00:00Z", "request":
                {"method": "GET", "url": "https://www.example.com/"}},
            {"startedDateTime": "2026-12-01T11:00:00.100+01:00", "request":
                {"method": "POST", "url": "https://api.example.com:8443/cart",
                 "postData": {"text": "{\"note\": \"{{x}}\"}"}}},
            {"request": {"method": "GET", "url": "https://api.example.com:8443/"}},
            {"request": {"method": "GET", "url": "https://www.example.com/"}}]}}"#;
        let filter = HarFilter {
            include_hosts: vec!["api.example.com".into()],
            ..HarFilter::default()
        };
        let conversion = convert(text, &filter, "two.har").unwrap();
        assert_eq!(
            conversion.origins,
            [
                "https://www.example.com",
                "https://api.example.com:8443",
                "https://api.example.com:8443"
            ]
        );
        // The same path on another host is another request; the same on the same, one.
        assert_eq!(conversion.requests.requests[0].weight, Some(2));
        let (hosts, request_hosts) = conversion.hosts().unwrap();
        let authorities: Vec<&str> = hosts.iter().map(|h| h.target.authority.as_str()).collect();
        assert_eq!(authorities, ["www.example.com:443", "api.example.com:8443"]);
        assert_eq!(request_hosts, [0, 1, 1]);
        let steps: Vec<(usize, u128)> = conversion
            .steps
            .iter()
            .map(|s| (s.request, s.think.as_millis()))
            .collect();
        assert_eq!(steps, [(0, 0), (1, 100), (2, 0), (0, 0)]);
        // Kept, not dropped, and escaped so that it is sent as recorded.
        let body = conversion.requests.requests[1].body.as_deref().unwrap();
        assert_eq!(body, r#"{"note": "{{"{{"}}x}}"}"#);

        let one_host = convert(text, &HarFilter::default(), "two.har").unwrap();
        assert_eq!(one_host.hosts().unwrap(), (Vec::new(), Vec::new()));

        let bad_time = text.replace("2026-12-01T10:00:00Z", "10 o'clock");
        let error = convert(&bad_time, &filter, "two.har")
            .unwrap_err()
            .to_string();
        assert!(error.contains("log.entries[0]: startedDateTime"), "{error}");
    }

    #[test]
    fn the_saved_requests_file_parses_back_to_the_same_entries() {
        let conversion = shop(&HarFilter::default());
        let text = conversion.to_toml("shop.har", "requests.toml");
        let read: RequestsFile = toml::from_str(&text).unwrap();
        let fields = |r: &RequestEntry| {
            (
                r.method.clone(),
                r.path.clone(),
                r.headers.clone(),
                r.body.clone(),
                r.name.clone(),
                r.weight,
            )
        };
        let written: Vec<_> = conversion.requests.requests.iter().map(fields).collect();
        let read: Vec<_> = read.requests.iter().map(fields).collect();
        assert_eq!(read, written);
        assert!(
            text.contains("# dropped log.entries[3]: third-party host www.google-analytics.com")
        );
    }
}
