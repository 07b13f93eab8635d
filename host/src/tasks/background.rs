//! `remove-background` and `replace-background`: an RSU segmentation model
//! (IS-Net, U²-Net) from the models directory predicts the mask, then the
//! same library calls as `easel run remove-background` / `replace-background`
//! post-process and composite it ([`crate::background`]).

use std::path::{Path, PathBuf};

use image::DynamicImage;

use super::image_io::{self, Metadata, OutFormat};
use super::models::{check_installed, installed, load_measured};
use super::upscale::image_input;
use super::{
    Input, InputSpec, Output, ParamError, ParamSpec, Params, Progress, Task, TaskContext, TaskError,
};
use crate::background::{
    self, Background, BgError, Fit, InputImage, Mask, MaskOptions, MattingOptions, Segmenter,
};
use crate::models::rsu::RsuArch;
use crate::weights::Weights;

/// The model used when the request names none.
pub const DEFAULT_MODEL: &str = "isnet-dis";

fn is_segmenter(w: &Weights) -> bool {
    RsuArch::detect(w).is_some()
}

fn param_err(param: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        param: param.into(),
        message: message.into(),
    }
}

/// Parameters both tasks take: model, mask post-processing, resolution.
fn segment_params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::text("model", 128, "Installed segmentation model (IS-Net, U2-Net).")
            .default(DEFAULT_MODEL),
        ParamSpec::float("threshold", 0.0, 1.0, "Binarise the mask at this value."),
        ParamSpec::float(
            "feather",
            0.0,
            256.0,
            "Soften the mask edge with a Gaussian of this sigma (px).",
        )
        .default(0.0),
        ParamSpec::bool(
            "matting",
            "Refine the edge band with alpha matting (hair, fur).",
        )
        .default(false),
        ParamSpec::bool(
            "decontaminate",
            "Estimate the foreground colour at the edges so no halo of the old background remains.",
        )
        .default(true),
        ParamSpec::int(
            "resolution",
            0,
            2048,
            "Side of the square the model runs at, a multiple of 32; 0 = the model's own (1024 for IS-Net). Smaller is faster and coarser.",
        )
        .default(0),
    ]
}

/// The segmentation half both tasks share.
struct Segment {
    models_dir: PathBuf,
}

impl Segment {
    fn check(&self, p: &Params) -> Result<(), ParamError> {
        let r = p.int("resolution").unwrap_or(0);
        if r != 0 && (r < 32 || r % 32 != 0) {
            return Err(param_err(
                "resolution",
                format!("must be 0 or a multiple of 32, got {r}"),
            ));
        }
        let name = p.str("model").unwrap_or(DEFAULT_MODEL);
        check_installed(&self.models_dir, name, "a segmentation model", is_segmenter)
    }

    /// Decodes `input` (EXIF orientation applied), predicts and refines the
    /// mask: the input and its final alpha.
    fn alpha(
        &self,
        ctx: &TaskContext,
        input: &Input,
        p: &Params,
    ) -> Result<(InputImage, Vec<f32>), TaskError> {
        let gpu = ctx.gpu()?;
        let name = p.str("model").unwrap_or(DEFAULT_MODEL);
        let decoded = ctx.decode_image(input)?;
        let mut img = decoded.image;
        img.apply_orientation(decoded.orientation);
        let image = InputImage::from_image(&img);
        drop(img);
        ctx.progress(Progress::steps(1, 3));
        ctx.check_canceled()?;
        let dtype = background::default_dtype(gpu);
        // Keyed by name (as `/v1/models` reports it): a process picks one
        // dtype per adapter, so a name always means the same weights.
        let seg = ctx
            .models()
            .get_or_load::<Segmenter, _>(name, || {
                load_measured(gpu, || {
                    background::load_segmenter(gpu, &self.models_dir, name, dtype)
                })
            })
            .map_err(|e| bg_error(name, e))?;
        ctx.check_canceled()?;
        let opts = MaskOptions {
            matting: p
                .bool("matting")
                .unwrap_or(false)
                .then(MattingOptions::default),
            threshold: p.float("threshold").map(|t| t as f32),
            feather: p.float("feather").unwrap_or(0.0) as f32,
        };
        let resolution = match p.int("resolution").unwrap_or(0) {
            0 => None,
            r => Some(r as usize),
        };
        let alpha = background::predict_alpha(gpu, &seg, &image, &opts, resolution)
            .map_err(|e| bg_error(name, e))?;
        ctx.progress(Progress::steps(2, 3));
        ctx.check_canceled()?;
        Ok((image, alpha))
    }
}

