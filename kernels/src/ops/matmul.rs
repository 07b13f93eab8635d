//! Batched matrix multiply with a fused epilogue, and `linear`.
//!
//! Three kernels, picked per adapter:
//! - `matmul_reg.wgsl`: register-blocked with subgroup broadcasts, for
//!   CPU-class adapters (lavapipe), where loads bound the speed;
//! - `matmul.wgsl` `main_tiled`: shared-memory tiles for discrete GPUs;
//! - `matmul_coop.wgsl`: cooperative matrices where the adapter grants them.
//!
//! `EASEL_MATMUL=reg|tiled|coop` forces a kernel (where the adapter can run it).

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::ops::epilogue::{EPILOGUE_WGSL, Epilogue};
use crate::{Access, AdapterClass, Cost, DType, Gpu, Kernel, KernelError, Tensor};

const OP: &str = "matmul";
const MATMUL_WGSL: &str = include_str!("matmul.wgsl");

#[derive(Debug, Clone, Copy, Default)]
pub struct MatmulOpts {
    pub trans_a: bool,
    pub trans_b: bool,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_bs: u32,
    b_bs: u32,
    sam: u32,
    sak: u32,
    sbk: u32,
    sbn: u32,
    tiles_m: u32,
    tiles_n: u32,
    slope_n: u32,
    slope: f32,
    alpha: f32,
    beta: f32,
}

/// Which kernel runs a matmul.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulKernel {
    /// Register-blocked, subgroup-broadcast (needs 8-lane subgroups).
    Reg,
    /// Shared-memory tiles.
    Tiled,
    /// Cooperative matrices.
    Coop,
}

/// Floating-point operations of a batched matmul (one multiply-add = 2).
pub fn matmul_flops(m: usize, n: usize, k: usize, batch: usize) -> f64 {
    2.0 * m as f64 * n as f64 * k as f64 * batch as f64
}

fn can_run(gpu: &Gpu, dtype: DType, kernel: MatmulKernel) -> bool {
    let c = gpu.caps();
    match kernel {
        MatmulKernel::Tiled => true,
        MatmulKernel::Reg => c.subgroup && c.subgroup_min_size == 8 && c.subgroup_max_size == 8,
        MatmulKernel::Coop => {
            let cm = match dtype {
                DType::F16 => c.coop_f16_f32acc,
                DType::F32 => c.coop_f32,
            };
            c.cooperative_matrix
                && cm > 0
                && c.subgroup
                && c.subgroup_min_size == c.subgroup_max_size
                && c.subgroup_max_size > 0
        }
    }
}

/// The kernel [`matmul`] uses for `dtype` on this adapter.
pub fn matmul_kernel(gpu: &Gpu, dtype: DType) -> MatmulKernel {
    if let Ok(v) = std::env::var("EASEL_MATMUL") {
        let want = match v.to_ascii_lowercase().as_str() {
            "reg" => Some(MatmulKernel::Reg),
            "tiled" => Some(MatmulKernel::Tiled),
            "coop" => Some(MatmulKernel::Coop),
            _ => None,
        };
        if let Some(k) = want.filter(|&k| can_run(gpu, dtype, k)) {
            return k;
        }
    }
    if can_run(gpu, dtype, MatmulKernel::Coop) {
        MatmulKernel::Coop
    } else if gpu.class() == AdapterClass::Cpu && can_run(gpu, dtype, MatmulKernel::Reg) {
        MatmulKernel::Reg
    } else {
        MatmulKernel::Tiled
    }
}

/// Row-major `[rows, cols]` matrix dims of an operand and its (row, col) strides.
fn dims(t: &Tensor) -> (usize, usize) {
    (t.dim(-2), t.dim(-1))
}

