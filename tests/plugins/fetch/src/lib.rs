//! An endpoint that calls out over HTTP (`wasi:http/outgoing-handler`), for the network
//! tests: `GET /fetch?url=http://host:port/path` sends a GET there and answers
//! `200 upstream <status>: <body>`, or `502 error: <error-code>` when the request fails
//! (denied by the allow-list, refused, timed out).

use easel_sdk::bindings::endpoint::exports::wasi::http::incoming_handler::Guest;
use easel_sdk::bindings::endpoint::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};
use easel_sdk::bindings::outgoing::wasi::http::outgoing_handler;

struct Fetch;

fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = url.split_once("://").ok_or("the url needs a scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    let scheme = match scheme {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => Scheme::Other(other.to_owned()),
    };
    req.set_scheme(Some(&scheme)).map_err(|()| "scheme")?;
    req.set_authority(Some(authority))
        .map_err(|()| "authority")?;
    req.set_path_with_query(Some(path)).map_err(|()| "path")?;
    let body = req.body().map_err(|()| "request body")?;
    OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    let pending = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let resp = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let body = resp.consume().map_err(|()| "response body")?;
    let stream = body.stream().map_err(|()| "response stream")?;
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 << 10) {
        bytes.extend_from_slice(&chunk);
    }
    Ok((status, bytes))
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
    let resp = OutgoingResponse::new(headers);
    let _ = resp.set_status_code(status);
    let body = resp.body().expect("a fresh response has a body");
    ResponseOutparam::set(out, Ok(resp));
    let stream = body.write().expect("the body's stream");
    let _ = stream.blocking_write_and_flush(text.as_bytes());
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

impl Guest for Fetch {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let Some(url) = path.strip_prefix("/fetch?url=") else {
            return respond(out, 404, "try /fetch?url=...");
        };
        match fetch(url) {
            Ok((status, body)) => respond(
                out,
                200,
                &format!("upstream {status}: {}", String::from_utf8_lossy(&body)),
            ),
            Err(e) => respond(out, 502, &format!("error: {e}")),
        }
    }
}

easel_sdk::bindings::endpoint::export_endpoint_world!(Fetch with_types_in easel_sdk::bindings::endpoint);
