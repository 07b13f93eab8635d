//! LayerNorm and RMSNorm over the last axis (transformer blocks, text
//! encoders). One shader; `RMS` selects the variant.

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::{Access, AdapterClass, Cost, Kernel, KernelError, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    len: u32,
    eps: f32,
    _pad: u32,
}

/// Checks an optional per-feature parameter: `len` elements, `x`'s dtype.
pub(crate) fn check_param(
    op: &'static str,
    name: &str,
    x: &Tensor,
    t: Option<&Tensor>,
    len: usize,
) -> Result<()> {
    let Some(t) = t else { return Ok(()) };
    if t.numel() != len {
        return shape_err(
            op,
            format!(
                "{name} has {} elements (shape {:?}), expected {len}",
                t.numel(),
                t.shape()
            ),
        );
    }
    if t.dtype() != x.dtype() {
        return Err(KernelError::DType {
            op,
            expected: x.dtype(),
            got: t.dtype(),
        });
    }
    Ok(())
}

/// A tensor's binding, or the dummy buffer where an optional input is absent.
pub(crate) fn opt_bind<'a>(gpu: &'a crate::Gpu, t: Option<&'a Tensor>) -> crate::Bind<'a> {
    t.map(|t| t.bind()).unwrap_or(gpu.dummy())
}

fn launch(
    op: &'static str,
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f32,
    rms: bool,
) -> Result<Tensor> {
    if x.numel() == 0 {
        return Err(KernelError::Empty {
            op,
            shape: x.shape().to_vec(),
        });
    }
    if x.rank() == 0 {
        return shape_err(op, "needs at least one axis");
    }
    let len = x.dim(-1);
    check_param(op, "gamma", x, gamma, len)?;
    check_param(op, "beta", x, beta, len)?;
    let rows = x.numel() / len;
    let gpu = x.gpu();
    let y = Tensor::empty_for(gpu, op, x.shape(), x.dtype())?;
    let params = Params {
        rows: rows as u32,
        len: len as u32,
        eps,
        _pad: 0,
    };
    // CPU adapters: a row per invocation (see `main_rows`); the loop bound keeps it far
    // below lavapipe's 65535 loop iterations per invocation.
    let per_row = gpu.class() == AdapterClass::Cpu && len <= 1024;
    // Short rows: a smaller workgroup idles less at the tree's barriers.
    let wg = if len <= 1024 { 64 } else { 256 };
    const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::Read, Access::ReadWrite];
    let kernel = Kernel::new(op, include_str!("layer_norm.wgsl"), x.dtype(), BINDINGS)
        .entry(if per_row { "main_rows" } else { "main" })
        .define("WG", format!("{wg}u"))
        .define("RMS", rms)
        .define("HAS_GAMMA", gamma.is_some())
        .define("HAS_BETA", beta.is_some());
    let n = x.numel() as f64;
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[
            x.bind(),
            opt_bind(gpu, gamma),
            opt_bind(gpu, beta),
            y.bind(),
        ],
        gpu.grid(if per_row {
            rows.div_ceil(wg) as u64
        } else {
            rows as u64
        })?,
        Cost::new(8.0 * n, 3.0 * x.size_bytes() as f64),
    )?;
    Ok(y)
}

/// PyTorch `LayerNorm(normalized_shape = last dim)`: biased variance,
/// optional per-feature `gamma` (weight) and `beta` (bias).
pub fn layer_norm(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    launch("layer_norm", x, gamma, beta, eps, false)
}

/// RMSNorm over the last axis: `x / sqrt(mean(x^2) + eps) * gamma`.
pub fn rms_norm(x: &Tensor, gamma: Option<&Tensor>, eps: f32) -> Result<Tensor> {
    launch("rms_norm", x, gamma, None, eps, true)
}