/// `a: [..batch, M, K]` (`[.., K, M]` if `trans_a`); `b: [..batch, K, N]`
/// (`[.., N, K]` if `trans_b`), or a rank-2 operand broadcast over the other's
/// batch. `bias: [N]`. The epilogue works per output column n (PReLU slopes
/// indexed by n, residual shaped like the output). Output `[..batch, M, N]`.
pub fn matmul(
    a: &Tensor,
    b: &Tensor,
    opts: MatmulOpts,
    bias: Option<&Tensor>,
    epi: &Epilogue,
) -> Result<Tensor> {
    matmul_with(a, b, opts, bias, epi, None)
}

/// [`matmul`] with the kernel forced (tests and benchmarks); `None` chooses.
pub fn matmul_with(
    a: &Tensor,
    b: &Tensor,
    opts: MatmulOpts,
    bias: Option<&Tensor>,
    epi: &Epilogue,
    kernel: Option<MatmulKernel>,
) -> Result<Tensor> {
    for t in [a, b] {
        if t.numel() == 0 {
            return Err(KernelError::Empty {
                op: OP,
                shape: t.shape().to_vec(),
            });
        }
        if t.rank() < 2 {
            return shape_err(OP, format!("operands need rank >= 2, got {:?}", t.shape()));
        }
    }
    let dtype = a.dtype();
    let others = [Some(b), bias, epi.slopes, epi.residual];
    for t in others.into_iter().flatten() {
        if t.dtype() != dtype {
            return Err(KernelError::DType {
                op: OP,
                expected: dtype,
                got: t.dtype(),
            });
        }
    }
    let (ar, ac) = dims(a);
    let (br, bc) = dims(b);
    let (m, k) = if opts.trans_a { (ac, ar) } else { (ar, ac) };
    let (kb, n) = if opts.trans_b { (bc, br) } else { (br, bc) };
    if k != kb {
        return shape_err(
            OP,
            format!(
                "inner dims differ: a {:?} (trans {}) vs b {:?} (trans {})",
                a.shape(),
                opts.trans_a,
                b.shape(),
                opts.trans_b
            ),
        );
    }
    let a_batch = &a.shape()[..a.rank() - 2];
    let b_batch = &b.shape()[..b.rank() - 2];
    let (batch_shape, a_bs, b_bs) = if b_batch.is_empty() {
        (a_batch, ar * ac, 0)
    } else if a_batch.is_empty() {
        (b_batch, 0, br * bc)
    } else if a_batch == b_batch {
        (a_batch, ar * ac, br * bc)
    } else {
        return shape_err(
            OP,
            format!(
                "batch dims differ: a {:?} vs b {:?} (use equal batch dims or a rank-2 operand)",
                a.shape(),
                b.shape()
            ),
        );
    };
    let batch: usize = batch_shape.iter().product();
    let mut out_shape = batch_shape.to_vec();
    out_shape.extend([m, n]);
    if let Some(bias) = bias
        && bias.numel() != n
    {
        return shape_err(
            OP,
            format!("bias has {} elements, expected N = {n}", bias.numel()),
        );
    }
    epi.validate(OP, &out_shape, n)?;

    let gpu = a.gpu();
    let kernel = kernel
        .filter(|&k| can_run(gpu, dtype, k))
        .unwrap_or_else(|| matmul_kernel(gpu, dtype));
    // lavapipe silently ends an invocation's loops after 65535 iterations in
    // total; the register kernel spends 9 per 8 k.
    if gpu.class() == AdapterClass::Cpu && k > 50_000 {
        return Err(KernelError::Unsupported {
            op: OP,
            what: format!("K={k} on a CPU adapter (loop limit; split K to at most 50000)"),
        });
    }
    let cfg = Config::new(gpu, kernel, dtype, m, n, batch);
    let (tile_m, tile_n) = cfg.tile();
    let tiles_m = m.div_ceil(tile_m);
    let tiles_n = n.div_ceil(tile_n);
    let out = Tensor::empty_for(gpu, OP, &out_shape, dtype)?;
    let params = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        batch: batch as u32,
        a_bs: a_bs as u32,
        b_bs: b_bs as u32,
        sam: if opts.trans_a { 1 } else { k as u32 },
        sak: if opts.trans_a { m as u32 } else { 1 },
        sbk: if opts.trans_b { 1 } else { n as u32 },
        sbn: if opts.trans_b { k as u32 } else { 1 },
        tiles_m: tiles_m as u32,
        tiles_n: tiles_n as u32,
        slope_n: epi.slopes.map_or(1, |s| s.numel() as u32),
        slope: epi.act.param(),
        alpha: epi.alpha,
        beta: epi.beta,
    };
    let dummy = gpu.dummy();
    let groups = (batch * tiles_m * tiles_n) as u64;
    gpu.dispatch(
        &cfg.kernel(dtype, epi, bias.is_some()),
        bytemuck::bytes_of(&params),
        &[
            a.bind(),
            b.bind(),
            bias.map_or(dummy, |t| t.bind()),
            epi.slopes.map_or(dummy, |t| t.bind()),
            epi.residual.map_or(dummy, |t| t.bind()),
            out.bind(),
        ],
        gpu.grid(groups)?,
        Cost::new(
            matmul_flops(m, n, k, batch),
            (a.size_bytes() + b.size_bytes() + out.size_bytes()) as f64,
        ),
    )?;
    Ok(out)
}

