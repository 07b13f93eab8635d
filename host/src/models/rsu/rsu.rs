//! The residual U-blocks (RSU-L and RSU-4F) shared by IS-Net and U²-Net, and
//! their REBNCONV unit (3x3 conv with dilation `d`, BatchNorm, ReLU).
//!
//! BatchNorm is always folded into the conv: checkpoints exported through
//! ONNX already carry it folded (`conv_s1` with a bias, no `bn_s1.*`); the
//! original PyTorch files carry `bn_s1.{weight,bias,running_mean,
//! running_var}`, which [`RebnConv::load`] folds on load (eval mode).

use easel_kernels::ops::concat::concat;
use easel_kernels::ops::conv2d::{Conv2d, Conv2dConfig};
use easel_kernels::ops::pool::{Pool2dConfig, max_pool2d};
use easel_kernels::ops::upsample::{upsample_bilinear, upsample_bilinear_into};
use easel_kernels::{Activation, DType, Epilogue, Gpu, Tensor};

use super::RsuError;
use crate::weights::Weights;

/// PyTorch's `BatchNorm2d` default epsilon.
pub const BN_EPS: f32 = 1e-5;

/// Shape of one RSU block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsuConfig {
    /// L in RSU-L: encoder convs `rebnconv1..rebnconvL`. 4..=7.
    pub height: usize,
    /// RSU-4F: no pooling; dilations 1, 2, 4, 8 instead of resolution steps.
    pub dilated: bool,
    pub in_ch: usize,
    pub mid_ch: usize,
    pub out_ch: usize,
}

impl RsuConfig {
    pub fn new(height: usize, in_ch: usize, mid_ch: usize, out_ch: usize) -> Self {
        Self {
            height,
            dilated: false,
            in_ch,
            mid_ch,
            out_ch,
        }
    }
    /// RSU-4F.
    pub fn dilated(in_ch: usize, mid_ch: usize, out_ch: usize) -> Self {
        Self {
            height: 4,
            dilated: true,
            in_ch,
            mid_ch,
            out_ch,
        }
    }
    /// Dilation of encoder conv `i` (1-based).
    fn enc_dilation(&self, i: usize) -> usize {
        if self.dilated {
            1 << (i - 1)
        } else if i == self.height {
            2
        } else {
            1
        }
    }
    /// Dilation of decoder conv `i`d (1-based, i < height).
    fn dec_dilation(&self, i: usize) -> usize {
        if self.dilated { 1 << (i - 1) } else { 1 }
    }
}

/// Conv weights `[cout, cin, kh, kw]` and bias with an eval-mode BatchNorm
/// folded in: `w' = w * g`, `b' = (b - mean) * g + beta`, `g = gamma /
/// sqrt(var + eps)`.
pub fn fold_batch_norm(
    weight: &mut [f32],
    bias: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) {
    let cout = bias.len();
    let per = weight.len() / cout;
    for o in 0..cout {
        let g = gamma[o] / (var[o] + eps).sqrt();
        weight[o * per..(o + 1) * per]
            .iter_mut()
            .for_each(|w| *w *= g);
        bias[o] = (bias[o] - mean[o]) * g + beta[o];
    }
}

/// Exchanges the first and second half of the input channels of conv
/// weights `[cout, cin, k*k]`.
pub fn swap_input_halves(weight: &mut [f32], cout: usize, cin: usize, kk: usize) {
    let half = cin / 2 * kk;
    for o in 0..cout {
        let row = &mut weight[o * cin * kk..(o + 1) * cin * kk];
        let (a, b) = row.split_at_mut(half);
        a.swap_with_slice(&mut b[..half]);
    }
}

