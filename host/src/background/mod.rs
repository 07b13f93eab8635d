//! Background removal and replacement: a segmentation model predicts a
//! soft foreground mask ([`segment`]); the mask is optionally refined by
//! alpha matting in the trimap band ([`matting`]), thresholded and
//! feathered; the result is an RGBA cutout, the mask itself, or the
//! foreground — colour-decontaminated at its edges ([`compose`]) —
//! composited over a new background.

pub mod compose;
pub mod filters;
pub mod matting;
pub mod segment;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use easel_kernels::{AdapterClass, DType, Gpu};
use image::{DynamicImage, GrayImage, ImageDecoder, ImageReader, Rgb, RgbImage, RgbaImage};

pub use compose::Fit;
pub use matting::MattingOptions;
pub use segment::{Preprocess, SegModel, Segmenter};

use crate::models::registry::{self, RegistryError};
use crate::models::rsu::RsuError;
use crate::weights::WeightError;

#[derive(Debug, thiserror::Error)]
pub enum BgError {
    #[error(transparent)]
    Model(#[from] RsuError),
    #[error(transparent)]
    BiRefNet(#[from] crate::models::birefnet::BiRefNetError),
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// Unknown or invalid model name, or an unreadable models directory.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Kernel(#[from] easel_kernels::KernelError),
    #[error("model manifest {path}: {msg}")]
    Manifest { path: PathBuf, msg: String },
    #[error("cannot decode the {what}: {msg}")]
    Decode { what: &'static str, msg: String },
    #[error(
        "the {what} is {width}x{height}; the limit is {max_side} px per side and {max_pixels} pixels"
    )]
    TooLarge {
        what: &'static str,
        width: u32,
        height: u32,
        max_side: u32,
        max_pixels: u64,
    },
    #[error("invalid option {param}: {msg}")]
    Option { param: &'static str, msg: String },
}

/// Input size limits (checked from the header, before decoding pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_side: u32,
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_side: 16_384,
            max_pixels: 40_000_000,
        }
    }
}

impl Limits {
    pub fn check(&self, what: &'static str, width: u32, height: u32) -> Result<(), BgError> {
        if width > self.max_side
            || height > self.max_side
            || width as u64 * height as u64 > self.max_pixels
        {
            return Err(BgError::TooLarge {
                what,
                width,
                height,
                max_side: self.max_side,
                max_pixels: self.max_pixels,
            });
        }
        Ok(())
    }
}

/// A decoded input: RGB for the model, the source alpha if it had one.
#[derive(Debug, Clone)]
pub struct InputImage {
    pub rgb: RgbImage,
    /// The input's own alpha (RGBA / LA inputs), multiplied into the mask.
    pub alpha: Option<GrayImage>,
}

/// Decodes an encoded image (any format `image` reads), applying its EXIF
/// orientation, within `limits`. Grayscale becomes RGB; 16-bit is reduced
/// to 8-bit.
pub fn decode_image(
    bytes: &[u8],
    what: &'static str,
    limits: &Limits,
) -> Result<InputImage, BgError> {
    let err = |e: image::ImageError| BgError::Decode {
        what,
        msg: e.to_string(),
    };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| BgError::Decode {
            what,
            msg: e.to_string(),
        })?;
    let mut decoder = reader.into_decoder().map_err(err)?;
    let (w, h) = decoder.dimensions();
    limits.check(what, w, h)?;
    let orientation = decoder.orientation().map_err(err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(err)?;
    img.apply_orientation(orientation);
    Ok(InputImage::from_image(&img))
}

impl InputImage {
    /// An already decoded (and oriented) image: grayscale becomes RGB,
    /// 16-bit is reduced to 8-bit, an alpha channel is kept aside.
    pub fn from_image(img: &DynamicImage) -> InputImage {
        let alpha = img.color().has_alpha().then(|| {
            let rgba = img.to_rgba8();
            GrayImage::from_raw(
                rgba.width(),
                rgba.height(),
                rgba.pixels().map(|p| p[3]).collect(),
            )
            .expect("sizes match")
        });
        InputImage {
            rgb: img.to_rgb8(),
            alpha,
        }
    }
}

