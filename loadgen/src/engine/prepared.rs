//! A request prepared for one host, once per run (module `engine`): the HTTP/1.1
//! bytes, the parts of hyper's HTTP/2 request, or its compiled template.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::Full;

use faultline_results::HttpVersion;

use super::{connection::Message, h1};
use crate::{
    error::LoadError,
    target::{default_content_type, RequestSpec, Target},
    template::CompiledRequest,
};

/// A request turned into what is sent to one host, built once per run: the HTTP/1.1
/// bytes, or the parts of the request hyper takes for HTTP/2, or its compiled
/// template when it has placeholders.
pub(super) struct PreparedRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// The whole request as written on an HTTP/1.1 connection.
    http1: Bytes,
    /// `Some` when the request has placeholders: it is rendered per send instead.
    pub(super) templated: Option<CompiledRequest>,
    /// `http[s]://host:port`, which a templated HTTP/2 request's path is appended to.
    pub(super) scheme_authority: String,
}

impl PreparedRequest {
    /// Prepares request `number` (from 1, for messages) for `target`; compiles its
    /// templates against the feeder's `columns`.
    pub(super) fn new(
        version: HttpVersion,
        target: &Target,
        spec: &RequestSpec,
        number: usize,
        columns: &[String],
    ) -> Result<PreparedRequest, LoadError> {
        let mut headers = spec.headers.clone();
        default_content_type(&mut headers, &spec.body);
        let scheme = if target.https { "https" } else { "http" };
        let scheme_authority = format!("{scheme}://{}", target.authority);
        let uri = match version {
            // HTTP/1.1 sends the path in the request line and the host in a header.
            HttpVersion::Http1 => {
                if let Ok(host) = HeaderValue::from_str(&target.authority) {
                    headers.entry(header::HOST).or_insert(host);
                }
                spec.path_and_query
                    .parse()
                    .unwrap_or_else(|_| Uri::from_static("/"))
            }
            // HTTP/2 takes scheme and authority from the URI (:scheme, :authority).
            HttpVersion::Http2 => format!("{scheme_authority}{}", spec.path_and_query)
                .parse()
                .unwrap_or_else(|_| Uri::from_static("/")),
        };
        let templated = CompiledRequest::compile(spec, &headers, number, columns)?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let http1 = match templated {
            None => h1::encode_request(&spec.method, path, &headers, &spec.body),
            Some(_) => Bytes::new(),
        };
        Ok(PreparedRequest {
            method: spec.method.clone(),
            uri,
            headers,
            body: spec.body.clone(),
            http1,
            templated,
            scheme_authority,
        })
    }

    /// The message of an untemplated request.
    pub(super) fn message(&self, version: HttpVersion) -> Option<Message<'_>> {
        Some(match version {
            HttpVersion::Http1 => Message::Http1 {
                bytes: &self.http1,
                head: self.method == Method::HEAD,
            },
            HttpVersion::Http2 => Message::Http2(self.build()),
        })
    }

    fn build(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}
