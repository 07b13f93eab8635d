//! BiRefNet's decoder (`Decoder` in `birefnet.py`), inference path: per
//! stage, the image re-injected as patches (`dec_ipt`), a `BasicDecBlk`,
//! the gradient-attention gate (`out_ref`: `p * sigmoid(conv(relu(bn(conv
//! (p)))))`, active at inference too), upsampling and the lateral 1x1 conv of
//! the next encoder feature. The multi-scale supervision heads and the
//! gradient predictions only serve training and are not loaded.

use easel_kernels::ops::binary::{add, mul};
use easel_kernels::ops::concat::concat;
use easel_kernels::ops::conv2d::{Conv2d, Conv2dConfig};
use easel_kernels::ops::permute::permute;
use easel_kernels::ops::slice::slice;
use easel_kernels::ops::upsample::upsample_bilinear;
use easel_kernels::{Activation, DType, Epilogue, Gpu, Tensor};

use super::BiRefNetError;
use super::blocks::{BasicDecBlk, ConvAct, SimpleConvs, conv_params};
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
    /// `ipt_blk5..ipt_blk2` (`ipt_blk1` is part of [`Head`]).
    ipt: Option<[SimpleConvs; 4]>,
    /// `decoder_block4..1`.
    blocks: [BasicDecBlk; 4],
    /// `lateral_block4..2`.
    laterals: [ConvAct; 3],
    /// For stages 4, 3, 2.
    gates: Option<[GradientGate; 3]>,
    head: Head,
}

/// The full-resolution end: `conv_out1(cat(up(p1), ipt_blk1(x)))`. Both
/// parts are linear, so it is evaluated without the full-size
/// concatenation (120 channels at 1024²: 500 MB in f32): the 1x1 conv's
/// share of `p1` runs before the upsampling (they commute), and its share
/// of `ipt_blk1` is merged into that block's second conv, which then outputs
/// one channel; `ipt_blk1`'s 64-channel middle runs in bands of rows.
#[derive(Debug, Clone)]
struct Head {
    /// `p1` channels -> 1, with `conv_out1`'s bias.
    on_features: Conv2d,
    /// `ipt_blk1.conv1` and `ipt_blk1.conv_out` merged with its 1x1 share.
    on_image: Option<(Conv2d, Conv2d)>,
}

/// Rows per band of the full-resolution image branch (48: the 128-row
/// parity input crosses two band seams).
const BAND_ROWS: usize = 48;

impl Head {
    fn load(
        gpu: &Gpu,
        w: &Weights,
        cfg: &BiRefNetConfig,
        dtype: DType,
    ) -> Result<Head, BiRefNetError> {
        let feat = cfg.channels[3] / 2;
        let ipt = cfg.dec_ipt.as_ref().map(|d| (d.inter_ch, d.out_ch[4]));
        let total = feat + ipt.map_or(0, |(_, o)| o);
        let (w_out, b_out) = conv_params(w, "decoder.conv_out1.0", (total, 1, 1), None)?;
        let conv = |wt: &[f32], shape: [usize; 4], bias: Option<&[f32]>, pad: usize| {
            let wt = Tensor::from_f32(gpu, &shape, wt, dtype)?;
            let bt = bias
                .map(|b| Tensor::from_f32(gpu, &[shape[0]], b, dtype))
                .transpose()?;
            Ok::<_, BiRefNetError>(Conv2d::new(&wt, bt.as_ref(), Conv2dConfig::padded(pad))?)
        };
        let on_features = conv(&w_out[..feat], [1, feat, 1, 1], Some(&b_out), 0)?;
        let on_image = match ipt {
            Some((inter, out)) => {
                let (w1, b1) = conv_params(w, "decoder.ipt_blk1.conv1", (3, inter, 3), None)?;
                let (w2, b2) = conv_params(w, "decoder.ipt_blk1.conv_out", (inter, out, 3), None)?;
                let share = &w_out[feat..];
                let mut merged = vec![0.0; inter * 9];
                for (o, s) in share.iter().enumerate() {
                    for (m, v) in merged
                        .iter_mut()
                        .zip(&w2[o * inter * 9..(o + 1) * inter * 9])
                    {
                        *m += s * v;
                    }
                }
                let bias: f32 = share.iter().zip(&b2).map(|(s, b)| s * b).sum();
                Some((
                    conv(&w1, [inter, 3, 3, 3], Some(&b1), 1)?,
                    conv(&merged, [1, inter, 3, 3], Some(&[bias]), 1)?,
                ))
            }
            None => None,
        };
        Ok(Head {
            on_features,
            on_image,
        })
    }

    /// Logits `[B, 1, H, W]` from `p1` (quarter size) and the image.
    fn forward(&self, p1: &Tensor, x: &Tensor) -> Result<Tensor, BiRefNetError> {
        let (h, w) = (x.dim(2), x.dim(3));
        let f = resize_to(&self.on_features.forward(p1, &Epilogue::default())?, h, w)?;
        let Some((c1, c2)) = &self.on_image else {
            return Ok(f);
        };
        // Two 3x3 convs: a band needs 2 rows of context on each inner side.
        let mut bands = Vec::new();
        for r0 in (0..h).step_by(BAND_ROWS) {
            let r1 = (r0 + BAND_ROWS).min(h);
            let (a, b) = (r0.saturating_sub(2), (r1 + 2).min(h));
            let band = slice(x, 2, a, b)?;
            let t = c2.forward(
                &c1.forward(&band, &Epilogue::default())?,
                &Epilogue::default(),
            )?;
            bands.push(slice(&t, 2, r0 - a, r0 - a + (r1 - r0))?);
        }
        let refs: Vec<&Tensor> = bands.iter().collect();
        Ok(add(&f, &concat(&refs, 2)?)?)
    }
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
                Some([load(0)?, load(1)?, load(2)?, load(3)?])
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
        let head = Head::load(gpu, w, cfg, dtype)?;
        Ok(Decoder {
            split: cfg.dec_ipt.as_ref().is_some_and(|d| d.split),
            ipt,
            blocks,
            laterals,
            gates,
            head,
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
        self.head.forward(&d, x)
    }
}