/// Resolves `name` in `models_dir` (see [`registry::resolve`]) and loads it
/// as a segmenter in `dtype`.
pub fn load_segmenter(
    gpu: &Gpu,
    models_dir: &Path,
    name: &str,
    dtype: DType,
) -> Result<Segmenter, BgError> {
    let entry = registry::resolve(models_dir, name)?;
    Segmenter::load(gpu, &entry.weights_path, dtype)
}

/// f16 on GPUs with SHADER_F16; f32 on CPU adapters, which gain nothing from
/// f16 storage and lose accuracy.
pub fn default_dtype(gpu: &Gpu) -> DType {
    if gpu.caps().shader_f16 && gpu.class() != AdapterClass::Cpu {
        DType::F16
    } else {
        DType::F32
    }
}

/// Runs `seg` on `input` (at the model's input size, or `resolution`) and
/// post-processes the mask: the final alpha, one value per input pixel.
pub fn predict_alpha(
    gpu: &Gpu,
    seg: &Segmenter,
    input: &InputImage,
    opts: &MaskOptions,
    resolution: Option<usize>,
) -> Result<Vec<f32>, BgError> {
    opts.validate()?;
    let size = resolution.unwrap_or(seg.preprocess().input_size);
    let mask = seg.predict_at(gpu, &input.rgb, size)?;
    finish_alpha(input, &mask, opts)
}

/// A foreground probability per pixel, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Mask {
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Mask {
        debug_assert_eq!(data.len(), width * height);
        Mask {
            width,
            height,
            data,
        }
    }

    /// 8-bit grayscale: `floor(clamp(v, 0, 1) * 255 + 0.5)`.
    pub fn to_gray(&self) -> GrayImage {
        let raw = self
            .data
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0 + 0.5).floor() as u8)
            .collect();
        GrayImage::from_raw(self.width as u32, self.height as u32, raw).expect("sizes match")
    }
}

/// Post-processing of the predicted mask, applied in this order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaskOptions {
    /// Alpha matting of the trimap band.
    pub matting: Option<MattingOptions>,
    /// Binarise at this value (0..1).
    pub threshold: Option<f32>,
    /// Soften the edge with a Gaussian of this standard deviation (px).
    pub feather: f32,
}

impl MaskOptions {
    pub fn validate(&self) -> Result<(), BgError> {
        if let Some(t) = self.threshold
            && !(0.0..=1.0).contains(&t)
        {
            return Err(BgError::Option {
                param: "threshold",
                msg: format!("must be in 0..1, got {t}"),
            });
        }
        if !(0.0..=256.0).contains(&self.feather) {
            return Err(BgError::Option {
                param: "feather",
                msg: format!("must be in 0..256 px, got {}", self.feather),
            });
        }
        if let Some(m) = &self.matting
            && (m.radius == 0
                || m.radius > 256
                || m.eps <= 0.0
                || m.erode > 256
                || m.bg_threshold >= m.fg_threshold)
        {
            return Err(BgError::Option {
                param: "matting",
                msg: format!(
                    "need radius 1..256, eps > 0, erode <= 256, bg_threshold < fg_threshold; got {m:?}"
                ),
            });
        }
        Ok(())
    }
}

/// The final alpha of `input` from its predicted `mask`.
pub fn finish_alpha(input: &InputImage, mask: &Mask, o: &MaskOptions) -> Result<Vec<f32>, BgError> {
    o.validate()?;
    let (w, h) = (mask.width, mask.height);
    let mut a = match &o.matting {
        Some(m) => matting::refine(input.rgb.as_raw(), &mask.data, w, h, m),
        None => mask.data.clone(),
    };
    if let Some(t) = o.threshold {
        a.iter_mut().for_each(|v| *v = (*v >= t) as u8 as f32);
    }
    if o.feather > 0.0 {
        a = filters::gaussian(&a, w, h, o.feather);
    }
    if let Some(src) = &input.alpha {
        for (v, s) in a.iter_mut().zip(src.as_raw()) {
            *v *= *s as f32 / 255.0;
        }
    }
    Ok(a)
}

