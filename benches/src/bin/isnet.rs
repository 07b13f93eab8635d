//! IS-Net 1024x1024 on our kernels against ONNX Runtime, side by side in one run:
//! seconds per image (mean of `--iters` after one warm-up), peak GPU memory, and with
//! `EASEL_PROFILE=1` the per-kernel GPU time. Each of `--rounds` times our passes and then
//! runs `benches/python/isnet_ort.py` (ONNX Runtime on the CPU, same weights, with
//! `$EASEL_PYTHON`, default `python3`), so both see the same machine load; it prints the ratio
//! per round and the median. `--no-ort` skips the peer; `--ort-seconds S` uses a figure
//! measured elsewhere instead. The peer's interpreter needs
//! `pip install torch onnx onnxruntime safetensors pillow` (CPU wheels suffice).
//!
//! `--floor` instead measures the adapter's roofline (`easel_kernels::roofline`: register
//! multiply-add rate, per-lane vec4 load and store cost), profiles one image, and prints per
//! op the measured time against the least time the op's flops and bytes allow on this
//! adapter, then the summed floor against ONNX Runtime: how close the kernels are to the
//! device, and whether the goal is within the device's reach at all.
//!
//! cargo run --release -p easel-benches --bin isnet -- \
//!     --weights ../shared/models/isnet-dis.safetensors [--f16] [--iters 3] [--rounds 2]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use easel_host::models::rsu::RsuModel;
use easel_host::weights::Weights;
use easel_kernels::{DType, Gpu, GpuOptions, Tensor, roofline};

struct Args {
    weights: PathBuf,
    dtype: DType,
    iters: usize,
    size: usize,
    ort_seconds: Option<f64>,
    run_ort: bool,
    rounds: usize,
    floor: bool,
}

fn parse() -> anyhow::Result<Args> {
    let mut a = Args {
        weights: PathBuf::from("../shared/models/isnet-dis.safetensors"),
        dtype: DType::F32,
        iters: 3,
        size: 1024,
        ort_seconds: None,
        run_ort: true,
        rounds: 1,
        floor: false,
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
            "--no-ort" => a.run_ort = false,
            "--rounds" => a.rounds = val()?.parse::<usize>()?.max(1),
            "--floor" => a.floor = true,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    let a = parse()?;
    let gpu = if a.floor {
        Gpu::with_options(GpuOptions {
            profile: Some(true),
        })?
    } else {
        Gpu::shared()?
    };
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
    if a.floor {
        return floor(&a, &gpu, &model, &x);
    }
    gpu.reset_peak_memory();
    gpu.reset_profile();
    let mut ratios = Vec::new();
    for round in 1..=a.rounds {
        if a.rounds > 1 {
            println!("round {round}/{}", a.rounds);
        }
        let mean = time_ours(&model, &x, a.iters)?;
        if let Some(ort) = peer_seconds(&a)? {
            let ratio = mean / ort;
            println!("ONNX Runtime: {ort:.3} s/image; ours/ORT = {ratio:.2} (goal <= 1.0)");
            ratios.push(ratio);
        }
    }
    let mem = gpu.memory_stats();
    println!(
        "peak GPU memory: {:.1} MiB (live tensors {:.1} MiB)",
        mem.peak_bytes as f64 / 1048576.0,
        mem.peak_live_bytes as f64 / 1048576.0
    );
    if ratios.len() > 1 {
        let list: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "ours/ORT = {:.2} (median; rounds {}) (goal <= 1.0)",
            easel_benches::median(ratios),
            list.join(", ")
        );
    }
    if let Some(report) = gpu.profile_report() {
        println!("{report}");
    }
    Ok(())
}

/// `--floor`: one profiled image against the adapter's roofline, and the summed floor
/// against the peer.
fn floor(a: &Args, gpu: &Gpu, model: &RsuModel, x: &Tensor) -> anyhow::Result<()> {
    anyhow::ensure!(
        gpu.profiling(),
        "--floor needs timestamp queries, which this adapter lacks"
    );
    let r = roofline::measure(gpu, 5)?;
    println!(
        "roofline: {:.1} G multiply-add/s from registers; per-lane vec4 load {:.3} ns/f32, \
         store {:.3} ns/f32",
        r.macs_per_s * 1e-9,
        r.load_s_per_f32 * 1e9,
        r.store_s_per_f32 * 1e9
    );
    gpu.reset_profile();
    model.forward(x)?.to_f32_vec()?;
    let table = gpu.profile().context("no profile")?;
    println!(
        "{:<24} {:>12} {:>12} {:>9}",
        "op", "measured ms", "floor ms", "ratio"
    );
    let rows = r.floors(&table);
    for (op, t, f) in &rows {
        let ratio = if *f > 0.0 { t / f } else { f64::NAN };
        println!("{op:<24} {:>12.1} {:>12.1} {ratio:>9.2}", t * 1e3, f * 1e3);
    }
    let floor_s = rows.last().map_or(0.0, |r| r.2);
    if let Some(ort) = peer_seconds(a)? {
        println!(
            "floor {floor_s:.3} s/image against ONNX Runtime {ort:.3} s/image: floor/ORT = {:.2} \
             (ours/ORT <= 1.0 needs this below 1)",
            floor_s / ort
        );
    }
    Ok(())
}

/// The peer's seconds per image: `--ort-seconds`, or a run of ONNX Runtime. The peer times
/// the 1024x1024 fixture in f32, so other runs have no peer figure.
fn peer_seconds(a: &Args) -> anyhow::Result<Option<f64>> {
    Ok(match a.ort_seconds {
        Some(s) => Some(s),
        None if a.run_ort && a.dtype == DType::F32 && a.size == 1024 => Some(run_ort(a)?),
        None => None,
    })
}

/// Mean seconds per image of `iters` forwards (read back to the host, as a caller would).
fn time_ours(model: &RsuModel, x: &Tensor, iters: usize) -> anyhow::Result<f64> {
    let mut times = Vec::new();
    let cpu0 = easel_kernels::testing::process_cpu_seconds();
    for _ in 0..iters {
        let t = Instant::now();
        model.forward(x)?.to_f32_vec()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    println!("ours: {mean:.3} s/image (runs: {times:.3?})");
    if let (Some(c0), Some(c1), true) = (
        cpu0,
        easel_kernels::testing::process_cpu_seconds(),
        iters > 0,
    ) {
        // On a CPU adapter: the figure to compare across runs on a shared machine.
        println!("ours: {:.3} CPU s/image", (c1 - c0) / iters as f64);
    }
    Ok(mean)
}

/// ONNX Runtime's mean seconds per image from `benches/python/isnet_ort.py` on the same
/// weights and iteration count (the script checks its export against the reference mask).
fn run_ort(a: &Args) -> anyhow::Result<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/isnet_ort.py");
    let python = std::env::var("EASEL_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(script)
        .args([
            "--iters",
            &a.iters.max(1).to_string(),
            "--json",
            "--weights",
        ])
        .arg(&a.weights)
        .output()
        .with_context(|| format!("starting {python} {script} (set EASEL_PYTHON, or --no-ort)"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the ONNX Runtime peer failed ({}); it needs torch, onnx, onnxruntime, safetensors \
             and pillow in {python} (EASEL_PYTHON), or pass --no-ort:\n{}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for line in stdout.lines() {
        if line.starts_with("ORT") || line.starts_with("export check") {
            println!("{line}");
        }
    }
    let v: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("the ONNX Runtime peer printed no JSON result")?;
    v["seconds"]
        .as_f64()
        .context("the ONNX Runtime peer's JSON has no `seconds`")
}
