//! U²-Net and U²-Netp (`U2NET` / `U2NETP` of the U-2-Net reference; same
//! code, different widths): the RSU encoder-decoder, six 3x3 side convs
//! upsampled to the input size, and the 1x1 `outconv` fusing them. The
//! output is `sigmoid(outconv(cat(d1..d6)))` (the reference's `d0`).

use easel_kernels::ops::concat::concat;
use easel_kernels::ops::conv2d::{Conv2d, Conv2dConfig};
use easel_kernels::ops::unary::sigmoid;
use easel_kernels::{DType, Epilogue, Gpu, Tensor};

use super::RsuError;
use super::rsu::{load_conv, upsample_like};
use super::unet::{RsuUNet, UNetConfig};
use crate::weights::Weights;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct U2NetConfig {
    pub unet: UNetConfig,
    /// Output channels of each side conv (`out_ch` of the reference, 1).
    pub out_ch: usize,
}

impl U2NetConfig {
    pub fn from_weights(w: &Weights) -> Result<U2NetConfig, RsuError> {
        let unet = UNetConfig::from_weights(w)?;
        let out_ch = w.shape("side1.weight")?.first().copied().unwrap_or(0);
        Ok(U2NetConfig { unet, out_ch })
    }

    /// Input channels of the six side convs: hx1d..hx5d, hx6.
    fn side_channels(&self) -> [usize; 6] {
        let d = &self.unet.decoder;
        [
            d[4].out_ch,
            d[3].out_ch,
            d[2].out_ch,
            d[1].out_ch,
            d[0].out_ch,
            self.unet.encoder[5].out_ch,
        ]
    }
}

#[derive(Debug, Clone)]
pub struct U2Net {
    cfg: U2NetConfig,
    unet: RsuUNet,
    sides: Vec<Conv2d>,
    outconv: Conv2d,
}

impl U2Net {
    pub fn load(gpu: &Gpu, w: &Weights, cfg: U2NetConfig, dtype: DType) -> Result<U2Net, RsuError> {
        let unet = RsuUNet::load(gpu, w, cfg.unet.clone(), dtype)?;
        let sides = cfg
            .side_channels()
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let name = format!("side{}", i + 1);
                load_conv(
                    gpu,
                    w,
                    &name,
                    (c, cfg.out_ch, 3),
                    Conv2dConfig::same3x3(),
                    dtype,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outconv = load_conv(
            gpu,
            w,
            "outconv",
            (6 * cfg.out_ch, cfg.out_ch, 1),
            Conv2dConfig::default(),
            dtype,
        )?;
        Ok(U2Net {
            cfg,
            unet,
            sides,
            outconv,
        })
    }

    pub fn config(&self) -> &U2NetConfig {
        &self.cfg
    }

    /// Normalised image `[N, 3, H, W]` -> `sigmoid(d0)` `[N, out_ch, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, RsuError> {
        let feats = self.unet.forward(x)?;
        let none = Epilogue::default();
        let d1 = self.sides[0].forward(&feats[0], &none)?;
        let mut maps = vec![d1.clone()];
        for (side, f) in self.sides.iter().zip(&feats).skip(1) {
            maps.push(upsample_like(&side.forward(f, &none)?, &d1)?);
        }
        let refs: Vec<&Tensor> = maps.iter().collect();
        let d0 = self.outconv.forward(&concat(&refs, 1)?, &none)?;
        Ok(sigmoid(&d0)?)
    }
}
