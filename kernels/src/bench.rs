//! Kernel benchmarks shared by `easel bench kernels` and `benches/`.
//!
//! Each measurement runs the op `reps` times after a warm-up, waiting for the
//! GPU after every repetition, and reports the median wall time. Inputs are
//! uploaded once, and convs use pre-packed weights, so only the kernel and its
//! submission are timed — as a model would run them.

use std::time::Instant;

use serde::Serialize;

use crate::ops::conv2d::{Conv2d, Conv2dConfig};
use crate::ops::deform_conv2d::{DeformConv2dConfig, deform_conv2d};
use crate::ops::matmul::{MatmulOpts, matmul};
use crate::testing::rand_vec;
use crate::{DType, Epilogue, Gpu, Result, Tensor};

/// One benchmark figure (the `--json` line format of `easel bench kernels`).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub op: String,
    pub dtype: DType,
    pub shape: String,
    pub median_ms: f64,
    pub min_ms: f64,
    pub gflops: f64,
    pub reps: usize,
    pub adapter: String,
}

/// Median and minimum milliseconds of `reps` synchronised runs of `f`.
pub fn time_ms(
    gpu: &Gpu,
    warmup: usize,
    reps: usize,
    mut f: impl FnMut() -> Result<Tensor>,
) -> Result<(f64, f64)> {
    for _ in 0..warmup {
        drop(f()?);
        gpu.sync()?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        let out = f()?;
        gpu.sync()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        drop(out);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0]))
}

fn result(
    gpu: &Gpu,
    op: &str,
    dtype: DType,
    shape: String,
    flops: f64,
    t: (f64, f64),
    reps: usize,
) -> BenchResult {
    BenchResult {
        op: op.into(),
        dtype,
        shape,
        median_ms: t.0,
        min_ms: t.1,
        gflops: flops / (t.0 * 1e-3) * 1e-9,
        reps,
        adapter: gpu.info().name.clone(),
    }
}

/// Square matmul `n x n x n`.
pub fn matmul_square(gpu: &Gpu, n: usize, dtype: DType, reps: usize) -> Result<BenchResult> {
    let a = Tensor::from_f32(gpu, &[n, n], &rand_vec(n * n, 1, -1.0, 1.0), dtype)?;
    let b = Tensor::from_f32(gpu, &[n, n], &rand_vec(n * n, 2, -1.0, 1.0), dtype)?;
    let t = time_ms(gpu, 1, reps, || {
        matmul(&a, &b, MatmulOpts::default(), None, &Epilogue::default())
    })?;
    Ok(result(
        gpu,
        "matmul",
        dtype,
        format!("{n}x{n}x{n}"),
        2.0 * (n as f64).powi(3),
        t,
        reps,
    ))
}

/// 3x3 conv, padding 1, `c -> c` channels on an `hw x hw` image, batch 1.
pub fn conv3x3(
    gpu: &Gpu,
    cin: usize,
    cout: usize,
    hw: usize,
    dtype: DType,
    reps: usize,
) -> Result<BenchResult> {
    let x = Tensor::from_f32(
        gpu,
        &[1, cin, hw, hw],
        &rand_vec(cin * hw * hw, 3, -1.0, 1.0),
        dtype,
    )?;
    let w = Tensor::from_f32(
        gpu,
        &[cout, cin, 3, 3],
        &rand_vec(cout * cin * 9, 4, -0.1, 0.1),
        dtype,
    )?;
    let b = Tensor::from_f32(gpu, &[cout], &rand_vec(cout, 5, -0.1, 0.1), dtype)?;
    let conv = Conv2d::new(&w, Some(&b), Conv2dConfig::same3x3())?;
    let t = time_ms(gpu, 1, reps, || conv.forward(&x, &Epilogue::default()))?;
    let flops = 2.0 * (cin * cout * 9 * hw * hw) as f64;
    Ok(result(
        gpu,
        "conv2d",
        dtype,
        format!("3x3 {cin}->{cout} {hw}x{hw}"),
        flops,
        t,
        reps,
    ))
}

/// Modulated deformable 3x3 conv (DCNv2, one offset group, bias), padding 1,
/// batch 1, offsets in [-2, 2] so samples are fractional as in a model.
pub fn deform3x3(
    gpu: &Gpu,
    cin: usize,
    cout: usize,
    hw: usize,
    dtype: DType,
    reps: usize,
) -> Result<BenchResult> {
    let up = |shape: &[usize], seed: u64, lo: f32, hi: f32| {
        let n = shape.iter().product();
        Tensor::from_f32(gpu, shape, &rand_vec(n, seed, lo, hi), dtype)
    };
    let x = up(&[1, cin, hw, hw], 3, -1.0, 1.0)?;
    let off = up(&[1, 18, hw, hw], 6, -2.0, 2.0)?;
    let mask = up(&[1, 9, hw, hw], 7, 0.0, 1.0)?;
    let w = up(&[cout, cin, 3, 3], 4, -0.1, 0.1)?;
    let b = up(&[cout], 5, -0.1, 0.1)?;
    let cfg = DeformConv2dConfig::padded(1);
    let t = time_ms(gpu, 1, reps, || {
        deform_conv2d(&x, &off, Some(&mask), &w, Some(&b), &cfg)
    })?;
    let flops = 2.0 * (cin * cout * 9 * hw * hw) as f64;
    Ok(result(
        gpu,
        "deform_conv2d",
        dtype,
        format!("3x3 {cin}->{cout} {hw}x{hw}"),
        flops,
        t,
        reps,
    ))
}

/// The standard suite of the foundation issue: matmul 1024^3/2048^3/4096^3
/// and conv2d 3x3 64->64 on 128^2 and 256^2, deform_conv2d 3x3 64->64 on
/// 128^2, f32 and (if granted) f16.
/// `quick` drops the 4096^3 matmul, which takes seconds per run on CPU devices.
pub fn standard_suite(gpu: &Gpu, quick: bool, mut sink: impl FnMut(BenchResult)) -> Result<()> {
    let dtypes: Vec<DType> = if gpu.caps().shader_f16 {
        vec![DType::F32, DType::F16]
    } else {
        vec![DType::F32]
    };
    let slow = gpu.class() == crate::AdapterClass::Cpu;
    for &dtype in &dtypes {
        let sizes: &[usize] = if quick {
            &[1024, 2048]
        } else {
            &[1024, 2048, 4096]
        };
        for &n in sizes {
            let reps = if slow && n >= 4096 {
                2
            } else if slow {
                3
            } else {
                20
            };
            sink(matmul_square(gpu, n, dtype, reps)?);
        }
        for hw in [128, 256] {
            sink(conv3x3(gpu, 64, 64, hw, dtype, if slow { 3 } else { 20 })?);
        }
        sink(deform3x3(
            gpu,
            64,
            64,
            128,
            dtype,
            if slow { 3 } else { 20 },
        )?);
    }
    Ok(())
}
