//! A well-behaved processor: passes requests and outputs through. With the request parameter
//! `via` = `bytes` it copies every image's pixels into guest memory and back (`to-rgba` +
//! `from-rgba`) instead of passing the handle: the benchmark compares the two.

use easel_sdk::prelude::*;

struct Passthrough;

impl Processor for Passthrough {
    fn preprocess(mut req: Request) -> Result<Request> {
        if req.params.text("via") == Some("bytes") {
            let mut copied = Vec::with_capacity(req.images.len());
            for img in req.images.drain(..) {
                let info = img.info();
                let px = img.to_rgba()?;
                copied.push(Image::from_rgba(info.width, info.height, &px)?);
            }
            req.images = copied;
        }
        Ok(req)
    }
}

export_processor!(Passthrough);
