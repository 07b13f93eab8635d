//! BiRefNet on our kernels with random weights of a published size: seconds
//! per image (mean of `--iters` after one warm-up) and peak GPU memory.
//! Real weights are not needed for timing: the layout (Swin-T for
//! BiRefNet_lite, Swin-L for BiRefNet / BiRefNet_HR) is written to a
//! temporary safetensors file with random values and loaded through the
//! normal path; `--weights` times a real checkpoint instead.
//!
//! cargo run --release -p easel-benches --bin birefnet -- \
//!     [--variant tiny|large] [--size 1024] [--f16] [--iters 3] [--weights file]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use easel_host::models::birefnet::{BiRefNet, BiRefNetConfig, SwinVariant};
use easel_host::weights::Weights;
use easel_kernels::{DType, Gpu, Tensor};
use half::f16;

struct Args {
    variant: SwinVariant,
    weights: Option<PathBuf>,
    dtype: DType,
    iters: usize,
    size: usize,
}

fn parse() -> anyhow::Result<Args> {
    let mut a = Args {
        variant: SwinVariant::Tiny,
        weights: None,
        dtype: DType::F32,
        iters: 3,
        size: 1024,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--variant" => {
                a.variant = match val()?.as_str() {
                    "tiny" | "lite" => SwinVariant::Tiny,
                    "large" | "general" => SwinVariant::Large,
                    v => bail!("--variant must be tiny or large, got {v}"),
                }
            }
            "--weights" => a.weights = Some(val()?.into()),
            "--f16" => a.dtype = DType::F16,
            "--iters" => a.iters = val()?.parse()?,
            "--size" => a.size = val()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// Writes the layout with deterministic random f16 values: weights scaled by
/// 1/sqrt(fan-in), norm and BatchNorm scales and variances near 1.
fn random_checkpoint(cfg: &BiRefNetConfig, path: &std::path::Path) -> anyhow::Result<()> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    let shapes = cfg.tensor_shapes();
    let mut data = Vec::with_capacity(shapes.len());
    for (name, shape) in &shapes {
        let n: usize = shape.iter().product();
        let fan: usize = shape.iter().skip(1).product::<usize>().max(1);
        let one_d = shape.len() == 1;
        let values: Vec<u8> = (0..n)
            .map(|_| {
                let u = uniform();
                let v = if name.ends_with("running_var") {
                    1.0 + 0.1 * u.abs()
                } else if one_d
                    && (name.contains("norm") || name.contains("bn"))
                    && name.ends_with("weight")
                {
                    1.0 + 0.1 * u
                } else if one_d {
                    0.05 * u
                } else {
                    u * (3.0 / fan as f32).sqrt()
                };
                f16::from_f32(v)
            })
            .flat_map(|h| h.to_le_bytes())
            .collect();
        data.push((name.clone(), shape.clone(), values));
    }
    let views = data
        .iter()
        .map(|(n, s, b)| {
            Ok((
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    safetensors::serialize_to_file(views, None, path)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let a = parse()?;
    let gpu = Gpu::shared()?;
    let tmp = tempfile::tempdir()?;
    let path = match &a.weights {
        Some(p) => p.clone(),
        None => {
            let cfg = BiRefNetConfig::published(a.variant).context("no published layout")?;
            let p = tmp.path().join("birefnet-random.safetensors");
            let t = Instant::now();
            random_checkpoint(&cfg, &p)?;
            println!(
                "random {:?} checkpoint: {} tensors, {:.0} MB, written in {:.1} s",
                a.variant,
                cfg.tensor_shapes().len(),
                std::fs::metadata(&p)?.len() as f64 / 1e6,
                t.elapsed().as_secs_f64()
            );
            p
        }
    };
    let w = Weights::open(&path)?;
    let cfg = BiRefNetConfig::from_weights(&w)?;
    let variant = cfg.variant();
    let t = Instant::now();
    let model = BiRefNet::load(&gpu, &w, cfg, a.dtype)?;
    println!("loaded {variant:?} in {:.2} s", t.elapsed().as_secs_f64());
    let n = 3 * a.size * a.size;
    let input: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 256) as f32 / 128.0 - 1.0)
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
    for _ in 0..a.iters {
        let t = Instant::now();
        model.forward(&x)?.to_f32_vec()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let mem = gpu.memory_stats();
    println!("birefnet {variant:?}: {mean:.3} s/image (runs: {times:.3?})");
    println!(
        "peak GPU memory: {:.1} MiB (live tensors {:.1} MiB)",
        mem.peak_bytes as f64 / 1048576.0,
        mem.peak_live_bytes as f64 / 1048576.0
    );
    if let Some(report) = gpu.profile_report() {
        println!("{report}");
    }
    Ok(())
}
