//! RRDBNet (ESRGAN / Real-ESRGAN x4plus, x2plus, anime_6B), basicsr layout:
//!
//! ```text
//! feat = conv_first(pixel_unshuffle(x, u))        u = 1 (x4), 2 (x2), 4 (x1)
//! feat = feat + conv_body(RRDB^num_block(feat))
//! feat = lrelu(conv_up1(nearest2x(feat))); feat = lrelu(conv_up2(nearest2x(feat)))
//! out  = conv_last(lrelu(conv_hr(feat)))
//! RRDB(x) = 0.2 * RDB3(RDB2(RDB1(x))) + x
//! RDB(x)  = 0.2 * conv5([x, x1, x2, x3, x4]) + x,  x_k = lrelu(conv_k([x, x1..x_{k-1}]))
//! ```
//!
//! The dense concatenations cost no copies: each RDB works in one
//! `[1, nf + 4*gc, H, W]` tensor whose first `nf` channels hold its input;
//! conv1..conv4 read a channel prefix and write their output at the next
//! channel offset, and conv5 writes the block output straight into channels
//! `[0, nf)` of the next RDB's tensor.

use easel_kernels::ops::binary::add_scaled;
use easel_kernels::ops::conv2d::Conv2d;
use easel_kernels::ops::pixel_shuffle::pixel_unshuffle;
use easel_kernels::ops::upsample::upsample_nearest;
use easel_kernels::{Activation, DType, Epilogue, Gpu, Tensor};

use super::{ModelError, load_conv3x3, shape_of};
use crate::weights::Weights;

const ARCH: &str = "RRDBNet";
/// Leaky-ReLU slope used everywhere in RRDBNet.
const SLOPE: f32 = 0.2;
/// Residual scaling of RDB and RRDB outputs.
const RES_SCALE: f32 = 0.2;

/// Tile context that keeps tiled output within 50 dB PSNR of the whole image.
pub const DEFAULT_TILE_PAD: usize = 24;

/// Hyper-parameters, detected from a checkpoint by [`RrdbConfig::detect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrdbConfig {
    /// Image channels in (1 or 3), before pixel-unshuffle.
    pub in_ch: usize,
    pub out_ch: usize,
    pub num_feat: usize,
    pub num_block: usize,
    pub num_grow_ch: usize,
    /// Pixel-unshuffle factor on the input: 1 (x4), 2 (x2) or 4 (x1).
    pub unshuffle: usize,
    /// Overall upscaling factor, `4 / unshuffle`.
    pub scale: usize,
}

impl RrdbConfig {
    /// Reads num_feat, num_block, num_grow_ch and the scale from the names
    /// and shapes of `conv_first`, `body.{i}.rdb1.conv1` and `conv_last`.
    pub fn detect(w: &Weights) -> Result<RrdbConfig, ModelError> {
        let path = w.path().display().to_string();
        let bad = |msg: String| ModelError::Inconsistent {
            path: path.clone(),
            arch: ARCH,
            msg,
        };
        let first = shape_of(w, "conv_first.weight")?;
        let [num_feat, first_in, 3, 3] = first[..] else {
            return Err(bad(format!(
                "conv_first.weight has shape {first:?}, expected [nf, in, 3, 3]"
            )));
        };
        // basicsr unshuffles x2 models by 2 and x1 models by 4 before conv_first.
        let (in_ch, unshuffle) = match first_in {
            1 | 3 => (first_in, 1),
            4 | 12 => (first_in / 4, 2),
            16 | 48 => (first_in / 16, 4),
            c => {
                return Err(bad(format!(
                    "conv_first takes {c} channels; expected 1/3 (x4), 4/12 (x2) or 16/48 (x1)"
                )));
            }
        };
        let mut num_block = 0;
        while w.contains(&format!("body.{num_block}.rdb1.conv1.weight")) {
            num_block += 1;
        }
        let c1 = shape_of(w, "body.0.rdb1.conv1.weight")?;
        let num_grow_ch = c1[0];
        let last = shape_of(w, "conv_last.weight")?;
        let out_ch = last[0];
        if out_ch == 0 || num_grow_ch == 0 {
            return Err(bad("zero-sized conv_last or conv1".into()));
        }
        // A stray higher index means the blocks are not numbered 0..n.
        let stray = w.index().keys().find_map(|k| {
            let i: usize = k.strip_prefix("body.")?.split('.').next()?.parse().ok()?;
            (i >= num_block).then(|| k.clone())
        });
        if let Some(k) = stray {
            return Err(bad(format!(
                "tensor '{k}' but blocks are numbered 0..{num_block}"
            )));
        }
        Ok(RrdbConfig {
            in_ch,
            out_ch,
            num_feat,
            num_block,
            num_grow_ch,
            unshuffle,
            scale: 4 / unshuffle,
        })
    }

