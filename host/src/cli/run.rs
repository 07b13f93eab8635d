//! `easel run <task>`: run one model on local files.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use easel_kernels::{DType, Gpu};

use crate::imageio::{self, EncodeOptions, Format, ImageLimits};
use crate::upscale::{self, UpscaleOptions};

#[derive(Debug, clap::Subcommand)]
pub enum RunCommand {
    /// Upscale an image with an ESRGAN-family model (Real-ESRGAN).
    Upscale(UpscaleArgs),
    /// Cut the subject out (RGBA) or write its mask (IS-Net, U2-Net).
    RemoveBackground(super::run_bg::RemoveBackgroundArgs),
    /// Put the subject on a colour, another image or a blurred original.
    ReplaceBackground(super::run_bg::ReplaceBackgroundArgs),
}

#[derive(Debug, clap::ValueEnum, Clone, Copy)]
pub enum Precision {
    F16,
    F32,
}

#[derive(Debug, clap::Args)]
pub struct UpscaleArgs {
    /// Model name: `<models-dir>/<name>.safetensors`.
    #[arg(long)]
    pub model: String,
    /// Input image (PNG, JPEG, WebP; 8- or 16-bit; grey, RGB or RGBA).
    #[arg(short, long)]
    pub input: PathBuf,
    /// Output image; the format follows the extension.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Tile side in input pixels; 0 = whole image; default: chosen from the
    /// adapter's limits.
    #[arg(long)]
    pub tile: Option<usize>,
    /// Context pixels around each tile (default: the model's, enough for
    /// seamless output).
    #[arg(long)]
    pub tile_pad: Option<usize>,
    /// Final scale relative to the input (default: the model's scale).
    #[arg(long)]
    pub outscale: Option<f64>,
    /// Compute precision (default: f16 when the adapter supports it).
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Largest input image (width * height) accepted.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_input_pixels: u64,
}

pub fn run(cmd: RunCommand, models_dir: &Path) -> anyhow::Result<()> {
    match cmd {
        RunCommand::Upscale(a) => run_upscale(a, models_dir),
        RunCommand::RemoveBackground(a) => super::run_bg::remove_background(a, models_dir),
        RunCommand::ReplaceBackground(a) => super::run_bg::replace_background(a, models_dir),
    }
}

fn run_upscale(a: UpscaleArgs, models_dir: &Path) -> anyhow::Result<()> {
    let gpu = Gpu::shared().context("opening the GPU")?;
    let dtype = match a.precision {
        Some(Precision::F32) => DType::F32,
        Some(Precision::F16) if !gpu.caps().shader_f16 => {
            anyhow::bail!(
                "--precision f16: the adapter '{}' has no SHADER_F16; use --precision f32",
                gpu.info().name
            )
        }
        Some(Precision::F16) => DType::F16,
        None => upscale::default_dtype(&gpu, false),
    };
    let model = upscale::load_model(&gpu, models_dir, &a.model, dtype)
        .with_context(|| format!("loading model '{}'", a.model))?;
    let limits = ImageLimits {
        max_pixels: a.max_input_pixels,
        ..ImageLimits::default()
    };
    let format = Format::from_path(&a.output).with_context(|| {
        format!(
            "{}: unknown output format (use .png, .jpg or .webp)",
            a.output.display()
        )
    })?;
    let img = imageio::read(&a.input, &limits)?;
    let opts = UpscaleOptions {
        tile: a.tile,
        tile_pad: a.tile_pad,
        outscale: a.outscale,
        ..Default::default()
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(1);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tiles {elapsed}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("upscaling x{} ({dtype})", model.scale()));
        bar
    });
    let start = std::time::Instant::now();
    let out = upscale::upscale(&gpu, &model, &img, &opts, &mut |done, total| {
        if let Some(b) = &bar {
            b.set_length(total as u64);
            b.set_position(done as u64);
        }
    })
    .with_context(|| format!("upscaling {}", a.input.display()))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    tracing::info!(secs = start.elapsed().as_secs_f64(), "upscaled");
    imageio::write(&a.output, &out, EncodeOptions::new(format))?;
    eprintln!(
        "{} ({}x{}) -> {} ({}x{}) in {:.2}s",
        a.input.display(),
        img.width(),
        img.height(),
        a.output.display(),
        out.width(),
        out.height(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
