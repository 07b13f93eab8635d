//! An endpoint plugin for the `models` and `kv` tests over HTTP:
//!
//! - `POST /run/{task}?name=value&...` runs `task` on the request body's image (none when the
//!   body is empty) with the query as parameters (integers where they parse, text otherwise;
//!   `model` picks the model); answers `200 image/png` (the first output) with the run's
//!   metadata in `x-metadata`.
//! - `PUT /kv/{key}` stores the body, `GET /kv/{key}` reads it (404 when absent),
//!   `DELETE /kv/{key}`, `GET /kv?prefix=p` lists keys, one a line.
//!
//! A host error answers `409` with `code: message`.

use easel_sdk::bindings::endpoint::exports::wasi::http::incoming_handler::Guest;
use easel_sdk::bindings::endpoint::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use easel_sdk::{Format, Image, Param, PluginError, Value, kv, run_model};

struct ModelsKv;

fn body_of(req: &IncomingRequest) -> Vec<u8> {
    let mut out = Vec::new();
    let Ok(body) = req.consume() else { return out };
    let Ok(stream) = body.stream() else {
        return out;
    };
    while let Ok(chunk) = stream.blocking_read(64 << 10) {
        out.extend_from_slice(&chunk);
    }
    out
}

fn respond(out: ResponseOutparam, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
    let h = Fields::new();
    for (k, v) in headers {
        let _ = h.set(k, &[v.to_vec()]);
    }
    let resp = OutgoingResponse::new(h);
    let _ = resp.set_status_code(status);
    let b = resp.body().expect("a fresh response has a body");
    ResponseOutparam::set(out, Ok(resp));
    let stream = b.write().expect("the body's stream");
    for chunk in body.chunks(4096) {
        let _ = stream.blocking_write_and_flush(chunk);
    }
    drop(stream);
    let _ = OutgoingBody::finish(b, None);
}

fn failed(out: ResponseOutparam, e: PluginError) {
    respond(
        out,
        409,
        &[("content-type", b"text/plain")],
        format!("{}: {}", e.code, e.message).as_bytes(),
    );
}

/// `a=1&b=x` as parameters (no percent-decoding: the tests use plain values).
fn query_params(query: &str) -> (Option<String>, Vec<Param>) {
    let mut model = None;
    let mut params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "model" {
            model = Some(v.to_owned());
            continue;
        }
        let value = match v.parse::<i64>() {
            Ok(n) => Value::Integer(n),
            Err(_) => Value::Text(v.to_owned()),
        };
        params.push(Param {
            name: k.to_owned(),
            value,
        });
    }
    (model, params)
}

fn run(task: &str, query: &str, body: &[u8], out: ResponseOutparam) {
    let (model, params) = query_params(query);
    let input = if body.is_empty() {
        None
    } else {
        match Image::decode(body) {
            Ok(i) => Some(i),
            Err(e) => return failed(out, e),
        }
    };
    let inputs: Vec<&Image> = input.iter().collect();
    let result = run_model(task, model.as_deref(), &params, &inputs).and_then(|o| {
        Ok((
            o.images
                .first()
                .map(|i| i.encode(Format::Png))
                .transpose()?,
            o.metadata,
        ))
    });
    match result {
        Ok((png, metadata)) => respond(
            out,
            200,
            &[
                ("content-type", b"image/png"),
                ("x-metadata", metadata.as_bytes()),
            ],
            &png.unwrap_or_default(),
        ),
        Err(e) => failed(out, e),
    }
}

impl Guest for ModelsKv {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let full = request.path_with_query().unwrap_or_default();
        let (path, query) = full.split_once('?').unwrap_or((full.as_str(), ""));
        let method = request.method();
        let body = body_of(&request);
        if let (Method::Post, Some(task)) = (&method, path.strip_prefix("/run/")) {
            return run(task, query, &body, out);
        }
        if let (Method::Get, "/kv") = (&method, path) {
            let prefix = query.strip_prefix("prefix=").unwrap_or("");
            return match kv::list_keys(prefix) {
                Ok(keys) => respond(out, 200, &[], keys.join("\n").as_bytes()),
                Err(e) => failed(out, e),
            };
        }
        let Some(key) = path.strip_prefix("/kv/") else {
            return respond(out, 404, &[], b"no such route");
        };
        match method {
            Method::Put => match kv::set(key, &body) {
                Ok(()) => respond(out, 204, &[], b""),
                Err(e) => failed(out, e),
            },
            Method::Get => match kv::get(key) {
                Ok(Some(v)) => respond(out, 200, &[], &v),
                Ok(None) => respond(out, 404, &[], b"absent"),
                Err(e) => failed(out, e),
            },
            Method::Delete => match kv::delete(key) {
                Ok(existed) => respond(out, 200, &[], if existed { b"deleted" } else { b"absent" }),
                Err(e) => failed(out, e),
            },
            _ => respond(out, 405, &[], b"method not allowed"),
        }
    }
}

easel_sdk::bindings::endpoint::export_endpoint_world!(ModelsKv with_types_in easel_sdk::bindings::endpoint);