/// `x [.., in] @ weight[out, in]^T + bias` (PyTorch `nn.Linear`); the
/// epilogue's residual is shaped like the output `[.., out]`.
pub fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    epi: &Epilogue,
) -> Result<Tensor> {
    if x.numel() == 0 || x.rank() == 0 {
        return Err(KernelError::Empty {
            op: "linear",
            shape: x.shape().to_vec(),
        });
    }
    if weight.rank() != 2 {
        return shape_err(
            "linear",
            format!("weight must be [out, in], got {:?}", weight.shape()),
        );
    }
    let inf = x.dim(-1);
    let rows = x.numel() / inf;
    let outf = weight.dim(0);
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().expect("rank >= 1") = outf;
    // Fold every leading dim into M: one big GEMM instead of a batch of small ones.
    let res2 = match epi.residual {
        Some(r) if r.shape() != out_shape.as_slice() => {
            return shape_err(
                "linear",
                format!(
                    "residual shape {:?} differs from the output shape {out_shape:?}",
                    r.shape()
                ),
            );
        }
        Some(r) => Some(r.reshape(&[rows, outf])?),
        None => None,
    };
    let epi2 = Epilogue {
        residual: res2.as_ref(),
        ..*epi
    };
    let y = matmul(
        &x.reshape(&[rows, inf])?,
        weight,
        MatmulOpts {
            trans_a: false,
            trans_b: true,
        },
        bias,
        &epi2,
    )?;
    y.reshape(&out_shape)
}

/// Kernel shape constants for one dispatch.
#[derive(Debug, Clone, Copy)]
struct Config {
    kernel: MatmulKernel,
    /// Tiled: workgroup tile, k step, outputs per invocation.
    bm: usize,
    bn: usize,
    bk: usize,
    tm: usize,
    tn: usize,
    /// Reg: subgroups per workgroup along M and N.
    sgm: usize,
    sgn: usize,
    /// Coop: fragment size and workgroup size.
    cm: usize,
    cwg: usize,
}

impl Config {
    fn new(
        gpu: &Gpu,
        kernel: MatmulKernel,
        dtype: DType,
        m: usize,
        n: usize,
        batch: usize,
    ) -> Self {
        // Big tiles only pay off when there are enough of them to fill the GPU.
        let (bm, bn, bk, tm, tn) = if m * n * batch >= 512 * 512 {
            (128, 128, 8, 8, 8)
        } else {
            (64, 64, 16, 4, 4)
        };
        // Narrow outputs waste fewer lanes with all 8 subgroups stacked in M.
        let (sgm, sgn) = if n <= 64 { (8, 1) } else { (4, 2) };
        let caps = gpu.caps();
        let cm = match dtype {
            DType::F16 => caps.coop_f16_f32acc,
            DType::F32 => caps.coop_f32,
        } as usize;
        Config {
            kernel,
            bm,
            bn,
            bk,
            tm,
            tn,
            sgm,
            sgn,
            cm: if cm == 0 { 16 } else { cm },
            cwg: 4 * caps.subgroup_max_size.max(1) as usize,
        }
    }

