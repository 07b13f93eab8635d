//! Swin Transformer v1 backbone as BiRefNet builds it (`swin_v1.py`):
//! patch embedding (4x4 stride-4 conv + LayerNorm), four stages of window
//! attention blocks with relative position bias (odd blocks shift the
//! windows by `window / 2` and mask the wrapped regions with -100), patch
//! merging between stages, and a LayerNorm on each stage output.
//!
//! Tokens are kept as `[B, H, W, C]` (channels last) so LayerNorm and the
//! linear layers work on the last axis. Feature maps are zero-padded to
//! whole windows after `norm1`, exactly as the reference does, so padded
//! tokens take part in attention with value zero.
//!
//! Every block runs its window attention over runs of window rows and its
//! MLP over runs of tokens, sized so that no intermediate exceeds the
//! adapter's storage binding limit (or a cap set with
//! [`SwinBackbone::set_chunk_bytes`]): Swin-L at 1024² needs 160 MB for qkv,
//! 201 MB for the MLP hidden layer and 241 MB for the shift mask plus
//! relative bias at stage 1, against lavapipe's 128 MiB. The relative bias
//! stays `[1, heads, N, N]`; the shift mask is built once per stage and chunk
//! and added to it per chunk.

use easel_kernels::ops::attention::attention;
use easel_kernels::ops::binary::add;
use easel_kernels::ops::concat::concat;
use easel_kernels::ops::conv2d::{Conv2d, Conv2dConfig};
use easel_kernels::ops::layer_norm::layer_norm;
use easel_kernels::ops::matmul::linear;
use easel_kernels::ops::permute::permute;
use easel_kernels::ops::slice::slice;
use easel_kernels::{Activation, DType, Epilogue, Gpu, Tensor};

use super::BiRefNetError;
use super::config::SwinConfig;
use crate::weights::Weights;

/// PyTorch `nn.LayerNorm` default epsilon.
const LN_EPS: f32 = 1e-5;
/// The value the reference puts between tokens of different shifted regions.
const SHIFT_MASK: f32 = -100.0;

/// A LayerNorm's affine parameters.
#[derive(Debug, Clone)]
pub(super) struct Norm {
    gamma: Tensor,
    beta: Tensor,
}

