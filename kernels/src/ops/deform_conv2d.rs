//! Deformable 2-D convolution with `torchvision.ops.deform_conv2d` semantics
//! (DCNv1, and DCNv2 with a modulation mask).
//!
//! Two paths (see `deform_conv2d.wgsl`):
//! - im2col: a deformable im2col (`gather`) into a column buffer
//!   [Cin*KH*KW, pixels] followed by the shared [`matmul`] (weights
//!   [Cout, Cin*KH*KW] x columns): each bilinear sample is computed once and
//!   the GEMM is the tuned one. The column buffer is bounded by
//!   [`COLUMN_BUDGET`] by splitting the work into chunks of images or pixels.
//! - fused: one pass, register-blocked over 32 output channels with
//!   subgroup-broadcast weights; faster on lavapipe for small Cout
//!   (see [`use_fused`]).

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::ops::epilogue::Epilogue;
use crate::ops::matmul::{MatmulOpts, matmul};
use crate::{Access, Cost, Kernel, KernelError, Tensor};

const OP: &str = "deform_conv2d";
const SRC: &str = include_str!("deform_conv2d.wgsl");
const BINDINGS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
];
/// Largest column buffer per chunk (bytes): big enough that BiRefNet's
/// decoder maps run in one or a few matmuls, small enough to stay far from
/// the 128 MiB binding limit of small adapters.
const COLUMN_BUDGET: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeformConv2dConfig {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    /// Offset groups G: the input channels are split into G groups, each
    /// with its own offsets (and mask).
    pub offset_groups: usize,
}

impl Default for DeformConv2dConfig {
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            offset_groups: 1,
        }
    }
}

