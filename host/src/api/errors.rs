//! The one error shape every route returns:
//! `{"error": {"code": "...", "message": "...", "param": "..."|null}}`.

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::db::DbError;
use crate::jobs::JobError;
use crate::storage::files::FileError;
use crate::tenants::TenantError;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_parameter`.
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    pub headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    /// A list route's page size: `requested` (default 20) within 1..=`max`, or a 400
    /// naming `limit`.
    pub fn page_limit(requested: Option<u32>, max: u32) -> Result<u32, ApiError> {
        let limit = requested.unwrap_or(20.min(max));
        if limit == 0 || limit > max {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("must be between 1 and {max}"),
            )
            .param("limit"));
        }
        Ok(limit)
    }

    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
            param: None,
            headers: vec![],
        }
    }
    pub fn param(mut self, p: impl Into<String>) -> ApiError {
        self.param = Some(p.into());
        self
    }
    pub fn header(mut self, name: HeaderName, value: impl ToString) -> ApiError {
        self.headers.push((name, value.to_string()));
        self
    }
    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} {id} not found"),
        )
    }
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("internal error: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                param: self.param,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        let msg = e.to_string();
        match e {
            JobError::UnknownTask(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_task", msg).param("task")
            }
            JobError::InvalidParam(p) => {
                ApiError::bad_request("invalid_parameter", p.message).param(p.param)
            }
            JobError::InvalidInput {
                code,
                param,
                message,
            } => {
                let status = if code == "image_too_large" {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                ApiError::new(status, code, message).param(param)
            }
            JobError::FileNotFound { param, .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "file_not_found", msg).param(param)
            }
            JobError::InsufficientCredits { .. } => {
                ApiError::new(StatusCode::PAYMENT_REQUIRED, "insufficient_credits", msg)
            }
            JobError::QueueFull(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "queue_full", msg)
                    .header(axum::http::header::RETRY_AFTER, 5)
            }
            JobError::TenantQueueFull(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_queued_jobs", msg)
                    .header(axum::http::header::RETRY_AFTER, 5)
            }
            JobError::IdempotencyMismatch => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                msg,
            )
            .param("Idempotency-Key"),
            JobError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", msg),
            JobError::Files(f) => f.into(),
            JobError::Db(d) => d.into(),
        }
    }
}

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::NotFound(id) => ApiError::not_found("file", &id),
            e => ApiError::internal(e),
        }
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::NotFound(id) => ApiError::not_found("tenant", &id),
            TenantError::InvalidName => {
                ApiError::bad_request("invalid_parameter", e.to_string()).param("name")
            }
            TenantError::NegativeBalance { .. } => {
                ApiError::bad_request("invalid_parameter", e.to_string()).param("credits")
            }
            TenantError::Db(d) => d.into(),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::internal(e)
    }
}
