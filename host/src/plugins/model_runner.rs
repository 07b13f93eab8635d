//! The bridge from the `models` interface to the server's model scheduler.

use super::images::PluginImage;
use super::values::ParamValue;
use std::future::Future;
use std::pin::Pin;

/// One `models.run` call, after the permission check.
pub struct ModelCall<'a> {
    pub tenant: &'a str,
    pub plugin: &'a str,
    pub task: &'a str,
    pub model: Option<&'a str>,
    pub params: &'a [(String, ParamValue)],
    pub inputs: Vec<PluginImage>,
}

/// What a model produced.
#[derive(Debug, Default)]
pub struct ModelResult {
    pub images: Vec<PluginImage>,
    pub metadata: serde_json::Value,
}

/// A failure the guest sees as a `plugin-error` (e.g. `insufficient_credits`,
/// `model_unavailable`, `invalid_argument`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ModelRunError {
    pub code: String,
    pub message: String,
}

impl ModelRunError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// What [`ModelRunner::run`] returns: the run, awaited by the guest's call.
pub type ModelFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ModelResult, ModelRunError>> + Send + 'a>>;

/// Runs tasks for plugins. The server plugs its GPU scheduler in here. Guests run on the
/// async runtime, so a run must not block: the guest's call awaits the returned future
/// (other calls go on meanwhile), and its time is not charged to the plugin's wall-time
/// limit.
pub trait ModelRunner: Send + Sync + 'static {
    fn run<'a>(&'a self, call: ModelCall<'a>) -> ModelFuture<'a>;

    /// Told of a call the host refused before it reached [`ModelRunner::run`] (the plugin
    /// or tenant may not use the model), so the refusal can be recorded where the call was
    /// made (a job's plugin step). Nothing by default.
    fn refused(&self, refusal: ModelRefusal<'_>) {
        let _ = refusal;
    }
}

/// A `models.run` call the host refused, and the error the guest got.
pub struct ModelRefusal<'a> {
    pub tenant: &'a str,
    pub plugin: &'a str,
    pub task: &'a str,
    pub model: Option<&'a str>,
    pub error: &'a ModelRunError,
}

/// The runner when none is configured: every task is unavailable.
pub struct NoModels;

impl ModelRunner for NoModels {
    fn run<'a>(&'a self, call: ModelCall<'a>) -> ModelFuture<'a> {
        let message = format!("no model runner serves task `{}` here", call.task);
        Box::pin(async move { Err(ModelRunError::new("model_unavailable", message)) })
    }
}
