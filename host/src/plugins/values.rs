//! The host-side values that cross into and out of plugins: parameters, requests, outputs,
//! plans, and their conversion to and from the generated WIT types.

use super::bindings::easel::plugin::{pipeline, types};
use super::errors::CallError;
use super::images::PluginImage;
use serde::Serialize;

/// A typed parameter value.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    Null,
    Bool(bool),
    Int(i64),
    Number(f64),
    Text(String),
    /// Structured values (objects, arrays).
    Json(serde_json::Value),
}

impl From<serde_json::Value> for ParamValue {
    fn from(v: serde_json::Value) -> Self {
        use serde_json::Value as J;
        match v {
            J::Null => Self::Null,
            J::Bool(b) => Self::Bool(b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Self::Int(i),
                None => Self::Number(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Self::Text(s),
            other => Self::Json(other),
        }
    }
}

/// Parameters as (name, value) pairs, in order.
pub type Params = Vec<(String, ParamValue)>;

pub(crate) fn params_to_wit(params: &[(String, ParamValue)]) -> Vec<types::Param> {
    params
        .iter()
        .map(|(name, v)| types::Param {
            name: name.clone(),
            value: match v {
                ParamValue::Null => types::Value::Null,
                ParamValue::Bool(b) => types::Value::Boolean(*b),
                ParamValue::Int(i) => types::Value::Integer(*i),
                ParamValue::Number(n) => types::Value::Number(*n),
                ParamValue::Text(s) => types::Value::Text(s.clone()),
                ParamValue::Json(j) => types::Value::Json(j.to_string()),
            },
        })
        .collect()
}

pub(crate) fn params_from_wit(params: Vec<types::Param>) -> Result<Params, CallError> {
    params
        .into_iter()
        .map(|p| {
            let v = match p.value {
                types::Value::Null => ParamValue::Null,
                types::Value::Boolean(b) => ParamValue::Bool(b),
                types::Value::Integer(i) => ParamValue::Int(i),
                types::Value::Number(n) => ParamValue::Number(n),
                types::Value::Text(s) => ParamValue::Text(s),
                types::Value::Json(s) => {
                    ParamValue::Json(serde_json::from_str(&s).map_err(|e| {
                        CallError::BadOutput(format!(
                            "parameter `{}` is not valid JSON: {e}",
                            p.name
                        ))
                    })?)
                }
            };
            Ok((p.name, v))
        })
        .collect()
}

/// A request entering preprocessing.
#[derive(Clone, Debug, Default)]
pub struct PluginRequest {
    pub task: String,
    pub params: Params,
    pub images: Vec<PluginImage>,
}

/// Encoded audio.
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// A task's output, as postprocessing sees and returns it.
#[derive(Clone, Debug, Default)]
pub struct PluginOutput {
    pub images: Vec<PluginImage>,
    pub masks: Vec<PluginImage>,
    pub audio: Vec<Audio>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl PluginOutput {
    /// Bytes counted against the output limit: RGBA pixels, audio, metadata text.
    pub fn size_bytes(&self) -> u64 {
        let px: u64 = self
            .images
            .iter()
            .chain(&self.masks)
            .map(PluginImage::size_bytes)
            .sum();
        let audio: u64 = self.audio.iter().map(|a| a.bytes.len() as u64).sum();
        px + audio
            + serde_json::Value::Object(self.metadata.clone())
                .to_string()
                .len() as u64
    }
}

/// One step of a router's plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanStep {
    pub task: String,
    pub params: Params,
}

/// The steps a router chose.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub steps: Vec<PlanStep>,
}

/// The most steps a plan may have, and the longest task name.
pub const MAX_PLAN_STEPS: usize = 64;
const MAX_TASK_NAME: usize = 64;

pub(crate) fn plan_from_wit(plan: pipeline::Plan) -> Result<Plan, CallError> {
    if plan.steps.len() > MAX_PLAN_STEPS {
        return Err(CallError::BadOutput(format!(
            "the plan has {} steps; at most {MAX_PLAN_STEPS} are allowed",
            plan.steps.len()
        )));
    }
    let steps = plan
        .steps
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let valid = !s.task.is_empty()
                && s.task.len() <= MAX_TASK_NAME
                && s.task
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(CallError::BadOutput(format!(
                    "step {i} has an invalid task name {:?} (1-{MAX_TASK_NAME} of [A-Za-z0-9_-])",
                    s.task
                )));
            }
            Ok(PlanStep {
                task: s.task,
                params: params_from_wit(s.params)?,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Plan { steps })
}

pub(crate) fn metadata_from_wit(
    text: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, CallError> {
    if text.trim().is_empty() {
        return Ok(Default::default());
    }
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(CallError::BadOutput(
            "metadata must be a JSON object".into(),
        )),
        Err(e) => Err(CallError::BadOutput(format!(
            "metadata is not valid JSON: {e}"
        ))),
    }
}
