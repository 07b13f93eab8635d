//! The task registry: every operation a job can run (`convert`, and the model
//! tasks such as `upscale` or `remove-background`) implements [`Task`] and is
//! registered in [`Registry::builtin`]. The job core and the HTTP API only
//! ever see this interface.
//!
//! Adding a task is a few lines:
//!
//! ```text
//! struct Upscale;
//! impl Task for Upscale {
//!     fn name(&self) -> &'static str { "upscale" }
//!     fn description(&self) -> &'static str { "4x super-resolution" }
//!     fn params(&self) -> Vec<ParamSpec> { vec![ParamSpec::int("scale", 2, 4, "factor").default(4)] }
//!     fn credits(&self) -> u64 { 20 }
//!     fn needs_gpu(&self) -> bool { true }
//!     fn run(&self, ctx: &TaskContext, inputs: Vec<Input>, params: &Params) -> Result<Vec<Output>, TaskError> {
//!         let gpu = ctx.gpu()?;
//!         let model = ctx.models().get_or_load("realesrgan", || load(gpu))?;
//!         let img = ctx.decode_image(&inputs[0])?.image;
//!         // per tile: ctx.check_canceled()?; ctx.progress(Progress::tiles(done, total));
//!         Ok(vec![Output::image(encoded_png, "image/png", w, h)])
//!     }
//! }
//! // in Registry::builtin: r.register(Upscale);
//! ```

pub mod background;
pub mod convert;
pub mod debug;
pub mod image_io;
pub mod models;
pub mod params;
pub mod upscale;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde::Serialize;

pub use image_io::ImageLimits;
pub use models::ModelCache;
pub use params::{ParamError, ParamKind, ParamSpec, ParamValue, Params};

/// A named input a task takes (an image, a mask ...).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InputSpec {
    pub name: &'static str,
    pub required: bool,
    pub description: &'static str,
}

/// The one image input most tasks take.
pub const IMAGE_INPUT: &[InputSpec] = &[InputSpec {
    name: "image",
    required: true,
    description: "the input image",
}];

/// An input handed to [`Task::run`].
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub bytes: Bytes,
    pub content_type: String,
}

/// A result file of [`Task::run`].
#[derive(Debug, Clone)]
pub struct Output {
    pub bytes: Bytes,
    pub content_type: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl Output {
    pub fn image(bytes: Vec<u8>, content_type: &str, width: u32, height: u32) -> Output {
        Output {
            bytes: bytes.into(),
            content_type: content_type.to_owned(),
            width: Some(width),
            height: Some(height),
        }
    }
}

/// How a task run failed. `code` values are stable API error codes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskError {
    /// The request was acceptable at submit but the work showed it is not
    /// (undecodable image, crop outside the image ...).
    #[error("{message}")]
    Invalid {
        code: &'static str,
        param: Option<String>,
        message: String,
    },
    #[error("this task needs a GPU and none is available: {0}")]
    GpuUnavailable(String),
    #[error("the job was canceled")]
    Canceled,
    #[error("model {model}: {message}")]
    Model { model: String, message: String },
    #[error("{0}")]
    Failed(String),
}

impl TaskError {
    pub fn code(&self) -> &'static str {
        match self {
            TaskError::Invalid { code, .. } => code,
            TaskError::GpuUnavailable(_) => "gpu_unavailable",
            TaskError::Canceled => "canceled",
            TaskError::Model { .. } => "model_error",
            TaskError::Failed(_) => "task_failed",
        }
    }

    pub fn invalid(
        code: &'static str,
        param: Option<&str>,
        message: impl Into<String>,
    ) -> TaskError {
        TaskError::Invalid {
            code,
            param: param.map(str::to_owned),
            message: message.into(),
        }
    }
}

impl From<image_io::ImageError> for TaskError {
    fn from(e: image_io::ImageError) -> Self {
        TaskError::Invalid {
            code: e.code,
            param: None,
            message: e.message,
        }
    }
}

/// Progress of a running job. `fraction` is 0..=1; step and tile counts are
/// optional detail shown to clients as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub fraction: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_steps: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tile: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_tiles: Option<u32>,
}

impl Progress {
    /// `step` of `total` steps done.
    pub fn steps(step: u32, total: u32) -> Progress {
        Progress {
            fraction: step as f32 / total.max(1) as f32,
            step: Some(step),
            total_steps: Some(total),
            ..Default::default()
        }
    }
    /// `tile` of `total` tiles done.
    pub fn tiles(tile: u32, total: u32) -> Progress {
        Progress {
            fraction: tile as f32 / total.max(1) as f32,
            tile: Some(tile),
            total_tiles: Some(total),
            ..Default::default()
        }
    }
}