    /// Output tile of one workgroup (rows, cols).
    fn tile(&self) -> (usize, usize) {
        match self.kernel {
            MatmulKernel::Reg => (self.sgm * 16, self.sgn * 64),
            MatmulKernel::Tiled => (self.bm, self.bn),
            MatmulKernel::Coop => (4 * self.cm, 4 * self.cm),
        }
    }

    fn kernel(&self, dtype: DType, epi: &Epilogue, has_bias: bool) -> Kernel<'static> {
        let k = match self.kernel {
            MatmulKernel::Tiled => Kernel::new(OP, MATMUL_WGSL, dtype, BINDINGS)
                .entry("main_tiled")
                .includes(&[EPILOGUE_WGSL]),
            MatmulKernel::Reg => Kernel::new(OP, include_str!("matmul_reg.wgsl"), dtype, BINDINGS)
                .entry("main_reg")
                .includes(&[EPILOGUE_WGSL, MATMUL_WGSL])
                .define("SGM", format!("{}u", self.sgm))
                .define("SGN", format!("{}u", self.sgn)),
            MatmulKernel::Coop => {
                Kernel::new(OP, include_str!("matmul_coop.wgsl"), dtype, BINDINGS)
                    .entry("main_coop")
                    .enables(&["wgpu_cooperative_matrix"])
                    .includes(if self.cm == 8 {
                        &[EPILOGUE_WGSL, MATMUL_WGSL, COOP8]
                    } else {
                        &[EPILOGUE_WGSL, MATMUL_WGSL, COOP16]
                    })
                    .define("CM", format!("{}u", self.cm))
                    .define("CWG", format!("{}u", self.cwg))
            }
        };
        k.defines(epi.defines(has_bias))
            .define("BM", format!("{}u", self.bm))
            .define("BN", format!("{}u", self.bn))
            .define("BK", format!("{}u", self.bk))
            .define("TM", format!("{}u", self.tm))
            .define("TN", format!("{}u", self.tn))
    }
}

const BINDINGS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
];
const COOP8: &str = "alias CMA = coop_mat8x8<T, A>;\nalias CMB = coop_mat8x8<T, B>;\nalias CMC = coop_mat8x8<f32, C>;";
const COOP16: &str = "alias CMA = coop_mat16x16<T, A>;\nalias CMB = coop_mat16x16<T, B>;\nalias CMC = coop_mat16x16<f32, C>;";