fn bg_error(model: &str, e: BgError) -> TaskError {
    match &e {
        BgError::Option { param, .. } => {
            TaskError::invalid("invalid_parameter", Some(param), e.to_string())
        }
        BgError::Decode { .. } => TaskError::invalid("invalid_image", None, e.to_string()),
        BgError::TooLarge { .. } => TaskError::invalid("image_too_large", None, e.to_string()),
        BgError::Kernel(_) => TaskError::Failed(e.to_string()),
        BgError::Model(_)
        | BgError::BiRefNet(_)
        | BgError::Weights(_)
        | BgError::Registry(_)
        | BgError::Manifest { .. } => TaskError::Model {
            model: model.to_owned(),
            message: e.to_string(),
        },
    }
}

fn encode(img: &DynamicImage, p: &Params) -> Result<Output, TaskError> {
    let format = OutFormat::parse(p.str("format").unwrap_or("png")).expect("validated");
    let quality = p.int("quality").unwrap_or(90) as u8;
    let bytes = image_io::encode(img, format, quality, Metadata::default())?;
    Ok(Output::image(
        bytes,
        format.content_type(),
        img.width(),
        img.height(),
    ))
}

pub struct RemoveBackground(Segment);

impl RemoveBackground {
    pub fn new(models_dir: &Path) -> RemoveBackground {
        RemoveBackground(Segment {
            models_dir: models_dir.to_owned(),
        })
    }
}

impl Task for RemoveBackground {
    fn name(&self) -> &'static str {
        "remove-background"
    }
    fn description(&self) -> &'static str {
        "Cut the subject out (RGBA) or return its mask (IS-Net, U2-Net)."
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut v = segment_params();
        v.push(
            ParamSpec::choice(
                "output",
                &["cutout", "mask"],
                "`cutout`: RGBA image; `mask`: the single-channel mask.",
            )
            .default("cutout"),
        );
        v.push(
            ParamSpec::choice("format", &["png", "webp"], "Output format (lossless).")
                .default("png"),
        );
        v
    }
    fn credits(&self) -> u64 {
        2
    }
    fn needs_gpu(&self) -> bool {
        true
    }
    fn models(&self) -> Vec<String> {
        installed(&self.0.models_dir, is_segmenter)
    }
    fn check(&self, p: &Params, _inputs: &[&str]) -> Result<(), ParamError> {
        self.0.check(p)
    }

    fn run(
        &self,
        ctx: &TaskContext,
        inputs: Vec<Input>,
        p: &Params,
    ) -> Result<Vec<Output>, TaskError> {
        let input = image_input(inputs)?;
        let (image, alpha) = self.0.alpha(ctx, &input, p)?;
        let out = if p.str("output") == Some("mask") {
            let (w, h) = image.rgb.dimensions();
            DynamicImage::ImageLuma8(Mask::new(w as usize, h as usize, alpha).to_gray())
        } else {
            let decontaminate = p.bool("decontaminate").unwrap_or(true);
            DynamicImage::ImageRgba8(background::remove_background(&image, &alpha, decontaminate))
        };
        let out = encode(&out, p)?;
        ctx.progress(Progress::steps(3, 3));
        Ok(vec![out])
    }
}

