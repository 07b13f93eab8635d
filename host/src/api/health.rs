//! `/healthz` (the process answers) and `/readyz` (it can do work: database
//! writable, blob store reachable, GPU status).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GpuStatus {
    pub available: bool,
    pub adapter: Option<String>,
    pub backend: Option<String>,
    /// Why there is no GPU, when there is none.
    pub error: Option<String>,
    pub required: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    pub database_writable: bool,
    pub storage_ok: bool,
    pub storage: String,
    pub gpu: GpuStatus,
}

/// Readiness: 200 when the database is writable and the blob store answers
/// (and a GPU is present, if `gpu.required`); 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready", body = Ready),
    (status = 503, description = "Not ready", body = Ready),
))]
pub async fn readyz(State(st): State<AppState>) -> (StatusCode, Json<Ready>) {
    let db_ok = st.jobs.db.writable().await;
    let blobs = st.jobs.files.blobs.clone();
    let storage_ok = tokio::time::timeout(Duration::from_secs(3), async {
        blobs
            .put("_readyz/probe", bytes::Bytes::from_static(b"ok"))
            .await
            .is_ok()
            && blobs.get("_readyz/probe").await.is_ok()
    })
    .await
    .unwrap_or(false);
    let gpu = match &st.jobs.gpu {
        Ok(g) => GpuStatus {
            available: true,
            adapter: Some(g.info().name.clone()),
            backend: Some(g.report().backend.clone()),
            error: None,
            required: st.config.gpu.required,
        },
        Err(e) => GpuStatus {
            available: false,
            adapter: None,
            backend: None,
            error: Some(e.clone()),
            required: st.config.gpu.required,
        },
    };
    let ready = db_ok && storage_ok && (gpu.available || !gpu.required);
    let body = Ready {
        status: if ready { "ready" } else { "not_ready" },
        database_writable: db_ok,
        storage_ok,
        storage: st.jobs.files.blobs.describe(),
        gpu,
    };
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(body),
    )
}