/// CPU reference (f64 two-pass statistics) over rows of `len`; empty
/// `gamma`/`beta` slices mean "absent".
pub fn reference(
    x: &[f32],
    len: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    rms: bool,
) -> Vec<f32> {
    x.chunks(len)
        .flat_map(|row| {
            let n = len as f64;
            let mean = if rms {
                0.0
            } else {
                row.iter().map(|&v| v as f64).sum::<f64>() / n
            };
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let rstd = 1.0 / (var + eps as f64).sqrt();
            row.iter().enumerate().map(move |(j, &v)| {
                let mut o = (v as f64 - mean) * rstd;
                if !gamma.is_empty() {
                    o *= gamma[j] as f64;
                }
                if !beta.is_empty() {
                    o += beta[j] as f64;
                }
                o as f32
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    const SHAPES: &[&[usize]] = &[
        &[1],
        &[7, 1],
        &[3, 7],
        &[1, 3, 13, 17],
        &[2, 77, 64],
        &[4, 1000],
        &[2, 5000],
        &[1, 100_000],
    ];

    fn run(rms: bool, offset: f32) {
        let Some(gpu) = test_gpu() else { return };
        for dtype in test_dtypes(&gpu) {
            for (i, shape) in SHAPES.iter().enumerate() {
                let n: usize = shape.iter().product();
                let len = *shape.last().unwrap();
                let data: Vec<f32> = rand_vec(n, i as u64, -2.0, 2.0)
                    .iter()
                    .map(|v| v + offset)
                    .collect();
                let (x, xv) = upload(&gpu, shape, &data, dtype);
                let (g, gv) = upload(&gpu, &[len], &rand_vec(len, 50, 0.5, 1.5), dtype);
                let (b, bv) = upload(&gpu, &[len], &rand_vec(len, 51, -1.0, 1.0), dtype);
                let eps = 1e-5;
                let (got, want) = if rms {
                    (
                        rms_norm(&x, Some(&g), eps),
                        reference(&xv, len, &gv, &[], eps, true),
                    )
                } else {
                    (
                        layer_norm(&x, Some(&g), Some(&b), eps),
                        reference(&xv, len, &gv, &bv, eps, false),
                    )
                };
                let what = format!("rms={rms} offset={offset} {shape:?} {dtype}");
                assert_close(
                    &what,
                    &got.unwrap().to_f32_vec().unwrap(),
                    &want,
                    tol(dtype),
                );
                if !rms {
                    let plain = layer_norm(&x, None, None, eps)
                        .unwrap()
                        .to_f32_vec()
                        .unwrap();
                    let want = reference(&xv, len, &[], &[], eps, false);
                    assert_close(&what, &plain, &want, tol(dtype));
                }
            }
        }
    }

    #[test]
    fn layer_norm_matches_reference() {
        run(false, 0.0);
    }

    #[test]
    fn layer_norm_is_stable_for_large_means() {
        // A naive E[x^2] - E[x]^2 in f32 loses ~5% of the variance here.
        run(false, 1000.0);
    }

    #[test]
    fn rms_norm_matches_reference() {
        run(true, 0.0);
        run(true, 3.0);
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let f = crate::DType::F32;
        let x = Tensor::zeros(&gpu, &[2, 8], f).unwrap();
        let g = Tensor::zeros(&gpu, &[7], f).unwrap();
        assert!(matches!(
            layer_norm(&x, Some(&g), None, 1e-5),
            Err(KernelError::Shape { .. })
        ));
        assert!(matches!(
            layer_norm(&x, None, Some(&g), 1e-5),
            Err(KernelError::Shape { .. })
        ));
        assert!(matches!(
            rms_norm(&x, Some(&g), 1e-5),
            Err(KernelError::Shape { .. })
        ));
        let e = Tensor::empty(&gpu, &[0, 8], f).unwrap();
        assert!(matches!(
            layer_norm(&e, None, None, 1e-5),
            Err(KernelError::Empty { .. })
        ));
        if gpu.caps().shader_f16 {
            let h = Tensor::zeros(&gpu, &[8], crate::DType::F16).unwrap();
            assert!(matches!(
                layer_norm(&x, Some(&h), None, 1e-5),
                Err(KernelError::DType { .. })
            ));
        }
    }
}
