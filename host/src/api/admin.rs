//! `/v1/admin/tenants`: operator endpoints, guarded by the admin key.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::AppState;
use super::errors::{ApiError, ErrorBody};
use crate::tenants::{CreatedTenant, Tenant};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
    /// Starting credits (default 0).
    #[serde(default)]
    pub credits: i64,
    /// Scheduling class (default 0; higher is served first).
    #[serde(default)]
    pub priority: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    pub priority: Option<i64>,
    pub disabled: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditChange {
    /// Credits to add (negative to remove; the balance cannot go below 0).
    pub delta: i64,
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid request body: {e}")))
}

/// Create a tenant; the response holds its API key, shown only this once.
#[utoipa::path(post, path = "/v1/admin/tenants", tag = "admin", request_body = CreateTenant,
    responses(
        (status = 201, description = "Created", body = CreatedTenant),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin key", body = ErrorBody),
        (status = 403, description = "Admin API disabled", body = ErrorBody),
    ),
    security(("admin_key" = [])))]
pub async fn create(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CreatedTenant>), ApiError> {
    let b: CreateTenant = json_body(&body)?;
    Ok((
        StatusCode::CREATED,
        Json(st.tenants.create(b.name, b.credits, b.priority).await?),
    ))
}

/// List tenants.
#[utoipa::path(get, path = "/v1/admin/tenants", tag = "admin",
    responses(
        (status = 200, description = "All tenants", body = [Tenant]),
        (status = 401, description = "Missing or invalid admin key", body = ErrorBody),
        (status = 403, description = "Admin API disabled", body = ErrorBody),
    ),
    security(("admin_key" = [])))]
pub async fn list(State(st): State<AppState>) -> Result<Json<Vec<Tenant>>, ApiError> {
    Ok(Json(st.tenants.list().await?))
}

/// Get a tenant.
#[utoipa::path(get, path = "/v1/admin/tenants/{id}", tag = "admin",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        (status = 401, description = "Missing or invalid admin key", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ),
    security(("admin_key" = [])))]
pub async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    Ok(Json(st.tenants.get(id).await?))
}

/// Change a tenant's scheduling class or disable it.
#[utoipa::path(patch, path = "/v1/admin/tenants/{id}", tag = "admin", request_body = UpdateTenant,
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Updated", body = Tenant),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin key", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ),
    security(("admin_key" = [])))]
pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Tenant>, ApiError> {
    let b: UpdateTenant = json_body(&body)?;
    Ok(Json(st.tenants.update(id, b.priority, b.disabled).await?))
}

/// Add or remove credits.
#[utoipa::path(post, path = "/v1/admin/tenants/{id}/credits", tag = "admin", request_body = CreditChange,
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "New balance", body = Tenant),
        (status = 400, description = "Invalid body or balance would go negative", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin key", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ),
    security(("admin_key" = [])))]
pub async fn credits(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Tenant>, ApiError> {
    let b: CreditChange = json_body(&body)?;
    Ok(Json(st.tenants.add_credits(id, b.delta).await?))
}

/// Replace a tenant's API key; the old key stops working at once.
#[utoipa::path(post, path = "/v1/admin/tenants/{id}/rotate-key", tag = "admin",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The new key (shown once)", body = CreatedTenant),
        (status = 401, description = "Missing or invalid admin key", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ),
    security(("admin_key" = [])))]
pub async fn rotate_key(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CreatedTenant>, ApiError> {
    Ok(Json(st.tenants.rotate_key(id).await?))
}
