//! `GET /v1/models`: the tasks this server runs (with their parameters and
//! costs) and the model checkpoints installed and loaded.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use super::auth::Authed;
use super::errors::{ApiError, ErrorBody};
use crate::tasks::InputSpec;
use crate::tasks::models::LoadedModel;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskInfo {
    pub name: String,
    pub description: String,
    /// `POST` here to run it.
    pub endpoint: String,
    pub credits: u64,
    pub needs_gpu: bool,
    /// False when the task needs a GPU and none is available.
    pub available: bool,
    pub inputs: Vec<InputSpec>,
    /// JSON Schema of each parameter, by name.
    #[schema(value_type = Object)]
    pub params: serde_json::Map<String, serde_json::Value>,
    pub models: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstalledModel {
    pub name: String,
    pub bytes: u64,
    /// From the model's manifest, when it has one.
    pub architecture: Option<String>,
    pub scale: Option<u32>,
    pub loaded: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelsResponse {
    pub tasks: Vec<TaskInfo>,
    /// `<models-dir>/*.safetensors`.
    pub models: Vec<InstalledModel>,
    /// Models resident in GPU memory now.
    pub loaded: Vec<LoadedModel>,
}

/// Installed models and the tasks they serve.
#[utoipa::path(get, path = "/v1/models", tag = "models",
    responses(
        (status = 200, description = "Tasks and models", body = ModelsResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list(
    State(st): State<AppState>,
    _t: axum::Extension<Authed>,
) -> Result<Json<ModelsResponse>, ApiError> {
    Ok(Json(models_response(&st)))
}

pub fn task_infos(st: &AppState) -> Vec<TaskInfo> {
    let jobs = &st.jobs;
    jobs.registry
        .iter()
        .map(|t| TaskInfo {
            name: t.name().to_owned(),
            description: t.description().to_owned(),
            endpoint: format!("/v1/image/{}", t.name()),
            credits: jobs.registry.cost(t.as_ref()),
            needs_gpu: t.needs_gpu(),
            available: !t.needs_gpu() || jobs.gpu.is_ok(),
            inputs: t.inputs().to_vec(),
            params: t
                .params()
                .iter()
                .map(|p| (p.name.to_owned(), p.json_schema()))
                .collect(),
            models: t.models(),
        })
        .collect()
}

fn models_response(st: &AppState) -> ModelsResponse {
    let loaded = st.jobs.models.loaded();
    // A missing models directory just means no models installed yet.
    let models = crate::models::registry::list(&st.models_dir)
        .unwrap_or_default()
        .into_iter()
        .map(|e| InstalledModel {
            bytes: std::fs::metadata(&e.weights_path)
                .map(|m| m.len())
                .unwrap_or(0),
            architecture: e.manifest.as_ref().and_then(|m| m.architecture.clone()),
            scale: e.manifest.as_ref().and_then(|m| m.scale),
            loaded: loaded.iter().any(|l| l.name == e.name),
            name: e.name,
        })
        .collect();
    ModelsResponse {
        tasks: task_infos(st),
        models,
        loaded,
    }
}
