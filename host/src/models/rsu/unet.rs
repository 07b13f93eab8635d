//! The encoder-decoder of RSU blocks shared by IS-Net and U²-Net: six
//! encoder stages joined by 2x2 max-pools, five decoder stages each taking
//! `cat(upsample(deeper), skip)` (filled in place as `cat(skip, up)` with
//! the decoder weights' input halves swapped on load). The stage widths are read off the
//! checkpoint, so U²-Net, U²-Netp and tiny test configurations load alike.

use easel_kernels::ops::concat::concat;
use easel_kernels::ops::upsample::upsample_bilinear_into;
use easel_kernels::{DType, Gpu, Tensor};

use super::RsuError;
use super::rsu::{Rsu, RsuConfig, pool2, upsample_like};
use crate::weights::Weights;

/// Encoder stages `stage1..stage6`: (height, dilated).
pub const ENCODER_KINDS: [(usize, bool); 6] = [
    (7, false),
    (6, false),
    (5, false),
    (4, false),
    (4, true),
    (4, true),
];
/// Decoder stages `stage5d..stage1d`: (height, dilated).
pub const DECODER_KINDS: [(usize, bool); 5] =
    [(4, true), (4, false), (5, false), (6, false), (7, false)];

/// Stage widths of the encoder-decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UNetConfig {
    /// `stage1..stage6`.
    pub encoder: [RsuConfig; 6],
    /// `stage5d..stage1d`.
    pub decoder: [RsuConfig; 5],
}

/// Name of encoder stage `i` (0-based) and decoder stage `i` (0 = `stage5d`).
pub fn encoder_name(i: usize) -> String {
    format!("stage{}", i + 1)
}
pub fn decoder_name(i: usize) -> String {
    format!("stage{}d", 5 - i)
}

fn stage_from_weights(
    w: &Weights,
    name: &str,
    (height, dilated): (usize, bool),
) -> Result<RsuConfig, RsuError> {
    let conv_in = w.shape(&format!("{name}.rebnconvin.conv_s1.weight"))?;
    let conv1 = w.shape(&format!("{name}.rebnconv1.conv_s1.weight"))?;
    if conv_in.len() != 4 || conv1.len() != 4 {
        return Err(RsuError::Config(format!(
            "{name}: conv weights must be 4-D, got {conv_in:?} and {conv1:?}"
        )));
    }
    let deepest = format!("{name}.rebnconv{height}.conv_s1.weight");
    let too_deep = format!("{name}.rebnconv{}.conv_s1.weight", height + 1);
    if !w.contains(&deepest) || w.contains(&too_deep) {
        return Err(RsuError::Config(format!(
            "{name}: expected an RSU of height {height} (rebnconv1..rebnconv{height})"
        )));
    }
    Ok(RsuConfig {
        height,
        dilated,
        in_ch: conv_in[1],
        mid_ch: conv1[0],
        out_ch: conv_in[0],
    })
}

