//! An endpoint that calls out over HTTP (`easel_sdk::http::send`), for the network tests:
//! `GET /fetch?url=http://host:port/path` sends a GET there, `POST /fetch?url=...` sends the
//! request's body on as a POST; it answers `200 upstream <status>: <body>`, or
//! `502 error: <error>` when the request fails (denied by the allow-list, refused, timed out).

use easel_sdk::export_endpoint;
use easel_sdk::http::{Endpoint, OutRequest, Request, Response, send};

struct Fetch;

impl Endpoint for Fetch {
    fn handle(req: Request) -> Response {
        let Some(url) = req.path_with_query().strip_prefix("/fetch?url=") else {
            return Response::text(404, "try /fetch?url=...");
        };
        let out = match req.method() {
            "POST" => OutRequest::post(url, "application/octet-stream", req.body().to_vec()),
            _ => OutRequest::get(url),
        };
        match send(&out) {
            Ok(r) => Response::text(
                200,
                format!(
                    "upstream {}: {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ),
            ),
            Err(e) => Response::text(502, format!("error: {e}")),
        }
    }
}

export_endpoint!(Fetch);
