//! `convert`: the built-in CPU task. Auto-orients by EXIF, crops, resizes
//! with a chosen filter and fit, and re-encodes as PNG, JPEG or WebP with the
//! metadata stripped (by default).

use image::DynamicImage;
use image::imageops::FilterType;

use super::image_io::{self, Metadata, OutFormat};
use super::{Input, Output, ParamSpec, Params, Task, TaskContext, TaskError};

pub struct Convert;

const FITS: &[&str] = &["contain", "cover", "fill", "inside", "pad"];
const FILTERS: &[&str] = &["lanczos3", "catmullrom", "gaussian", "triangle", "nearest"];
const FORMATS: &[&str] = &["png", "jpeg", "webp"];

impl Task for Convert {
    fn name(&self) -> &'static str {
        "convert"
    }

    fn description(&self) -> &'static str {
        "Resize, crop, auto-orient and re-encode an image (CPU)."
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::int("width", 1, 65_535, "Target width; alone, the height follows the aspect ratio."),
            ParamSpec::int("height", 1, 65_535, "Target height; alone, the width follows the aspect ratio."),
            ParamSpec::choice(
                "fit",
                FITS,
                "With both width and height: contain (fit inside, keep aspect), cover (fill and crop the centre), \
                 fill (stretch), inside (like contain but never enlarge), pad (like contain, centred on a \
                 width x height canvas of `background`).",
            )
            .default("contain"),
            ParamSpec::choice("filter", FILTERS, "Resampling filter.").default("lanczos3"),
            ParamSpec::int("crop_x", 0, 65_535, "Left edge of the crop, applied before resizing.").default(0),
            ParamSpec::int("crop_y", 0, 65_535, "Top edge of the crop.").default(0),
            ParamSpec::int("crop_width", 1, 65_535, "Crop width (crop_height must be given too)."),
            ParamSpec::int("crop_height", 1, 65_535, "Crop height (crop_width must be given too)."),
            ParamSpec::bool("auto_orient", "Rotate/flip upright by the EXIF orientation tag.").default(true),
            ParamSpec::choice("format", FORMATS, "Output format; defaults to the input's (png for others)."),
            ParamSpec::int("quality", 1, 100, "JPEG quality (WebP output is lossless).").default(90),
            ParamSpec::bool(
                "strip_metadata",
                "Drop EXIF and ICC metadata. When false the ICC profile is kept, and EXIF too unless auto_orient \
                 rotated the pixels (its orientation tag would then be wrong).",
            )
            .default(true),
            ParamSpec::text("background", 7, "#rrggbb that transparent pixels are flattened onto for JPEG, and the canvas of fit=pad.")
                .default("#ffffff"),
        ]
    }

    fn credits(&self) -> u64 {
        1
    }

    fn needs_gpu(&self) -> bool {
        false
    }

    fn run(
        &self,
        ctx: &TaskContext,
        inputs: Vec<Input>,
        p: &Params,
    ) -> Result<Vec<Output>, TaskError> {
        let input = inputs
            .into_iter()
            .find(|i| i.name == "image")
            .ok_or_else(|| {
                TaskError::invalid(
                    "missing_input",
                    Some("image"),
                    "convert needs an `image` input",
                )
            })?;
        let background = parse_hex_color(p.str("background").unwrap_or("#ffffff"))?;
        let decoded = ctx.decode_image(&input)?;
        ctx.progress(super::Progress::steps(1, 3));
        let mut img = decoded.image;
        let auto_orient = p.bool("auto_orient").unwrap_or(true);
        if auto_orient {
            img.apply_orientation(decoded.orientation);
        }
        img = crop(img, p)?;
        ctx.check_canceled()?;
        img = resize(img, p, &ctx.limits)?;
        if let (Some("pad"), Some(w), Some(h)) = (p.str("fit"), p.int("width"), p.int("height")) {
            img = pad(&img, w as u32, h as u32, background);
        }
        ctx.progress(super::Progress::steps(2, 3));
        ctx.check_canceled()?;

        let format = match p.str("format") {
            Some(f) => OutFormat::parse(f).expect("validated by the param spec"),
            None => OutFormat::from_input(decoded.format),
        };
        if format == OutFormat::Jpeg && img.color().has_alpha() {
            img = flatten(&img, background);
        }
        let meta = if p.bool("strip_metadata").unwrap_or(true) {
            Metadata::default()
        } else {
            let rotated =
                auto_orient && decoded.orientation != image::metadata::Orientation::NoTransforms;
            Metadata {
                icc_profile: decoded.icc_profile,
                exif: if rotated { None } else { decoded.exif },
            }
        };
        let quality = p.int("quality").unwrap_or(90) as u8;
        let bytes = image_io::encode(&img, format, quality, meta)?;
        ctx.progress(super::Progress::steps(3, 3));
        Ok(vec![Output::image(
            bytes,
            format.content_type(),
            img.width(),
            img.height(),
        )])
    }
}

