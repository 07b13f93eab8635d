//! `GET /v1/account`: the calling tenant.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::auth::Authed;
use super::errors::{ApiError, ErrorBody};
use crate::tenants::Tenant;

/// The calling tenant: credits, scheduling class, webhook signing secret.
#[utoipa::path(get, path = "/v1/account", tag = "account",
    responses(
        (status = 200, description = "This tenant", body = Tenant),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn get(
    State(st): State<AppState>,
    axum::Extension(Authed(t)): axum::Extension<Authed>,
) -> Result<Json<Tenant>, ApiError> {
    // Fresh from the database: the extension was read before this request's
    // own changes, and credits move as jobs end.
    Ok(Json(st.tenants.get(t.id).await?))
}
