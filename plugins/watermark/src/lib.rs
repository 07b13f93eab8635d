//! `watermark`: a postprocess hook that stamps text on every output image.
//!
//! Config (per tenant, from the manifest): `text` (default `easel`), `opacity` (0-255,
//! default 160), `position` (`bottom-right`, default, or `top-left`). The text scales with
//! the image (one font pixel per 256 image pixels of width) and the output metadata records
//! `"watermark": text`.

use easel_sdk::prelude::*;

struct Watermark;

fn setting(key: &str) -> Option<String> {
    easel_sdk::config::get(key).ok().flatten()
}

impl Processor for Watermark {
    fn postprocess(_ctx: Context, mut out: Output) -> Result<Output> {
        let text = setting("text").unwrap_or_else(|| "easel".to_owned());
        let alpha = match setting("opacity") {
            Some(s) => s.parse::<u8>().map_err(|_| {
                PluginError::new("bad_config", format!("opacity {s:?} is not 0-255"))
            })?,
            None => 160,
        };
        let top_left = setting("position").as_deref() == Some("top-left");
        let mut stamped = Vec::with_capacity(out.images.len());
        for img in out.images.drain(..) {
            let info = img.info();
            let scale = (info.width / 256).max(1);
            let (tw, th) = (text.len() as u32 * 8 * scale, 8 * scale);
            let margin = 4 * scale;
            let (x, y) = if top_left {
                (margin, margin)
            } else {
                (
                    info.width.saturating_sub(tw + margin),
                    info.height.saturating_sub(th + margin),
                )
            };
            stamped.push(img.draw_text(
                &text,
                x as i32,
                y as i32,
                scale,
                rgba(255, 255, 255, alpha),
            )?);
        }
        out.images = stamped;
        let mut meta: serde_json::Map<String, serde_json::Value> = if out.metadata.trim().is_empty()
        {
            Default::default()
        } else {
            serde_json::from_str(&out.metadata)
                .map_err(|e| PluginError::new("bad_metadata", e.to_string()))?
        };
        meta.insert("watermark".into(), text.clone().into());
        out.metadata = serde_json::Value::Object(meta).to_string();
        log(
            Level::Info,
            &format!("stamped {} image(s) with {text:?}", out.images.len()),
        );
        Ok(out)
    }
}

export_processor!(Watermark);