fn parse_hex_color(s: &str) -> Result<[u8; 3], TaskError> {
    let bad = || {
        TaskError::invalid(
            "invalid_parameter",
            Some("background"),
            format!("`{s}` is not a #rrggbb colour"),
        )
    };
    let h = s.strip_prefix('#').ok_or_else(bad)?;
    if h.len() != 6 {
        return Err(bad());
    }
    let v = u32::from_str_radix(h, 16).map_err(|_| bad())?;
    Ok([(v >> 16) as u8, (v >> 8) as u8, v as u8])
}

fn crop(img: DynamicImage, p: &Params) -> Result<DynamicImage, TaskError> {
    let (cw, ch) = match (p.int("crop_width"), p.int("crop_height")) {
        (None, None) => return Ok(img),
        (Some(w), Some(h)) => (w as u32, h as u32),
        (None, _) => {
            return Err(TaskError::invalid(
                "invalid_parameter",
                Some("crop_width"),
                "crop_height needs crop_width",
            ));
        }
        (_, None) => {
            return Err(TaskError::invalid(
                "invalid_parameter",
                Some("crop_height"),
                "crop_width needs crop_height",
            ));
        }
    };
    let (x, y) = (
        p.int("crop_x").unwrap_or(0) as u32,
        p.int("crop_y").unwrap_or(0) as u32,
    );
    if u64::from(x) + u64::from(cw) > u64::from(img.width())
        || u64::from(y) + u64::from(ch) > u64::from(img.height())
    {
        return Err(TaskError::invalid(
            "invalid_parameter",
            Some("crop_width"),
            format!(
                "crop {cw}x{ch} at ({x},{y}) does not fit in the {}x{} image",
                img.width(),
                img.height()
            ),
        ));
    }
    Ok(img.crop_imm(x, y, cw, ch))
}

fn filter(p: &Params) -> FilterType {
    match p.str("filter").unwrap_or("lanczos3") {
        "nearest" => FilterType::Nearest,
        "triangle" => FilterType::Triangle,
        "catmullrom" => FilterType::CatmullRom,
        "gaussian" => FilterType::Gaussian,
        _ => FilterType::Lanczos3,
    }
}

fn resize(
    img: DynamicImage,
    p: &Params,
    limits: &super::ImageLimits,
) -> Result<DynamicImage, TaskError> {
    let (w0, h0) = (img.width() as f64, img.height() as f64);
    let (tw, th) = match (p.int("width"), p.int("height")) {
        (None, None) => return Ok(img),
        (Some(w), None) => (w as f64, (h0 * w as f64 / w0).round().max(1.0)),
        (None, Some(h)) => ((w0 * h as f64 / h0).round().max(1.0), h as f64),
        (Some(w), Some(h)) => (w as f64, h as f64),
    };
    let fit = if p.int("width").is_some() && p.int("height").is_some() {
        // pad resizes like contain; `pad` then centres the result on the canvas.
        match p.str("fit").unwrap_or("contain") {
            "pad" => "contain",
            f => f,
        }
    } else {
        "fill"
    };
    // The size actually produced, to check against the limits first.
    let (ow, oh) = match fit {
        "contain" | "inside" => {
            let mut s = (tw / w0).min(th / h0);
            if fit == "inside" {
                s = s.min(1.0);
            }
            ((w0 * s).round().max(1.0), (h0 * s).round().max(1.0))
        }
        _ => (tw, th),
    };
    let (ow, oh) = (ow as u64, oh as u64);
    let param = if p.int("width").is_some() {
        "width"
    } else {
        "height"
    };
    if ow > u64::from(limits.max_dimension) || oh > u64::from(limits.max_dimension) {
        return Err(TaskError::invalid(
            "output_too_large",
            Some(param),
            format!(
                "output would be {ow}x{oh}; the largest side allowed is {}",
                limits.max_dimension
            ),
        ));
    }
    if ow * oh > limits.max_pixels {
        return Err(TaskError::invalid(
            "output_too_large",
            Some(param),
            format!(
                "output would be {ow}x{oh}; at most {} pixels allowed",
                limits.max_pixels
            ),
        ));
    }
    let (ow, oh) = (ow as u32, oh as u32);
    if (ow, oh) == (img.width(), img.height()) {
        return Ok(img);
    }
    Ok(match fit {
        "cover" => img.resize_to_fill(ow, oh, filter(p)),
        _ => img.resize_exact(ow, oh, filter(p)),
    })
}