impl Norm {
    pub(super) fn load(
        gpu: &Gpu,
        w: &Weights,
        p: &str,
        dim: usize,
        dtype: DType,
    ) -> Result<Norm, BiRefNetError> {
        Ok(Norm {
            gamma: w.tensor(gpu, &format!("{p}.weight"), &[dim], dtype)?,
            beta: w.tensor(gpu, &format!("{p}.bias"), &[dim], dtype)?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor, BiRefNetError> {
        Ok(layer_norm(x, Some(&self.gamma), Some(&self.beta), LN_EPS)?)
    }
}

/// An `nn.Linear`.
#[derive(Debug, Clone)]
struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    fn load(
        gpu: &Gpu,
        w: &Weights,
        p: &str,
        (inf, outf): (usize, usize),
        bias: bool,
        dtype: DType,
    ) -> Result<Linear, BiRefNetError> {
        Ok(Linear {
            weight: w.tensor(gpu, &format!("{p}.weight"), &[outf, inf], dtype)?,
            bias: if bias {
                Some(w.tensor(gpu, &format!("{p}.bias"), &[outf], dtype)?)
            } else {
                None
            },
        })
    }
    fn forward(&self, x: &Tensor, epi: &Epilogue) -> Result<Tensor, BiRefNetError> {
        Ok(linear(x, &self.weight, self.bias.as_ref(), epi)?)
    }

    /// A biased `nn.Linear` of `parts * outf` outputs loaded as `parts`
    /// linears of `outf` (the fused qkv projection as q, k, v: each result
    /// is then contiguous, with no slicing of a fused output).
    fn load_split(
        gpu: &Gpu,
        w: &Weights,
        p: &str,
        (inf, outf): (usize, usize),
        parts: usize,
        dtype: DType,
    ) -> Result<Vec<Linear>, BiRefNetError> {
        let weight = w.f32_checked(&format!("{p}.weight"), &[parts * outf, inf])?;
        let bias = w.f32_checked(&format!("{p}.bias"), &[parts * outf])?;
        (0..parts)
            .map(|i| {
                Ok(Linear {
                    weight: Tensor::from_f32(
                        gpu,
                        &[outf, inf],
                        &weight[i * outf * inf..(i + 1) * outf * inf],
                        dtype,
                    )?,
                    bias: Some(Tensor::from_f32(
                        gpu,
                        &[outf],
                        &bias[i * outf..(i + 1) * outf],
                        dtype,
                    )?),
                })
            })
            .collect()
    }
}

/// The relative position bias of one block, `[1, heads, N, N]` with
/// `N = window²`: `table[index[i][j]][h]` (`WindowAttention` in the reference).
fn relative_bias(table: &[f32], heads: usize, ws: usize) -> Vec<f32> {
    let n = ws * ws;
    let side = 2 * ws - 1;
    let mut out = vec![0.0; heads * n * n];
    for i in 0..n {
        let (hi, wi) = ((i / ws) as isize, (i % ws) as isize);
        for j in 0..n {
            let (hj, wj) = ((j / ws) as isize, (j % ws) as isize);
            let dh = (hi - hj + ws as isize - 1) as usize;
            let dw = (wi - wj + ws as isize - 1) as usize;
            let row = dh * side + dw;
            for h in 0..heads {
                out[(h * n + i) * n + j] = table[row * heads + h];
            }
        }
    }
    out
}

/// The shifted-window mask of `BasicLayer.forward`, `[nW, 1, N, N]`: tokens
/// that came from different regions of the cyclically shifted map get -100.
pub(super) fn shift_mask(hp: usize, wp: usize, ws: usize, shift: usize) -> Vec<f32> {
    let region = |y: usize, n: usize| {
        // slice(0, -ws), slice(-ws, -shift), slice(-shift, None).
        if y < n - ws {
            0
        } else if y < n - shift {
            1
        } else {
            2
        }
    };
    let (nh, nw, n) = (hp / ws, wp / ws, ws * ws);
    let mut out = vec![0.0; nh * nw * n * n];
    let mut ids = vec![0usize; n];
    for wy in 0..nh {
        for wx in 0..nw {
            for (t, id) in ids.iter_mut().enumerate() {
                let (y, x) = (wy * ws + t / ws, wx * ws + t % ws);
                *id = region(y, hp) * 3 + region(x, wp);
            }
            let base = (wy * nw + wx) * n * n;
            for i in 0..n {
                for j in 0..n {
                    if ids[i] != ids[j] {
                        out[base + i * n + j] = SHIFT_MASK;
                    }
                }
            }
        }
    }
    out
}

/// `torch.roll(x, shifts=-s, dims=axis)`: element `i` of the result is element
/// `(i + s) mod n` of the input.
fn roll_left(x: &Tensor, axis: usize, s: usize) -> Result<Tensor, BiRefNetError> {
    let n = x.dim(axis as isize);
    let s = s % n;
    if s == 0 {
        return Ok(x.clone());
    }
    let a = slice(x, axis, s, n)?;
    let b = slice(x, axis, 0, s)?;
    Ok(concat(&[&a, &b], axis)?)
}

/// `roll_left(pad_end(x, axis, to), s)` in one concat: `x[s..] ++ zeros ++
/// x[..s]` (the shifted blocks' pad-then-roll without the padded copy).
fn pad_roll(x: &Tensor, axis: usize, to: usize, s: usize) -> Result<Tensor, BiRefNetError> {
    let n = x.dim(axis as isize);
    if s == 0 || s >= n {
        return roll_left(&pad_end(x, axis, to)?, axis, s);
    }
    let head = slice(x, axis, s, n)?;
    let tail = slice(x, axis, 0, s)?;
    if to == n {
        return Ok(concat(&[&head, &tail], axis)?);
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = to - n;
    let z = Tensor::zeros(x.gpu(), &shape, x.dtype())?;
    Ok(concat(&[&head, &z, &tail], axis)?)
}

/// The first `n` elements of `roll_left(o, len - s)` along `axis` (undoing
/// [`pad_roll`]): `o[len-s..] ++ o[..n-s]`, without the full rolled copy.
fn unroll_crop(o: &Tensor, axis: usize, n: usize, s: usize) -> Result<Tensor, BiRefNetError> {
    let len = o.dim(axis as isize);
    if s == 0 {
        return Ok(slice(o, axis, 0, n)?);
    }
    let first = slice(o, axis, len - s, (len - s + n).min(len))?;
    if n <= s {
        return Ok(first);
    }
    let second = slice(o, axis, 0, n - s)?;
    Ok(concat(&[&first, &second], axis)?)
}

/// Zero-pads `x` at the end of `axis` to `to` elements.
pub(super) fn pad_end(x: &Tensor, axis: usize, to: usize) -> Result<Tensor, BiRefNetError> {
    let n = x.dim(axis as isize);
    if to == n {
        return Ok(x.clone());
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = to - n;
    let z = Tensor::zeros(x.gpu(), &shape, x.dtype())?;
    Ok(concat(&[x, &z], axis)?)
}

/// `SwinTransformerBlock`.
#[derive(Debug, Clone)]
struct Block {
    norm1: Norm,
    /// `attn.qkv` as the q, k and v projections.
    qkv: Vec<Linear>,
    /// `[1, heads, N, N]`.
    rel_bias: Tensor,
    proj: Linear,
    norm2: Norm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    shift: usize,
}

impl Block {
    #[allow(clippy::too_many_arguments)]
    fn load(
        gpu: &Gpu,
        w: &Weights,
        p: &str,
        dim: usize,
        heads: usize,
        hidden: usize,
        ws: usize,
        shift: usize,
        dtype: DType,
    ) -> Result<Block, BiRefNetError> {
        let side = 2 * ws - 1;
        let table = w.f32_checked(
            &format!("{p}.attn.relative_position_bias_table"),
            &[side * side, heads],
        )?;
        let n = ws * ws;
        let rel_bias = Tensor::from_f32(
            gpu,
            &[1, heads, n, n],
            &relative_bias(&table, heads, ws),
            dtype,
        )?;
        Ok(Block {
            norm1: Norm::load(gpu, w, &format!("{p}.norm1"), dim, dtype)?,
            qkv: Linear::load_split(gpu, w, &format!("{p}.attn.qkv"), (dim, dim), 3, dtype)?,
            rel_bias,
            proj: Linear::load(gpu, w, &format!("{p}.attn.proj"), (dim, dim), true, dtype)?,
            norm2: Norm::load(gpu, w, &format!("{p}.norm2"), dim, dtype)?,
            fc1: Linear::load(gpu, w, &format!("{p}.mlp.fc1"), (dim, hidden), true, dtype)?,
            fc2: Linear::load(gpu, w, &format!("{p}.mlp.fc2"), (hidden, dim), true, dtype)?,
            heads,
            shift,
        })
    }

    /// `x [B, H, W, C]`; `plan` splits the stage's windows into chunks that
    /// fit `budget` bytes per intermediate.
    fn forward(&self, x: &Tensor, ws: usize, plan: &StagePlan) -> Result<Tensor, BiRefNetError> {
        let (b, h, w, c) = (x.dim(0), x.dim(1), x.dim(2), x.dim(3));
        let (hp, wp) = (h.div_ceil(ws) * ws, w.div_ceil(ws) * ws);
        let (nh, nw, n) = (hp / ws, wp / ws, ws * ws);
        let t = self.norm1.forward(x)?;
        let t = pad_roll(&pad_roll(&t, 2, wp, self.shift)?, 1, hp, self.shift)?;
        // Window rows of every image in one axis, [B*nh, ws, nw, ws, C]: a
        // chunk is a run of them (windows are independent, so a chunk may
        // span two images).
        let t = t.reshape(&[b * nh, ws, nw, ws, c])?;
        let mut outs = Vec::with_capacity(plan.rows.len());
        for (i, &(g0, g1)) in plan.rows.iter().enumerate() {
            let rows = g1 - g0;
            // Window partition: [rows, ws, nw, ws, C] -> [rows*nw, N, C].
            let tc = slice(&t, 0, g0, g1)?;
            let tc = permute(&tc, &[0, 2, 1, 3, 4])?.reshape(&[rows * nw, n, c])?;
            let mask = if self.shift > 0 {
                Some(&plan.shift_masks[i])
            } else {
                None
            };
            let o = self.attend(&tc, mask)?;
            // Window reverse: [rows, nw, ws, ws, C] -> [rows, ws, nw, ws, C].
            let o = o.reshape(&[rows, nw, ws, ws, c])?;
            outs.push(permute(&o, &[0, 2, 1, 3, 4])?);
        }
        let o = concat_all(outs, 0)?.reshape(&[b, hp, wp, c])?;
        let o = unroll_crop(&unroll_crop(&o, 1, h, self.shift)?, 2, w, self.shift)?;
        let x = add(x, &o)?.reshape(&[b * h * w, c])?;
        // MLP over token chunks: its hidden layer is 4x the token width.
        let per = (plan.budget / (self.fc1.weight.dim(0) * x.dtype().size()) as u64).max(1);
        let mut outs = Vec::new();
        for (m0, m1) in spans(b * h * w, per as usize) {
            let xs = slice(&x, 0, m0, m1)?;
            let t = self.norm2.forward(&xs)?;
            let t = self.fc1.forward(&t, &Epilogue::act(Activation::GeluErf))?;
            outs.push(
                self.fc2
                    .forward(&t, &Epilogue::default().residual(&xs, 1.0, 1.0))?,
            );
        }
        Ok(concat_all(outs, 0)?.reshape(&[b, h, w, c])?)
    }

    /// Window attention of `t [nW, N, C]`; `shift_mask [nW, 1, N, N]` for
    /// shifted blocks.
    fn attend(&self, t: &Tensor, shift_mask: Option<&Tensor>) -> Result<Tensor, BiRefNetError> {
        let (bw, n, c) = (t.dim(0), t.dim(1), t.dim(2));
        let (heads, d) = (self.heads, c / self.heads);
        // [bw, N, C] -> [bw, heads, N, d].
        let part = |i: usize| -> Result<Tensor, BiRefNetError> {
            let y = self.qkv[i].forward(t, &Epilogue::default())?;
            Ok(permute(&y.reshape(&[bw, n, heads, d])?, &[0, 2, 1, 3])?)
        };
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let mask = match shift_mask {
            Some(m) => add(m, &self.rel_bias)?,
            None => self.rel_bias.clone(),
        };
        let o = attention(&q, &k, &v, Some(&mask), false, Some((d as f32).powf(-0.5)))?;
        let o = permute(&o, &[0, 2, 1, 3])?.reshape(&[bw, n, c])?;
        self.proj.forward(&o, &Epilogue::default())
    }
}

/// `0..total` in near-equal spans of at most `per` (at least one element).
fn spans(total: usize, per: usize) -> Vec<(usize, usize)> {
    let count = total.div_ceil(per.max(1)).max(1);
    let size = total.div_ceil(count);
    (0..count)
        .map(|i| (i * size, ((i + 1) * size).min(total)))
        .filter(|(a, b)| a < b)
        .collect()
}

/// Concatenates along `axis`, without a copy for a single part.
fn concat_all(parts: Vec<Tensor>, axis: usize) -> Result<Tensor, BiRefNetError> {
    if parts.len() == 1 {
        return Ok(parts.into_iter().next().expect("one part"));
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    Ok(concat(&refs, axis)?)
}

/// Runs of window rows (out of `rows`, each of `row_tokens` tokens) whose
/// largest intermediates fit `budget`: qkv (3C per token) and, for shifted
/// blocks, the shift mask plus relative bias (heads x N per token). A single
/// row is the floor; an op then reports a row that does not fit by itself.
fn window_row_spans(
    rows: usize,
    row_tokens: usize,
    ws: usize,
    (dim, heads): (usize, usize),
    elem: usize,
    shifted: bool,
    budget: u64,
) -> Vec<(usize, usize)> {
    let widest = if shifted {
        (3 * dim).max(heads * ws * ws)
    } else {
        3 * dim
    };
    let per_row = (row_tokens * widest * elem) as u64;
    spans(rows, (budget / per_row).max(1) as usize)
}

/// How a stage splits its windows so no intermediate exceeds `budget` bytes:
/// runs of window rows (`[g0, g1)` over `B * nh`), each with its shift mask
/// `[rows * nw, 1, N, N]` built once for all the stage's shifted blocks.
struct StagePlan {
    budget: u64,
    rows: Vec<(usize, usize)>,
    shift_masks: Vec<Tensor>,
}

impl StagePlan {
    /// `hw` is the stage's token grid; `dim`, `heads` its width.
    fn new(
        gpu: &Gpu,
        dtype: DType,
        (b, h, w): (usize, usize, usize),
        (dim, heads): (usize, usize),
        ws: usize,
        shifted: bool,
        budget: u64,
    ) -> Result<StagePlan, BiRefNetError> {
        let (hp, wp) = (h.div_ceil(ws) * ws, w.div_ceil(ws) * ws);
        let (nh, nw, n) = (hp / ws, wp / ws, ws * ws);
        let rows = window_row_spans(
            b * nh,
            nw * n,
            ws,
            (dim, heads),
            dtype.size(),
            shifted,
            budget,
        );
        let shift_masks = if shifted {
            let full = shift_mask(hp, wp, ws, ws / 2);
            let row_len = nw * n * n;
            rows.iter()
                .map(|&(g0, g1)| {
                    let data: Vec<f32> = (g0..g1)
                        .flat_map(|g| {
                            let r = g % nh;
                            full[r * row_len..(r + 1) * row_len].iter().copied()
                        })
                        .collect();
                    Tensor::from_f32(gpu, &[(g1 - g0) * nw, 1, n, n], &data, dtype)
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        Ok(StagePlan {
            budget,
            rows,
            shift_masks,
        })
    }
}

/// `PatchMerging`: 2x2 neighbours concatenated (order (0,0), (1,0), (0,1),
/// (1,1) as (row, col)), LayerNorm, then a linear 4C -> 2C without bias.
#[derive(Debug, Clone)]
struct Merge {
    norm: Norm,
    reduction: Linear,
}

impl Merge {
    fn forward(&self, x: &Tensor) -> Result<Tensor, BiRefNetError> {
        let (b, h, w, c) = (x.dim(0), x.dim(1), x.dim(2), x.dim(3));
        let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
        let x = pad_end(&pad_end(x, 2, 2 * w2)?, 1, 2 * h2)?;
        // [B, h2, dy, w2, dx, C] -> [B, h2, w2, dx, dy, C]: channel block
        // dx*2 + dy is the reference's x0, x1, x2, x3 order.
        let x = x.reshape(&[b, h2, 2, w2, 2, c])?;
        let x = permute(&x, &[0, 1, 3, 4, 2, 5])?.reshape(&[b, h2, w2, 4 * c])?;
        let x = self.norm.forward(&x)?;
        self.reduction.forward(&x, &Epilogue::default())
    }
}

#[derive(Debug, Clone)]
struct Stage {
    blocks: Vec<Block>,
    downsample: Option<Merge>,
    out_norm: Norm,
}

/// The Swin v1 backbone.
#[derive(Debug, Clone)]
pub struct SwinBackbone {
    cfg: SwinConfig,
    patch_embed: Conv2d,
    patch_norm: Norm,
    stages: Vec<Stage>,
    /// Bytes one intermediate may take; `None` = the adapter's binding limit.
    chunk_bytes: Option<u64>,
}

impl SwinBackbone {
    pub fn load(
        gpu: &Gpu,
        w: &Weights,
        cfg: SwinConfig,
        dtype: DType,
    ) -> Result<SwinBackbone, BiRefNetError> {
        let (e, p) = (cfg.embed_dim, cfg.patch_size);
        let pw = w.tensor(
            gpu,
            "bb.patch_embed.proj.weight",
            &[e, cfg.in_ch, p, p],
            dtype,
        )?;
        let pb = w.tensor(gpu, "bb.patch_embed.proj.bias", &[e], dtype)?;
        let patch_embed = Conv2d::new(
            &pw,
            Some(&pb),
            Conv2dConfig {
                stride: (p, p),
                ..Conv2dConfig::default()
            },
        )?;
        let patch_norm = Norm::load(gpu, w, "bb.patch_embed.norm", e, dtype)?;
        let ws = cfg.window;
        let mut stages = Vec::new();
        for (l, s) in cfg.stages.iter().enumerate() {
            let blocks = (0..s.depth)
                .map(|i| {
                    let shift = if i % 2 == 1 { ws / 2 } else { 0 };
                    Block::load(
                        gpu,
                        w,
                        &format!("bb.layers.{l}.blocks.{i}"),
                        s.dim,
                        s.heads,
                        s.mlp_hidden,
                        ws,
                        shift,
                        dtype,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            let downsample = if l + 1 < cfg.stages.len() {
                let p = format!("bb.layers.{l}.downsample");
                Some(Merge {
                    norm: Norm::load(gpu, w, &format!("{p}.norm"), 4 * s.dim, dtype)?,
                    reduction: Linear::load(
                        gpu,
                        w,
                        &format!("{p}.reduction"),
                        (4 * s.dim, 2 * s.dim),
                        false,
                        dtype,
                    )?,
                })
            } else {
                None
            };
            let out_norm = Norm::load(gpu, w, &format!("bb.norm{l}"), s.dim, dtype)?;
            stages.push(Stage {
                blocks,
                downsample,
                out_norm,
            });
        }
        Ok(SwinBackbone {
            cfg,
            patch_embed,
            patch_norm,
            stages,
            chunk_bytes: None,
        })
    }

    pub fn config(&self) -> &SwinConfig {
        &self.cfg
    }

    /// Caps the bytes of any one window-attention or MLP intermediate
    /// (`None`: the adapter's storage binding limit). Windows and tokens are
    /// processed in as many chunks as that takes.
    pub fn set_chunk_bytes(&mut self, bytes: Option<u64>) {
        self.chunk_bytes = bytes;
    }

    /// Image `[B, 3, H, W]` -> the four stage outputs, NCHW, at strides
    /// 4, 8, 16, 32 (rounded up).
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, BiRefNetError> {
        let p = self.cfg.patch_size;
        let (h, w) = (x.dim(2), x.dim(3));
        let x = pad_end(&pad_end(x, 3, w.div_ceil(p) * p)?, 2, h.div_ceil(p) * p)?;
        let t = self.patch_embed.forward(&x, &Epilogue::default())?;
        let mut t = self.patch_norm.forward(&permute(&t, &[0, 2, 3, 1])?)?;
        let ws = self.cfg.window;
        let gpu = x.gpu();
        let budget = self
            .chunk_bytes
            .unwrap_or(u64::MAX)
            .min(gpu.max_binding_bytes());
        let mut outs = Vec::with_capacity(self.stages.len());
        for (stage, sc) in self.stages.iter().zip(&self.cfg.stages) {
            let plan = StagePlan::new(
                gpu,
                t.dtype(),
                (t.dim(0), t.dim(1), t.dim(2)),
                (sc.dim, sc.heads),
                ws,
                stage.blocks.len() > 1,
                budget,
            )?;
            for blk in &stage.blocks {
                t = blk.forward(&t, ws, &plan)?;
            }
            let o = stage.out_norm.forward(&t)?;
            outs.push(permute(&o, &[0, 3, 1, 2])?);
            if let Some(m) = &stage.downsample {
                t = m.forward(&t)?;
            }
        }
        Ok(outs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_mask_regions_follow_the_reference() {
        // Hp = Wp = 8, window 4, shift 2: rows 0..4 region 0, 4..6 region 1,
        // 6..8 region 2. Window 0 (top-left) is one region: no mask.
        let m = shift_mask(8, 8, 4, 2);
        let n = 16;
        assert!(m[..n * n].iter().all(|&v| v == 0.0));
        // Window 3 (bottom-right): token 0 at (4,4) region (1,1); token 15 at
        // (7,7) region (2,2); token 2 at (4,6) region (1,2).
        let w3 = &m[3 * n * n..4 * n * n];
        assert_eq!(w3[15], SHIFT_MASK);
        assert_eq!(w3[2], SHIFT_MASK);
        assert_eq!(w3[1], 0.0);
        // A single window (Hp = ws): rows < Hp - shift are region 1.
        let m = shift_mask(4, 4, 4, 2);
        assert_eq!(m[1], 0.0);
        assert_eq!(m[2], SHIFT_MASK);
    }

    #[test]
    fn spans_cover_the_range_in_near_equal_parts() {
        assert_eq!(spans(10, 4), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(spans(9, 4), vec![(0, 3), (3, 6), (6, 9)]);
        assert_eq!(spans(5, 100), vec![(0, 5)]);
        assert_eq!(spans(3, 0), vec![(0, 1), (1, 2), (2, 3)]);
    }

    #[test]
    fn swin_l_1024_stage1_chunks_fit_128_mib() {
        // Swin-L at 1024²: stage 1 is 256² tokens, C = 192, 6 heads, window
        // 12 -> 22 x 22 windows of 144 tokens; whole, qkv is 160 MB and the
        // combined mask 241 MB.
        let budget = 128 << 20;
        let (nw, n) = (22, 144);
        let spans = window_row_spans(22, nw * n, 12, (192, 6), 4, true, budget);
        assert!(spans.len() >= 2, "{spans:?}");
        for (a, b) in spans {
            let rows = b - a;
            assert!((rows * nw * n * 3 * 192 * 4) as u64 <= budget);
            assert!((rows * nw * 6 * n * n * 4) as u64 <= budget);
        }
        // A binding four times as big runs fewer, larger chunks.
        let big = window_row_spans(22, nw * n, 12, (192, 6), 4, true, 4 * budget);
        assert_eq!(big.len(), 1);
    }

    #[test]
    fn pad_roll_and_unroll_crop_match_the_plain_ops() {
        let Some(gpu) = easel_kernels::testing::test_gpu() else {
            return;
        };
        // Axis 1 of [2, n, 3]: every (n, padded, shift) case, incl. shifts
        // at and past the unpadded length.
        for (n, to, sh) in [
            (5, 7, 3),
            (5, 5, 2),
            (3, 7, 3),
            (2, 7, 3),
            (6, 7, 0),
            (7, 7, 3),
        ] {
            let data: Vec<f32> = (0..2 * n * 3).map(|v| v as f32).collect();
            let x = Tensor::from_f32(&gpu, &[2, n, 3], &data, DType::F32).unwrap();
            let want = roll_left(&pad_end(&x, 1, to).unwrap(), 1, sh).unwrap();
            let got = pad_roll(&x, 1, to, sh).unwrap();
            assert_eq!(got.to_f32_vec().unwrap(), want.to_f32_vec().unwrap());
            let back = unroll_crop(&got, 1, n, sh).unwrap();
            assert_eq!(back.to_f32_vec().unwrap(), data, "n {n} to {to} shift {sh}");
        }
    }

    #[test]
    fn relative_bias_indexes_the_table_like_the_reference() {
        // window 2: table rows (2*2-1)^2 = 9, one head; token pairs
        // (i, j) -> row (dh + 1) * 3 + (dw + 1).
        let table: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let b = relative_bias(&table, 1, 2);
        // i = 0 (0,0), j = 3 (1,1): dh = -1, dw = -1 -> row 0.
        assert_eq!(b[3], 0.0);
        // i = 3, j = 0: dh = 1, dw = 1 -> row 8.
        assert_eq!(b[3 * 4], 8.0);
        // diagonal -> row 4.
        assert!((0..4).all(|i| b[i * 4 + i] == 4.0));
    }
}
