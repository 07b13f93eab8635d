//! `GET /v1/credits/ledger`: every change of the calling tenant's balance.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Authed;
use super::errors::{ApiError, ErrorBody};
use crate::tenants::ledger::Entry;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LedgerQuery {
    /// Page size (default 20, capped by limits.max_page_size).
    pub limit: Option<u32>,
    /// Cursor: the last entry id of the previous page.
    pub after: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LedgerList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<Entry>,
    pub has_more: bool,
    /// Pass as `after` to get the next page.
    pub next_cursor: Option<String>,
}

/// This tenant's credit ledger, newest first: one entry per balance change (the credits it
/// was created with, operator adjustments, job charges and refunds, router plans, plugin
/// `models.run` charges and refunds), with the balance after each.
#[utoipa::path(get, path = "/v1/credits/ledger", tag = "account", params(LedgerQuery),
    responses(
        (status = 200, description = "A page of ledger entries", body = LedgerList),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn ledger(
    State(st): State<AppState>,
    axum::Extension(Authed(t)): axum::Extension<Authed>,
    Query(q): Query<LedgerQuery>,
) -> Result<Json<LedgerList>, ApiError> {
    let limit = ApiError::page_limit(q.limit, st.config.limits.max_page_size)?;
    let after = q.after.clone();
    let page = st
        .tenants
        .ledger(t.id, q.after, limit)
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("no ledger entry {}", after.unwrap_or_default()),
            )
            .param("after")
        })?;
    let next_cursor = if page.has_more {
        page.entries.last().map(|e| e.id.clone())
    } else {
        None
    };
    Ok(Json(LedgerList {
        object: "list",
        data: page.entries,
        has_more: page.has_more,
        next_cursor,
    }))
}
