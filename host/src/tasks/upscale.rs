//! `upscale`: super-resolution with an ESRGAN-family model (Real-ESRGAN
//! x4plus, realesr-animevideov3, ...) from the models directory, through the
//! same library call as `easel run upscale` ([`crate::upscale::upscale`]).

use std::path::{Path, PathBuf};

use super::image_io::{self, Metadata, OutFormat};
use super::models::{check_installed, installed, load_measured};
use super::{Input, Output, ParamError, ParamSpec, Params, Progress, Task, TaskContext, TaskError};
use crate::models::esrgan::EsrganConfig;
use crate::upscale::{self, UpscaleError, UpscaleOptions};
use crate::weights::Weights;

/// The model used when the request names none.
pub const DEFAULT_MODEL: &str = "realesrgan-x4plus";

pub struct Upscale {
    models_dir: PathBuf,
}

impl Upscale {
    pub fn new(models_dir: &Path) -> Upscale {
        Upscale {
            models_dir: models_dir.to_owned(),
        }
    }
}

fn is_upscaler(w: &Weights) -> bool {
    EsrganConfig::detect(w).is_ok()
}

impl Task for Upscale {
    fn name(&self) -> &'static str {
        "upscale"
    }
    fn description(&self) -> &'static str {
        "Super-resolution with an ESRGAN-family model (Real-ESRGAN), tiled on the GPU."
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::text("model", 128, "Installed upscaling model.").default(DEFAULT_MODEL),
            ParamSpec::float(
                "scale",
                1.0,
                8.0,
                "Output size / input size (default: the model's scale); other values resize the model output with Lanczos3.",
            ),
            ParamSpec::int(
                "tile",
                0,
                4096,
                "Tile side in input pixels; 0 = whole image; default: chosen from the GPU's limits.",
            ),
            ParamSpec::choice("format", &["png", "jpeg", "webp"], "Output format.").default("png"),
            ParamSpec::int("quality", 1, 100, "JPEG quality.").default(90),
        ]
    }
    fn credits(&self) -> u64 {
        20
    }
    fn needs_gpu(&self) -> bool {
        true
    }
    fn models(&self) -> Vec<String> {
        installed(&self.models_dir, is_upscaler)
    }
    fn check(&self, p: &Params, _inputs: &[&str]) -> Result<(), ParamError> {
        let name = p.str("model").unwrap_or(DEFAULT_MODEL);
        check_installed(&self.models_dir, name, "an upscaling model", is_upscaler)
    }

    fn run(
        &self,
        ctx: &TaskContext,
        inputs: Vec<Input>,
        p: &Params,
    ) -> Result<Vec<Output>, TaskError> {
        let input = image_input(inputs)?;
        let gpu = ctx.gpu()?;
        let name = p.str("model").unwrap_or(DEFAULT_MODEL).to_owned();
        let decoded = ctx.decode_image(&input)?;
        let mut img = decoded.image;
        img.apply_orientation(decoded.orientation);
        ctx.check_canceled()?;
        let dtype = upscale::default_dtype(gpu, false);
        // Keyed by name (as `/v1/models` reports it): a process picks one
        // dtype per adapter, so a name always means the same weights.
        let model = ctx
            .models()
            .get_or_load(&name, || {
                load_measured(gpu, || {
                    upscale::load_model(gpu, &self.models_dir, &name, dtype)
                })
            })
            .map_err(|e| upscale_error(&name, e))?;
        let opts = UpscaleOptions {
            tile: p.int("tile").map(|t| t as usize),
            outscale: p.float("scale"),
            cancel: ctx.canceled.clone(),
            ..Default::default()
        };
        let out = upscale::upscale(gpu, &model, &img, &opts, &mut |done, total| {
            ctx.progress(Progress::tiles(done as u32, total as u32))
        })
        .map_err(|e| upscale_error(&name, e))?;
        let format = OutFormat::parse(p.str("format").unwrap_or("png")).expect("validated");
        let quality = p.int("quality").unwrap_or(90) as u8;
        // JPEG has no alpha: the encoder keeps the colour channels.
        let bytes = image_io::encode(&out, format, quality, Metadata::default())?;
        Ok(vec![Output::image(
            bytes,
            format.content_type(),
            out.width(),
            out.height(),
        )])
    }
}

/// The `image` input (the job core guarantees it is present).
pub(super) fn image_input(inputs: Vec<Input>) -> Result<Input, TaskError> {
    inputs
        .into_iter()
        .find(|i| i.name == "image")
        .ok_or_else(|| TaskError::invalid("missing_input", Some("image"), "no `image` input"))
}

fn upscale_error(model: &str, e: UpscaleError) -> TaskError {
    let invalid =
        |code, param: &str, e: &UpscaleError| TaskError::invalid(code, Some(param), e.to_string());
    match &e {
        UpscaleError::Canceled => TaskError::Canceled,
        UpscaleError::BadOption { param, .. } => invalid("invalid_parameter", param, &e),
        UpscaleError::OutputTooLarge { .. } => invalid("image_too_large", "scale", &e),
        UpscaleError::EmptyImage { .. } => invalid("invalid_image", "image", &e),
        UpscaleError::NoTileFits { .. } => invalid("invalid_parameter", "tile", &e),
        UpscaleError::Kernel(_) => TaskError::Failed(e.to_string()),
        UpscaleError::Model(_)
        | UpscaleError::Registry(_)
        | UpscaleError::UnsupportedChannels { .. } => TaskError::Model {
            model: model.to_owned(),
            message: e.to_string(),
        },
    }
}