impl DeformConv2dConfig {
    pub fn padded(p: usize) -> Self {
        Self {
            padding: (p, p),
            ..Self::default()
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    cin: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    groups: u32,
    cpg: u32,
    cout: u32,
    n0: u32,
    nb: u32,
    p0: u32,
    pc: u32,
    total: u32,
    _pad: [u32; 3],
}

fn dims(t: &Tensor, what: &str) -> Result<[usize; 4]> {
    match t.shape() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        s => shape_err(OP, format!("{what} must be 4-D, got {s:?}")),
    }
}

/// `(ho, wo)` for an input of `h x w` and a `k` kernel.
pub fn output_size(
    h: usize,
    w: usize,
    k: (usize, usize),
    cfg: &DeformConv2dConfig,
) -> Result<(usize, usize)> {
    let one = |size, k, s, p, d, axis| super::conv2d::out_len(OP, axis, size, k, s, p, d);
    Ok((
        one(
            h,
            k.0,
            cfg.stride.0,
            cfg.padding.0,
            cfg.dilation.0,
            "height",
        )?,
        one(w, k.1, cfg.stride.1, cfg.padding.1, cfg.dilation.1, "width")?,
    ))
}

/// `x` [N, Cin, H, W], `offset` [N, 2*G*KH*KW, Ho, Wo] ((dy, dx) pairs per
/// offset group and tap, torchvision layout), `mask` [N, G*KH*KW, Ho, Wo]
/// (DCNv2 modulation), `weight` [Cout, Cin, KH, KW] (weight groups are not
/// supported), `bias` [Cout]. Returns [N, Cout, Ho, Wo].
pub fn deform_conv2d(
    x: &Tensor,
    offset: &Tensor,
    mask: Option<&Tensor>,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: &DeformConv2dConfig,
) -> Result<Tensor> {
    run(x, offset, mask, weight, bias, cfg, COLUMN_BUDGET, None)
}

/// [`deform_conv2d`] with the column-buffer budget in bytes (tests force
/// the chunked paths with a small one) and the path forced (`Some(true)`:
/// fused, which the caller has checked the adapter can run).
#[allow(clippy::too_many_arguments)]
fn run(
    x: &Tensor,
    offset: &Tensor,
    mask: Option<&Tensor>,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: &DeformConv2dConfig,
    budget: usize,
    force_fused: Option<bool>,
) -> Result<Tensor> {
    let dtype = x.dtype();
    for t in [Some(x), Some(offset), mask, Some(weight), bias]
        .into_iter()
        .flatten()
    {
        if t.numel() == 0 {
            return Err(KernelError::Empty {
                op: OP,
                shape: t.shape().to_vec(),
            });
        }
        if t.dtype() != dtype {
            return Err(KernelError::DType {
                op: OP,
                expected: dtype,
                got: t.dtype(),
            });
        }
    }
    let [n, cin, h, w] = dims(x, "input")?;
    let [cout, wcin, kh, kw] = dims(weight, "weight")?;
    let (s, d, g) = (cfg.stride, cfg.dilation, cfg.offset_groups);
    if s.0 == 0 || s.1 == 0 || d.0 == 0 || d.1 == 0 || g == 0 {
        return shape_err(OP, "stride, dilation and offset_groups must be >= 1");
    }
    if wcin != cin {
        return shape_err(
            OP,
            format!(
                "weight has {wcin} input channels, the input {cin} (weight groups are not supported)"
            ),
        );
    }
    if cin % g != 0 {
        return shape_err(
            OP,
            format!("{cin} input channels are not divisible by {g} offset groups"),
        );
    }
    let (ho, wo) = output_size(h, w, (kh, kw), cfg)?;
    let kk = kh * kw;
    let want = [n, 2 * g * kk, ho, wo];
    if offset.shape() != want {
        return shape_err(
            OP,
            format!("offset is {:?}, expected {want:?}", offset.shape()),
        );
    }
    if let Some(m) = mask {
        let want = [n, g * kk, ho, wo];
        if m.shape() != want {
            return shape_err(OP, format!("mask is {:?}, expected {want:?}", m.shape()));
        }
    }
    if let Some(b) = bias
        && b.numel() != cout
    {
        return shape_err(
            OP,
            format!("bias has {} elements, Cout is {cout}", b.numel()),
        );
    }
    let kdim = cin * kk;
    let hwo = ho * wo;
    let big = [x.numel(), offset.numel(), n * cout * hwo, kdim * hwo];
    if big.iter().any(|&v| v > u32::MAX as usize) {
        return Err(KernelError::TooLarge {
            op: OP,
            bytes: (big.iter().max().copied().unwrap_or(0) * dtype.size()) as u64,
            limit: u32::MAX as u64,
        });
    }

    let gpu = x.gpu();
    let kernel = |entry: &'static str| {
        Kernel::new(OP, SRC, dtype, BINDINGS)
            .entry(entry)
            .define("HAS_MASK", mask.is_some().to_string())
            .define("HAS_BIAS", bias.is_some().to_string())
    };
    let base = Params {
        cin: cin as u32,
        h: h as u32,
        w: w as u32,
        ho: ho as u32,
        wo: wo as u32,
        kh: kh as u32,
        kw: kw as u32,
        sh: s.0 as u32,
        sw: s.1 as u32,
        ph: cfg.padding.0 as u32,
        pw: cfg.padding.1 as u32,
        dh: d.0 as u32,
        dw: d.1 as u32,
        groups: g as u32,
        cpg: (cin / g) as u32,
        cout: cout as u32,
        nb: n as u32,
        ..Params::default()
    };
    if force_fused.unwrap_or_else(|| use_fused(gpu, kk, cin, cout, g)) {
        return fused(x, offset, mask, weight, bias, base, kernel);
    }
    let budget = budget.min(gpu.max_binding_bytes() as usize);
    let per_image = kdim * hwo * dtype.size();
    // Whole images per chunk when one fits, else pixel ranges of one image.
    let (nb, pc) = if per_image <= budget {
        ((budget / per_image).min(n), hwo)
    } else {
        let pc = budget / (kdim * dtype.size());
        (1, if pc >= 128 { pc / 64 * 64 } else { pc.max(1) })
    };
    let w2 = weight.reshape(&[cout, kdim])?;
    let dummy = gpu.dummy();
    let esize = dtype.size() as f64;
    let whole = nb == n && pc == hwo;
    let out = if whole {
        None
    } else {
        Some(Tensor::empty_for(gpu, OP, &[n, cout, ho, wo], dtype)?)
    };
    let mut result = None;
    for n0 in (0..n).step_by(nb) {
        let nb = nb.min(n - n0);
        for p0 in (0..hwo).step_by(pc) {
            let pc = pc.min(hwo - p0);
            let cols = Tensor::empty_for(gpu, OP, &[nb, kdim, pc], dtype)?;
            let samples = nb * g * kk * pc;
            let params = Params {
                n0: n0 as u32,
                nb: nb as u32,
                p0: p0 as u32,
                pc: pc as u32,
                total: samples as u32,
                ..base
            };
            let written = (nb * kdim * pc) as f64;
            gpu.dispatch(
                &kernel("gather"),
                bytemuck::bytes_of(&params),
                &[
                    x.bind(),
                    offset.bind(),
                    mask.map_or(dummy, |m| m.bind()),
                    dummy,
                    dummy,
                    cols.bind(),
                ],
                gpu.grid(samples.div_ceil(256) as u64)?,
                // 4 taps x (mul + add) per sample, plus the mask.
                Cost::new(written * 9.0, written * 5.0 * esize),
            )?;
            let y = matmul(
                &w2,
                &cols,
                MatmulOpts::default(),
                None,
                &Epilogue::default(),
            )?;
            let Some(out) = &out else {
                result = Some(y.reshape(&[n, cout, ho, wo])?);
                continue;
            };
            let total = nb * cout * pc;
            let params = Params {
                total: total as u32,
                ..params
            };
            gpu.dispatch(
                &kernel("place"),
                bytemuck::bytes_of(&params),
                &[
                    y.bind(),
                    dummy,
                    dummy,
                    bias.map_or(dummy, |b| b.bind()),
                    dummy,
                    out.bind(),
                ],
                gpu.grid(total.div_ceil(256) as u64)?,
                Cost::new(total as f64, 2.0 * total as f64 * esize),
            )?;
        }
    }
    let out = match (out, result) {
        (Some(out), _) => out,
        (None, Some(y)) => {
            if let Some(b) = bias {
                let total = n * cout * hwo;
                let params = Params {
                    total: total as u32,
                    ..base
                };
                gpu.dispatch(
                    &kernel("add_bias"),
                    bytemuck::bytes_of(&params),
                    &[dummy, dummy, dummy, b.bind(), dummy, y.bind()],
                    gpu.grid(total.div_ceil(256) as u64)?,
                    Cost::new(total as f64, 2.0 * total as f64 * esize),
                )?;
            }
            y
        }
        (None, None) => unreachable!("whole-output path ran one matmul"),
    };
    Ok(out)
}

