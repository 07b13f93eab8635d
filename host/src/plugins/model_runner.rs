//! The bridge from the `models` interface to the server's model scheduler.

use super::images::PluginImage;
use super::values::ParamValue;

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

/// Runs tasks for plugins. The server plugs its GPU scheduler in here; runs block the guest's
/// thread (guests run on dedicated blocking threads), and their time is not charged to the
/// plugin's wall-time limit.
pub trait ModelRunner: Send + Sync + 'static {
    fn run(&self, call: ModelCall<'_>) -> Result<ModelResult, ModelRunError>;
}

/// The runner when none is configured: every task is unavailable.
pub struct NoModels;

impl ModelRunner for NoModels {
    fn run(&self, call: ModelCall<'_>) -> Result<ModelResult, ModelRunError> {
        Err(ModelRunError::new(
            "model_unavailable",
            format!("no model runner serves task `{}` here", call.task),
        ))
    }
}
