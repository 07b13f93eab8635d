//! `/v1/plugins`: a tenant's WebAssembly plugins (upload, list, show, delete, logs), and
//! `/v1/x/{plugin}/...`: the tenant's endpoint plugins serving HTTP.
//!
//! Everything is scoped to the calling tenant: another tenant's plugin is a 404, exactly like
//! one that does not exist.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

use super::AppState;
use super::auth::Authed;
use super::errors::{ApiError, ErrorBody};
use crate::plugins::{
    CallError, LogRecord, Manifest, PluginHost, PluginStore, PluginVersionInfo, StoreError,
    UploadError,
};

/// The plugin host and where its plugins are persisted.
#[derive(Clone)]
pub struct Plugins {
    pub host: PluginHost,
    pub store: PluginStore,
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        let param = match &e {
            UploadError::Manifest(_) | UploadError::LimitExceedsCap(_) => "manifest",
            UploadError::InvalidName(_) => "name",
            _ => "component",
        };
        ApiError::new(status, e.code(), e.to_string()).param(param)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e)
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "plugin_not_found",
        format!("no plugin `{name}` for this tenant"),
    )
    .param("name")
}

/// The component bytes and manifest of an upload: a raw body (the component; no manifest),
/// or multipart with a `component` part and an optional `manifest` JSON part.
async fn read_upload(st: &AppState, req: Request) -> Result<(Bytes, Option<Manifest>), ApiError> {
    let limit = st
        .config
        .limits
        .max_body_bytes
        .min(st.plugins.host.config().max_component_bytes);
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "plugin_too_large",
            format!("the component is larger than {limit} bytes"),
        )
        .param("component")
    };
    let multipart = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !multipart {
        let body = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| too_large())?;
        return Ok((body, None));
    }
    let mut mp = Multipart::from_request(req, st)
        .await
        .map_err(|e| ApiError::bad_request("invalid_multipart", e.body_text()))?;
    let (mut component, mut manifest) = (None, None);
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => return Err(ApiError::bad_request("invalid_multipart", e.body_text())),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request("invalid_multipart", e.body_text()).param(name.clone())
            }
        })?;
        match name.as_str() {
            "component" => component = Some(bytes),
            "manifest" => manifest = Some(Manifest::from_json(&bytes)?),
            other => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("unknown part `{other}`: send `component` and optionally `manifest`"),
                )
                .param(other));
            }
        }
    }
    let component = component.ok_or_else(|| {
        ApiError::bad_request("missing_parameter", "the `component` part is required")
            .param("component")
    })?;
    Ok((component, manifest))
}