    fn dense_ch(&self) -> usize {
        self.num_feat + 4 * self.num_grow_ch
    }

    /// Largest single tensor for an `h`x`w` image input: the dense block
    /// tensor or the `nf`-channel map at 4x the feature resolution.
    pub fn largest_tensor_elems(&self, h: usize, w: usize) -> usize {
        let hw = (h / self.unshuffle) * (w / self.unshuffle);
        hw * self.dense_ch().max(16 * self.num_feat)
    }

    /// Live elements at the peak: four dense tensors in the body, or a conv's
    /// input and output at 4x resolution plus the nearest-upsampled copy.
    pub fn peak_elems(&self, h: usize, w: usize) -> usize {
        let hw = (h / self.unshuffle) * (w / self.unshuffle);
        hw * (4 * self.dense_ch() + self.num_feat).max(3 * 16 * self.num_feat)
    }
}

/// One residual dense block.
#[derive(Debug)]
struct Rdb {
    /// conv1..conv4: `nf + k*gc -> gc`, leaky ReLU; conv5: `nf + 4*gc -> nf`.
    convs: [Conv2d; 5],
}

impl Rdb {
    fn load(
        w: &Weights,
        gpu: &Gpu,
        prefix: &str,
        c: &RrdbConfig,
        dtype: DType,
    ) -> Result<Rdb, ModelError> {
        let (nf, gc) = (c.num_feat, c.num_grow_ch);
        let conv = |k: usize, cout: usize| {
            load_conv3x3(
                w,
                gpu,
                &format!("{prefix}.conv{k}"),
                nf + (k - 1) * gc,
                cout,
                dtype,
            )
        };
        Ok(Rdb {
            convs: [
                conv(1, gc)?,
                conv(2, gc)?,
                conv(3, gc)?,
                conv(4, gc)?,
                conv(5, nf)?,
            ],
        })
    }

