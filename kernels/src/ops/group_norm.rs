//! GroupNorm on `[N, C, *]` (PyTorch semantics: biased variance, per-channel
//! affine), optionally fused with an activation (the `GroupNorm -> SiLU` of
//! UNet and VAE res-blocks).

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::ops::epilogue::{Activation, EPILOGUE_WGSL};
use crate::ops::layer_norm::{check_param, opt_bind};
use crate::{Access, AdapterClass, Cost, DType, Kernel, KernelError, Tensor};

const OP: &str = "group_norm";
/// Smallest chunk worth a workgroup of its own.
const MIN_CHUNK: usize = 4096;
/// Most chunks per row (their partials are merged by one workgroup).
const MAX_CHUNKS: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    len: u32,
    chunks: u32,
    chunk_len: u32,
    spatial: u32,
    cpg: u32,
    groups: u32,
    eps: f32,
    slope: f32,
    _pad: [u32; 3],
}

/// Chunks per row: enough workgroups to fill the device, none smaller than
/// [`MIN_CHUNK`]. A CPU adapter has a few cores, so it splits only when the
/// rows alone cannot keep them busy.
fn chunks_for(class: AdapterClass, rows: usize, len: usize) -> usize {
    let target: usize = if class == AdapterClass::Cpu { 64 } else { 4096 };
    target
        .div_ceil(rows)
        .min(len.div_ceil(MIN_CHUNK))
        .clamp(1, MAX_CHUNKS)
}

/// PyTorch `GroupNorm(groups, C, eps)` on `x` of shape `[N, C, *]`.
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    group_norm_act(x, groups, gamma, beta, eps, Activation::None)
}

/// [`group_norm`] followed by `act` in the same pass.
pub fn group_norm_act(
    x: &Tensor,
    groups: usize,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f32,
    act: Activation,
) -> Result<Tensor> {
    if x.numel() == 0 {
        return Err(KernelError::Empty {
            op: OP,
            shape: x.shape().to_vec(),
        });
    }
    if x.rank() < 2 {
        return shape_err(OP, format!("input must be [N, C, *], got {:?}", x.shape()));
    }
    let c = x.shape()[1];
    if groups == 0 || !c.is_multiple_of(groups) {
        return shape_err(
            OP,
            format!("{c} channels cannot be split into {groups} groups"),
        );
    }
    if act == Activation::PRelu {
        return shape_err(
            OP,
            "PReLU needs slopes: apply unary::prelu after group_norm",
        );
    }
    check_param(OP, "gamma", x, gamma, c)?;
    check_param(OP, "beta", x, beta, c)?;
    let gpu = x.gpu();
    let spatial: usize = x.shape()[2..].iter().product();
    let cpg = c / groups;
    let rows = x.shape()[0] * groups;
    let len = cpg * spatial;
    let chunks = chunks_for(gpu.class(), rows, len);
    // vec4 loads need every row and chunk to start on a multiple of 4.
    let vec4 = len.is_multiple_of(4);
    let chunk_len = len
        .div_ceil(chunks)
        .next_multiple_of(if vec4 { 4 } else { 1 });
    // Recount so no chunk is empty (e.g. len 10000 in 3 chunks of 3334).
    let chunks = len.div_ceil(chunk_len);
    let fused = chunks == 1;

    let y = Tensor::empty_for(gpu, OP, x.shape(), x.dtype())?;
    let part = if fused {
        None
    } else {
        Some(Tensor::empty_for(gpu, OP, &[rows * chunks, 4], DType::F32)?)
    };
    let params = Params {
        rows: rows as u32,
        len: len as u32,
        chunks: chunks as u32,
        chunk_len: chunk_len as u32,
        spatial: spatial as u32,
        cpg: cpg as u32,
        groups: groups as u32,
        eps,
        slope: act.param(),
        _pad: [0; 3],
    };
    use Access::{Read, ReadWrite};
    const STATS: &[Access] = &[Read, Read, Read, ReadWrite, ReadWrite];
    const APPLY: &[Access] = &[Read, Read, Read, Read, ReadWrite];
    let wg = if len <= 1024 { 64 } else { 256 };
    let kernel = |entry, bindings| {
        Kernel::new(OP, include_str!("group_norm.wgsl"), x.dtype(), bindings)
            .entry(entry)
            .define("WG", format!("{wg}u"))
            .define("FUSED", fused)
            .define("HAS_GAMMA", gamma.is_some())
            .define("HAS_BETA", beta.is_some())
            .define("ACT", format!("{}u", act.code()))
            .includes(&[EPILOGUE_WGSL])
    };
    let binds = [
        x.bind(),
        opt_bind(gpu, gamma),
        opt_bind(gpu, beta),
        opt_bind(gpu, part.as_ref()),
        y.bind(),
    ];
    let grid = gpu.grid((rows * chunks) as u64)?;
    let n = x.numel() as f64;
    let bytes = x.size_bytes() as f64;
    if !fused {
        gpu.dispatch(
            &kernel(if vec4 { "stats4" } else { "stats" }, STATS),
            bytemuck::bytes_of(&params),
            &binds,
            grid,
            Cost::new(5.0 * n, bytes),
        )?;
    }
    let stat_flops = if fused { 5.0 * n } else { 0.0 };
    gpu.dispatch(
        &kernel(if vec4 { "apply4" } else { "apply" }, APPLY),
        bytemuck::bytes_of(&params),
        &binds,
        grid,
        Cost::new(stat_flops + 6.0 * n, bytes * if fused { 3.0 } else { 2.0 }),
    )?;
    Ok(y)
}

