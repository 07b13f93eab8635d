//! `easel run <task>`: run one model on local files.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use easel_kernels::{DType, Gpu};

use crate::upscale::{self, UpscaleOptions};

#[derive(Debug, clap::Subcommand)]
pub enum RunCommand {
    /// Upscale an image with an ESRGAN-family model (Real-ESRGAN).
    Upscale(UpscaleArgs),
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
    let img = decode(&a.input, a.max_input_pixels)?;
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
    save(&out, &a.output)?;
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

/// Decodes an image with explicit limits: the header is checked first, so a
/// small file claiming a huge size fails cleanly instead of allocating.
/// (Stand-in until the shared `imageio` module lands.)
fn decode(path: &Path, max_pixels: u64) -> anyhow::Result<image::DynamicImage> {
    let open = || -> anyhow::Result<_> {
        image::ImageReader::open(path)
            .with_context(|| format!("opening {}", path.display()))?
            .with_guessed_format()
            .with_context(|| format!("reading {}", path.display()))
    };
    let (w, h) = open()?
        .into_dimensions()
        .with_context(|| format!("decoding {}", path.display()))?;
    if w as u64 * h as u64 > max_pixels {
        anyhow::bail!(
            "{}: {w}x{h} is over the limit of {max_pixels} pixels (--max-input-pixels)",
            path.display()
        );
    }
    let mut reader = open()?;
    let mut limits = image::Limits::default();
    // RGBA16 is 8 bytes a pixel; leave room for a decoder's scratch.
    limits.max_alloc = Some(max_pixels.saturating_mul(16));
    reader.limits(limits);
    reader
        .decode()
        .with_context(|| format!("decoding {}", path.display()))
}

/// Saves in the format of the extension, converting to what the encoder
/// takes: JPEG has no alpha and no 16 bits, WebP (lossless) only 8-bit RGB(A).
fn save(img: &image::DynamicImage, path: &Path) -> anyhow::Result<()> {
    let format = image::ImageFormat::from_path(path).with_context(|| {
        format!(
            "{}: unknown output format (use .png, .jpg or .webp)",
            path.display()
        )
    })?;
    let grey = img.color().channel_count() <= 2;
    let converted = match format {
        image::ImageFormat::Png => None,
        image::ImageFormat::Jpeg if grey => Some(image::DynamicImage::ImageLuma8(img.to_luma8())),
        image::ImageFormat::Jpeg => Some(image::DynamicImage::ImageRgb8(img.to_rgb8())),
        image::ImageFormat::WebP if img.color().has_alpha() => {
            Some(image::DynamicImage::ImageRgba8(img.to_rgba8()))
        }
        image::ImageFormat::WebP => Some(image::DynamicImage::ImageRgb8(img.to_rgb8())),
        other => anyhow::bail!(
            "{}: {other:?} output is not supported (use .png, .jpg or .webp)",
            path.display()
        ),
    };
    converted
        .as_ref()
        .unwrap_or(img)
        .save_with_format(path, format)
        .with_context(|| format!("writing {}", path.display()))
}
