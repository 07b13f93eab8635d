//! Typed HTTP for endpoint plugins: implement [`Endpoint`] and export it with
//! [`export_endpoint!`](crate::export_endpoint); when the operator allow-lists hosts for the
//! tenant, [`send`] calls out.
//!
//! ```no_run
//! use easel_sdk::http::{Endpoint, Request, Response};
//! use easel_sdk::export_endpoint;
//!
//! struct Hello;
//!
//! impl Endpoint for Hello {
//!     fn handle(req: Request) -> Response {
//!         match (req.method(), req.path()) {
//!             ("GET", "/hello") => {
//!                 let name = req.query_param("name").unwrap_or("world");
//!                 Response::text(200, format!("hello, {name}"))
//!             }
//!             ("POST", "/echo") => Response::bytes(200, "application/octet-stream", req.body().to_vec()),
//!             _ => Response::text(404, "no such route"),
//!         }
//!     }
//! }
//!
//! export_endpoint!(Hello);
//! # fn main() {}
//! ```

use std::cell::OnceCell;

use crate::bindings::endpoint::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, ResponseOutparam, Scheme,
};
use crate::bindings::endpoint::wasi::io::streams::{InputStream, OutputStream};

/// Most bytes one `blocking-write-and-flush` may take (wasi:io).
const WRITE_CHUNK: usize = 4096;
/// Bytes asked for per read of a body stream.
const READ_CHUNK: u64 = 64 << 10;

/// An incoming request. The host has already removed secrets (the tenant's API key) from its
/// headers; headers and body are read from the host when first asked for.
pub struct Request {
    inner: IncomingRequest,
    method: String,
    path_with_query: String,
    body: OnceCell<Vec<u8>>,
}

impl Request {
    fn new(inner: IncomingRequest) -> Self {
        Self {
            method: method_name(&inner.method()),
            path_with_query: inner.path_with_query().unwrap_or_default(),
            inner,
            body: OnceCell::new(),
        }
    }

    /// `GET`, `POST`, ... (upper case).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path below the plugin's prefix (`/v1/x/{plugin}`), starting with `/`, without the
    /// query.
    pub fn path(&self) -> &str {
        split_query(&self.path_with_query).0
    }

    /// The query string after `?`, if any (not percent-decoded).
    pub fn query(&self) -> Option<&str> {
        split_query(&self.path_with_query).1
    }

    /// The first value of query parameter `name` (not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        query_pairs(self.query().unwrap_or("")).find_map(|(k, v)| (k == name).then_some(v))
    }

    /// Path and query as the client sent them.
    pub fn path_with_query(&self) -> &str {
        &self.path_with_query
    }

    /// The values of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Vec<Vec<u8>> {
        self.inner.headers().get(&name.to_ascii_lowercase())
    }

    /// Every header, in order.
    pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
        self.inner.headers().entries()
    }

    /// The whole body (empty when there is none). The host caps its size
    /// (`max_http_request_bytes`).
    pub fn body(&self) -> &[u8] {
        self.body
            .get_or_init(|| match self.inner.consume() {
                Ok(body) => read_body(body),
                Err(()) => Vec::new(),
            })
            .as_slice()
    }
}