/// Loads `{prefix}.weight` `[cout, cin, k, k]` and `{prefix}.bias` (zeros when
/// absent) as f32 host data, checking shapes.
pub fn load_conv_f32(
    w: &Weights,
    prefix: &str,
    cin: usize,
    cout: usize,
    k: usize,
) -> Result<(Vec<f32>, Vec<f32>), RsuError> {
    let weight = w.f32_checked(&format!("{prefix}.weight"), &[cout, cin, k, k])?;
    let bname = format!("{prefix}.bias");
    let bias = if w.contains(&bname) {
        w.f32_checked(&bname, &[cout])?
    } else {
        vec![0.0; cout]
    };
    Ok((weight, bias))
}

/// A plain conv layer from `{prefix}.weight/bias`.
pub fn load_conv(
    gpu: &Gpu,
    w: &Weights,
    prefix: &str,
    (cin, cout, k): (usize, usize, usize),
    cfg: Conv2dConfig,
    dtype: DType,
) -> Result<Conv2d, RsuError> {
    let (weight, bias) = load_conv_f32(w, prefix, cin, cout, k)?;
    make_conv(gpu, &weight, &bias, (cin, cout, k), cfg, dtype)
}

fn make_conv(
    gpu: &Gpu,
    weight: &[f32],
    bias: &[f32],
    (cin, cout, k): (usize, usize, usize),
    cfg: Conv2dConfig,
    dtype: DType,
) -> Result<Conv2d, RsuError> {
    let wt = Tensor::from_f32(gpu, &[cout, cin, k, k], weight, dtype)?;
    let bt = Tensor::from_f32(gpu, &[cout], bias, dtype)?;
    Ok(Conv2d::new(&wt, Some(&bt), cfg)?)
}

/// REBNCONV: `relu(bn(conv3x3_d(x)))` as one conv with a ReLU epilogue.
#[derive(Debug, Clone)]
pub struct RebnConv {
    conv: Conv2d,
}

impl RebnConv {
    /// Loads `{prefix}.conv_s1` and folds `{prefix}.bn_s1` when present.
    /// `swap_halves` exchanges the two halves of the input channels (the
    /// conv then takes `cat(b, a)` where the checkpoint expects `cat(a, b)`).
    pub fn load(
        gpu: &Gpu,
        w: &Weights,
        prefix: &str,
        cin: usize,
        cout: usize,
        dilation: usize,
        swap_halves: bool,
        dtype: DType,
    ) -> Result<RebnConv, RsuError> {
        let (mut weight, mut bias) = load_conv_f32(w, &format!("{prefix}.conv_s1"), cin, cout, 3)?;
        if swap_halves {
            swap_input_halves(&mut weight, cout, cin, 9);
        }
        let bn = format!("{prefix}.bn_s1");
        if w.contains(&format!("{bn}.running_mean")) {
            let get = |n: &str| w.f32_checked(&format!("{bn}.{n}"), &[cout]);
            let (gamma, beta) = (get("weight")?, get("bias")?);
            let (mean, var) = (get("running_mean")?, get("running_var")?);
            fold_batch_norm(&mut weight, &mut bias, &gamma, &beta, &mean, &var, BN_EPS);
        }
        let conv = make_conv(
            gpu,
            &weight,
            &bias,
            (cin, cout, 3),
            Conv2dConfig::dilated(dilation),
            dtype,
        )?;
        Ok(RebnConv { conv })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, RsuError> {
        Ok(self.conv.forward(x, &Epilogue::act(Activation::Relu))?)
    }

    /// `relu(conv(x)) + residual`: the RSU's closing `hx1d + hxin`, as a new
    /// tensor or into `(out, channel offset)` (see [`Rsu::forward_into`]).
    fn forward_residual_to(
        &self,
        x: &Tensor,
        residual: &Tensor,
        into: Option<(&Tensor, usize)>,
    ) -> Result<Tensor, RsuError> {
        let epi = Epilogue::act(Activation::Relu).residual(residual, 1.0, 1.0);
        match into {
            None => Ok(self.conv.forward(x, &epi)?),
            Some((out, offset)) => {
                self.conv.forward_into(x, out, offset, &epi)?;
                let s = out.shape();
                if offset == 0 && s[0] == 1 {
                    Ok(out.prefix_view(&[1, self.conv.out_channels(), s[2], s[3]])?)
                } else {
                    Ok(out.clone())
                }
            }
        }
    }

    /// Writes `relu(conv(x))` into channels `[offset, offset + cout)` of `out`.
    fn forward_into(&self, x: &Tensor, out: &Tensor, offset: usize) -> Result<(), RsuError> {
        Ok(self
            .conv
            .forward_into(x, out, offset, &Epilogue::act(Activation::Relu))?)
    }
}

/// Max-pool 2x2 stride 2 with `ceil_mode` (odd sizes keep their last row).
pub fn pool2(x: &Tensor) -> Result<Tensor, RsuError> {
    let cfg = Pool2dConfig {
        ceil_mode: true,
        ..Pool2dConfig::new(2, 2)
    };
    Ok(max_pool2d(x, &cfg)?)
}

/// Bilinear resize (half-pixel centres, `align_corners=False`) of `x` to the
/// spatial size of `like` — the reference's `_upsample_like`.
pub fn upsample_like(x: &Tensor, like: &Tensor) -> Result<Tensor, RsuError> {
    let (h, w) = (like.dim(-2), like.dim(-1));
    if (x.dim(-2), x.dim(-1)) == (h, w) {
        return Ok(x.clone());
    }
    Ok(upsample_bilinear(x, h, w, false)?)
}

/// One RSU block: `rebnconvin`, encoder `rebnconv1..L`, decoder
/// `rebnconv{L-1}d..1d`, output `rebnconv1d(...) + rebnconvin(x)`.
#[derive(Debug, Clone)]
pub struct Rsu {
    cfg: RsuConfig,
    conv_in: RebnConv,
    /// `rebnconv1..=L` at index 0..L.
    enc: Vec<RebnConv>,
    /// `rebnconv1d..=(L-1)d` at index 0..L-1.
    dec: Vec<RebnConv>,
}

impl Rsu {
    pub fn load(
        gpu: &Gpu,
        w: &Weights,
        prefix: &str,
        cfg: RsuConfig,
        dtype: DType,
    ) -> Result<Rsu, RsuError> {
        Self::load_with(gpu, w, prefix, cfg, false, dtype)
    }

