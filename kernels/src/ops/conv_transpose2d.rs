//! Transposed 2-D convolution (PyTorch `ConvTranspose2d`), NCHW.
//!
//! A gather kernel (one output per invocation): the decoder upsampling layers
//! it serves are a small share of a model's time; the heavy convs are
//! [`crate::ops::conv2d`].

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::{Access, Cost, Kernel, KernelError, Tensor};

const OP: &str = "conv_transpose2d";

#[derive(Debug, Clone, Copy)]
pub struct ConvTranspose2dConfig {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub output_padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for ConvTranspose2dConfig {
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: (0, 0),
            output_padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
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
    cin_g: u32,
    cout_g: u32,
    total: u32,
    _pad: [u32; 2],
}

fn dims(t: &Tensor, what: &str) -> Result<[usize; 4]> {
    match t.shape() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        s => shape_err(OP, format!("{what} must be 4-D, got {s:?}")),
    }
}

/// Output size along one axis, or a shape error.
fn out_len(i: usize, k: usize, s: usize, p: usize, op: usize, d: usize) -> Result<usize> {
    if op >= s.max(d) {
        return shape_err(
            OP,
            format!("output_padding {op} must be smaller than stride {s} or dilation {d}"),
        );
    }
    let full = (i - 1) * s + d * (k - 1) + op + 1;
    if full <= 2 * p {
        return shape_err(
            OP,
            format!("padding {p} leaves no output (size before padding {full})"),
        );
    }
    Ok(full - 2 * p)
}

/// x [N, Cin, H, W], w [Cin, Cout/groups, KH, KW], bias [Cout].
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: &ConvTranspose2dConfig,
) -> Result<Tensor> {
    let [n, cin, h, wd] = dims(x, "input")?;
    let [wcin, cout_g, kh, kw] = dims(w, "weight")?;
    if x.numel() == 0 || w.numel() == 0 {
        return Err(KernelError::Empty {
            op: OP,
            shape: if x.numel() == 0 { x.shape() } else { w.shape() }.to_vec(),
        });
    }
    for t in std::iter::once(w).chain(bias) {
        if t.dtype() != x.dtype() {
            return Err(KernelError::DType {
                op: OP,
                expected: x.dtype(),
                got: t.dtype(),
            });
        }
    }
    let g = cfg.groups;
    let (s, d) = (cfg.stride, cfg.dilation);
    if g == 0 || s.0 == 0 || s.1 == 0 || d.0 == 0 || d.1 == 0 {
        return shape_err(OP, "stride, dilation and groups must be >= 1");
    }
    if wcin != cin || cin % g != 0 {
        return shape_err(
            OP,
            format!(
                "input has {cin} channels, weight {:?} with groups {g}",
                w.shape()
            ),
        );
    }
    let cout = cout_g * g;
    if let Some(b) = bias
        && b.numel() != cout
    {
        return shape_err(
            OP,
            format!("bias has {} elements, Cout is {cout}", b.numel()),
        );
    }
    let ho = out_len(h, kh, s.0, cfg.padding.0, cfg.output_padding.0, d.0)?;
    let wo = out_len(wd, kw, s.1, cfg.padding.1, cfg.output_padding.1, d.1)?;
    let gpu = x.gpu();
    let y = Tensor::empty_for(gpu, OP, &[n, cout, ho, wo], x.dtype())?;
    let total = y.numel();
    if total > u32::MAX as usize {
        return Err(KernelError::TooLarge {
            op: OP,
            bytes: y.size_bytes() as u64,
            limit: u32::MAX as u64,
        });
    }
    let params = Params {
        n: n as u32,
        cin: cin as u32,
        h: h as u32,
        w: wd as u32,
        cout: cout as u32,
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
        cin_g: (cin / g) as u32,
        cout_g: cout_g as u32,
        total: total as u32,
        _pad: [0; 2],
    };
    const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::Read, Access::ReadWrite];
    let kernel = Kernel::new(
        OP,
        include_str!("conv_transpose2d.wgsl"),
        x.dtype(),
        BINDINGS,
    )
    .define("HAS_BIAS", bias.is_some());
    let flops = 2.0 * (n * cin * h * wd * cout_g * kh * kw) as f64;
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[
            x.bind(),
            w.bind(),
            bias.map_or(gpu.dummy(), |b| b.bind()),
            y.bind(),
        ],
        gpu.grid(total.div_ceil(256) as u64)?,
        Cost::new(
            flops,
            (x.size_bytes() + w.size_bytes() + y.size_bytes()) as f64,
        ),
    )?;
    Ok(y)
}

