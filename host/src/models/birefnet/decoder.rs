//! BiRefNet's decoder (`Decoder` in `birefnet.py`), inference path: per
//! stage, the image re-injected as patches (`dec_ipt`), a `BasicDecBlk`,
//! the gradient-attention gate (`out_ref`: `p * sigmoid(conv(relu(bn(conv
//! (p)))))`, active at inference too), upsampling and the lateral 1x1 conv of
//! the next encoder feature. The multi-scale supervision heads and the
//! gradient predictions only serve training and are not loaded.

use easel_kernels::ops::binary::{add, mul};
use easel_kernels::ops::concat::concat;
use easel_kernels::ops::permute::permute;
use easel_kernels::ops::upsample::upsample_bilinear;
use easel_kernels::{Activation, DType, Gpu, Tensor};

use super::BiRefNetError;
use super::blocks::{BasicDecBlk, ConvAct, SimpleConvs};
use super::config::{BiRefNetConfig, cfg_err};
use crate::weights::Weights;

/// `F.interpolate(x, size, mode='bilinear', align_corners=True)`, skipped
/// when the size already matches (the identity either way).
pub(super) fn resize_to(x: &Tensor, h: usize, w: usize) -> Result<Tensor, BiRefNetError> {
    if x.dim(2) == h && x.dim(3) == w {
        Ok(x.clone())
    } else {
        Ok(upsample_bilinear(x, h, w, true)?)
    }
}

/// `image2patches(x, patch_ref, 'b c (hg h) (wg w) -> b (c hg wg) h w')`:
/// the image cut into a grid with cells the size of the feature map, the
/// cells stacked channel-wise.
fn image_to_patches(x: &Tensor, h: usize, w: usize) -> Result<Tensor, BiRefNetError> {
    let (b, c, ih, iw) = (x.dim(0), x.dim(1), x.dim(2), x.dim(3));
    let (gh, gw) = (ih / h, iw / w);
    if gh == 0 || gw == 0 || gh * h != ih || gw * w != iw {
        return Err(cfg_err(format!(
            "the {ih}x{iw} input does not split into a grid of {h}x{w} patches; \
             BiRefNet needs sides that are multiples of 32"
        )));
    }
    let t = x.reshape(&[b, c, gh, h, gw, w])?;
    Ok(permute(&t, &[0, 1, 2, 4, 3, 5])?.reshape(&[b, c * gh * gw, h, w])?)
}

/// `gdt_convs_k` + `gdt_convs_attn_k`.
#[derive(Debug, Clone)]
struct GradientGate {
    convs: ConvAct,
    attn: ConvAct,
}

