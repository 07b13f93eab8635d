//! Mask prediction: image -> model input (resize + normalisation as the
//! model defines it) -> sigmoid mask -> resized back to the image size.
//!
//! Resizing happens on the GPU with PyTorch's bilinear rules (no antialias),
//! as the IS-Net and U²-Net reference inference scripts do on tensors.
//! Normalisation is affine per channel, so it is applied while the pixels
//! are converted (before the resize) — the same result as after it.

use std::path::Path;

use easel_kernels::ops::image::{ImageSpec, image_to_tensor};
use easel_kernels::ops::upsample::upsample_bilinear;
use easel_kernels::{DType, Gpu};
use image::RgbImage;
use serde::Deserialize;

use super::{BgError, Mask};
use crate::models::rsu::{RsuArch, RsuModel};
use crate::weights::Weights;

/// How pixels become model inputs: `value = pixel / divisor * 1/std - mean/std`
/// with `divisor` 256 (IS-Net: `(p - 128) / 256` is mean 0.5, std 1) or the
/// image's maximum pixel value (U²-Net as rembg feeds it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Preprocess {
    /// Square model input side.
    pub input_size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Pixel divisor before mean/std: a number, or `"max"` for the image's
    /// largest channel value (rembg's `img / max(img)`).
    pub divisor: Divisor,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "DivisorRepr")]
pub enum Divisor {
    Value(f32),
    ImageMax,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DivisorRepr {
    Num(f32),
    Str(String),
}

impl TryFrom<DivisorRepr> for Divisor {
    type Error = String;
    fn try_from(r: DivisorRepr) -> Result<Self, String> {
        match r {
            DivisorRepr::Num(v) if v > 0.0 => Ok(Divisor::Value(v)),
            DivisorRepr::Str(s) if s == "max" => Ok(Divisor::ImageMax),
            DivisorRepr::Num(v) => Err(format!("divisor must be > 0, got {v}")),
            DivisorRepr::Str(s) => Err(format!("divisor must be a number or \"max\", got {s:?}")),
        }
    }
}

impl Preprocess {
    /// The published preprocessing of each architecture.
    pub fn for_arch(arch: RsuArch) -> Preprocess {
        match arch {
            RsuArch::IsNet => Preprocess {
                input_size: 1024,
                mean: [0.5; 3],
                std: [1.0; 3],
                divisor: Divisor::Value(256.0),
            },
            RsuArch::U2Net => Preprocess {
                input_size: 320,
                mean: [0.485, 0.456, 0.406],
                std: [0.229, 0.224, 0.225],
                divisor: Divisor::ImageMax,
            },
        }
    }

    /// Per-channel `scale`, `offset` for raw 8-bit pixels of `img`.
    fn affine(&self, img: &RgbImage) -> ([f32; 4], [f32; 4]) {
        let div = match self.divisor {
            Divisor::Value(v) => v,
            Divisor::ImageMax => img.as_raw().iter().copied().max().unwrap_or(0).max(1) as f32,
        };
        let mut scale = [0.0; 4];
        let mut offset = [0.0; 4];
        for c in 0..3 {
            scale[c] = 1.0 / (div * self.std[c]);
            offset[c] = -self.mean[c] / self.std[c];
        }
        (scale, offset)
    }
}

/// Optional manifest next to the weights (`<name>.json`) overriding the
/// preprocessing: `{"preprocess": {"input_size": .., "mean": [..], "std": [..],
/// "divisor": 255 | "max"}}`.
#[derive(Debug, Deserialize)]
struct Manifest {
    preprocess: Option<Preprocess>,
}

/// A loaded background-segmentation model with its preprocessing.
#[derive(Debug)]
pub struct Segmenter {
    model: RsuModel,
    prep: Preprocess,
    dtype: DType,
}

impl Segmenter {
    /// Loads `path` (an RSU checkpoint), reading `<stem>.json` beside it when
    /// present for the preprocessing.
    pub fn load(gpu: &Gpu, path: &Path, dtype: DType) -> Result<Segmenter, BgError> {
        let weights = Weights::open(path)?;
        let model = RsuModel::load(gpu, &weights, dtype)?;
        let mut prep = Preprocess::for_arch(model.arch());
        let manifest = path.with_extension("json");
        if manifest.is_file() {
            let text = std::fs::read_to_string(&manifest).map_err(|e| BgError::Manifest {
                path: manifest.clone(),
                msg: e.to_string(),
            })?;
            // Manifests of other kinds (e.g. the shared mapping files) may
            // sit beside weights: only a `preprocess` object is read.
            if let Ok(Manifest {
                preprocess: Some(p),
            }) = serde_json::from_str::<Manifest>(&text)
            {
                if p.input_size == 0 || p.std.contains(&0.0) {
                    return Err(BgError::Manifest {
                        path: manifest,
                        msg: "input_size must be > 0 and std non-zero".into(),
                    });
                }
                prep = p;
            }
        }
        Ok(Segmenter { model, prep, dtype })
    }

    pub fn from_model(model: RsuModel, prep: Preprocess, dtype: DType) -> Segmenter {
        Segmenter { model, prep, dtype }
    }

    pub fn preprocess(&self) -> &Preprocess {
        &self.prep
    }
    pub fn model(&self) -> &RsuModel {
        &self.model
    }

    /// The foreground probability of every pixel of `img`, at its size.
    pub fn predict(&self, gpu: &Gpu, img: &RgbImage) -> Result<Mask, BgError> {
        self.predict_at(gpu, img, self.prep.input_size)
    }

    /// [`Segmenter::predict`] with the model run at `s`x`s` instead of its
    /// published input size (the networks are fully convolutional): smaller
    /// is faster and coarser. `s` must be a positive multiple of 32.
    pub fn predict_at(&self, gpu: &Gpu, img: &RgbImage, s: usize) -> Result<Mask, BgError> {
        if s == 0 || !s.is_multiple_of(32) {
            return Err(BgError::Option {
                param: "resolution",
                msg: format!("must be a positive multiple of 32, got {s}"),
            });
        }
        let (w, h) = (img.width() as usize, img.height() as usize);
        let spec = ImageSpec {
            width: w,
            height: h,
            channels: 3,
            bit_depth: 8,
        };
        let (scale, offset) = self.prep.affine(img);
        let x = image_to_tensor(gpu, img.as_raw(), spec, 3, scale, offset, self.dtype)?;
        let x = if (w, h) == (s, s) {
            x
        } else {
            upsample_bilinear(&x, s, s, false)?
        };
        let prob = self.model.forward(&x)?;
        let prob = if (w, h) == (s, s) {
            prob
        } else {
            upsample_bilinear(&prob, h, w, false)?
        };
        let data = prob.to_f32_vec()?;
        Ok(Mask::new(w, h, data))
    }
}
