//! IS-Net 1024x1024 on our kernels: seconds per image (mean of `--iters`
//! after one warm-up), peak GPU memory, and with `EASEL_PROFILE=1` the
//! per-kernel GPU time. `benches/python/isnet_ort.py` measures ONNX Runtime
//! on the same weights; `--ort-seconds` prints the ratio.
//!
//! cargo run --release -p easel-benches --bin isnet -- \
//!     --weights ../shared/models/isnet-dis.safetensors [--f16] [--iters 3] [--ort-seconds 2.4]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use easel_host::models::rsu::RsuModel;
use easel_host::weights::Weights;
use easel_kernels::{DType, Gpu, Tensor};

struct Args {
    weights: PathBuf,
    dtype: DType,
    iters: usize,
    size: usize,
    ort_seconds: Option<f64>,
}

fn parse() -> anyhow::Result<Args> {
    let mut a = Args {
        weights: PathBuf::from("../shared/models/isnet-dis.safetensors"),
        dtype: DType::F32,
        iters: 3,
        size: 1024,
        ort_seconds: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--weights" => a.weights = val()?.into(),
            "--f16" => a.dtype = DType::F16,
            "--iters" => a.iters = val()?.parse()?,
            "--size" => a.size = val()?.parse()?,
            "--ort-seconds" => a.ort_seconds = Some(val()?.parse()?),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    let a = parse()?;
    let gpu = Gpu::shared()?;
    let w = Weights::open(&a.weights)?;
    let model = RsuModel::load(&gpu, &w, a.dtype)?;
    let n = 3 * a.size * a.size;
    let input: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 256) as f32 / 256.0 - 0.5)
        .collect();
    let x = Tensor::from_f32(&gpu, &[1, 3, a.size, a.size], &input, a.dtype)?;
    println!(
        "adapter: {} ({:?}), dtype {:?}, input {}x{}",
        gpu.info().name,
        gpu.class(),
        a.dtype,
        a.size,
        a.size
    );
    let t = Instant::now();
    model.forward(&x)?.to_f32_vec()?;
    println!(
        "warm-up (pipeline compilation included): {:.3} s",
        t.elapsed().as_secs_f64()
    );
    gpu.reset_peak_memory();
    gpu.reset_profile();
    let mut times = Vec::new();
    let cpu0 = easel_kernels::testing::process_cpu_seconds();
    for _ in 0..a.iters {
        let t = Instant::now();
        model.forward(&x)?.to_f32_vec()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let mem = gpu.memory_stats();
    println!("ours: {mean:.3} s/image (runs: {times:.3?})");
    if let (Some(c0), Some(c1), true) = (
        cpu0,
        easel_kernels::testing::process_cpu_seconds(),
        a.iters > 0,
    ) {
        // On a CPU adapter: the figure to compare across runs on a shared machine.
        println!("ours: {:.3} CPU s/image", (c1 - c0) / a.iters as f64);
    }
    println!(
        "peak GPU memory: {:.1} MiB (live tensors {:.1} MiB)",
        mem.peak_bytes as f64 / 1048576.0,
        mem.peak_live_bytes as f64 / 1048576.0
    );
    if let Some(ort) = a.ort_seconds {
        println!(
            "ONNX Runtime: {ort:.3} s/image; ours/ORT = {:.2}",
            mean / ort
        );
    }
    if let Some(report) = gpu.profile_report() {
        println!("{report}");
    }
    Ok(())
}