    /// [`load`](Self::load), with the input halves of `rebnconvin` swapped
    /// when `swap_input` (a U-Net decoder stage fed `cat(skip, up)` where the
    /// checkpoint expects `cat(up, skip)`; equal halves only).
    pub fn load_with(
        gpu: &Gpu,
        w: &Weights,
        prefix: &str,
        cfg: RsuConfig,
        swap_input: bool,
        dtype: DType,
    ) -> Result<Rsu, RsuError> {
        if !(4..=7).contains(&cfg.height) || (cfg.dilated && cfg.height != 4) {
            return Err(RsuError::Config(format!(
                "{prefix}: RSU height {} (dilated: {}) is not supported",
                cfg.height, cfg.dilated
            )));
        }
        let (mid, l) = (cfg.mid_ch, cfg.height);
        let conv_in = RebnConv::load(
            gpu,
            w,
            &format!("{prefix}.rebnconvin"),
            cfg.in_ch,
            cfg.out_ch,
            1,
            swap_input,
            dtype,
        )?;
        let enc = (1..=l)
            .map(|i| {
                let cin = if i == 1 { cfg.out_ch } else { mid };
                let name = format!("{prefix}.rebnconv{i}");
                RebnConv::load(gpu, w, &name, cin, mid, cfg.enc_dilation(i), false, dtype)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let dec = (1..l)
            .map(|i| {
                let cout = if i == 1 { cfg.out_ch } else { mid };
                let name = format!("{prefix}.rebnconv{i}d");
                let d = cfg.dec_dilation(i);
                RebnConv::load(gpu, w, &name, 2 * mid, cout, d, true, dtype)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rsu {
            cfg,
            conv_in,
            enc,
            dec,
        })
    }

    pub fn config(&self) -> &RsuConfig {
        &self.cfg
    }

    /// x `[N, in_ch, H, W]` -> `[N, out_ch, H, W]`.
    ///
    /// Decoder convs take their two inputs in the order (skip, upsampled) —
    /// their weights' input halves were swapped on load — so an encoder conv
    /// can write its output straight into the first half of the decoder's
    /// input buffer and the next conv read it from there.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, RsuError> {
        self.forward_to(x, None)
    }

    /// [`forward`](Self::forward) writing the block's output into channels
    /// `[offset, offset + out_ch)` of `out` (returned as a view of them when
    /// `offset` is 0 and the batch is one image, else `out` itself).
    pub fn forward_into(
        &self,
        x: &Tensor,
        out: &Tensor,
        offset: usize,
    ) -> Result<Tensor, RsuError> {
        self.forward_to(x, Some((out, offset)))
    }

    fn forward_to(&self, x: &Tensor, into: Option<(&Tensor, usize)>) -> Result<Tensor, RsuError> {
        let (l, mid) = (self.cfg.height, self.cfg.mid_ch);
        let hxin = self.conv_in.forward(x)?;
        let buffer = |like: &Tensor| {
            let s = like.shape();
            Tensor::empty(x.gpu(), &[s[0], 2 * mid, s[2], s[3]], like.dtype())
        };
        if self.cfg.dilated {
            // One resolution: cats[i-1] = [hx_i, d_{i+1}], no copies at all.
            let cats = (1..l)
                .map(|_| buffer(&hxin))
                .collect::<Result<Vec<_>, _>>()?;
            self.enc[0].forward_into(&hxin, &cats[0], 0)?;
            for i in 2..l {
                self.enc[i - 1].forward_into(&cats[i - 2], &cats[i - 1], 0)?;
            }
            self.enc[l - 1].forward_into(&cats[l - 2], &cats[l - 2], mid)?;
            for i in (2..l).rev() {
                self.dec[i - 1].forward_into(&cats[i - 1], &cats[i - 2], mid)?;
            }
            return self.dec[0].forward_residual_to(&cats[0], &hxin, into);
        }
        // hx_1..hx_{L-2}: kept for the skips (and pooled). With one image
        // each is written into the first half of its decoder's input buffer
        // and the upsampled deeper result into the second half (no concat);
        // the buffer's first half is a contiguous prefix, so it is also the
        // next level's input. Batches fall back to concatenating.
        let in_place = x.shape()[0] == 1;
        let mut skips: Vec<Tensor> = Vec::with_capacity(l);
        let mut hx = hxin.clone();
        for i in 1..l - 1 {
            if i > 1 {
                hx = pool2(&hx)?;
            }
            if in_place {
                let cat = buffer(&hx)?;
                self.enc[i - 1].forward_into(&hx, &cat, 0)?;
                let s = hx.shape();
                hx = cat.prefix_view(&[1, mid, s[2], s[3]])?;
                skips.push(cat);
            } else {
                hx = self.enc[i - 1].forward(&hx)?;
                skips.push(hx.clone());
            }
        }
        // The deepest pair [hx_{L-1}, hx_L] shares one buffer.
        let pooled = pool2(&hx)?;
        let top = buffer(&pooled)?;
        self.enc[l - 2].forward_into(&pooled, &top, 0)?;
        self.enc[l - 1].forward_into(&top, &top, mid)?;
        let mut d = self.dec[l - 2].forward(&top)?;
        for i in (1..l - 1).rev() {
            let skip = &skips[i - 1];
            let cat = if in_place {
                // Equal sizes (1x1 maps) resize as an exact copy.
                upsample_bilinear_into(&d, skip, mid, false)?;
                skip.clone()
            } else {
                concat(&[skip, &upsample_like(&d, skip)?], 1)?
            };
            d = if i == 1 {
                self.dec[0].forward_residual_to(&cat, &hxin, into)?
            } else {
                self.dec[i - 1].forward(&cat)?
            };
        }
        Ok(d)
    }
}