const REPLACE_INPUTS: &[InputSpec] = &[
    InputSpec {
        name: "image",
        required: true,
        description: "the input image",
    },
    InputSpec {
        name: "background",
        required: false,
        description: "the new background image (instead of `color` or `blur`), fitted per `fit`",
    },
];

pub struct ReplaceBackground(Segment);

impl ReplaceBackground {
    pub fn new(models_dir: &Path) -> ReplaceBackground {
        ReplaceBackground(Segment {
            models_dir: models_dir.to_owned(),
        })
    }
}

impl Task for ReplaceBackground {
    fn name(&self) -> &'static str {
        "replace-background"
    }
    fn description(&self) -> &'static str {
        "Put the subject on a colour, another image or a blurred original, without a halo."
    }
    fn inputs(&self) -> &'static [InputSpec] {
        REPLACE_INPUTS
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut v = segment_params();
        v.extend([
            ParamSpec::text("color", 16, "Solid background colour, #rrggbb or #rgb."),
            ParamSpec::float(
                "blur",
                0.0,
                512.0,
                "Background = the input blurred with a Gaussian of this sigma (px).",
            ),
            ParamSpec::choice(
                "fit",
                &["fill", "fit", "stretch"],
                "How the `background` image is fitted: cover and centre-crop, fit inside (letterboxed), or stretch.",
            )
            .default("fill"),
            ParamSpec::text("letterbox", 16, "Border colour for fit=fit.").default("#000000"),
            ParamSpec::choice("format", &["png", "jpeg", "webp"], "Output format.")
                .default("png"),
            ParamSpec::int("quality", 1, 100, "JPEG quality.").default(90),
        ]);
        v
    }
    fn credits(&self) -> u64 {
        3
    }
    fn needs_gpu(&self) -> bool {
        true
    }
    fn models(&self) -> Vec<String> {
        installed(&self.0.models_dir, is_segmenter)
    }
    fn check(&self, p: &Params, inputs: &[&str]) -> Result<(), ParamError> {
        let sources = [
            p.get("color").is_some(),
            p.get("blur").is_some(),
            inputs.contains(&"background"),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(param_err(
                "color",
                "give exactly one background: `color`, `blur`, or a `background` image",
            ));
        }
        for name in ["color", "letterbox"] {
            if let Some(c) = p.str(name) {
                background::parse_color(c).map_err(|e| param_err(name, e.to_string()))?;
            }
        }
        self.0.check(p)
    }

    fn run(
        &self,
        ctx: &TaskContext,
        inputs: Vec<Input>,
        p: &Params,
    ) -> Result<Vec<Output>, TaskError> {
        let bg_input = inputs.iter().find(|i| i.name == "background").cloned();
        let input = image_input(inputs)?;
        let color = |name: &str| {
            background::parse_color(p.str(name).unwrap_or("#000000"))
                .map_err(|e| TaskError::invalid("invalid_parameter", Some(name), e.to_string()))
        };
        // Decode the background first: a bad file fails before the model runs.
        let bg = if let Some(b) = bg_input {
            let d = ctx.decode_image(&b)?;
            let mut img = d.image;
            img.apply_orientation(d.orientation);
            Background::Image {
                image: img.to_rgb8(),
                fit: match p.str("fit") {
                    Some("fit") => Fit::Fit,
                    Some("stretch") => Fit::Stretch,
                    _ => Fit::Fill,
                },
                letterbox: color("letterbox")?,
            }
        } else if let Some(sigma) = p.float("blur") {
            Background::Blur(sigma as f32)
        } else {
            Background::Color(color("color")?)
        };
        let (image, alpha) = self.0.alpha(ctx, &input, p)?;
        let decontaminate = p.bool("decontaminate").unwrap_or(true);
        let out = background::replace_background(&image, &alpha, &bg, decontaminate)
            .map_err(|e| bg_error(p.str("model").unwrap_or(DEFAULT_MODEL), e))?;
        let out = encode(&DynamicImage::ImageRgb8(out), p)?;
        ctx.progress(Progress::steps(3, 3));
        Ok(vec![out])
    }
}
