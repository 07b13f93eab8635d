//! A minimal Rust endpoint plugin for the HTTP tests and the benchmark: `GET /spin` never
//! returns (a hostile tenant's infinite loop); any other request is answered at once with
//! `200 text/plain` `<METHOD> <path?query> <body length>` (the well-behaved endpoint).

use easel_sdk::bindings::endpoint::exports::wasi::http::incoming_handler::Guest;
use easel_sdk::bindings::endpoint::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use std::hint::black_box;

struct Endpoint;

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

/// Bytes of the request body (read in chunks until the stream closes).
fn body_len(req: &IncomingRequest) -> usize {
    let Ok(body) = req.consume() else { return 0 };
    let Ok(stream) = body.stream() else { return 0 };
    let mut n = 0;
    while let Ok(chunk) = stream.blocking_read(64 << 10) {
        n += chunk.len();
    }
    n
}

impl Guest for Endpoint {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if path == "/spin" {
            let mut i = 0u64;
            loop {
                i = black_box(i.wrapping_add(1));
            }
        }
        let text = format!(
            "{} {} {}",
            method_name(&request.method()),
            path,
            body_len(&request)
        );
        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
        let resp = OutgoingResponse::new(headers);
        let body = resp.body().expect("a fresh response has a body");
        ResponseOutparam::set(out, Ok(resp));
        let stream = body.write().expect("the body's stream");
        let _ = stream.blocking_write_and_flush(text.as_bytes());
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }
}

easel_sdk::bindings::endpoint::export_endpoint_world!(Endpoint with_types_in easel_sdk::bindings::endpoint);
