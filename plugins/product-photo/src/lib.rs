//! `product-photo`: a router for e-commerce shots. For each request it plans
//! cut the product out onto a white background (`replace-background`, one segmentation) →
//! upscale if the image is too small → fit it onto a square canvas (`convert` with
//! fit=pad, 2000x2000 by default).
//!
//! Not `remove-background` then `replace-background`: the second would segment the
//! already-cut-out image again, and its transparent surroundings make a poor mask.
//!
//! Request parameters: `size` (canvas side, default 2000, 64-8192), `background`
//! (`#rrggbb`, default `#ffffff`); the same keys in the plugin's config (manifest) apply
//! when the request has none. Config only: `resolution` (the segmentation model's input
//! side, passed to the cut-out step; smaller is faster and coarser) and `upscale_model`.

use easel_sdk::prelude::*;

struct ProductPhoto;

fn parse_hex(color: &str) -> Option<()> {
    let hex = color.strip_prefix('#')?;
    (hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())
}

fn setting(key: &str) -> Option<String> {
    easel_sdk::config::get(key).ok().flatten()
}

impl Router for ProductPhoto {
    fn route(req: RouteRequest) -> Result<Plan> {
        let configured_size = match setting("size") {
            Some(s) => Some(s.parse::<i64>().map_err(|_| {
                PluginError::new("bad_config", format!("size {s:?} is not an integer"))
            })?),
            None => None,
        };
        let size = req
            .params
            .integer("size")
            .or(configured_size)
            .unwrap_or(2000);
        if !(64..=8192).contains(&size) {
            return Err(PluginError::new(
                "invalid_argument",
                format!("size {size} is outside 64..=8192"),
            ));
        }
        let background = req
            .params
            .text("background")
            .map(str::to_owned)
            .or_else(|| setting("background"))
            .unwrap_or_else(|| "#ffffff".to_owned());
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
        let resolution = match setting("resolution") {
            Some(s) => Some(s.parse::<i64>().map_err(|_| {
                PluginError::new("bad_config", format!("resolution {s:?} is not an integer"))
            })?),
            None => None,
        };
        let mut on_colour = Step::new("replace-background").with("color", background.as_str());
        if let Some(r) = resolution {
            on_colour = on_colour.with("resolution", r);
        }
        let mut steps = vec![on_colour];
        // Upscale only when the product would otherwise be stretched: by 2 when that is
        // enough, else by 4 (the upscaler's native factors).
        if longest < size {
            let scale = if longest * 2 >= size { 2 } else { 4 };
            let mut up = Step::new("upscale").with("scale", scale);
            if let Some(m) = setting("upscale_model") {
                up = up.with("model", m.as_str());
            }
            steps.push(up);
        }
        // `convert` with fit=pad: scaled to fit, centred on a size x size canvas.
        steps.push(
            Step::new("convert")
                .with("width", size)
                .with("height", size)
                .with("fit", "pad")
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