/// CPU reference (f64 two-pass statistics); empty `gamma`/`beta` = absent.
pub fn reference(
    x: &[f32],
    shape: &[usize],
    groups: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    act: Activation,
) -> Vec<f32> {
    let c = shape[1];
    let spatial: usize = shape[2..].iter().product();
    let len = c / groups * spatial;
    let mut out = vec![0.0; x.len()];
    for (r, row) in x.chunks(len).enumerate() {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        for (j, &v) in row.iter().enumerate() {
            let ch = (r % groups) * (c / groups) + j / spatial;
            let mut o = (v as f64 - mean) * rstd;
            if !gamma.is_empty() {
                o *= gamma[ch] as f64;
            }
            if !beta.is_empty() {
                o += beta[ch] as f64;
            }
            out[r * len + j] = act.apply(o as f32, 0.0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn check(shape: &[usize], groups: usize, act: Activation, offset: f32, seed: u64) {
        let Some(gpu) = test_gpu() else { return };
        let c = shape[1];
        let n: usize = shape.iter().product();
        for dtype in test_dtypes(&gpu) {
            let data: Vec<f32> = rand_vec(n, seed, -2.0, 2.0)
                .iter()
                .map(|v| v + offset)
                .collect();
            let (x, xv) = upload(&gpu, shape, &data, dtype);
            let (g, gv) = upload(&gpu, &[c], &rand_vec(c, seed + 1, 0.5, 1.5), dtype);
            let (b, bv) = upload(&gpu, &[c], &rand_vec(c, seed + 2, -1.0, 1.0), dtype);
            let what = format!("{shape:?} g={groups} {act:?} +{offset} {dtype}");
            let got = group_norm_act(&x, groups, Some(&g), Some(&b), 1e-5, act).unwrap();
            let want = reference(&xv, shape, groups, &gv, &bv, 1e-5, act);
            assert_close(&what, &got.to_f32_vec().unwrap(), &want, tol(dtype));
            let got = group_norm(&x, groups, None, None, 1e-6).unwrap();
            let want = reference(&xv, shape, groups, &[], &[], 1e-6, Activation::None);
            assert_close(&what, &got.to_f32_vec().unwrap(), &want, tol(dtype));
        }
    }

    #[test]
    fn odd_shapes_and_group_counts() {
        check(&[1, 3, 13, 17], 1, Activation::None, 0.0, 1);
        check(&[1, 3, 13, 17], 3, Activation::Silu, 0.0, 2);
        check(&[2, 5, 7, 3], 5, Activation::None, 0.0, 3);
        check(&[2, 64, 9, 11], 1, Activation::None, 0.0, 4);
        check(&[2, 64, 9, 11], 4, Activation::Silu, 0.0, 5);
        check(&[1, 64, 9, 11], 64, Activation::LeakyRelu(0.2), 0.0, 6);
        check(&[1, 64, 9, 11], 32, Activation::GeluErf, 0.0, 7);
        check(&[3, 6], 2, Activation::None, 0.0, 8); // no spatial dims
        check(&[1, 4, 1, 1], 4, Activation::None, 0.0, 9); // one element per group
        check(&[1, 2, 3, 5, 7], 2, Activation::None, 0.0, 10); // 3-D spatial
        // vec4 path with spatial < 4: vec4s span several channels.
        check(&[2, 8, 2], 2, Activation::None, 0.0, 14);
        check(&[2, 8], 1, Activation::Silu, 0.0, 15);
        check(&[1, 4, 6], 2, Activation::None, 0.0, 16); // spatial 6: carry into next channel
    }

    #[test]
    fn chunked_rows_and_large_means() {
        // 32 channels of 64x64 in 1 or 2 groups: rows of 131072 / 65536
        // elements are split into chunks, whose partials must merge exactly.
        check(&[1, 32, 64, 64], 2, Activation::Silu, 0.0, 11);
        check(&[1, 32, 64, 64], 1, Activation::None, 1000.0, 12);
        check(&[2, 64, 9, 11], 4, Activation::None, 1000.0, 13);
    }

    #[test]
    fn chunk_policy() {
        assert_eq!(chunks_for(AdapterClass::Nvidia, 64, 442), 1);
        assert_eq!(chunks_for(AdapterClass::Nvidia, 32, 16 * 512 * 512), 128);
        assert_eq!(chunks_for(AdapterClass::Cpu, 64, 1 << 20), 1);
        assert_eq!(chunks_for(AdapterClass::Cpu, 2, 1 << 20), 32);
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let f = DType::F32;
        let x = Tensor::zeros(&gpu, &[1, 6, 4, 4], f).unwrap();
        let bad = |r: Result<Tensor>| matches!(r, Err(KernelError::Shape { .. }));
        assert!(bad(group_norm(&x, 4, None, None, 1e-5)));
        assert!(bad(group_norm(&x, 0, None, None, 1e-5)));
        let g5 = Tensor::zeros(&gpu, &[5], f).unwrap();
        assert!(bad(group_norm(&x, 3, Some(&g5), None, 1e-5)));
        assert!(bad(group_norm(&x, 3, None, Some(&g5), 1e-5)));
        assert!(bad(group_norm_act(
            &x,
            3,
            None,
            None,
            1e-5,
            Activation::PRelu
        )));
        let v = Tensor::zeros(&gpu, &[6], f).unwrap();
        assert!(bad(group_norm(&v, 1, None, None, 1e-5)));
        let e = Tensor::empty(&gpu, &[0, 6, 4], f).unwrap();
        assert!(matches!(
            group_norm(&e, 3, None, None, 1e-5),
            Err(KernelError::Empty { .. })
        ));
        if gpu.caps().shader_f16 {
            let h = Tensor::zeros(&gpu, &[6], DType::F16).unwrap();
            assert!(matches!(
                group_norm(&x, 3, Some(&h), None, 1e-5),
                Err(KernelError::DType { .. })
            ));
        }
    }
}
