//! IS-Net (`ISNetDIS` of the DIS reference): a stride-2 3x3 stem conv, the
//! RSU encoder-decoder, and the `side1` head upsampled to the input size.
//! The reference returns six sigmoid side maps; the exported `output` (and
//! every consumer, rembg included) uses only the first, so only `side1` is
//! computed here.

use easel_kernels::ops::conv2d::{Conv2d, Conv2dConfig};
use easel_kernels::ops::unary::sigmoid;
use easel_kernels::ops::upsample::upsample_bilinear;
use easel_kernels::{DType, Epilogue, Gpu, Tensor};

use super::RsuError;
use super::rsu::load_conv;
use super::unet::{RsuUNet, UNetConfig};
use crate::weights::Weights;

/// IS-Net shape: the stem's widths plus the encoder-decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsNetConfig {
    pub in_ch: usize,
    /// `conv_in` output channels (64 in ISNetDIS).
    pub stem_ch: usize,
    pub unet: UNetConfig,
}

impl IsNetConfig {
    pub fn from_weights(w: &Weights) -> Result<IsNetConfig, RsuError> {
        let stem = w.shape("conv_in.weight")?.to_vec();
        let unet = UNetConfig::from_weights(w)?;
        if stem.len() != 4 || stem[0] != unet.encoder[0].in_ch {
            return Err(RsuError::Config(format!(
                "conv_in.weight {stem:?} does not feed stage1 ({} channels)",
                unet.encoder[0].in_ch
            )));
        }
        Ok(IsNetConfig {
            in_ch: stem[1],
            stem_ch: stem[0],
            unet,
        })
    }
}

#[derive(Debug, Clone)]
pub struct IsNet {
    cfg: IsNetConfig,
    conv_in: Conv2d,
    unet: RsuUNet,
    side1: Conv2d,
}

impl IsNet {
    pub fn load(gpu: &Gpu, w: &Weights, cfg: IsNetConfig, dtype: DType) -> Result<IsNet, RsuError> {
        let stride2 = Conv2dConfig {
            stride: (2, 2),
            ..Conv2dConfig::same3x3()
        };
        let conv_in = load_conv(
            gpu,
            w,
            "conv_in",
            (cfg.in_ch, cfg.stem_ch, 3),
            stride2,
            dtype,
        )?;
        let unet = RsuUNet::load(gpu, w, cfg.unet.clone(), dtype)?;
        let hx1d = cfg.unet.decoder[4].out_ch;
        let side1 = load_conv(
            gpu,
            w,
            "side1",
            (hx1d, 1, 3),
            Conv2dConfig::same3x3(),
            dtype,
        )?;
        Ok(IsNet {
            cfg,
            conv_in,
            unet,
            side1,
        })
    }

    pub fn config(&self) -> &IsNetConfig {
        &self.cfg
    }

    /// Normalised image `[N, in_ch, H, W]` -> mask probabilities `[N, 1, H, W]`
    /// (sigmoid of `side1`, bilinearly upsampled to the input size first).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, RsuError> {
        let h = self.conv_in.forward(x, &Epilogue::default())?;
        let feats = self.unet.forward(&h)?;
        let d1 = self.side1.forward(&feats[0], &Epilogue::default())?;
        let d1 = upsample_bilinear(&d1, x.dim(-2), x.dim(-1), false)?;
        Ok(sigmoid(&d1)?)
    }
}
