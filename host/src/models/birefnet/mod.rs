//! BiRefNet (ZhengPeng7/BiRefNet, "Bilateral Reference for High-Resolution
//! Dichotomous Image Segmentation"), default inference configuration of the
//! published checkpoints: Swin v1 backbone run on the image and on its
//! half-size copy with the features concatenated (`mul_scl_ipt='cat'`), the
//! lower three stages concatenated into the top one (`cxt`), a squeeze
//! `BasicDecBlk`, and the decoder ([`decoder`]) with image patches,
//! `ASPPDeformable` attention and the gradient gate. Output: the sigmoid of
//! the last decoder map.
//!
//! Parameters load by the published names (`bb.*`, `squeeze_module.*`,
//! `decoder.*`); every width comes from the tensor shapes ([`config`]), so
//! Swin-L (general, HR), Swin-T (lite) and test configurations share the
//! code. BatchNorms are folded into the convs at load time.

pub mod blocks;
pub mod config;
pub mod decoder;
pub mod swin;

use easel_kernels::ops::concat::concat;
use easel_kernels::ops::unary::sigmoid;
use easel_kernels::ops::upsample::upsample_bilinear;
use easel_kernels::{DType, Gpu, KernelError, Tensor};

use crate::weights::{WeightError, Weights};
use blocks::BasicDecBlk;
pub use config::{BiRefNetConfig, SwinConfig, SwinVariant};
use decoder::{Decoder, resize_to};
pub use swin::SwinBackbone;

#[derive(Debug, thiserror::Error)]
pub enum BiRefNetError {
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("invalid BiRefNet checkpoint or input: {0}")]
    Config(String),
}

/// Tensor names that mark a BiRefNet checkpoint.
pub const MARKER_TENSORS: [&str; 2] = [
    "bb.layers.0.blocks.0.attn.relative_position_bias_table",
    "squeeze_module.0.conv_in.weight",
];

/// Whether the checkpoint is a BiRefNet with a Swin backbone.
pub fn is_birefnet(w: &Weights) -> bool {
    MARKER_TENSORS.iter().all(|n| w.contains(n)) && w.contains("decoder.conv_out1.0.weight")
}

/// A loaded BiRefNet.
#[derive(Debug, Clone)]
pub struct BiRefNet {
    cfg: BiRefNetConfig,
    bb: SwinBackbone,
    squeeze: Vec<BasicDecBlk>,
    decoder: Decoder,
}

impl BiRefNet {
    /// Loads the network described by `cfg` (usually
    /// [`BiRefNetConfig::from_weights`]) in `dtype`; a missing or misshaped
    /// tensor is an error naming it.
    pub fn load(
        gpu: &Gpu,
        w: &Weights,
        cfg: BiRefNetConfig,
        dtype: DType,
    ) -> Result<BiRefNet, BiRefNetError> {
        let bb = SwinBackbone::load(gpu, w, cfg.swin.clone(), dtype)?;
        let squeeze = cfg
            .squeeze
            .iter()
            .enumerate()
            .map(|(i, b)| BasicDecBlk::load(gpu, w, &format!("squeeze_module.{i}"), b, dtype))
            .collect::<Result<Vec<_>, _>>()?;
        let decoder = Decoder::load(gpu, w, &cfg, dtype)?;
        Ok(BiRefNet {
            cfg,
            bb,
            squeeze,
            decoder,
        })
    }

    pub fn config(&self) -> &BiRefNetConfig {
        &self.cfg
    }

    pub fn backbone(&self) -> &SwinBackbone {
        &self.bb
    }

    /// See [`SwinBackbone::set_chunk_bytes`]: a smaller cap runs the
    /// backbone in more, smaller chunks (tests use it to force chunking).
    pub fn set_chunk_bytes(&mut self, bytes: Option<u64>) {
        self.bb.set_chunk_bytes(bytes);
    }

    /// The encoder (`forward_enc` + squeeze): x1..x4 with the half-size pass
    /// concatenated and the context folded into x4.
    pub fn encode(&self, x: &Tensor) -> Result<[Tensor; 4], BiRefNetError> {
        let (h, w) = (x.dim(2), x.dim(3));
        if h < 2 || w < 2 {
            return Err(BiRefNetError::Config(format!(
                "input {h}x{w} is too small (BiRefNet needs sides that are multiples of 32)"
            )));
        }
        let full = self.bb.forward(x)?;
        let half = self
            .bb
            .forward(&upsample_bilinear(x, h / 2, w / 2, true)?)?;
        let mut feats = Vec::with_capacity(4);
        for (f, g) in full.iter().zip(&half) {
            let g = resize_to(g, f.dim(2), f.dim(3))?;
            feats.push(concat(&[f, &g], 1)?);
        }
        let (h4, w4) = (feats[3].dim(2), feats[3].dim(3));
        let mut top: Vec<Tensor> = feats[3 - self.cfg.cxt_num..3]
            .iter()
            .map(|f| resize_to(f, h4, w4))
            .collect::<Result<_, _>>()?;
        top.push(feats[3].clone());
        let refs: Vec<&Tensor> = top.iter().collect();
        let mut x4 = concat(&refs, 1)?;
        for s in &self.squeeze {
            x4 = s.forward(&x4)?;
        }
        let [x1, x2, x3, _]: [Tensor; 4] = feats
            .try_into()
            .map_err(|_| BiRefNetError::Config("backbone returned too few stages".into()))?;
        Ok([x1, x2, x3, x4])
    }

    /// Normalised image `[B, 3, H, W]` (sides multiples of 32) -> mask
    /// probabilities `[B, 1, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, BiRefNetError> {
        let feats = self.encode(x)?;
        let logits = self.decoder.forward(x, &feats)?;
        Ok(sigmoid(&logits)?)
    }
}
