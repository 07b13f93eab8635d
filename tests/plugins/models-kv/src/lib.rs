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

use easel_sdk::http::{Endpoint, Request, Response, query_pairs};
use easel_sdk::{Format, Image, Param, PluginError, Value, export_endpoint, kv, run_model};

struct ModelsKv;

fn failed(e: PluginError) -> Response {
    Response::text(409, format!("{}: {}", e.code, e.message))
}

fn plain(status: u16, body: impl Into<Vec<u8>>) -> Response {
    Response::new(status).with_body(body.into())
}

/// `a=1&b=x` as parameters (no percent-decoding: the tests use plain values).
fn query_params(query: &str) -> (Option<String>, Vec<Param>) {
    let mut model = None;
    let mut params = Vec::new();
    for (k, v) in query_pairs(query) {
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

fn run(task: &str, query: &str, body: &[u8]) -> Response {
    let (model, params) = query_params(query);
    let input = if body.is_empty() {
        None
    } else {
        match Image::decode(body) {
            Ok(i) => Some(i),
            Err(e) => return failed(e),
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
        Ok((png, metadata)) => Response::bytes(200, "image/png", png.unwrap_or_default())
            .header("x-metadata", metadata),
        Err(e) => failed(e),
    }
}

impl Endpoint for ModelsKv {
    fn handle(req: Request) -> Response {
        let (path, query) = (req.path(), req.query().unwrap_or(""));
        let method = req.method();
        if let ("POST", Some(task)) = (method, path.strip_prefix("/run/")) {
            return run(task, query, req.body());
        }
        if let ("GET", "/kv") = (method, path) {
            let prefix = query.strip_prefix("prefix=").unwrap_or("");
            return match kv::list_keys(prefix) {
                Ok(keys) => plain(200, keys.join("\n")),
                Err(e) => failed(e),
            };
        }
        let Some(key) = path.strip_prefix("/kv/") else {
            return plain(404, "no such route");
        };
        match method {
            "PUT" => match kv::set(key, req.body()) {
                Ok(()) => plain(204, ""),
                Err(e) => failed(e),
            },
            "GET" => match kv::get(key) {
                Ok(Some(v)) => plain(200, v),
                Ok(None) => plain(404, "absent"),
                Err(e) => failed(e),
            },
            "DELETE" => match kv::delete(key) {
                Ok(existed) => plain(200, if existed { "deleted" } else { "absent" }),
                Err(e) => failed(e),
            },
            _ => plain(405, "method not allowed"),
        }
    }
}

export_endpoint!(ModelsKv);