/// Upload a new version of a plugin.
///
/// The body is the component (`application/wasm`; its world is inferred from its exports
/// and default limits apply), or multipart with a `component` part and a `manifest` JSON
/// part (world, tasks, routes, config, limits, capabilities). Compiled at upload, off the
/// request threads, under the size and compile-time caps. Versions are immutable; the new
/// version becomes the active one unless a version is pinned (`PUT /v1/plugins/{name}/pin`).
#[utoipa::path(put, path = "/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name: 1-64 of [a-z0-9_-]")),
    request_body(description = "The component, or multipart `component` + `manifest`",
        content((Vec<u8> = "application/wasm"), (Object = "multipart/form-data"))),
    responses(
        (status = 201, description = "The new version: number, content hash, world, imports, exports, compile time", body = Object),
        (status = 400, description = "Malformed multipart", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 413, description = "Component too large", body = ErrorBody),
        (status = 422, description = "Invalid component, forbidden imports (named in the message), bad manifest or compile timeout", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn upload(
    State(st): State<AppState>,
    axum::Extension(Authed(tenant)): axum::Extension<Authed>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (bytes, manifest) = read_upload(&st, req).await?;
    let effective = manifest.clone().unwrap_or_default();
    let info = st
        .plugins
        .host
        .upload(&tenant.id, &name, bytes.to_vec(), manifest)
        .await?;
    st.plugins
        .store
        .save(&tenant.id, &info, &effective, bytes)
        .await?;
    tracing::info!(tenant = %tenant.id, plugin = %name, version = info.version,
        world = info.world.as_str(), compile_ms = info.compile_ms, "plugin uploaded");
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[derive(Serialize)]
pub struct PluginList {
    /// The active version of each plugin.
    pub data: Vec<PluginVersionInfo>,
}

/// List the tenant's plugins (their active versions).
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins",
    responses(
        (status = 200, description = "`{data: [version info]}`", body = Object),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list(
    State(st): State<AppState>,
    axum::Extension(Authed(tenant)): axum::Extension<Authed>,
) -> Json<PluginList> {
    Json(PluginList {
        data: st.plugins.host.list(&tenant.id),
    })
}

#[derive(Serialize)]
pub struct PluginDetail {
    pub name: String,
    /// The version jobs and endpoints use: the pinned one, else the latest.
    pub active_version: u32,
    /// Set by `PUT /v1/plugins/{name}/pin`; `null` when the latest is active.
    pub pinned_version: Option<u32>,
    /// Oldest first.
    pub versions: Vec<PluginVersionInfo>,
}

fn detail(st: &AppState, tenant: &str, name: String) -> Result<PluginDetail, ApiError> {
    let v = st
        .plugins
        .host
        .versions(tenant, &name)
        .ok_or_else(|| not_found(&name))?;
    Ok(PluginDetail {
        name,
        active_version: v.active,
        pinned_version: v.pinned,
        versions: v.versions,
    })
}

/// A plugin: every version, the active one and the pinned one.
#[utoipa::path(get, path = "/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses(
        (status = 200, description = "`{name, active_version, pinned_version, versions}`", body = Object),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such plugin for this tenant", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn get(
    State(st): State<AppState>,
    axum::Extension(Authed(tenant)): axum::Extension<Authed>,
    Path(name): Path<String>,
) -> Result<Json<PluginDetail>, ApiError> {
    Ok(Json(detail(&st, &tenant.id, name)?))
}

/// The version number in a pin request: `{"version": N}`.
fn pin_version(body: &[u8]) -> Result<u32, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid request body: {e}")))?;
    let obj = v.as_object().ok_or_else(|| {
        ApiError::bad_request(
            "invalid_json",
            "the body must be a JSON object `{\"version\": N}`",
        )
    })?;
    if let Some(k) = obj.keys().find(|k| *k != "version") {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("unknown field `{k}`: send `version`"),
        )
        .param(k.clone()));
    }
    let raw = obj.get("version").ok_or_else(|| {
        ApiError::bad_request("missing_parameter", "`version` is required").param("version")
    })?;
    raw.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("`version` must be a version number (1, 2, ...), got {raw}"),
            )
            .param("version")
        })
}

/// Pin a version: it stays active when newer versions are uploaded, for jobs and endpoints
/// alike, until unpinned. Persisted across restarts.
#[utoipa::path(put, path = "/v1/plugins/{name}/pin", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    request_body(description = "`{\"version\": N}`", content((Object = "application/json"))),
    responses(
        (status = 200, description = "The plugin as `GET /v1/plugins/{name}` shows it", body = Object),
        (status = 400, description = "Malformed body; `param` names the field", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such plugin, or no such version (`param`: `version`)", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn pin(
    State(st): State<AppState>,
    axum::Extension(Authed(tenant)): axum::Extension<Authed>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<PluginDetail>, ApiError> {
    let version = pin_version(&body)?;
    set_pin(&st, &tenant.id, &name, Some(version)).await?;
    Ok(Json(detail(&st, &tenant.id, name)?))
}

/// Unpin: the latest version becomes active again.
#[utoipa::path(delete, path = "/v1/plugins/{name}/pin", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses(
        (status = 200, description = "The plugin as `GET /v1/plugins/{name}` shows it", body = Object),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such plugin for this tenant", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn unpin(
    State(st): State<AppState>,
    axum::Extension(Authed(tenant)): axum::Extension<Authed>,
    Path(name): Path<String>,
) -> Result<Json<PluginDetail>, ApiError> {
    set_pin(&st, &tenant.id, &name, None).await?;
    Ok(Json(detail(&st, &tenant.id, name)?))
}

/// Pins in the registry, then in the database (a failed write puts the old pin back, so the
/// two never disagree).
async fn set_pin(
    st: &AppState,
    tenant: &str,
    name: &str,
    version: Option<u32>,
) -> Result<(), ApiError> {
    let before = st
        .plugins
        .host
        .versions(tenant, name)
        .ok_or_else(|| not_found(name))?
        .pinned;
    st.plugins
        .host
        .pin(tenant, name, version)
        .map_err(|e| match e {
            CallError::VersionNotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, e.code(), e.to_string()).param("version")
            }
            _ => not_found(name),
        })?;
    if let Err(e) = st.plugins.store.set_pin(tenant, name, version).await {
        let _ = st.plugins.host.pin(tenant, name, before);
        return Err(e.into());
    }
    Ok(())
}

