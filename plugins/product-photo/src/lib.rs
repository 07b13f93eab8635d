//! `product-photo`: a router for e-commerce shots. For each request it plans
//! cut out the product → put it on a white background → upscale if the image is too small
//! → fit it onto a square canvas (2000x2000 by default).
//!
//! Request parameters: `size` (canvas side, default 2000, 64-8192), `background`
//! (`#rrggbb`, default `#ffffff`).

use easel_sdk::prelude::*;

struct ProductPhoto;

fn parse_hex(color: &str) -> Option<()> {
    let hex = color.strip_prefix('#')?;
    (hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())
}

impl Router for ProductPhoto {
    fn route(req: RouteRequest) -> Result<Plan> {
        let size = req.params.integer("size").unwrap_or(2000);
        if !(64..=8192).contains(&size) {
            return Err(PluginError::new(
                "invalid_argument",
                format!("size {size} is outside 64..=8192"),
            ));
        }
        let background = req
            .params
            .text("background")
            .unwrap_or("#ffffff")
            .to_owned();
        if parse_hex(&background).is_none() {
            return Err(PluginError::new(
                "invalid_argument",
                format!("background {background:?} is not #rrggbb"),
            ));
        }
        let Some(first) = req.images.first() else {
            return Err(PluginError::new(
                "invalid_argument",
                "product-photo needs an input image",
            ));
        };
        let longest = first.width.max(first.height) as i64;
        let mut steps = vec![
            Step::new("remove-background"),
            Step::new("replace-background").with("color", background.as_str()),
        ];
        // Upscale only when the product would otherwise be stretched: by 2 when that is
        // enough, else by 4 (the upscaler's native factors).
        if longest < size {
            let scale = if longest * 2 >= size { 2 } else { 4 };
            steps.push(Step::new("upscale").with("scale", scale));
        }
        steps.push(
            Step::new("resize")
                .with("width", size)
                .with("height", size)
                .with("fit", "contain")
                .with("background", background.as_str()),
        );
        log(
            Level::Info,
            &format!(
                "planned {} steps for a {}x{} input",
                steps.len(),
                first.width,
                first.height
            ),
        );
        Ok(Plan { steps })
    }
}

export_router!(ProductPhoto);
