//! A minimal Rust endpoint plugin for the HTTP tests and the benchmark: `GET /spin` never
//! returns (a hostile tenant's infinite loop); any other request is answered at once with
//! `200 text/plain` `<METHOD> <path?query> <body length>` (the well-behaved endpoint).

use easel_sdk::export_endpoint;
use easel_sdk::http::{Endpoint, Request, Response};
use std::hint::black_box;

struct Echo;

impl Endpoint for Echo {
    fn handle(req: Request) -> Response {
        if req.path_with_query() == "/spin" {
            let mut i = 0u64;
            loop {
                i = black_box(i.wrapping_add(1));
            }
        }
        Response::text(
            200,
            format!(
                "{} {} {}",
                req.method(),
                req.path_with_query(),
                req.body().len()
            ),
        )
    }
}

export_endpoint!(Echo);
