//! A processor plugin: rewrites the request's `prompt` and stamps output images.

use easel_sdk::prelude::*;

struct MyPlugin;

impl Processor for MyPlugin {
    fn preprocess(mut req: Request) -> Result<Request> {
        if let Some(prompt) = req.params.text("prompt").map(str::to_owned) {
            req.params.set("prompt", format!("{prompt}, high detail"));
        }
        Ok(req)
    }

    fn postprocess(_ctx: Context, mut out: Output) -> Result<Output> {
        let mut stamped = Vec::new();
        for img in out.images.drain(..) {
            stamped.push(img.draw_text("my-plugin", 4, 4, 1, rgba(255, 255, 255, 255))?);
        }
        out.images = stamped;
        log(Level::Info, "stamped");
        Ok(out)
    }
}

export_processor!(MyPlugin);
