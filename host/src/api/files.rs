//! `/v1/files`: upload inputs, download inputs and outputs (by API key or by
//! signed URL), delete.

use axum::Json;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Authed;
use super::errors::{ApiError, ErrorBody};
use crate::ids;
use crate::storage::files::{FileKind, FileRecord, NewFile};
use crate::tasks::image_io;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FileView {
    pub id: String,
    /// Always `file`.
    pub object: &'static str,
    pub kind: FileKind,
    pub content_type: String,
    pub bytes: i64,
    pub sha256: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub filename: Option<String>,
    pub job_id: Option<String>,
    pub created_at: String,
    /// When retention deletes it.
    pub expires_at: String,
    /// Signed download URL; expires sooner than the file.
    pub url: String,
}

fn view(st: &AppState, f: &FileRecord) -> FileView {
    FileView {
        id: f.id.clone(),
        object: "file",
        kind: f.kind,
        content_type: f.content_type.clone(),
        bytes: f.bytes,
        sha256: f.sha256.clone(),
        width: f.width,
        height: f.height,
        filename: f.filename.clone(),
        job_id: f.job_id.clone(),
        created_at: ids::rfc3339(f.created_at),
        expires_at: ids::rfc3339(f.expires_at),
        url: st.jobs.urls.file(&f.id),
    }
}

/// Upload an image to use as a task input (`image_file_id`). Multipart with
/// one `file` part.
#[utoipa::path(post, path = "/v1/files", tag = "files",
    request_body(content = Object, content_type = "multipart/form-data", description = "a `file` part holding an image"),
    responses(
        (status = 201, description = "Stored", body = FileView),
        (status = 400, description = "Missing file or not an image", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 413, description = "Too large", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn upload(
    State(st): State<AppState>,
    axum::Extension(Authed(t)): axum::Extension<Authed>,
    mut mp: Multipart,
) -> Result<(StatusCode, Json<FileView>), ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is larger than {} bytes",
                st.config.limits.max_body_bytes
            ),
        )
    };
    let mut file: Option<(Bytes, Option<String>)> = None;
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => return Err(ApiError::bad_request("invalid_multipart", e.body_text())),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => return Err(ApiError::bad_request("invalid_multipart", e.body_text())),
        };
        if name == "file" {
            file = Some((bytes, filename));
        } else {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("unexpected field `{name}`; send one `file` part"),
            )
            .param(name));
        }
    }
    let (bytes, filename) = file.ok_or_else(|| {
        ApiError::bad_request("missing_input", "send the image as a `file` part").param("file")
    })?;
    let probe = image_io::probe(&bytes, &st.jobs.image_limits()).map_err(|e| {
        let status = if e.code == "image_too_large" {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, e.code, e.message).param("file")
    })?;
    let rec = st
        .jobs
        .files
        .create(
            NewFile {
                tenant_id: t.id.clone(),
                kind: FileKind::Input,
                job_id: None,
                filename,
                content_type: image_io::content_type(probe.format).to_owned(),
                width: Some(probe.width),
                height: Some(probe.height),
            },
            bytes,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view(&st, &rec))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SignedQuery {
    /// Unix time the signature expires (from a signed URL).
    pub expires: Option<i64>,
    /// HMAC signature (from a signed URL).
    pub sig: Option<String>,
}

/// Download a file: with a valid signed URL (`expires` + `sig`), or with the
/// owning tenant's API key.
#[utoipa::path(get, path = "/v1/files/{id}", tag = "files",
    params(("id" = String, Path, description = "File id"), SignedQuery),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "Neither a valid signature nor an API key", body = ErrorBody),
        (status = 403, description = "Signature invalid or expired", body = ErrorBody),
        (status = 404, description = "No such file (for this tenant)", body = ErrorBody),
    ),
    security((), ("api_key" = [])))]
pub async fn download(
    State(st): State<AppState>,
    authed: Option<axum::Extension<Authed>>,
    Path(id): Path<String>,
    Query(q): Query<SignedQuery>,
) -> Result<Response, ApiError> {
    let rec = match (q.expires, q.sig.as_deref()) {
        (Some(exp), Some(sig)) => {
            if !st
                .jobs
                .urls
                .signer
                .verify(&id, exp, sig, ids::now_ms() / 1000)
            {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "invalid_signature",
                    "the signed URL is invalid or has expired",
                ));
            }
            st.jobs.files.get(id.clone(), None).await?
        }
        _ => {
            let Some(axum::Extension(Authed(t))) = authed else {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing_api_key",
                    "use a signed URL or send `Authorization: Bearer <key>`",
                ));
            };
            if !ids::is_id(&id, "file") {
                return Err(ApiError::not_found("file", &id));
            }
            st.jobs.files.get(id.clone(), Some(t.id)).await?
        }
    };
    let bytes = st.jobs.files.read(&rec).await?;
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(&rec.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    let ext = rec.content_type.rsplit('/').next().unwrap_or("bin");
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{}.{ext}\"", rec.id)) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// Delete a file now instead of at the end of its retention.
#[utoipa::path(delete, path = "/v1/files/{id}", tag = "files",
    params(("id" = String, Path, description = "File id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such file for this tenant", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    authed: Option<axum::Extension<Authed>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let Some(axum::Extension(Authed(t))) = authed else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "send `Authorization: Bearer <key>`",
        ));
    };
    if !ids::is_id(&id, "file") {
        return Err(ApiError::not_found("file", &id));
    }
    let rec = st.jobs.files.get(id, Some(t.id)).await?;
    st.jobs.files.delete(&rec).await?;
    Ok(StatusCode::NO_CONTENT)
}