/// `img` composited, centred, onto an opaque `w`x`h` canvas of `bg` (fit=pad).
fn pad(img: &DynamicImage, w: u32, h: u32, bg: [u8; 3]) -> DynamicImage {
    let mut canvas = image::RgbaImage::from_pixel(w, h, image::Rgba([bg[0], bg[1], bg[2], 255]));
    let x = i64::from(w.saturating_sub(img.width()) / 2);
    let y = i64::from(h.saturating_sub(img.height()) / 2);
    image::imageops::overlay(&mut canvas, &img.to_rgba8(), x, y);
    DynamicImage::ImageRgba8(canvas)
}

/// Composites `img` over an opaque `bg` (JPEG has no alpha channel).
fn flatten(img: &DynamicImage, bg: [u8; 3]) -> DynamicImage {
    let mut rgba = img.to_rgba8();
    for px in rgba.pixels_mut() {
        let a = u32::from(px[3]);
        for c in 0..3 {
            px[c] = ((u32::from(px[c]) * a + u32::from(bg[c]) * (255 - a) + 127) / 255) as u8;
        }
        px[3] = 255;
    }
    DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(rgba).to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{ImageLimits, ModelCache, ProgressSink, params};
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    struct Quiet;
    impl ProgressSink for Quiet {
        fn progress(&self, _: crate::tasks::Progress) {}
        fn log(&self, _: String) {}
    }

    fn ctx() -> TaskContext {
        TaskContext {
            job_id: "job".into(),
            tenant_id: "t".into(),
            attempt: 1,
            gpu: Err("none in unit tests".into()),
            models: Arc::new(ModelCache::new(0)),
            limits: ImageLimits {
                max_pixels: 1 << 24,
                max_dimension: 4096,
                decode_timeout: Duration::from_secs(10),
            },
            canceled: Arc::new(AtomicBool::new(false)),
            sink: Arc::new(Quiet),
        }
    }

    /// A gradient so resizes and crops are checkable by pixel value.
    fn gradient(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 255 / (w - 1)) as u8, (y * 255 / (h - 1)) as u8, 128])
        }))
    }

    fn run(
        img: &DynamicImage,
        fmt: OutFormat,
        params: serde_json::Value,
    ) -> Result<DynamicImage, TaskError> {
        let bytes = image_io::encode(img, fmt, 95, Metadata::default()).unwrap();
        let p =
            params::validate("convert", &Convert.params(), params.as_object().unwrap()).unwrap();
        let out = Convert.run(
            &ctx(),
            vec![Input {
                name: "image".into(),
                bytes: bytes.into(),
                content_type: String::new(),
            }],
            &p,
        )?;
        assert_eq!(out.len(), 1);
        let d = image::load_from_memory(&out[0].bytes).unwrap();
        assert_eq!(
            (Some(d.width()), Some(d.height())),
            (out[0].width, out[0].height)
        );
        Ok(d)
    }

    #[test]
    fn fits() {
        let img = gradient(200, 100);
        let size = |v| {
            let d = run(&img, OutFormat::Png, v).unwrap();
            (d.width(), d.height())
        };
        assert_eq!(size(serde_json::json!({"width": 50})), (50, 25));
        assert_eq!(size(serde_json::json!({"height": 50})), (100, 50));
        assert_eq!(
            size(serde_json::json!({"width": 50, "height": 50})),
            (50, 25)
        );
        assert_eq!(
            size(serde_json::json!({"width": 50, "height": 50, "fit": "cover"})),
            (50, 50)
        );
        assert_eq!(
            size(serde_json::json!({"width": 50, "height": 50, "fit": "fill"})),
            (50, 50)
        );
        assert_eq!(
            size(serde_json::json!({"width": 400, "height": 400, "fit": "inside"})),
            (200, 100)
        );
        assert_eq!(
            size(serde_json::json!({"width": 400, "height": 400, "fit": "contain"})),
            (400, 200)
        );
    }

    #[test]
    fn downscale_matches_reference_filter() {
        // The gradient is linear, so any interpolating filter gives the
        // linear ramp back: pixel x of a w-wide result is ~ (x+0.5)*W/w.
        let img = gradient(256, 64);
        let d = run(
            &img,
            OutFormat::Png,
            serde_json::json!({"width": 64, "filter": "lanczos3"}),
        )
        .unwrap()
        .to_rgb8();
        for x in 4..60u32 {
            let src_x = (x as f64 + 0.5) * 4.0 - 0.5;
            let want = src_x * 255.0 / 255.0;
            let got = d.get_pixel(x, 8)[0] as f64;
            assert!(
                (got - want).abs() <= 2.0,
                "x={x}: got {got}, want {want:.1}"
            );
        }
    }

    #[test]
    fn crop_then_jpeg_quality() {
        let img = gradient(100, 100);
        let d = run(
            &img,
            OutFormat::Png,
            serde_json::json!({"crop_x": 50, "crop_y": 10, "crop_width": 20, "crop_height": 30}),
        )
        .unwrap()
        .to_rgb8();
        assert_eq!((d.width(), d.height()), (20, 30));
        assert_eq!(d.get_pixel(0, 0)[0], img.to_rgb8().get_pixel(50, 10)[0]);
        let e = run(
            &img,
            OutFormat::Png,
            serde_json::json!({"crop_x": 90, "crop_width": 20, "crop_height": 5}),
        )
        .unwrap_err();
        assert_eq!(e.code(), "invalid_parameter");
        let small = image_io::encode(&img, OutFormat::Jpeg, 10, Metadata::default())
            .unwrap()
            .len();
        let big = image_io::encode(&img, OutFormat::Jpeg, 95, Metadata::default())
            .unwrap()
            .len();
        assert!(small < big);
        let j = run(
            &img,
            OutFormat::Png,
            serde_json::json!({"format": "jpeg", "quality": 95}),
        )
        .unwrap()
        .to_rgb8();
        let diff = j
            .pixels()
            .zip(img.to_rgb8().pixels())
            .map(|(a, b)| (a[0] as i32 - b[0] as i32).abs())
            .max()
            .unwrap();
        assert!(diff <= 8, "JPEG q95 differs by {diff}");
    }

    #[test]
    fn pad_centres_on_the_background() {
        // A 2:1 image, half transparent: padded to a square on red, its transparent half
        // shows the red and the bands above and below are red.
        let img = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(40, 20, |x, _| {
            if x < 20 {
                image::Rgba([0, 0, 255, 255])
            } else {
                image::Rgba([0, 0, 0, 0])
            }
        }));
        let d = run(
            &img,
            OutFormat::Png,
            serde_json::json!({"width": 80, "height": 80, "fit": "pad", "background": "#ff0000",
                "filter": "nearest"}),
        )
        .unwrap()
        .to_rgba8();
        assert_eq!(d.dimensions(), (80, 80));
        assert_eq!(d.get_pixel(40, 5).0, [255, 0, 0, 255], "band above");
        assert_eq!(d.get_pixel(40, 75).0, [255, 0, 0, 255], "band below");
        assert_eq!(d.get_pixel(10, 40).0, [0, 0, 255, 255], "the opaque half");
        assert_eq!(
            d.get_pixel(70, 40).0,
            [255, 0, 0, 255],
            "the transparent half"
        );
    }

    #[test]
    fn flattens_alpha_for_jpeg() {
        let img = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            4,
            4,
            image::Rgba([0, 0, 0, 0]),
        ));
        let d = run(
            &img,
            OutFormat::Png,
            serde_json::json!({"format": "jpeg", "background": "#ff0000"}),
        )
        .unwrap()
        .to_rgb8();
        let px = d.get_pixel(1, 1);
        assert!(px[0] > 240 && px[1] < 15 && px[2] < 15, "{px:?}");
    }

    #[test]
    fn output_limits() {
        let img = gradient(10, 10);
        let e = run(&img, OutFormat::Png, serde_json::json!({"width": 5000})).unwrap_err();
        assert_eq!(e.code(), "output_too_large");
    }
}