/// Delete a plugin and all its versions.
#[utoipa::path(delete, path = "/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such plugin for this tenant", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    axum::Extension(Authed(tenant)): axum::Extension<Authed>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !st.plugins.host.delete(&tenant.id, &name) {
        return Err(not_found(&name));
    }
    st.plugins.store.delete(&tenant.id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
pub struct PluginLogs {
    /// The last lines the plugin logged (all versions), oldest first.
    pub data: Vec<LogRecord>,
}

/// The plugin's recent log lines (bounded per call and per plugin).
#[utoipa::path(get, path = "/v1/plugins/{name}/logs", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses(
        (status = 200, description = "`{data: [{version, level, message, ...}]}`", body = Object),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such plugin for this tenant", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn logs(
    State(st): State<AppState>,
    axum::Extension(Authed(tenant)): axum::Extension<Authed>,
    Path(name): Path<String>,
) -> Result<Json<PluginLogs>, ApiError> {
    let data = st
        .plugins
        .host
        .logs(&tenant.id, &name)
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(PluginLogs { data }))
}

/// Serve a request with one of the tenant's endpoint plugins.
///
/// The plugin sees the method, the path below `/v1/x/{plugin}`, the query, the headers
/// without credentials (`Authorization`, `Cookie`, ...) and the body, and returns any
/// response. A guest failure (time, memory, trap, oversized output) answers with a non-2xx
/// status and a JSON error naming the limit (`plugin_timeout`, `plugin_memory_limit`, ...).
#[utoipa::path(post, path = "/v1/x/{plugin}/{path}", tag = "plugins",
    params(
        ("plugin" = String, Path, description = "Endpoint plugin name"),
        ("path" = String, Path, description = "Any path; every method is accepted"),
    ),
    responses(
        (status = 200, description = "Whatever the plugin answers"),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such plugin for this tenant", body = ErrorBody),
        (status = 409, description = "The plugin is not an endpoint", body = ErrorBody),
        (status = 502, description = "The plugin broke a limit or trapped", body = ErrorBody),
        (status = 504, description = "The plugin ran past its wall-time limit", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn endpoint(
    State(st): State<AppState>,
    axum::Extension(Authed(tenant)): axum::Extension<Authed>,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
) -> Result<Response, ApiError> {
    let plugin = params
        .iter()
        .find(|(k, _)| k == "plugin")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let path = params
        .iter()
        .find(|(k, _)| k == "path")
        .map_or("", |(_, v)| v.as_str());
    let mut target = format!("/{path}");
    if let Some(q) = req.uri().query() {
        target.push('?');
        target.push_str(q);
    }
    let limit = st.plugins.host.config().max_http_request_bytes;
    let (mut parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("endpoint plugins take bodies of up to {limit} bytes"),
        )
    })?;
    parts.uri = target
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_path", format!("{e}")).param("path"))?;
    // The host strips credentials too; keep the rest of the extensions out of the guest.
    parts.extensions = Default::default();
    let (resp, report) = st
        .plugins
        .host
        .handle_http(&tenant.id, &plugin, http::Request::from_parts(parts, body))
        .await;
    let mut resp = resp.map(axum::body::Body::from);
    if report.version > 0 {
        let h = resp.headers_mut();
        for (name, v) in [
            ("x-easel-plugin-version", report.version.to_string()),
            ("x-easel-plugin-wall-us", report.wall_us.to_string()),
            ("x-easel-plugin-fuel", report.fuel_used.to_string()),
        ] {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(HeaderName::from_static(name), v);
            }
        }
    }
    Ok(resp)
}