/// CPU reference (scatter form, independent of the kernel's gather form).
pub fn reference(
    x: &[f32],
    [n, cin, h, wd]: [usize; 4],
    wt: &[f32],
    [_, cout_g, kh, kw]: [usize; 4],
    bias: Option<&[f32]>,
    cfg: &ConvTranspose2dConfig,
) -> (Vec<f32>, [usize; 4]) {
    let (s, p, d) = (cfg.stride, cfg.padding, cfg.dilation);
    let ho = out_len(h, kh, s.0, p.0, cfg.output_padding.0, d.0).expect("reference: bad shape");
    let wo = out_len(wd, kw, s.1, p.1, cfg.output_padding.1, d.1).expect("reference: bad shape");
    let cin_g = cin / cfg.groups;
    let cout = cout_g * cfg.groups;
    let mut y = vec![0.0f64; n * cout * ho * wo];
    for b in 0..n {
        for ci in 0..cin {
            let g = ci / cin_g;
            for iy in 0..h {
                for ix in 0..wd {
                    let xv = x[((b * cin + ci) * h + iy) * wd + ix] as f64;
                    for cg in 0..cout_g {
                        let co = g * cout_g + cg;
                        for ky in 0..kh {
                            let oy = (iy * s.0 + ky * d.0) as isize - p.0 as isize;
                            if oy < 0 || oy >= ho as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ox = (ix * s.1 + kx * d.1) as isize - p.1 as isize;
                                if ox < 0 || ox >= wo as isize {
                                    continue;
                                }
                                let wv = wt[((ci * cout_g + cg) * kh + ky) * kw + kx] as f64;
                                y[((b * cout + co) * ho + oy as usize) * wo + ox as usize] +=
                                    xv * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    let hw = ho * wo;
    let y = y
        .iter()
        .enumerate()
        .map(|(i, &v)| (v + bias.map_or(0.0, |bs| bs[(i / hw) % cout] as f64)) as f32)
        .collect();
    (y, [n, cout, ho, wo])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use crate::testing::*;

    fn cfg(s: usize, p: usize, op: usize, d: usize, g: usize) -> ConvTranspose2dConfig {
        ConvTranspose2dConfig {
            stride: (s, s),
            padding: (p, p),
            output_padding: (op, op),
            dilation: (d, d),
            groups: g,
        }
    }

    #[test]
    fn matches_reference() {
        let Some(gpu) = test_gpu() else { return };
        // (x shape, cout per group, kernel, config, bias)
        let cases = [
            ([1, 3, 13, 17], 5, 3, cfg(2, 1, 1, 1, 1), true),
            ([2, 4, 7, 5], 3, 4, cfg(2, 1, 0, 1, 1), false),
            ([1, 6, 5, 9], 2, 3, cfg(2, 1, 1, 1, 2), true),
            ([1, 5, 6, 7], 1, 3, cfg(1, 1, 0, 1, 5), true),
            ([1, 3, 4, 5], 4, 3, cfg(3, 0, 2, 2, 1), true),
            ([1, 64, 9, 11], 32, 2, cfg(2, 0, 0, 1, 1), true),
            ([1, 3, 1, 1], 2, 1, cfg(1, 0, 0, 1, 1), false),
        ];
        for dtype in test_dtypes(&gpu) {
            for (i, &(xs, cout_g, k, c, has_bias)) in cases.iter().enumerate() {
                let ws = [xs[1], cout_g, k, k];
                let cout = cout_g * c.groups;
                let seed = 100 + i as u64 * 5;
                let (x, xv) = upload(
                    &gpu,
                    &xs,
                    &rand_vec(xs.iter().product(), seed, -1.0, 1.0),
                    dtype,
                );
                let (w, wv) = upload(
                    &gpu,
                    &ws,
                    &rand_vec(ws.iter().product(), seed + 1, -0.5, 0.5),
                    dtype,
                );
                let (b, bv) = upload(&gpu, &[cout], &rand_vec(cout, seed + 2, -1.0, 1.0), dtype);
                let got = conv_transpose2d(&x, &w, has_bias.then_some(&b), &c).unwrap();
                let (want, shape) = reference(&xv, xs, &wv, ws, has_bias.then_some(&bv[..]), &c);
                assert_eq!(got.shape(), &shape[..], "case {i}");
                assert_close(
                    &format!("case {i} {xs:?} {c:?} {dtype}"),
                    &got.to_f32_vec().unwrap(),
                    &want,
                    tol(dtype),
                );
            }
        }
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let f = DType::F32;
        let x = Tensor::zeros(&gpu, &[1, 4, 5, 5], f).unwrap();
        let w = Tensor::zeros(&gpu, &[4, 2, 3, 3], f).unwrap();
        let shape =
            |r: Result<Tensor>| assert!(matches!(r, Err(KernelError::Shape { .. })), "{r:?}");
        let w3 = Tensor::zeros(&gpu, &[3, 2, 3, 3], f).unwrap();
        shape(conv_transpose2d(&x, &w3, None, &Default::default()));
        shape(conv_transpose2d(&x, &w, None, &cfg(1, 0, 1, 1, 1)));
        shape(conv_transpose2d(&x, &w, None, &cfg(1, 0, 0, 1, 3)));
        shape(conv_transpose2d(&x, &w, None, &cfg(1, 4, 0, 1, 1)));
        let b = Tensor::zeros(&gpu, &[3], f).unwrap();
        shape(conv_transpose2d(&x, &w, Some(&b), &Default::default()));
        let empty = Tensor::empty(&gpu, &[1, 4, 0, 5], f).unwrap();
        let r = conv_transpose2d(&empty, &w, None, &Default::default());
        assert!(matches!(r, Err(KernelError::Empty { .. })), "{r:?}");
        assert!(conv_transpose2d(&x, &w, None, &cfg(2, 1, 1, 1, 2)).is_ok());
    }
}
