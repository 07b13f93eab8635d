//! `/v1/pipelines`: the calling tenant's plugin pipeline per task (a router and ordered
//! pre/post processors). Without one, a task runs through the plugins whose manifests hook it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Serialize;

use super::AppState;
use super::auth::Authed;
use super::errors::{ApiError, ErrorBody};
use crate::jobs::pipelines::{Pipeline, PipelineConfig, PipelineError};

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        if let PipelineError::Db(db) = &e {
            return ApiError::internal(db);
        }
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        let err = ApiError::new(status, e.code(), e.to_string());
        match e.param() {
            Some(p) => err.param(p),
            None => err,
        }
    }
}

/// Parses a pipeline body, naming the field at fault.
fn config_of(body: &[u8]) -> Result<PipelineConfig, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid request body: {e}")))?;
    let obj = v.as_object().ok_or_else(|| {
        ApiError::bad_request(
            "invalid_json",
            "the body must be a JSON object {router, preprocess, postprocess}",
        )
    })?;
    for (k, val) in obj {
        let ok = match k.as_str() {
            "router" => val.is_null() || val.is_string(),
            "preprocess" | "postprocess" => val
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x.is_string())),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("unknown field `{k}`: send router, preprocess and postprocess"),
                )
                .param(k.clone()));
            }
        };
        if !ok {
            let want = if k == "router" {
                "a plugin name or null"
            } else {
                "an array of plugin names"
            };
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("`{k}` must be {want}, got {val}"),
            )
            .param(k.clone()));
        }
    }
    Ok(serde_json::from_value(v).expect("checked field by field above"))
}

#[derive(Serialize)]
pub struct PipelineList {
    /// By task name.
    pub data: Vec<Pipeline>,
}

/// List the tenant's pipelines.
#[utoipa::path(get, path = "/v1/pipelines", tag = "plugins",
    responses(
        (status = 200, description = "`{data: [{task, router, preprocess, postprocess, updated_at}]}`", body = Object),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list(
    State(st): State<AppState>,
    axum::Extension(Authed(tenant)): axum::Extension<Authed>,
) -> Result<Json<PipelineList>, ApiError> {
    Ok(Json(PipelineList {
        data: st.jobs.pipelines(&tenant.id).await?,
    }))
}

/// The tenant's pipeline for a task.
#[utoipa::path(get, path = "/v1/pipelines/{task}", tag = "plugins",
    params(("task" = String, Path, description = "Task name")),
    responses(
        (status = 200, description = "The pipeline", body = Pipeline),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No pipeline for this task (its manifest default applies)", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn get(
    State(st): State<AppState>,
    axum::Extension(Authed(tenant)): axum::Extension<Authed>,
    Path(task): Path<String>,
) -> Result<Json<Pipeline>, ApiError> {
    st.jobs
        .pipeline_config(&tenant.id, &task)
        .await?
        .map(Json)
        .ok_or_else(|| PipelineError::NotFound(task).into())
}

/// Set the tenant's pipeline for a task: the router that plans it (or `null`) and the
/// processors whose `preprocess` and `postprocess` run, each list in the order given. It
/// replaces the manifest-based default for this task (an empty pipeline runs no plugins).
/// Jobs that start afterwards use it.
#[utoipa::path(put, path = "/v1/pipelines/{task}", tag = "plugins",
    params(("task" = String, Path, description = "Task name")),
    request_body(content = PipelineConfig, content_type = "application/json"),
    responses(
        (status = 200, description = "The stored pipeline", body = Pipeline),
        (status = 400, description = "Malformed body; `param` names the field", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such task (`param`: `task`)", body = ErrorBody),
        (status = 422, description = "Unknown plugin, wrong world, duplicate or too many (`param`: `router`, `preprocess[i]`, ...)", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn put(
    State(st): State<AppState>,
    axum::Extension(Authed(tenant)): axum::Extension<Authed>,
    Path(task): Path<String>,
    body: Bytes,
) -> Result<Json<Pipeline>, ApiError> {
    let config = config_of(&body)?;
    Ok(Json(st.jobs.put_pipeline(&tenant.id, &task, config).await?))
}

/// Remove the tenant's pipeline for a task: the manifest-based default applies again.
#[utoipa::path(delete, path = "/v1/pipelines/{task}", tag = "plugins",
    params(("task" = String, Path, description = "Task name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No pipeline for this task", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    axum::Extension(Authed(tenant)): axum::Extension<Authed>,
    Path(task): Path<String>,
) -> Result<StatusCode, ApiError> {
    st.jobs.delete_pipeline(&tenant.id, &task).await?;
    Ok(StatusCode::NO_CONTENT)
}
