//! `easel run remove-background` and `easel run replace-background`: one
//! image through an RSU segmentation model (IS-Net, U²-Net) on local files.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use easel_kernels::{DType, Gpu};
use image::{DynamicImage, ImageFormat};

use crate::background::{self, Background, Fit, InputImage, Limits, MaskOptions, MattingOptions};

#[derive(Debug, clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F16,
    F32,
}

#[derive(Debug, clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum FitArg {
    /// Cover the image, centre-cropping the background.
    Fill,
    /// Fit inside, letterboxed with --letterbox.
    Fit,
    /// Stretch to the image size.
    Stretch,
}

/// Options shared by both tasks.
#[derive(Debug, Clone, clap::Args)]
pub struct SegmentArgs {
    /// Model name: `<models-dir>/<name>.safetensors` (IS-Net or U2-Net
    /// weights; the architecture is detected from the tensors).
    #[arg(long, default_value = "isnet-dis")]
    pub model: String,
    /// Input image (PNG, JPEG, WebP, ...; grey, RGB or RGBA; EXIF
    /// orientation is applied).
    #[arg(short, long)]
    pub input: PathBuf,
    /// Output image; the format follows the extension (.png, .webp; .jpg
    /// for replace-background and masks).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Binarise the mask at this value (0..1).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Soften the mask edge with a Gaussian of this sigma (px).
    #[arg(long, default_value_t = 0.0)]
    pub feather: f32,
    /// Refine the edge band with alpha matting (guided filter in the trimap
    /// band; for hair and fur).
    #[arg(long)]
    pub matting: bool,
    /// Width of the matting band: erosion of the trimap seeds (px).
    #[arg(long, default_value_t = MattingOptions::default().erode)]
    pub matting_erode: usize,
    /// Matting window radius (px).
    #[arg(long, default_value_t = MattingOptions::default().radius)]
    pub matting_radius: usize,
    /// Matting regulariser: larger is smoother.
    #[arg(long, default_value_t = MattingOptions::default().eps)]
    pub matting_eps: f32,
    /// Keep the original edge colours (no foreground colour estimation).
    #[arg(long)]
    pub no_decontaminate: bool,
    /// Compute precision (default: f16 on GPUs that support it, else f32).
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Largest input accepted, in pixels.
    #[arg(long, default_value_t = Limits::default().max_pixels)]
    pub max_input_pixels: u64,
    /// Largest input side accepted, in pixels.
    #[arg(long, default_value_t = Limits::default().max_side)]
    pub max_input_side: u32,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RemoveBackgroundArgs {
    #[command(flatten)]
    pub seg: SegmentArgs,
    /// Write the single-channel mask instead of the RGBA cutout.
    #[arg(long)]
    pub mask_only: bool,
}

#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("bg").required(true).args(["color", "background", "blur"])))]
pub struct ReplaceBackgroundArgs {
    #[command(flatten)]
    pub seg: SegmentArgs,
    /// Solid background colour, `#rrggbb` or `#rgb`.
    #[arg(long)]
    pub color: Option<String>,
    /// Background image.
    #[arg(long)]
    pub background: Option<PathBuf>,
    /// Background = the input blurred with a Gaussian of this sigma (px).
    #[arg(long)]
    pub blur: Option<f32>,
    /// How --background is fitted to the input's size.
    #[arg(long, value_enum, default_value_t = FitArg::Fill)]
    pub fit: FitArg,
    /// Border colour for --fit fit.
    #[arg(long, default_value = "#000000")]
    pub letterbox: String,
}

impl SegmentArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_side: self.max_input_side,
            max_pixels: self.max_input_pixels,
        }
    }

    fn mask_options(&self) -> MaskOptions {
        MaskOptions {
            matting: self.matting.then_some(MattingOptions {
                erode: self.matting_erode,
                radius: self.matting_radius,
                eps: self.matting_eps,
                ..MattingOptions::default()
            }),
            threshold: self.threshold,
            feather: self.feather,
        }
    }

    /// Decodes the input, runs the model and post-processes the mask.
    fn predict_alpha(&self, models_dir: &Path) -> anyhow::Result<(InputImage, Vec<f32>)> {
        let opts = self.mask_options();
        opts.validate()?;
        let bytes = std::fs::read(&self.input)
            .with_context(|| format!("reading {}", self.input.display()))?;
        let input = background::decode_image(&bytes, "input image", &self.limits())
            .with_context(|| format!("decoding {}", self.input.display()))?;
        let gpu = Gpu::shared().context("opening the GPU")?;
        let dtype = pick_dtype(&gpu, self.precision)?;
        let seg = background::load_segmenter(&gpu, models_dir, &self.model, dtype)
            .with_context(|| format!("loading model '{}'", self.model))?;
        let alpha = background::predict_alpha(&gpu, &seg, &input, &opts, None)
            .context("predicting the mask")?;
        Ok((input, alpha))
    }
}