/// Where a running task's progress and log lines go (the job core).
pub trait ProgressSink: Send + Sync {
    fn progress(&self, p: Progress);
    fn log(&self, line: String);
}

/// What a task may use while it runs.
pub struct TaskContext {
    pub job_id: String,
    pub tenant_id: String,
    /// 1 on the first run; higher when a crash interrupted earlier attempts.
    pub attempt: u32,
    pub gpu: Result<easel_kernels::Gpu, String>,
    pub models: Arc<ModelCache>,
    pub limits: ImageLimits,
    pub canceled: Arc<AtomicBool>,
    pub sink: Arc<dyn ProgressSink>,
}

impl TaskContext {
    /// The shared GPU, or `gpu_unavailable` with the reason.
    pub fn gpu(&self) -> Result<&easel_kernels::Gpu, TaskError> {
        self.gpu
            .as_ref()
            .map_err(|e| TaskError::GpuUnavailable(e.clone()))
    }
    pub fn models(&self) -> &ModelCache {
        &self.models
    }
    pub fn progress(&self, p: Progress) {
        self.sink.progress(p);
    }
    pub fn log(&self, line: impl Into<String>) {
        self.sink.log(line.into());
    }
    /// `Err(Canceled)` once the job was canceled; call between units of work.
    pub fn check_canceled(&self) -> Result<(), TaskError> {
        if self.canceled.load(Ordering::Relaxed) {
            Err(TaskError::Canceled)
        } else {
            Ok(())
        }
    }
    /// Decodes `input` under the server's image limits.
    pub fn decode_image(&self, input: &Input) -> Result<image_io::Decoded, TaskError> {
        image_io::decode(input.bytes.clone(), &self.limits).map_err(|e| TaskError::Invalid {
            code: e.code,
            param: Some(input.name.clone()),
            message: e.message,
        })
    }
}

/// One operation jobs can run.
pub trait Task: Send + Sync + 'static {
    /// The URL name: `POST /v1/image/<name>`.
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn inputs(&self) -> &'static [InputSpec] {
        IMAGE_INPUT
    }
    fn params(&self) -> Vec<ParamSpec>;
    /// Default credit cost of one job (the `[credits]` config overrides it).
    fn credits(&self) -> u64;
    /// Runs on the GPU lane (bounded by `jobs.gpu_concurrency`) and needs
    /// `ctx.gpu()`.
    fn needs_gpu(&self) -> bool;
    /// Model checkpoints the task loads (reported by `/v1/models`).
    fn models(&self) -> Vec<String> {
        Vec::new()
    }
    /// Checks at submit what the parameter specs cannot express (a model
    /// that is not installed, a choice between inputs), given the validated
    /// `params` and the names of the inputs the request carries. An error
    /// rejects the request (400 naming the parameter) before a job exists.
    fn check(&self, _params: &Params, _inputs: &[&str]) -> Result<(), ParamError> {
        Ok(())
    }
    /// Does the work; called on a blocking thread. Must call
    /// `ctx.check_canceled()` between units of work.
    fn run(
        &self,
        ctx: &TaskContext,
        inputs: Vec<Input>,
        params: &Params,
    ) -> Result<Vec<Output>, TaskError>;
}

/// All tasks this server runs, by name.
#[derive(Clone, Default)]
pub struct Registry {
    tasks: BTreeMap<&'static str, Arc<dyn Task>>,
    credits: BTreeMap<String, u64>,
}

impl Registry {
    /// The built-in tasks (plus the diagnostic ones when `debug`), with
    /// credit costs overridden by `credits`; model tasks load their weights
    /// from `models_dir`.
    pub fn builtin(debug: bool, credits: BTreeMap<String, u64>, models_dir: &Path) -> Registry {
        let mut r = Registry {
            tasks: BTreeMap::new(),
            credits,
        };
        r.register(convert::Convert);
        r.register(upscale::Upscale::new(models_dir));
        r.register(background::RemoveBackground::new(models_dir));
        r.register(background::ReplaceBackground::new(models_dir));
        if debug {
            r.register(debug::Noop);
            r.register(debug::NoopGpu);
        }
        r
    }

    pub fn register(&mut self, task: impl Task) {
        self.tasks.insert(task.name(), Arc::new(task));
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Task>> {
        self.tasks.get(name).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Task>> {
        self.tasks.values()
    }

    /// Credits one job of `task` costs.
    pub fn cost(&self, task: &dyn Task) -> u64 {
        self.credits
            .get(task.name())
            .copied()
            .unwrap_or_else(|| task.credits())
    }
}