/// Whether the one-pass `fused` kernel runs: CPU adapters with 8-lane
/// subgroups and Cout <= 64, and loops short enough for lavapipe's
/// per-invocation iteration limit. Measured on lavapipe (3x3, mask):
/// 64->64 at 128^2 fused 4.0 vs im2col 3.5 GFLOP/s, at 256^2 3.4 vs 2.8;
/// 256->256 at 64^2 3.8 vs 5.0, 512->512 at 32^2 3.6 vs 5.3 (there the
/// per-lane bilinear gathers, repeated per 32-channel block, cost more than
/// the matmul saves). `EASEL_DEFORM=im2col|fused` overrides (tuning).
fn use_fused(gpu: &crate::Gpu, kk: usize, cin: usize, cout: usize, groups: usize) -> bool {
    let short = kk * (1 + groups + cin) < 50_000;
    match std::env::var("EASEL_DEFORM").as_deref() {
        Ok("im2col") => false,
        Ok("fused") => can_fuse(gpu) && short,
        _ => can_fuse(gpu) && short && cout <= 64 && gpu.class() == crate::AdapterClass::Cpu,
    }
}

fn can_fuse(gpu: &crate::Gpu) -> bool {
    let c = gpu.caps();
    c.subgroup && c.subgroup_min_size == 8 && c.subgroup_max_size == 8
}