impl GradientGate {
    fn forward(&self, p: &Tensor) -> Result<Tensor, BiRefNetError> {
        let a = self.attn.forward(&self.convs.forward(p)?)?;
        Ok(mul(p, &a)?)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Decoder {
    split: bool,
    /// `ipt_blk5..ipt_blk1`.
    ipt: Option<[SimpleConvs; 5]>,
    /// `decoder_block4..1`.
    blocks: [BasicDecBlk; 4],
    /// `lateral_block4..2`.
    laterals: [ConvAct; 3],
    /// For stages 4, 3, 2.
    gates: Option<[GradientGate; 3]>,
    conv_out: ConvAct,
}

impl Decoder {
    pub(super) fn load(
        gpu: &Gpu,
        w: &Weights,
        cfg: &BiRefNetConfig,
        dtype: DType,
    ) -> Result<Decoder, BiRefNetError> {
        let ch = cfg.channels;
        let ipt = match &cfg.dec_ipt {
            Some(d) => {
                // Split grids have 32, 16, 8, 4, 1 cells per side: 3 * g² channels.
                let cin = |k: usize| {
                    if d.split {
                        3 * [1024, 256, 64, 16, 1][k]
                    } else {
                        3
                    }
                };
                let load = |k: usize| {
                    SimpleConvs::load(
                        gpu,
                        w,
                        &format!("decoder.ipt_blk{}", 5 - k),
                        (cin(k), d.inter_ch, d.out_ch[k]),
                        dtype,
                    )
                };
                Some([load(0)?, load(1)?, load(2)?, load(3)?, load(4)?])
            }
            None => None,
        };
        let blk = |k: usize| {
            BasicDecBlk::load(
                gpu,
                w,
                &format!("decoder.decoder_block{}", 4 - k),
                &cfg.dec_blocks[k],
                dtype,
            )
        };
        let blocks = [blk(0)?, blk(1)?, blk(2)?, blk(3)?];
        let lat = |i: usize, c: usize| {
            ConvAct::load(
                gpu,
                w,
                &format!("decoder.lateral_block{i}.conv"),
                (c, c, 1),
                None,
                Activation::None,
                dtype,
            )
        };
        let laterals = [lat(4, ch[1])?, lat(3, ch[2])?, lat(2, ch[3])?];
        let gates = match cfg.out_ref {
            Some((n, bn)) => {
                let gate = |i: usize, c: usize| -> Result<GradientGate, BiRefNetError> {
                    let bn_name = format!("decoder.gdt_convs_{i}.1");
                    Ok(GradientGate {
                        convs: ConvAct::load(
                            gpu,
                            w,
                            &format!("decoder.gdt_convs_{i}.0"),
                            (c, n, 3),
                            bn.then_some(bn_name.as_str()),
                            Activation::Relu,
                            dtype,
                        )?,
                        attn: ConvAct::load(
                            gpu,
                            w,
                            &format!("decoder.gdt_convs_attn_{i}.0"),
                            (n, 1, 1),
                            None,
                            Activation::Sigmoid,
                            dtype,
                        )?,
                    })
                };
                Some([gate(4, ch[1])?, gate(3, ch[2])?, gate(2, ch[3])?])
            }
            None => None,
        };
        let last_in = ch[3] / 2 + cfg.dec_ipt.as_ref().map_or(0, |d| d.out_ch[4]);
        let conv_out = ConvAct::load(
            gpu,
            w,
            "decoder.conv_out1.0",
            (last_in, 1, 1),
            None,
            Activation::None,
            dtype,
        )?;
        Ok(Decoder {
            split: cfg.dec_ipt.as_ref().is_some_and(|d| d.split),
            ipt,
            blocks,
            laterals,
            gates,
            conv_out,
        })
    }

    /// Appends the image-patch branch `k` (0 = ipt_blk5) at the size of `p`.
    fn with_patches(&self, k: usize, x: &Tensor, p: Tensor) -> Result<Tensor, BiRefNetError> {
        let Some(ipt) = &self.ipt else { return Ok(p) };
        let (h, w) = (p.dim(2), p.dim(3));
        let patches = if self.split {
            image_to_patches(x, h, w)?
        } else {
            x.clone()
        };
        let t = ipt[k].forward(&resize_to(&patches, h, w)?)?;
        Ok(concat(&[&p, &t], 1)?)
    }

    /// `x`: the network input; `feats`: encoder outputs x1..x4 (x4 after the
    /// squeeze module). Returns the mask logits `[B, 1, H, W]`.
    pub(super) fn forward(&self, x: &Tensor, feats: &[Tensor; 4]) -> Result<Tensor, BiRefNetError> {
        let mut p = self.with_patches(0, x, feats[3].clone())?;
        for stage in 0..3 {
            let mut d = self.blocks[stage].forward(&p)?;
            if let Some(g) = &self.gates {
                d = g[stage].forward(&d)?;
            }
            let lower = &feats[2 - stage];
            let up = resize_to(&d, lower.dim(2), lower.dim(3))?;
            let lat = self.laterals[stage].forward(lower)?;
            p = self.with_patches(stage + 1, x, add(&up, &lat)?)?;
        }
        let d = self.blocks[3].forward(&p)?;
        let d = resize_to(&d, x.dim(2), x.dim(3))?;
        let d = self.with_patches(4, x, d)?;
        self.conv_out.forward(&d)
    }
}