/// A response to send: build it with [`Response::text`], [`Response::json`],
/// [`Response::bytes`] or [`Response::new`], then [`Response::header`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self::bytes(
            status,
            "text/plain; charset=utf-8",
            text.into().into_bytes(),
        )
    }

    /// An `application/json` response of already serialised JSON.
    pub fn json(status: u16, json: impl Into<String>) -> Self {
        Self::bytes(status, "application/json", json.into().into_bytes())
    }

    /// A response with `body` of type `content_type`.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Self::new(status)
            .header("content-type", content_type.as_bytes())
            .with_body(body)
    }

    /// This response with header `name: value` added.
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// This response with `body`.
    pub fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// Sends this response through `out`. A header the host refuses (a forbidden or
    /// malformed name) is left out rather than failing the response.
    fn send(self, out: ResponseOutparam) {
        let headers = Fields::new();
        for (name, value) in &self.headers {
            let _ = headers.append(name, value);
        }
        let resp = OutgoingResponse::new(headers);
        // Only an out-of-range status is refused: send those as 500.
        if resp.set_status_code(self.status).is_err() {
            let _ = resp.set_status_code(500);
        }
        let Ok(body) = resp.body() else {
            ResponseOutparam::set(out, Ok(resp));
            return;
        };
        ResponseOutparam::set(out, Ok(resp));
        if let Ok(stream) = body.write() {
            write_all(&stream, &self.body);
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

/// An HTTP endpoint: answers every request under `/v1/x/{plugin}/`.
pub trait Endpoint {
    fn handle(req: Request) -> Response;
}

/// Runs `E` on one request (what [`export_endpoint!`](crate::export_endpoint) expands to).
#[doc(hidden)]
pub fn serve<E: Endpoint>(request: IncomingRequest, out: ResponseOutparam) {
    E::handle(Request::new(request)).send(out);
}

/// An outgoing request for [`send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutRequest {
    pub method: String,
    /// `http://host[:port]/path?query` or `https://...`.
    pub url: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl OutRequest {
    /// A `GET` of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `POST` of `body` to `url`.
    pub fn post(url: impl Into<String>, content_type: &str, body: Vec<u8>) -> Self {
        Self {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("content-type".into(), content_type.as_bytes().to_vec())],
            body,
        }
    }
}

/// Why [`send`] failed.
#[derive(Debug)]
pub enum SendError {
    /// The request could not be built (bad URL, header or method), with the reason.
    Invalid(String),
    /// The host or the network refused or failed it: `HttpRequestDenied` when the
    /// destination is not on the tenant's allow-list, a timeout, a refused connection, ...
    Http(ErrorCode),
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Invalid(why) => write!(f, "invalid request: {why}"),
            Self::Http(code) => write!(f, "{code:?}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Sends `req` and waits for the whole response. Needs `wasi:http/outgoing-handler`, which
/// the host admits only for tenants the operator gave an `allow_hosts` list; requests to
/// other destinations fail with `SendError::Http(ErrorCode::HttpRequestDenied)`.
pub fn send(req: &OutRequest) -> Result<Response, SendError> {
    use crate::bindings::outgoing::wasi::http::outgoing_handler;
    let invalid = |what: &str| SendError::Invalid(what.to_owned());
    let (scheme, authority, path) = split_url(&req.url).map_err(SendError::Invalid)?;
    let headers = Fields::new();
    for (name, value) in &req.headers {
        headers
            .append(name, value)
            .map_err(|e| SendError::Invalid(format!("header `{name}`: {e:?}")))?;
    }
    let out = OutgoingRequest::new(headers);
    out.set_method(&method_of(&req.method))
        .map_err(|()| invalid("method"))?;
    out.set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    out.set_authority(Some(authority))
        .map_err(|()| invalid("authority"))?;
    out.set_path_with_query(Some(&path))
        .map_err(|()| invalid("path"))?;
    let body = out.body().map_err(|()| invalid("body"))?;
    let pending = outgoing_handler::handle(out, None).map_err(SendError::Http)?;
    if !req.body.is_empty() {
        let stream = body.write().map_err(|()| invalid("body stream"))?;
        write_all(&stream, &req.body);
    }
    OutgoingBody::finish(body, None).map_err(SendError::Http)?;
    pending.subscribe().block();
    let resp = pending
        .get()
        .ok_or_else(|| invalid("no response"))?
        .map_err(|()| invalid("response taken twice"))?
        .map_err(SendError::Http)?;
    let status = resp.status();
    let headers = resp.headers().entries();
    let body = match resp.consume() {
        Ok(body) => read_body(body),
        Err(()) => Vec::new(),
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn read_body(body: IncomingBody) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(stream) = body.stream() {
        read_all(&stream, &mut out);
    }
    out
}

fn read_all(stream: &InputStream, out: &mut Vec<u8>) {
    while let Ok(chunk) = stream.blocking_read(READ_CHUNK) {
        out.extend_from_slice(&chunk);
    }
}

fn write_all(stream: &OutputStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let n = bytes.len().min(WRITE_CHUNK);
        if stream.blocking_write_and_flush(&bytes[..n]).is_err() {
            return;
        }
        bytes = &bytes[n..];
    }
}

fn method_name(m: &Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(s) => s.clone(),
    }
}

fn method_of(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(name.to_owned()),
    }
}

fn split_query(path_with_query: &str) -> (&str, Option<&str>) {
    match path_with_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_with_query, None),
    }
}

/// `a=1&b&c=x` as (name, value) pairs; a name without `=` has an empty value.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// `scheme://authority/path?query` as its parts; the path defaults to `/`.
fn split_url(url: &str) -> Result<(Scheme, &str, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` has no scheme"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(format!("scheme `{other}` is not http or https")),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        // `host?q` has no path: the request line still needs one.
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    Ok((scheme, authority, path))
}