fn pick_dtype(gpu: &Gpu, p: Option<Precision>) -> anyhow::Result<DType> {
    Ok(match p {
        Some(Precision::F32) => DType::F32,
        Some(Precision::F16) if !gpu.caps().shader_f16 => bail!(
            "--precision f16: the adapter '{}' has no SHADER_F16; use --precision f32",
            gpu.info().name
        ),
        Some(Precision::F16) => DType::F16,
        None => background::default_dtype(gpu),
    })
}

/// Encodes by extension: PNG, lossless WebP, JPEG (quality 95, no alpha).
fn save(img: DynamicImage, path: &Path) -> anyhow::Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let file = || {
        std::fs::File::create(path)
            .map(std::io::BufWriter::new)
            .with_context(|| format!("creating {}", path.display()))
    };
    match ext.as_str() {
        "png" => img.save_with_format(path, ImageFormat::Png)?,
        "webp" => {
            let enc = image::codecs::webp::WebPEncoder::new_lossless(file()?);
            img.write_with_encoder(enc)?
        }
        "jpg" | "jpeg" => {
            if img.color().has_alpha() {
                bail!(
                    "{}: JPEG has no alpha channel; write the cutout as .png or .webp",
                    path.display()
                );
            }
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(file()?, 95);
            img.write_with_encoder(enc)?
        }
        _ => bail!(
            "{}: unknown output format (use .png, .webp or .jpg)",
            path.display()
        ),
    }
    Ok(())
}

/// `easel run remove-background`.
pub fn remove_background(a: RemoveBackgroundArgs, models_dir: &Path) -> anyhow::Result<()> {
    let (input, alpha) = a.seg.predict_alpha(models_dir)?;
    let out = if a.mask_only {
        let (w, h) = input.rgb.dimensions();
        DynamicImage::ImageLuma8(background::Mask::new(w as usize, h as usize, alpha).to_gray())
    } else {
        DynamicImage::ImageRgba8(background::remove_background(
            &input,
            &alpha,
            !a.seg.no_decontaminate,
        ))
    };
    save(out, &a.seg.output)
}

/// `easel run replace-background`.
pub fn replace_background(a: ReplaceBackgroundArgs, models_dir: &Path) -> anyhow::Result<()> {
    let bg = if let Some(c) = &a.color {
        Background::Color(background::parse_color(c)?)
    } else if let Some(p) = &a.background {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let img = background::decode_image(&bytes, "background image", &a.seg.limits())
            .with_context(|| format!("decoding {}", p.display()))?;
        Background::Image {
            image: img.rgb,
            fit: match a.fit {
                FitArg::Fill => Fit::Fill,
                FitArg::Fit => Fit::Fit,
                FitArg::Stretch => Fit::Stretch,
            },
            letterbox: background::parse_color(&a.letterbox)?,
        }
    } else if let Some(sigma) = a.blur {
        Background::Blur(sigma)
    } else {
        bail!("give one of --color, --background or --blur");
    };
    let (input, alpha) = a.seg.predict_alpha(models_dir)?;
    let out = background::replace_background(&input, &alpha, &bg, !a.seg.no_decontaminate)?;
    save(DynamicImage::ImageRgb8(out), &a.seg.output)
}