/// CPU reference of [`matmul`] on row-major host data, in f64 accumulation.
/// `slopes` (PReLU, 1 or N values) and `residual` (output-shaped) may be
/// empty when the epilogue does not use them.
pub fn reference_matmul(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    opts: MatmulOpts,
    bias: Option<&[f32]>,
    epi: &Epilogue,
    slopes: &[f32],
    residual: &[f32],
) -> Vec<f32> {
    let (ar, ac) = (a_shape[a_shape.len() - 2], a_shape[a_shape.len() - 1]);
    let (br, bc) = (b_shape[b_shape.len() - 2], b_shape[b_shape.len() - 1]);
    let (m, k) = if opts.trans_a { (ac, ar) } else { (ar, ac) };
    let n = if opts.trans_b { br } else { bc };
    let a_batch: usize = a_shape[..a_shape.len() - 2].iter().product();
    let b_batch: usize = b_shape[..b_shape.len() - 2].iter().product();
    let batch = a_batch.max(b_batch);
    let mut out = vec![0f32; batch * m * n];
    for bi in 0..batch {
        let ab = if a_shape.len() == 2 { 0 } else { bi * ar * ac };
        let bb = if b_shape.len() == 2 { 0 } else { bi * br * bc };
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for kk in 0..k {
                    let av = if opts.trans_a {
                        a[ab + kk * m + i]
                    } else {
                        a[ab + i * k + kk]
                    };
                    let bv = if opts.trans_b {
                        b[bb + j * k + kk]
                    } else {
                        b[bb + kk * n + j]
                    };
                    s += av as f64 * bv as f64;
                }
                let o = (bi * m + i) * n + j;
                let slope = match slopes.len() {
                    0 => 0.0,
                    1 => slopes[0],
                    _ => slopes[j],
                };
                let r = residual.get(o).copied().unwrap_or(0.0);
                out[o] = epi.apply(s as f32, bias.map_or(0.0, |bv| bv[j]), slope, r);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activation;
    use crate::testing::*;

    fn kernels(gpu: &Gpu, dtype: DType) -> Vec<MatmulKernel> {
        [MatmulKernel::Reg, MatmulKernel::Tiled, MatmulKernel::Coop]
            .into_iter()
            .filter(|&k| can_run(gpu, dtype, k))
            .collect()
    }

    /// Error relative to max(1, |want|, sum |a||b|): a large-K dot product's
    /// rounding error grows with the magnitudes summed, not with the result.
    #[track_caller]
    fn check(what: &str, got: &[f32], want: &[f32], mag: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for i in 0..got.len() {
            let den = 1f32.max(want[i].abs()).max(mag[i]);
            let err = (got[i] - want[i]).abs() / den;
            assert!(
                err <= tol && !got[i].is_nan(),
                "{what}: rel error {err:.3e} at {i}: got {}, want {}",
                got[i],
                want[i]
            );
        }
    }

    fn abs(v: &[f32]) -> Vec<f32> {
        v.iter().map(|x| x.abs()).collect()
    }

    /// (batch_a, batch_b, m, n, k): batch None = rank 2.
    type Case = (Option<usize>, Option<usize>, usize, usize, usize);
    const CASES: &[Case] = &[
        (None, None, 1, 1, 1),
        (None, None, 13, 17, 29),
        (None, None, 64, 3, 5),
        (None, None, 129, 65, 33),
        (None, None, 1, 70, 9),
        (None, None, 20, 150, 1),
        (Some(3), None, 7, 19, 11),
        (Some(3), Some(3), 33, 9, 17),
        (None, Some(2), 5, 66, 8),
    ];

    fn shape(batch: Option<usize>, r: usize, c: usize) -> Vec<usize> {
        match batch {
            Some(b) => vec![b, r, c],
            None => vec![r, c],
        }
    }

    fn run_case(gpu: &Gpu, dtype: DType, kernel: MatmulKernel, case: Case, opts: MatmulOpts) {
        let (ba, bb, m, n, k) = case;
        let a_shape = if opts.trans_a {
            shape(ba, k, m)
        } else {
            shape(ba, m, k)
        };
        let b_shape = if opts.trans_b {
            shape(bb, n, k)
        } else {
            shape(bb, k, n)
        };
        let seed = (m * 31 + n * 7 + k) as u64;
        let na: usize = a_shape.iter().product();
        let nb: usize = b_shape.iter().product();
        let (a, av) = upload(gpu, &a_shape, &rand_vec(na, seed, -1.0, 1.0), dtype);
        let (b, bv) = upload(gpu, &b_shape, &rand_vec(nb, seed + 1, -1.0, 1.0), dtype);
        let epi = Epilogue::default();
        let got = matmul_with(&a, &b, opts, None, &epi, Some(kernel)).unwrap();
        let want = reference_matmul(&av, &a_shape, &bv, &b_shape, opts, None, &epi, &[], &[]);
        let mag = reference_matmul(
            &abs(&av),
            &a_shape,
            &abs(&bv),
            &b_shape,
            opts,
            None,
            &epi,
            &[],
            &[],
        );
        let batch = ba.or(bb);
        assert_eq!(got.shape(), shape(batch, m, n).as_slice());
        check(
            &format!("{kernel:?} {dtype} {case:?} {opts:?}"),
            &got.to_f32_vec().unwrap(),
            &want,
            &mag,
            tol(dtype),
        );
    }

    #[test]
    fn odd_shapes_all_transposes_all_kernels() {
        let Some(gpu) = test_gpu() else { return };
        for dtype in test_dtypes(&gpu) {
            for kernel in kernels(&gpu, dtype) {
                for &case in CASES {
                    for (trans_a, trans_b) in
                        [(false, false), (true, false), (false, true), (true, true)]
                    {
                        run_case(&gpu, dtype, kernel, case, MatmulOpts { trans_a, trans_b });
                    }
                }
            }
        }
    }

    #[test]
    fn large_k_and_big_tiles() {
        let Some(gpu) = test_gpu() else { return };
        for dtype in test_dtypes(&gpu) {
            for kernel in kernels(&gpu, dtype) {
                // 600x520 takes the 128x128 tiled configuration.
                run_case(
                    &gpu,
                    dtype,
                    kernel,
                    (None, None, 600, 520, 1000),
                    MatmulOpts::default(),
                );
            }
        }
    }

    #[test]
    fn every_epilogue_part() {
        let Some(gpu) = test_gpu() else { return };
        let (m, n, k) = (37, 21, 19);
        for dtype in test_dtypes(&gpu) {
            let (a, av) = upload(&gpu, &[2, m, k], &rand_vec(2 * m * k, 1, -1.0, 1.0), dtype);
            let (b, bv) = upload(&gpu, &[k, n], &rand_vec(k * n, 2, -1.0, 1.0), dtype);
            let (bias, biasv) = upload(&gpu, &[n], &rand_vec(n, 3, -1.0, 1.0), dtype);
            let (sl, slv) = upload(&gpu, &[n], &rand_vec(n, 4, 0.0, 0.5), dtype);
            let (sl1, sl1v) = upload(&gpu, &[1], &[0.3], dtype);
            let (res, resv) = upload(&gpu, &[2, m, n], &rand_vec(2 * m * n, 5, -2.0, 2.0), dtype);
            let mag = reference_matmul(
                &abs(&av),
                &[2, m, k],
                &abs(&bv),
                &[k, n],
                MatmulOpts::default(),
                None,
                &Epilogue::default(),
                &[],
                &[],
            );
            let mag: Vec<f32> = mag.iter().map(|x| x + 3.0).collect();
            let cases: Vec<(&str, Epilogue, bool, &[f32])> = vec![
                ("bias", Epilogue::default(), true, &[]),
                ("relu", Epilogue::act(Activation::Relu), false, &[]),
                (
                    "leaky",
                    Epilogue::act(Activation::LeakyRelu(0.1)),
                    true,
                    &[],
                ),
                ("prelu", Epilogue::prelu(&sl), true, &slv),
                ("prelu1", Epilogue::prelu(&sl1), false, &sl1v),
                ("gelu", Epilogue::act(Activation::GeluErf), true, &[]),
                (
                    "residual",
                    Epilogue::default().residual(&res, 0.5, -1.5),
                    false,
                    &[],
                ),
                (
                    "all",
                    Epilogue::prelu(&sl).residual(&res, 2.0, 0.25),
                    true,
                    &slv,
                ),
            ];
            for kernel in kernels(&gpu, dtype) {
                for (name, epi, has_bias, slopes) in &cases {
                    let bias_t = has_bias.then_some(&bias);
                    let got = matmul_with(&a, &b, MatmulOpts::default(), bias_t, epi, Some(kernel))
                        .unwrap()
                        .to_f32_vec()
                        .unwrap();
                    let resid: &[f32] = if epi.residual.is_some() { &resv } else { &[] };
                    let want = reference_matmul(
                        &av,
                        &[2, m, k],
                        &bv,
                        &[k, n],
                        MatmulOpts::default(),
                        has_bias.then_some(biasv.as_slice()),
                        epi,
                        slopes,
                        resid,
                    );
                    check(
                        &format!("{kernel:?} {dtype} {name}"),
                        &got,
                        &want,
                        &mag,
                        tol(dtype),
                    );
                }
            }
        }
    }

    #[test]
    fn linear_matches_reference() {
        let Some(gpu) = test_gpu() else { return };
        for dtype in test_dtypes(&gpu) {
            let (x, xv) = upload(&gpu, &[2, 3, 10], &rand_vec(60, 7, -1.0, 1.0), dtype);
            let (w, wv) = upload(&gpu, &[6, 10], &rand_vec(60, 8, -1.0, 1.0), dtype);
            let (bias, bv) = upload(&gpu, &[6], &rand_vec(6, 9, -1.0, 1.0), dtype);
            let (res, rv) = upload(&gpu, &[2, 3, 6], &rand_vec(36, 10, -1.0, 1.0), dtype);
            let epi = Epilogue::act(Activation::Silu).residual(&res, 1.0, 1.0);
            let y = linear(&x, &w, Some(&bias), &epi).unwrap();
            assert_eq!(y.shape(), &[2, 3, 6]);
            let opts = MatmulOpts {
                trans_a: false,
                trans_b: true,
            };
            let want = reference_matmul(
                &xv,
                &[6, 10],
                &wv,
                &[6, 10],
                opts,
                Some(&bv),
                &epi,
                &[],
                &rv,
            );
            assert_close("linear", &y.to_f32_vec().unwrap(), &want, tol(dtype) * 4.0);
            // Rank-1 input.
            let (x1, x1v) = upload(&gpu, &[10], &xv[..10], dtype);
            let y1 = linear(&x1, &w, None, &Epilogue::default()).unwrap();
            assert_eq!(y1.shape(), &[6]);
            let want = reference_matmul(
                &x1v,
                &[1, 10],
                &wv,
                &[6, 10],
                opts,
                None,
                &Epilogue::default(),
                &[],
                &[],
            );
            assert_close(
                "linear rank 1",
                &y1.to_f32_vec().unwrap(),
                &want,
                tol(dtype) * 4.0,
            );
        }
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let f = DType::F32;
        let t = |s: &[usize]| Tensor::zeros(&gpu, s, f).unwrap();
        let e = Epilogue::default();
        let o = MatmulOpts::default();
        assert!(matches!(
            matmul(&t(&[2, 3]), &t(&[4, 5]), o, None, &e),
            Err(KernelError::Shape { .. })
        ));
        assert!(matches!(
            matmul(&t(&[0, 3]), &t(&[3, 5]), o, None, &e),
            Err(KernelError::Empty { .. })
        ));
        assert!(matches!(
            matmul(&t(&[3]), &t(&[3, 5]), o, None, &e),
            Err(KernelError::Shape { .. })
        ));
        assert!(matches!(
            matmul(&t(&[2, 2, 3]), &t(&[3, 3, 5]), o, None, &e),
            Err(KernelError::Shape { .. })
        ));
        assert!(matches!(
            matmul(&t(&[2, 3]), &t(&[3, 5]), o, Some(&t(&[4])), &e),
            Err(KernelError::Shape { .. })
        ));
        let r = t(&[2, 4]);
        assert!(matmul(&t(&[2, 3]), &t(&[3, 5]), o, None, &e.residual(&r, 1.0, 1.0)).is_err());
        let s = t(&[3]);
        assert!(matmul(&t(&[2, 3]), &t(&[3, 5]), o, None, &Epilogue::prelu(&s)).is_err());
        assert!(linear(&t(&[2, 3]), &t(&[4, 5]), None, &e).is_err());
        if gpu.caps().shader_f16 {
            let h = Tensor::zeros(&gpu, &[3, 5], DType::F16).unwrap();
            assert!(matches!(
                matmul(&t(&[2, 3]), &h, o, None, &e),
                Err(KernelError::DType { .. })
            ));
        }
    }

    /// Every kernel variant must pass naga validation, including the
    /// cooperative-matrix one that lavapipe cannot run, so it cannot rot.
    #[test]
    fn all_variants_validate_with_naga() {
        use naga::valid::{Capabilities, ValidationFlags, Validator};
        let epis = [Epilogue::default(), Epilogue::act(Activation::PRelu)];
        for dtype in [DType::F32, DType::F16] {
            for kernel in [MatmulKernel::Reg, MatmulKernel::Tiled, MatmulKernel::Coop] {
                for cm in [8, 16] {
                    for (big, epi) in [(false, &epis[0]), (true, &epis[1])] {
                        let cfg = Config {
                            kernel,
                            bm: if big { 128 } else { 64 },
                            bn: if big { 128 } else { 64 },
                            bk: if big { 8 } else { 16 },
                            tm: if big { 8 } else { 4 },
                            tn: if big { 8 } else { 4 },
                            sgm: if big { 4 } else { 8 },
                            sgn: if big { 2 } else { 1 },
                            cm,
                            cwg: 128,
                        };
                        let src = cfg.kernel(dtype, epi, big).full_source();
                        let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
                            panic!("{kernel:?} {dtype} cm{cm}: {}", e.emit_to_string(&src))
                        });
                        Validator::new(ValidationFlags::all(), Capabilities::all())
                            .validate(&module)
                            .unwrap_or_else(|e| {
                                panic!("{kernel:?} {dtype} cm{cm}: {}", e.emit_to_string(&src))
                            });
                    }
                }
            }
        }
    }

    /// GFLOP/s on the current adapter: `cargo test -p easel-kernels --release
    /// matmul_gflops -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn matmul_gflops() {
        let Some(gpu) = test_gpu() else { return };
        eprintln!("adapter {:?} caps {:?}", gpu.info().name, gpu.caps());
        for dtype in test_dtypes(&gpu) {
            let only = std::env::var("GFLOPS_KERNEL")
                .unwrap_or_default()
                .to_ascii_lowercase();
            for kernel in kernels(&gpu, dtype) {
                if !only.is_empty() && format!("{kernel:?}").to_ascii_lowercase() != only {
                    continue;
                }
                let sizes: Vec<usize> = std::env::var("GFLOPS_SIZES")
                    .ok()
                    .map_or(vec![1024, 2048], |v| {
                        v.split(',').filter_map(|x| x.parse().ok()).collect()
                    });
                for &s in &sizes {
                    let (a, _) = upload(&gpu, &[s, s], &rand_vec(s * s, 1, -1.0, 1.0), dtype);
                    let (b, _) = upload(&gpu, &[s, s], &rand_vec(s * s, 2, -1.0, 1.0), dtype);
                    let e = Epilogue::default();
                    let o = MatmulOpts::default();
                    matmul_with(&a, &b, o, None, &e, Some(kernel)).unwrap();
                    gpu.sync().unwrap();
                    let reps = if s >= 2048 { 2 } else { 4 };
                    let c0 = crate::testing::process_cpu_seconds().unwrap_or(0.0);
                    let t = std::time::Instant::now();
                    for _ in 0..reps {
                        matmul_with(&a, &b, o, None, &e, Some(kernel)).unwrap();
                    }
                    gpu.sync().unwrap();
                    let dt = t.elapsed().as_secs_f64() / reps as f64;
                    let cpu =
                        (crate::testing::process_cpu_seconds().unwrap_or(0.0) - c0) / reps as f64;
                    let gf = matmul_flops(s, s, s, 1) / 1e9;
                    // On a shared CPU the wall time depends on other load;
                    // process CPU time (lavapipe runs in-process) does not.
                    eprintln!(
                        "matmul {kernel:?} {dtype} {s}^3: {:.1} ms wall, {:.1} GFLOP/s wall, {:.1} GFLOP/s per CPU core",
                        dt * 1e3,
                        gf / dt,
                        gf / cpu
                    );
                }
            }
        }
    }
}