/// What goes behind the foreground.
#[derive(Debug, Clone)]
pub enum Background {
    Color([u8; 3]),
    Image {
        image: RgbImage,
        fit: Fit,
        letterbox: [u8; 3],
    },
    /// The original image blurred with a Gaussian of this sigma (px).
    Blur(f32),
}

/// The RGBA cutout (decontaminated colours unless `decontaminate` is off).
pub fn remove_background(input: &InputImage, alpha: &[f32], decontaminate: bool) -> RgbaImage {
    compose::cutout(&input.rgb, alpha, decontaminate)
}

/// The foreground over `bg`, at the input's size.
pub fn replace_background(
    input: &InputImage,
    alpha: &[f32],
    bg: &Background,
    decontaminate: bool,
) -> Result<RgbImage, BgError> {
    let (w, h) = input.rgb.dimensions();
    let back = match bg {
        Background::Color(c) => RgbImage::from_pixel(w, h, Rgb(*c)),
        Background::Image {
            image,
            fit,
            letterbox,
        } => compose::fit_background(image, w, h, *fit, *letterbox),
        Background::Blur(sigma) => {
            if !(0.0..=512.0).contains(sigma) {
                return Err(BgError::Option {
                    param: "blur",
                    msg: format!("must be in 0..512 px, got {sigma}"),
                });
            }
            compose::blurred(&input.rgb, *sigma)
        }
    };
    Ok(compose::composite(&input.rgb, alpha, &back, decontaminate))
}

/// Parses `#rrggbb`, `rrggbb` or `#rgb`.
pub fn parse_color(s: &str) -> Result<[u8; 3], BgError> {
    let hex = s.trim().trim_start_matches('#');
    let bad = || BgError::Option {
        param: "color",
        msg: format!("expected #rrggbb or #rgb, got {s:?}"),
    };
    let digits: Vec<u8> = hex
        .chars()
        .map(|c| c.to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    match digits.as_slice() {
        [r, g, b] => Ok([r * 17, g * 17, b * 17]),
        [r1, r2, g1, g2, b1, b2] => Ok([r1 * 16 + r2, g1 * 16 + g2, b1 * 16 + b2]),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors_parse_and_reject_garbage() {
        assert_eq!(parse_color("#ffffff").unwrap(), [255, 255, 255]);
        assert_eq!(parse_color("0a0B10").unwrap(), [10, 11, 16]);
        assert_eq!(parse_color("#f80").unwrap(), [255, 136, 0]);
        assert!(parse_color("#12345").is_err());
        assert!(parse_color("red").is_err());
    }

    #[test]
    fn limits_reject_oversized_images_by_header() {
        let l = Limits {
            max_side: 100,
            max_pixels: 5000,
        };
        assert!(l.check("image", 100, 50).is_ok());
        assert!(matches!(
            l.check("image", 101, 1),
            Err(BgError::TooLarge { .. })
        ));
        assert!(matches!(
            l.check("image", 80, 80),
            Err(BgError::TooLarge { .. })
        ));
    }

    #[test]
    fn threshold_then_feather_then_source_alpha() {
        let input = InputImage {
            rgb: RgbImage::new(4, 1),
            alpha: Some(GrayImage::from_raw(4, 1, vec![255, 255, 0, 255]).unwrap()),
        };
        let mask = Mask::new(4, 1, vec![0.2, 0.6, 0.9, 0.4]);
        let o = MaskOptions {
            threshold: Some(0.5),
            ..Default::default()
        };
        assert_eq!(
            finish_alpha(&input, &mask, &o).unwrap(),
            vec![0.0, 1.0, 0.0, 0.0]
        );
        let bad = MaskOptions {
            threshold: Some(1.5),
            ..Default::default()
        };
        assert!(matches!(
            finish_alpha(&input, &mask, &bad),
            Err(BgError::Option {
                param: "threshold",
                ..
            })
        ));
    }
}
