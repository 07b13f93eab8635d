//! Endpoint plugins: `wasi:http/incoming-handler` components answering `/v1/x/{plugin}/...`.
//!
//! The request reaches the guest without secret headers; the response body is collected up
//! to the output limit. Any failure (limit, trap, no response) answers with a non-2xx status
//! and a JSON error naming it.

use super::call::{CallReport, Fault, guest};
use super::errors::CallError;
use super::manifest::World;
use super::registry::{PluginHost, Pre};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Headers never shown to a plugin: the caller's credentials.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-easel-key",
];

fn error_response(e: &CallError) -> http::Response<Bytes> {
    http::Response::builder()
        .status(e.http_status())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(e.to_json().to_string()))
        .unwrap_or_default()
}

async fn collect_limited(body: HyperOutgoingBody, limit: u64) -> Result<Bytes, CallError> {
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CallError::Trap(format!("response body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() as u64 + data.len() as u64 > limit {
                return Err(CallError::OutputTooLarge {
                    size: out.len() as u64 + data.len() as u64,
                    limit,
                });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.into())
}

impl PluginHost {
    /// Serves one request with an endpoint plugin. `req`'s URI is what the plugin sees: the
    /// path below `/v1/x/{plugin}` (the API strips the prefix) and the query.
    pub async fn handle_http(
        &self,
        tenant: &str,
        plugin: &str,
        req: http::Request<Bytes>,
    ) -> (http::Response<Bytes>, CallReport) {
        let fail = |e: CallError| {
            let report = CallReport {
                plugin: plugin.to_owned(),
                ..Default::default()
            };
            (error_response(&e), report)
        };
        let max_body = self.config().max_http_request_bytes;
        if req.body().len() > max_body {
            return fail(CallError::BadOutput(format!(
                "request body of {} bytes exceeds {max_body}",
                req.body().len()
            )));
        }
        let prepared = match self.prepare(tenant, plugin, World::Endpoint).await {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        let limit = prepared.env.limits.output_bytes;
        let (mut parts, body) = req.into_parts();
        for h in SECRET_HEADERS {
            parts.headers.remove(*h);
        }
        if parts.uri.authority().is_none() {
            let pq = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            parts.uri = match format!("http://plugin.local{pq}").parse() {
                Ok(u) => u,
                Err(e) => return fail(CallError::BadOutput(format!("request URI: {e}"))),
            };
        }
        let req = http::Request::from_parts(
            parts,
            Full::new(body).map_err(|never| -> wasmtime_wasi_http::Error { match never {} }),
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        let call = self.execute(prepared, move |store, pre| {
            guest(async move {
                let Pre::Endpoint(pre) = pre else {
                    return Err(CallError::Internal("world mismatch".into()).into());
                };
                let data = store.data_mut();
                let req = data.http().new_incoming_request(Scheme::Http, req)?;
                let out = data.http().new_response_outparam(tx)?;
                let proxy = pre.instantiate_async(&mut *store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut *store, req, out)
                    .await
                    .map_err(Fault::Wasm)
            })
        });
        // The guest may stream its body after setting the response, so read it while the
        // call runs (both on this task); the call's failure overrides a partial response.
        let response = async {
            match rx.await {
                Ok(Ok(resp)) => {
                    let (parts, body) = resp.into_parts();
                    Some(collect_limited(body, limit).await.map(|b| (parts, b)))
                }
                Ok(Err(code)) => Some(Err(CallError::Guest {
                    code: "http_error".into(),
                    message: format!("{code:?}"),
                })),
                Err(_) => None,
            }
        };
        let (called, response) = tokio::join!(call, response);
        let result = match (called.result, response) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(r)) => r,
            (Ok(()), None) => Err(CallError::BadOutput(
                "the handler returned without setting a response".into(),
            )),
        };
        match result {
            Ok((parts, body)) => (http::Response::from_parts(parts, body), called.report),
            Err(e) => (error_response(&e), called.report),
        }
    }
}