    /// Fills channels `[nf, nf + 4*gc)` of `feat` from its first `nf`.
    fn dense(&self, feat: &Tensor, nf: usize, gc: usize) -> Result<(), ModelError> {
        let epi = Epilogue::act(Activation::LeakyRelu(SLOPE));
        for (k, conv) in self.convs[..4].iter().enumerate() {
            conv.forward_into(feat, feat, nf + k * gc, &epi)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Rrdb {
    rdbs: [Rdb; 3],
}

impl Rrdb {
    /// `src` holds the block input in its first `nf` channels (the rest is
    /// scratch); the block output is written to channels `[0, nf)` of `dst`.
    fn forward(&self, src: &Tensor, dst: &Tensor, nf: usize, gc: usize) -> Result<(), ModelError> {
        let [_, dense, h, w] = src.shape().try_into().expect("4-D");
        let head = [1, nf, h, w];
        let x = src.prefix_view(&head)?;
        let gpu = src.gpu();
        let f2 = Tensor::empty(gpu, &[1, dense, h, w], src.dtype())?;
        let f3 = Tensor::empty(gpu, &[1, dense, h, w], src.dtype())?;
        // RDB1 and RDB2: out = 0.2 * conv5 + in, written as the next RDB's input.
        self.rdbs[0].dense(src, nf, gc)?;
        self.rdbs[0].convs[4].forward_into(
            src,
            &f2,
            0,
            &Epilogue::default().residual(&x, RES_SCALE, 1.0),
        )?;
        let r1 = f2.prefix_view(&head)?;
        self.rdbs[1].dense(&f2, nf, gc)?;
        self.rdbs[1].convs[4].forward_into(
            &f2,
            &f3,
            0,
            &Epilogue::default().residual(&r1, RES_SCALE, 1.0),
        )?;
        // RDB3 and the RRDB skip: 0.2 * (0.2 * conv5 + r2) + x
        //   = 0.04 * conv5 + (0.2 * r2 + x), one fused epilogue.
        let r2 = f3.prefix_view(&head)?;
        self.rdbs[2].dense(&f3, nf, gc)?;
        let skip = add_scaled(&r2, RES_SCALE, &x, 1.0)?;
        self.rdbs[2].convs[4].forward_into(
            &f3,
            dst,
            0,
            &Epilogue::default().residual(&skip, RES_SCALE * RES_SCALE, 1.0),
        )?;
        Ok(())
    }
}

/// RRDBNet with its weights on the GPU.
#[derive(Debug)]
pub struct RrdbNet {
    cfg: RrdbConfig,
    dtype: DType,
    conv_first: Conv2d,
    body: Vec<Rrdb>,
    conv_body: Conv2d,
    conv_up1: Conv2d,
    conv_up2: Conv2d,
    conv_hr: Conv2d,
    conv_last: Conv2d,
}

impl RrdbNet {
    /// Uploads every tensor by its checkpoint name, checking its shape.
    pub fn load(
        w: &Weights,
        cfg: &RrdbConfig,
        gpu: &Gpu,
        dtype: DType,
    ) -> Result<RrdbNet, ModelError> {
        let nf = cfg.num_feat;
        let first_in = cfg.in_ch * cfg.unshuffle * cfg.unshuffle;
        let body = (0..cfg.num_block)
            .map(|i| {
                let rdb = |j: usize| Rdb::load(w, gpu, &format!("body.{i}.rdb{j}"), cfg, dtype);
                Ok(Rrdb {
                    rdbs: [rdb(1)?, rdb(2)?, rdb(3)?],
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(RrdbNet {
            cfg: cfg.clone(),
            dtype,
            conv_first: load_conv3x3(w, gpu, "conv_first", first_in, nf, dtype)?,
            body,
            conv_body: load_conv3x3(w, gpu, "conv_body", nf, nf, dtype)?,
            conv_up1: load_conv3x3(w, gpu, "conv_up1", nf, nf, dtype)?,
            conv_up2: load_conv3x3(w, gpu, "conv_up2", nf, nf, dtype)?,
            conv_hr: load_conv3x3(w, gpu, "conv_hr", nf, nf, dtype)?,
            conv_last: load_conv3x3(w, gpu, "conv_last", nf, cfg.out_ch, dtype)?,
        })
    }

    pub fn config(&self) -> &RrdbConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `[1, in_ch, H, W]` -> `[1, out_ch, H*scale, W*scale]`; H and W must be
    /// multiples of the unshuffle factor.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let c = &self.cfg;
        let (nf, gc, u) = (c.num_feat, c.num_grow_ch, c.unshuffle);
        let (h, w) = match x.shape() {
            &[1, ch, h, w] if ch == c.in_ch && h % u == 0 && w % u == 0 => (h, w),
            s => {
                return Err(ModelError::BadInput {
                    arch: ARCH,
                    msg: format!(
                        "input {s:?}: expected [1, {}, H, W] with H, W multiples of {u}",
                        c.in_ch
                    ),
                });
            }
        };
        let gpu = x.gpu();
        let (hf, wf) = (h / u, w / u);
        let unshuffled;
        let input = if u > 1 {
            unshuffled = pixel_unshuffle(x, u)?;
            &unshuffled
        } else {
            x
        };
        let dense_shape = [1, c.dense_ch(), hf, wf];
        let head = [1, nf, hf, wf];
        // conv_first writes into the first RRDB's dense tensor; its output
        // stays there (channels [0, nf)) for the long skip.
        let first = Tensor::empty(gpu, &dense_shape, self.dtype)?;
        self.conv_first
            .forward_into(input, &first, 0, &Epilogue::default())?;
        let feat = first.prefix_view(&head)?;
        let mut cur = first.clone();
        for block in &self.body {
            let next = Tensor::empty(gpu, &dense_shape, self.dtype)?;
            block.forward(&cur, &next, nf, gc)?;
            cur = next;
        }
        let trunk = Tensor::empty(gpu, &head, self.dtype)?;
        self.conv_body.forward_into(
            &cur,
            &trunk,
            0,
            &Epilogue::default().residual(&feat, 1.0, 1.0),
        )?;
        drop((cur, first, feat));
        let lrelu = Epilogue::act(Activation::LeakyRelu(SLOPE));
        let up = self
            .conv_up1
            .forward(&upsample_nearest(&trunk, 2 * hf, 2 * wf)?, &lrelu)?;
        drop(trunk);
        let up = self
            .conv_up2
            .forward(&upsample_nearest(&up, 4 * hf, 4 * wf)?, &lrelu)?;
        let hr = self.conv_hr.forward(&up, &lrelu)?;
        drop(up);
        Ok(self.conv_last.forward(&hr, &Epilogue::default())?)
    }
}