/// The `fused` path: packs the weights, then one dispatch.
fn fused<'a>(
    x: &Tensor,
    offset: &Tensor,
    mask: Option<&Tensor>,
    weight: &Tensor,
    bias: Option<&Tensor>,
    base: Params,
    kernel: impl Fn(&'static str) -> Kernel<'a>,
) -> Result<Tensor> {
    let gpu = x.gpu();
    let dtype = x.dtype();
    let (n, cin, cout) = (base.nb as usize, base.cin as usize, base.cout as usize);
    let (kk, hwo) = ((base.kh * base.kw) as usize, (base.ho * base.wo) as usize);
    let co_blocks = cout.div_ceil(32);
    let packed = Tensor::empty_for(gpu, OP, &[co_blocks, kk, cin, 32], dtype)?;
    let dummy = gpu.dummy();
    let total = packed.numel();
    let params = Params {
        total: total as u32,
        ..base
    };
    gpu.dispatch(
        &kernel("pack"),
        bytemuck::bytes_of(&params),
        &[weight.bind(), dummy, dummy, dummy, dummy, packed.bind()],
        gpu.grid(total.div_ceil(256) as u64)?,
        Cost::new(0.0, 2.0 * packed.size_bytes() as f64),
    )?;
    let out = Tensor::empty_for(
        gpu,
        OP,
        &[n, cout, base.ho as usize, base.wo as usize],
        dtype,
    )?;
    let groups = n * co_blocks * hwo.div_ceil(64);
    let params = Params {
        total: groups as u32,
        ..base
    };
    let flops = 2.0 * (n * cout * hwo * cin * kk) as f64;
    let bytes = x.size_bytes() + offset.size_bytes() + out.size_bytes();
    gpu.dispatch(
        &kernel("fused"),
        bytemuck::bytes_of(&params),
        &[
            x.bind(),
            offset.bind(),
            mask.map_or(dummy, |m| m.bind()),
            bias.map_or(dummy, |b| b.bind()),
            packed.bind(),
            out.bind(),
        ],
        gpu.grid(groups as u64)?,
        Cost::new(flops, bytes as f64),
    )?;
    Ok(out)
}

