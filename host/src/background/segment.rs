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
use easel_kernels::{DType, Gpu, Tensor};
use image::RgbImage;
use serde::Deserialize;

use super::{BgError, Mask};
use crate::models::birefnet::{self, BiRefNet, BiRefNetConfig};
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

    /// BiRefNet's published preprocessing: resize to `input_size` (1024, or
    /// 2048 for the HR models), ImageNet mean/std on pixels / 255.
    pub fn birefnet(input_size: usize) -> Preprocess {
        Preprocess {
            input_size,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            divisor: Divisor::Value(255.0),
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

/// A segmentation network: the RSU family or BiRefNet.
#[derive(Debug)]
pub enum SegModel {
    Rsu(RsuModel),
    BiRefNet(Box<BiRefNet>),
}

impl From<RsuModel> for SegModel {
    fn from(m: RsuModel) -> SegModel {
        SegModel::Rsu(m)
    }
}

impl SegModel {
    /// Detects the architecture from the tensor names and loads it.
    pub fn load(gpu: &Gpu, w: &Weights, dtype: DType) -> Result<SegModel, BgError> {
        if birefnet::is_birefnet(w) {
            let cfg = BiRefNetConfig::from_weights(w)?;
            return Ok(SegModel::BiRefNet(Box::new(BiRefNet::load(
                gpu, w, cfg, dtype,
            )?)));
        }
        Ok(SegModel::Rsu(RsuModel::load(gpu, w, dtype)?))
    }

    /// The published preprocessing; `path` tells BiRefNet's HR checkpoints
    /// (2048² input, same tensors as the 1024² ones) by their file name.
    pub fn default_preprocess(&self, path: &Path) -> Preprocess {
        match self {
            SegModel::Rsu(m) => Preprocess::for_arch(m.arch()),
            SegModel::BiRefNet(_) => Preprocess::birefnet(birefnet_input_size(path)),
        }
    }

    /// Normalised image `[N, 3, S, S]` -> mask probabilities `[N, 1, S, S]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, BgError> {
        Ok(match self {
            SegModel::Rsu(m) => m.forward(x)?,
            SegModel::BiRefNet(m) => m.forward(x)?,
        })
    }
}

/// 2048 for files named like the high-resolution releases (`BiRefNet_HR`,
/// `*-2K`, `*2048*`), else 1024: the weights of both have the same shapes, so
/// only the name (or a manifest's `preprocess.input_size`) can tell.
pub fn birefnet_input_size(path: &Path) -> usize {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let hr = stem.contains("2048")
        || stem.contains("2k")
        || stem
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|t| t == "hr");
    if hr { 2048 } else { 1024 }
}

/// A loaded background-segmentation model with its preprocessing.
#[derive(Debug)]
pub struct Segmenter {
    model: SegModel,
    prep: Preprocess,
    dtype: DType,
}

impl Segmenter {
    /// Loads `path` (an RSU or BiRefNet checkpoint), reading `<stem>.json`
    /// beside it when present for the preprocessing.
    pub fn load(gpu: &Gpu, path: &Path, dtype: DType) -> Result<Segmenter, BgError> {
        let weights = Weights::open(path)?;
        let model = SegModel::load(gpu, &weights, dtype)?;
        let mut prep = model.default_preprocess(path);
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

    pub fn from_model(model: impl Into<SegModel>, prep: Preprocess, dtype: DType) -> Segmenter {
        Segmenter {
            model: model.into(),
            prep,
            dtype,
        }
    }

    pub fn preprocess(&self) -> &Preprocess {
        &self.prep
    }
    pub fn model(&self) -> &SegModel {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn birefnet_hr_models_are_told_by_name() {
        for (name, size) in [
            ("BiRefNet.safetensors", 1024),
            ("birefnet-lite.safetensors", 1024),
            ("BiRefNet_HR.safetensors", 2048),
            ("birefnet-hr-matting.safetensors", 2048),
            ("BiRefNet_lite-2K.safetensors", 2048),
            ("birefnet-2048.safetensors", 2048),
            ("birefnet-hrsod.safetensors", 1024),
        ] {
            assert_eq!(birefnet_input_size(Path::new(name)), size, "{name}");
        }
    }
}