impl UNetConfig {
    /// Reads every stage's widths from the checkpoint's conv shapes.
    pub fn from_weights(w: &Weights) -> Result<UNetConfig, RsuError> {
        let mut encoder = [RsuConfig::new(4, 1, 1, 1); 6];
        for (i, kind) in ENCODER_KINDS.into_iter().enumerate() {
            encoder[i] = stage_from_weights(w, &encoder_name(i), kind)?;
        }
        let mut decoder = [RsuConfig::new(4, 1, 1, 1); 5];
        for (i, kind) in DECODER_KINDS.into_iter().enumerate() {
            decoder[i] = stage_from_weights(w, &decoder_name(i), kind)?;
        }
        let cfg = UNetConfig { encoder, decoder };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Channel counts must chain: each encoder stage feeds the next, each
    /// decoder stage takes `deeper + skip` channels.
    pub fn validate(&self) -> Result<(), RsuError> {
        let bad = |msg: String| Err(RsuError::Config(msg));
        for i in 1..6 {
            if self.encoder[i].in_ch != self.encoder[i - 1].out_ch {
                return bad(format!(
                    "{} takes {} channels but {} gives {}",
                    encoder_name(i),
                    self.encoder[i].in_ch,
                    encoder_name(i - 1),
                    self.encoder[i - 1].out_ch
                ));
            }
        }
        let mut deeper = self.encoder[5].out_ch;
        for i in 0..5 {
            let skip = self.encoder[4 - i].out_ch;
            if self.decoder[i].in_ch != deeper + skip {
                return bad(format!(
                    "{} takes {} channels, expected {deeper} + {skip}",
                    decoder_name(i),
                    self.decoder[i].in_ch
                ));
            }
            deeper = self.decoder[i].out_ch;
        }
        Ok(())
    }
}

/// The loaded encoder-decoder.
#[derive(Debug, Clone)]
pub struct RsuUNet {
    cfg: UNetConfig,
    encoder: Vec<Rsu>,
    decoder: Vec<Rsu>,
    /// Decoders take `cat(skip, up)` (see `load`).
    swapped: bool,
}

/// Decoder outputs `hx1d, hx2d, hx3d, hx4d, hx5d` and the deepest encoder
/// output `hx6`, from fine to coarse: the inputs of the side convs.
pub type SideFeatures = [Tensor; 6];

impl RsuUNet {
    pub fn load(
        gpu: &Gpu,
        w: &Weights,
        cfg: UNetConfig,
        dtype: DType,
    ) -> Result<RsuUNet, RsuError> {
        cfg.validate()?;
        let encoder = (0..6)
            .map(|i| Rsu::load(gpu, w, &encoder_name(i), cfg.encoder[i], dtype))
            .collect::<Result<Vec<_>, _>>()?;
        // Decoder stages take cat(skip, up) (their rebnconvin's input halves
        // swapped on load) so the encoder stage can write the skip straight
        // into the first half of that buffer; only with equal halves.
        let swapped = (0..5).all(|i| 2 * cfg.encoder[4 - i].out_ch == cfg.decoder[i].in_ch);
        let decoder = (0..5)
            .map(|i| Rsu::load_with(gpu, w, &decoder_name(i), cfg.decoder[i], swapped, dtype))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RsuUNet {
            cfg,
            encoder,
            decoder,
            swapped,
        })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// x `[N, encoder[0].in_ch, H, W]` -> the side-conv inputs.
    pub fn forward(&self, x: &Tensor) -> Result<SideFeatures, RsuError> {
        // One image with swapped decoders: each encoder stage i < 5 writes
        // its output into the first half of decoder stage 4 - i's input
        // buffer (a contiguous prefix, so also the next stage's input), and
        // the upsampled deeper result fills the second half: no concat.
        let in_place = self.swapped && x.shape()[0] == 1;
        let mut skips = Vec::with_capacity(5);
        let mut hx = x.clone();
        for (i, stage) in self.encoder.iter().enumerate() {
            if i > 0 {
                hx = pool2(&hx)?;
            }
            if in_place && i < 5 {
                let s = hx.shape();
                let c = self.cfg.encoder[i].out_ch;
                let cat = Tensor::empty(x.gpu(), &[1, 2 * c, s[2], s[3]], hx.dtype())?;
                hx = stage.forward_into(&hx, &cat, 0)?;
                skips.push(cat);
            } else {
                hx = stage.forward(&hx)?;
                if i < 5 {
                    skips.push(hx.clone());
                }
            }
        }
        let hx6 = hx.clone();
        let mut outs = Vec::with_capacity(6);
        let mut d = hx;
        for (i, stage) in self.decoder.iter().enumerate() {
            let skip = &skips[4 - i];
            let cat = if in_place {
                let c = self.cfg.encoder[4 - i].out_ch;
                upsample_bilinear_into(&d, skip, c, false)?;
                skip.clone()
            } else if self.swapped {
                concat(&[skip, &upsample_like(&d, skip)?], 1)?
            } else {
                concat(&[&upsample_like(&d, skip)?, skip], 1)?
            };
            d = stage.forward(&cat)?;
            outs.push(d.clone());
        }
        // outs = [hx5d, hx4d, hx3d, hx2d, hx1d]
        let [hx5d, hx4d, hx3d, hx2d, hx1d]: [Tensor; 5] =
            outs.try_into().expect("five decoder stages");
        Ok([hx1d, hx2d, hx3d, hx4d, hx5d, hx6])
    }
}