/// CPU reference of [`deform_conv2d`]: torchvision's formula, term by term.
/// `xs` = [N, Cin, H, W], `ws` = [Cout, Cin, KH, KW].
#[allow(clippy::too_many_arguments)]
pub fn reference(
    x: &[f32],
    xs: [usize; 4],
    offset: &[f32],
    mask: Option<&[f32]>,
    weight: &[f32],
    ws: [usize; 4],
    bias: Option<&[f32]>,
    cfg: &DeformConv2dConfig,
) -> Vec<f32> {
    let [n, cin, h, w] = xs;
    let [cout, _, kh, kw] = ws;
    let (ho, wo) = output_size(h, w, (kh, kw), cfg).expect("valid shapes");
    let (g, kk, hwo) = (cfg.offset_groups, kh * kw, ho * wo);
    let cpg = cin / g;
    let sample = |img: &[f32], y: f32, xx: f32| -> f32 {
        if y <= -1.0 || y >= h as f32 || xx <= -1.0 || xx >= w as f32 {
            return 0.0;
        }
        let (y0, x0) = (y.floor() as isize, xx.floor() as isize);
        let (ly, lx) = (y - y0 as f32, xx - x0 as f32);
        let at = |r: isize, c: isize| {
            if r >= 0 && c >= 0 && r < h as isize && c < w as isize {
                img[r as usize * w + c as usize]
            } else {
                0.0
            }
        };
        (1.0 - ly) * (1.0 - lx) * at(y0, x0)
            + (1.0 - ly) * lx * at(y0, x0 + 1)
            + ly * (1.0 - lx) * at(y0 + 1, x0)
            + ly * lx * at(y0 + 1, x0 + 1)
    };
    // Columns [Cin*KK] per output pixel, then the dot products.
    let mut out = vec![0.0; n * cout * hwo];
    let mut col = vec![0.0; cin * kk];
    for b in 0..n {
        for q in 0..hwo {
            let (oy, ox) = (q / wo, q % wo);
            for c in 0..cin {
                let gi = c / cpg;
                let img = &x[(b * cin + c) * h * w..][..h * w];
                for tap in 0..kk {
                    let (i, j) = (tap / kw, tap % kw);
                    let ob = ((b * g + gi) * 2 * kk + 2 * tap) * hwo + q;
                    let base_y =
                        (oy * cfg.stride.0 + i * cfg.dilation.0) as isize - cfg.padding.0 as isize;
                    let base_x =
                        (ox * cfg.stride.1 + j * cfg.dilation.1) as isize - cfg.padding.1 as isize;
                    let y = base_y as f32 + offset[ob];
                    let xx = base_x as f32 + offset[ob + hwo];
                    let m = mask.map_or(1.0, |m| m[((b * g + gi) * kk + tap) * hwo + q]);
                    col[c * kk + tap] = m * sample(img, y, xx);
                }
            }
            for co in 0..cout {
                let wr = &weight[co * cin * kk..][..cin * kk];
                let acc: f32 = wr.iter().zip(&col).map(|(a, b)| a * b).sum();
                out[(b * cout + co) * hwo + q] = acc + bias.map_or(0.0, |b| b[co]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use crate::testing::*;

    struct Case {
        n: usize,
        cin: usize,
        cout: usize,
        hw: (usize, usize),
        k: (usize, usize),
        cfg: DeformConv2dConfig,
        mask: bool,
        bias: bool,
    }

    /// Both paths: fused (where the adapter can run it) and im2col.
    fn run_case(gpu: &crate::Gpu, c: &Case, dtype: DType, seed: u64) {
        if can_fuse(gpu) {
            run_case_with(gpu, c, dtype, seed, COLUMN_BUDGET, true);
        }
        run_case_with(gpu, c, dtype, seed, COLUMN_BUDGET, false);
    }

    fn run_case_with(
        gpu: &crate::Gpu,
        c: &Case,
        dtype: DType,
        seed: u64,
        budget: usize,
        fused: bool,
    ) {
        let [n, cin, h, w] = [c.n, c.cin, c.hw.0, c.hw.1];
        let (kh, kw) = c.k;
        let (ho, wo) = output_size(h, w, c.k, &c.cfg).unwrap();
        let g = c.cfg.offset_groups;
        let xs = [n, cin, h, w];
        let ws = [c.cout, cin, kh, kw];
        let os = [n, 2 * g * kh * kw, ho, wo];
        let ms = [n, g * kh * kw, ho, wo];
        let num = |s: &[usize]| s.iter().product::<usize>();
        let (x, xv) = upload(gpu, &xs, &rand_vec(num(&xs), seed, -1.0, 1.0), dtype);
        // Offsets in [-3, 3]: many samples land partly or wholly outside.
        let (o, ov) = upload(gpu, &os, &rand_vec(num(&os), seed + 1, -3.0, 3.0), dtype);
        let (m, mv) = upload(gpu, &ms, &rand_vec(num(&ms), seed + 2, 0.0, 1.0), dtype);
        let (wt, wv) = upload(gpu, &ws, &rand_vec(num(&ws), seed + 3, -0.5, 0.5), dtype);
        let (b, bv) = upload(
            gpu,
            &[c.cout],
            &rand_vec(c.cout, seed + 4, -1.0, 1.0),
            dtype,
        );
        let mask = c.mask.then_some(&m);
        let bias = c.bias.then_some(&b);
        let got = run(&x, &o, mask, &wt, bias, &c.cfg, budget, Some(fused))
            .unwrap()
            .to_f32_vec()
            .unwrap();
        let want = reference(
            &xv,
            xs,
            &ov,
            c.mask.then_some(&mv[..]),
            &wv,
            ws,
            c.bias.then_some(&bv[..]),
            &c.cfg,
        );
        let what = format!(
            "n{n} cin{cin} cout{} {h}x{w} k{:?} {:?} mask {} bias {} {dtype} budget {budget} fused {fused}",
            c.cout, c.k, c.cfg, c.mask, c.bias
        );
        assert_close(&what, &got, &want, tol(dtype));
    }

    #[test]
    fn matches_reference_on_odd_shapes() {
        let Some(gpu) = test_gpu() else { return };
        let cfg = |s: usize, p: usize, d: usize, g: usize| DeformConv2dConfig {
            stride: (s, s),
            padding: (p, p),
            dilation: (d, d),
            offset_groups: g,
        };
        let base = |cfg: DeformConv2dConfig, mask: bool| Case {
            n: 2,
            cin: 5,
            cout: 7,
            hw: (13, 17),
            k: (3, 3),
            cfg,
            mask,
            bias: true,
        };
        let cases = [
            base(cfg(1, 1, 1, 1), false),
            base(cfg(1, 1, 1, 1), true),
            base(cfg(2, 1, 1, 5), true),
            base(cfg(1, 1, 2, 5), false),
            base(cfg(2, 1, 2, 1), true),
            Case {
                bias: false,
                ..base(DeformConv2dConfig::default(), true)
            },
            // Non-square kernel, unequal stride / padding / dilation.
            Case {
                n: 1,
                cin: 4,
                cout: 3,
                hw: (9, 6),
                k: (2, 3),
                cfg: DeformConv2dConfig {
                    stride: (2, 1),
                    padding: (0, 2),
                    dilation: (1, 2),
                    offset_groups: 2,
                },
                mask: true,
                bias: true,
            },
            // Size-1 dims, 1x1 kernel.
            Case {
                n: 1,
                cin: 1,
                cout: 1,
                hw: (1, 1),
                k: (1, 1),
                cfg: DeformConv2dConfig::default(),
                mask: false,
                bias: false,
            },
            // 64 channels: longer channel loop; 2 output-channel blocks.
            Case {
                n: 1,
                cin: 64,
                cout: 40,
                hw: (11, 9),
                k: (3, 3),
                cfg: DeformConv2dConfig::padded(1),
                mask: true,
                bias: true,
            },
        ];
        for dtype in test_dtypes(&gpu) {
            for (i, c) in cases.iter().enumerate() {
                run_case(&gpu, c, dtype, 10 * i as u64 + 1);
            }
        }
    }

    /// Parity with torchvision itself (fixture from
    /// tests/fixtures/gen/deform_conv_fixture.py).
    #[test]
    fn matches_torchvision_fixture() {
        let Some(gpu) = test_gpu() else { return };
        macro_rules! npy {
            ($name:literal) => {
                read_npy(include_bytes!(concat!(
                    "../../tests/fixtures/deform_conv2d/",
                    $name,
                    ".npy"
                )))
            };
        }
        let up = |(shape, data): (Vec<usize>, Vec<f32>)| {
            Tensor::from_f32(&gpu, &shape, &data, DType::F32).unwrap()
        };
        let (x, offset, mask) = (up(npy!("x")), up(npy!("offset")), up(npy!("mask")));
        let (weight, bias) = (up(npy!("weight")), up(npy!("bias")));
        let (out_shape, want) = npy!("out");
        let cfg = DeformConv2dConfig {
            stride: (1, 2),
            padding: (2, 1),
            dilation: (2, 1),
            offset_groups: 2,
        };
        for fused in [false, can_fuse(&gpu)] {
            let (m, b) = (Some(&mask), Some(&bias));
            let y = run(&x, &offset, m, &weight, b, &cfg, COLUMN_BUDGET, Some(fused)).unwrap();
            assert_eq!(y.shape(), &out_shape[..]);
            let got = y.to_f32_vec().unwrap();
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                err <= 1e-4,
                "fused {fused}: max abs error vs torchvision {err:.3e}"
            );
        }
    }

    /// Shape and data of a little-endian f32 C-order `.npy` file.
    fn read_npy(bytes: &[u8]) -> (Vec<usize>, Vec<f32>) {
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
        assert!(header.contains("'<f4'") && header.contains("'fortran_order': False"));
        let dims = header.split("'shape': (").nth(1).unwrap();
        let dims = dims.split(')').next().unwrap();
        let shape = dims
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let data = bytes[10 + len..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (shape, data)
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let f = DType::F32;
        let t = |s: &[usize]| Tensor::zeros(&gpu, s, f).unwrap();
        let x = t(&[1, 4, 5, 5]);
        let w = t(&[2, 4, 3, 3]);
        let cfg = DeformConv2dConfig::padded(1);
        let off = t(&[1, 18, 5, 5]);
        assert!(deform_conv2d(&x, &off, None, &w, None, &cfg).is_ok());
        let shape = |r: Result<Tensor>| matches!(r, Err(KernelError::Shape { .. }));
        // Offset channels for 2 groups with offset_groups = 1.
        assert!(shape(deform_conv2d(
            &x,
            &t(&[1, 36, 5, 5]),
            None,
            &w,
            None,
            &cfg
        )));
        // Offset spatial size not the output size.
        assert!(shape(deform_conv2d(
            &x,
            &t(&[1, 18, 3, 3]),
            None,
            &w,
            None,
            &cfg
        )));
        // Mask with the channels of 2 offset groups.
        let bad_mask = t(&[1, 18, 5, 5]);
        assert!(shape(deform_conv2d(
            &x,
            &off,
            Some(&bad_mask),
            &w,
            None,
            &cfg
        )));
        // Offset groups that do not divide Cin.
        let g3 = DeformConv2dConfig {
            offset_groups: 3,
            ..cfg
        };
        assert!(shape(deform_conv2d(
            &x,
            &t(&[1, 54, 5, 5]),
            None,
            &w,
            None,
            &g3
        )));
        // Weight groups (Cin/2 weights) are not supported.
        assert!(shape(deform_conv2d(
            &x,
            &off,
            None,
            &t(&[2, 2, 3, 3]),
            None,
            &cfg
        )));
        assert!(shape(deform_conv2d(
            &x,
            &off,
            None,
            &w,
            Some(&t(&[3])),
            &cfg
        )));
        let zero_stride = DeformConv2dConfig {
            stride: (0, 1),
            ..cfg
        };
        assert!(shape(deform_conv2d(&x, &off, None, &w, None, &zero_stride)));
        // Kernel larger than the padded input.
        let tiny = t(&[1, 4, 1, 1]);
        let d = DeformConv2dConfig::default();
        assert!(shape(deform_conv2d(&tiny, &off, None, &w, None, &d)));
        assert!(shape(deform_conv2d(
            &t(&[4, 5, 5]),
            &off,
            None,
            &w,
            None,
            &cfg
        )));
        let empty = t(&[0, 4, 5, 5]);
        assert!(matches!(
            deform_conv2d(&empty, &off, None, &w, None, &cfg),
            Err(KernelError::Empty { .. })
        ));
        if gpu.caps().shader_f16 {
            let w16 = Tensor::zeros(&gpu, &[2, 4, 3, 3], DType::F16).unwrap();
            assert!(matches!(
                deform_conv2d(&x, &off, None, &w16, None, &cfg),
                Err(KernelError::DType { .. })
            ));
        }
    }

    /// The chunked paths: several images per chunk, and pixel ranges of one
    /// image (with a ragged last range), forced by small column budgets.
    #[test]
    fn chunked_columns_match_reference() {
        let Some(gpu) = test_gpu() else { return };
        let c = Case {
            n: 3,
            cin: 5,
            cout: 7,
            hw: (13, 17),
            k: (3, 3),
            cfg: DeformConv2dConfig {
                offset_groups: 5,
                ..DeformConv2dConfig::padded(1)
            },
            mask: true,
            bias: true,
        };
        let per_image = 5 * 9 * 13 * 17;
        for dtype in test_dtypes(&gpu) {
            let size = dtype.size();
            // 2 images per chunk (3 = 2 + 1); 150 and 37 pixels per chunk.
            for budget in [2 * per_image, 5 * 9 * 150, 5 * 9 * 37] {
                run_case_with(&gpu, &c, dtype, 5, budget * size, false);
            }
        }
        // One big image at the default budget: 256*9*96*96*4 bytes > 64 MiB.
        let big = Case {
            n: 1,
            cin: 256,
            cout: 8,
            hw: (96, 96),
            k: (3, 3),
            cfg: DeformConv2dConfig::padded(1),
            mask: true,
            bias: false,
        };
        run_case_with(&gpu, &big, DType::F32, 77, COLUMN_BUDGET, false);
    }

    /// `cargo test -p easel-kernels deform_gflops -- --ignored --nocapture`
    #[test]
    #[ignore = "timing, not a check"]
    fn deform_gflops() {
        let Some(gpu) = test_gpu() else { return };
        for (cin, cout, hw) in [(64, 64, 128), (64, 64, 256), (256, 256, 64), (512, 512, 32)] {
            gpu.reset_profile();
            let r = crate::bench::deform3x3(&gpu, cin, cout, hw, DType::F32, 3).unwrap();
            let c = crate::bench::conv3x3(&gpu, cin, cout, hw, DType::F32, 3).unwrap();
            eprintln!(
                "{}: deform {:.2} ms {:.1} GFLOP/s | conv2d {:.2} ms {:.1} GFLOP/s",
                r.shape, r.median_ms, r.gflops, c.median_ms, c.gflops
            );
            if let Some(t) = gpu.profile_report() {
                eprintln!("{t}");
            }
        }
    }
}
