//! SRVGGNetCompact (realesr-animevideov3, realesr-general-x4v3), basicsr
//! layout: `body.{2k}` are 3x3 convs, `body.{2k+1}.weight` PReLU slopes;
//!
//! ```text
//! h   = prelu(conv_0(x)); h = prelu(conv_k(h)) for k in 1..=num_conv
//! out = pixel_shuffle(conv_last(h), s) + nearest_upsample(x, s)
//! ```
//!
//! The final add is fused into conv_last's epilogue: pixel_shuffle is a
//! permutation, so `shuffle(c) + up(x) = shuffle(c + unshuffle(up(x)))`, and
//! `unshuffle(up(x))` is just `x` repeated `s*s` times per channel — built
//! at input resolution, so no full-resolution add pass is needed.

use easel_kernels::ops::conv2d::Conv2d;
use easel_kernels::ops::pixel_shuffle::{pixel_shuffle, pixel_unshuffle};
use easel_kernels::ops::upsample::upsample_nearest;
use easel_kernels::{DType, Epilogue, Gpu, Tensor};

use super::{ModelError, load_conv3x3, shape_of};
use crate::weights::Weights;

const ARCH: &str = "SRVGGNetCompact";

/// Hyper-parameters, detected from a checkpoint by [`SrvggConfig::detect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvggConfig {
    pub in_ch: usize,
    pub out_ch: usize,
    pub num_feat: usize,
    /// Convs between the first and the last (16 for animevideov3).
    pub num_conv: usize,
    pub scale: usize,
}

impl SrvggConfig {
    /// Counts the `body.{even}.weight` convs and reads the scale from the
    /// last conv's output channels (`out_ch * scale^2`, `out_ch = in_ch`).
    pub fn detect(w: &Weights) -> Result<SrvggConfig, ModelError> {
        let path = w.path().display().to_string();
        let bad = |msg: String| ModelError::Inconsistent {
            path: path.clone(),
            arch: ARCH,
            msg,
        };
        let first = shape_of(w, "body.0.weight")?;
        let [num_feat, in_ch, 3, 3] = first[..] else {
            return Err(bad(format!(
                "body.0.weight has shape {first:?}, expected [nf, in, 3, 3]"
            )));
        };
        let mut convs = 0;
        while w.contains(&format!("body.{}.weight", 2 * convs)) {
            convs += 1;
        }
        if convs < 2 {
            return Err(bad(format!(
                "{convs} conv(s) found; need at least the first and the last"
            )));
        }
        // Only PReLU has parameters, so a checkpoint without `body.1.weight`
        // used relu/lrelu and the slope cannot be known from the weights.
        for k in 0..convs - 1 {
            let name = format!("body.{}.weight", 2 * k + 1);
            if shape_of(w, &name)? != [num_feat] {
                return Err(bad(format!(
                    "'{name}' is not a PReLU slope vector of {num_feat}"
                )));
            }
        }
        let last = shape_of(w, &format!("body.{}.weight", 2 * (convs - 1)))?;
        let out_ch = in_ch;
        let s2 = last[0] / out_ch;
        let scale = (1..=8)
            .find(|s| s * s == s2 && s2 * out_ch == last[0])
            .ok_or_else(|| {
                bad(format!(
                    "last conv has {} outputs, not {out_ch} * scale^2",
                    last[0]
                ))
            })?;
        Ok(SrvggConfig {
            in_ch,
            out_ch,
            num_feat,
            num_conv: convs - 2,
            scale,
        })
    }

    pub fn largest_tensor_elems(&self, h: usize, w: usize) -> usize {
        h * w * self.num_feat.max(self.out_ch * self.scale * self.scale)
    }

    /// Two feature maps, the repeated input, the last conv and its shuffle.
    pub fn peak_elems(&self, h: usize, w: usize) -> usize {
        h * w * (2 * self.num_feat + 4 * self.out_ch * self.scale * self.scale)
    }
}

/// SRVGGNetCompact with its weights on the GPU.
#[derive(Debug)]
pub struct SrvggNet {
    cfg: SrvggConfig,
    dtype: DType,
    /// Every conv but the last, each followed by PReLU with its slopes.
    body: Vec<(Conv2d, Tensor)>,
    last: Conv2d,
}

impl SrvggNet {
    pub fn load(
        w: &Weights,
        cfg: &SrvggConfig,
        gpu: &Gpu,
        dtype: DType,
    ) -> Result<SrvggNet, ModelError> {
        let nf = cfg.num_feat;
        let body = (0..=cfg.num_conv)
            .map(|k| {
                let cin = if k == 0 { cfg.in_ch } else { nf };
                let conv = load_conv3x3(w, gpu, &format!("body.{}", 2 * k), cin, nf, dtype)?;
                let slopes = w.tensor(gpu, &format!("body.{}.weight", 2 * k + 1), &[nf], dtype)?;
                Ok((conv, slopes))
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let s2 = cfg.scale * cfg.scale;
        let last = load_conv3x3(
            w,
            gpu,
            &format!("body.{}", 2 * (cfg.num_conv + 1)),
            nf,
            cfg.out_ch * s2,
            dtype,
        )?;
        Ok(SrvggNet {
            cfg: cfg.clone(),
            dtype,
            body,
            last,
        })
    }

    pub fn config(&self) -> &SrvggConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `[1, in_ch, H, W]` -> `[1, out_ch, H*scale, W*scale]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let (s, c) = (self.cfg.scale, &self.cfg);
        let &[1, ch, h, w] = x.shape() else {
            return Err(self.bad_input(x));
        };
        if ch != c.in_ch {
            return Err(self.bad_input(x));
        }
        let mut feat = x.clone();
        for (conv, slopes) in &self.body {
            feat = conv.forward(&feat, &Epilogue::prelu(slopes))?;
        }
        let base = pixel_unshuffle(&upsample_nearest(x, h * s, w * s)?, s)?;
        let y = self
            .last
            .forward(&feat, &Epilogue::default().residual(&base, 1.0, 1.0))?;
        Ok(pixel_shuffle(&y, s)?)
    }

    fn bad_input(&self, x: &Tensor) -> ModelError {
        ModelError::BadInput {
            arch: ARCH,
            msg: format!(
                "input {:?}: expected [1, {}, H, W]",
                x.shape(),
                self.cfg.in_ch
            ),
        }
    }
}
