//! Hostile: a processor that opens a TCP connection, so its component imports
//! `wasi:sockets/*` and must be refused at upload.

use easel_sdk::prelude::*;

struct Net;

impl Processor for Net {
    fn preprocess(req: Request) -> Result<Request> {
        let _ = std::net::TcpStream::connect("10.0.0.1:80");
        Ok(req)
    }
}

export_processor!(Net);
