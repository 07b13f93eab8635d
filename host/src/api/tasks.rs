//! `POST /v1/image/{task}`: a request (multipart or JSON) becomes a job.

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde_json::Value;

use super::AppState;
use super::auth::Authed;
use super::errors::{ApiError, ErrorBody};
use crate::jobs::view::JobView;
use crate::jobs::{InputSource, SubmitRequest, Submitted};
use crate::tasks::Task;

/// Fields that configure the job rather than the task.
const RESERVED: &[&str] = &["webhook", "webhook_events_filter", "priority"];

/// Submit a job for a task.
///
/// Multipart: a file part per task input (`image`), or `image_file_id` naming
/// an uploaded file; other fields are task parameters (see `GET /v1/models`)
/// plus `webhook`, `webhook_events_filter` (comma-separated: start, progress,
/// completed) and `priority` (0-9). JSON: the same keys, with `image` as
/// base64 or a `data:` URL. `Prefer: wait[=N]` holds the response until the
/// job ends (up to N seconds, capped); `Idempotency-Key` makes retries safe.
#[utoipa::path(
    post,
    path = "/v1/image/{task}",
    tag = "tasks",
    params(
        ("task" = String, Path, description = "Task name, e.g. convert"),
        ("Prefer" = Option<String>, Header, description = "`wait` or `wait=N`: wait up to N seconds for the job to end"),
        ("Idempotency-Key" = Option<String>, Header, description = "Same key and body return the same job"),
    ),
    request_body(
        description = "multipart/form-data or application/json; fields per task in GET /v1/models",
        content(
            (Object = "multipart/form-data"),
            (Object = "application/json"),
        )
    ),
    responses(
        (status = 201, description = "Job created (in whatever state it reached within the wait)", body = JobView),
        (status = 200, description = "Idempotent replay: the job created earlier with this key", body = JobView),
        (status = 400, description = "Invalid parameter or input", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 402, description = "Not enough credits", body = ErrorBody),
        (status = 404, description = "Unknown task or input file", body = ErrorBody),
        (status = 413, description = "Body or image too large", body = ErrorBody),
        (status = 415, description = "Unsupported content type", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused with a different request", body = ErrorBody),
        (status = 429, description = "Rate limited or too many queued jobs", body = ErrorBody),
        (status = 503, description = "Queue full", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn submit(
    State(st): State<AppState>,
    axum::Extension(Authed(tenant)): axum::Extension<Authed>,
    Path(task_name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let task = st.jobs.registry.get(&task_name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_task",
            format!("no task named `{task_name}`"),
        )
        .param("task")
    })?;
    let headers = req.headers().clone();
    let idempotency_key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::bad_request("invalid_parameter", "must be visible ASCII")
                        .param("Idempotency-Key")
                })?
                .to_owned(),
        ),
        None => None,
    };
    let wait = prefer_wait(&headers, st.config.limits.max_wait_secs);
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut sreq = if ct.starts_with("multipart/form-data") {
        from_multipart(&st, task.as_ref(), req).await?
    } else if ct.starts_with("application/json") {
        let body = axum::body::to_bytes(req.into_body(), st.config.limits.max_body_bytes)
            .await
            .map_err(|_| too_large(&st))?;
        from_json(task.as_ref(), &body)?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send multipart/form-data or application/json",
        ));
    };
    sreq.task = task_name;
    sreq.idempotency_key = idempotency_key;
    let (job, replayed) = match st.jobs.submit(&tenant, sreq).await? {
        Submitted::Created(j) => (j, false),
        Submitted::Replayed(j) => (j, true),
    };
    let job = match wait {
        Some(w) => st.jobs.wait(&tenant.id, &job.id, w).await?,
        None => job,
    };
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut resp = (status, Json(st.jobs.view(&job))).into_response();
    let h = resp.headers_mut();
    h.insert(
        LOCATION,
        format!("/v1/jobs/{}", job.id).parse().expect("ascii id"),
    );
    if let Some(w) = wait {
        h.insert(
            HeaderName::from_static("preference-applied"),
            format!("wait={}", w.as_secs()).parse().expect("ascii"),
        );
    }
    if replayed {
        h.insert(
            HeaderName::from_static("idempotent-replayed"),
            "true".parse().expect("ascii"),
        );
    }
    Ok(resp)
}

/// `Prefer: wait` → the cap; `Prefer: wait=N` → min(N, cap); else None.
pub fn prefer_wait(headers: &HeaderMap, cap: u64) -> Option<Duration> {
    for v in headers.get_all("prefer") {
        let Ok(v) = v.to_str() else { continue };
        for pref in v.split([',', ';']) {
            let pref = pref.trim();
            if pref.eq_ignore_ascii_case("wait") {
                return Some(Duration::from_secs(cap));
            }
            if let Some((k, n)) = pref.split_once('=')
                && k.trim().eq_ignore_ascii_case("wait")
                && let Ok(n) = n.trim().trim_matches('"').parse::<u64>()
            {
                return Some(Duration::from_secs(n.min(cap)));
            }
        }
    }
    None
}

fn too_large(st: &AppState) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the request body is larger than {} bytes",
            st.config.limits.max_body_bytes
        ),
    )
}

fn empty_request() -> SubmitRequest {
    SubmitRequest {
        task: String::new(),
        inputs: vec![],
        params: Default::default(),
        priority: None,
        webhook: None,
        webhook_events: None,
        idempotency_key: None,
    }
}

fn parse_priority(v: &Value) -> Result<i64, ApiError> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::bad_request("invalid_parameter", format!("must be an integer, got {v}"))
            .param("priority")
    })
}

fn split_events(s: &str) -> Vec<String> {
    s.split(',')
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect()
}

async fn from_multipart(
    st: &AppState,
    task: &dyn Task,
    req: Request,
) -> Result<SubmitRequest, ApiError> {
    let mut out = empty_request();
    let mut mp = Multipart::from_request(req, st)
        .await
        .map_err(|e| ApiError::bad_request("invalid_multipart", e.body_text()))?;
    let inputs = task.inputs();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large(st)),
            Err(e) => return Err(ApiError::bad_request("invalid_multipart", e.body_text())),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large(st)),
            Err(e) => {
                return Err(ApiError::bad_request("invalid_multipart", e.body_text()).param(name));
            }
        };
        if inputs.iter().any(|i| i.name == name) {
            out.inputs
                .push((name, InputSource::Bytes { bytes, filename }));
            continue;
        }
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
            ApiError::bad_request("invalid_parameter", "must be UTF-8 text").param(name.clone())
        })?;
        if let Some(input) = name
            .strip_suffix("_file_id")
            .filter(|n| inputs.iter().any(|i| i.name == *n))
        {
            out.inputs
                .push((input.to_owned(), InputSource::File(text.trim().to_owned())));
        } else if name == "webhook" {
            out.webhook = Some(text.trim().to_owned());
        } else if name == "webhook_events_filter" {
            out.webhook_events
                .get_or_insert_with(Vec::new)
                .extend(split_events(&text));
        } else if name == "priority" {
            out.priority = Some(parse_priority(&Value::String(text))?);
        } else {
            out.params.insert(name, Value::String(text));
        }
    }
    Ok(out)
}

fn from_json(task: &dyn Task, body: &Bytes) -> Result<SubmitRequest, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    let Value::Object(map) = v else {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body must be a JSON object",
        ));
    };
    let mut out = empty_request();
    let inputs = task.inputs();
    for (k, v) in map {
        if inputs.iter().any(|i| i.name == k) {
            let s = v.as_str().ok_or_else(|| {
                ApiError::bad_request("invalid_parameter", "must be a base64 string or data: URL")
                    .param(k.clone())
            })?;
            out.inputs.push((
                k.clone(),
                InputSource::Bytes {
                    bytes: decode_base64(s)
                        .map_err(|m| ApiError::bad_request("invalid_base64", m).param(k))?,
                    filename: None,
                },
            ));
        } else if let Some(input) = k
            .strip_suffix("_file_id")
            .filter(|n| inputs.iter().any(|i| i.name == *n))
        {
            let id = v.as_str().ok_or_else(|| {
                ApiError::bad_request("invalid_parameter", "must be a file id").param(k.clone())
            })?;
            out.inputs
                .push((input.to_owned(), InputSource::File(id.to_owned())));
        } else if RESERVED.contains(&k.as_str()) {
            match k.as_str() {
                "webhook" => {
                    out.webhook = Some(
                        v.as_str()
                            .ok_or_else(|| {
                                ApiError::bad_request("invalid_parameter", "must be a URL string")
                                    .param("webhook")
                            })?
                            .to_owned(),
                    )
                }
                "webhook_events_filter" => {
                    out.webhook_events = Some(match &v {
                        Value::Array(a) => a
                            .iter()
                            .map(|e| e.as_str().unwrap_or("").to_owned())
                            .collect(),
                        Value::String(s) => split_events(s),
                        _ => {
                            return Err(ApiError::bad_request(
                                "invalid_parameter",
                                "must be a list of event names",
                            )
                            .param("webhook_events_filter"));
                        }
                    })
                }
                _ => out.priority = Some(parse_priority(&v)?),
            }
        } else {
            out.params.insert(k, v);
        }
    }
    Ok(out)
}

/// Base64 (standard or URL-safe, padding optional) or a `data:...;base64,` URL.
fn decode_base64(s: &str) -> Result<Bytes, String> {
    let payload = match s.strip_prefix("data:") {
        Some(rest) => {
            rest.split_once(";base64,")
                .ok_or("data: URLs must be base64 encoded")?
                .1
        }
        None => s,
    };
    let clean: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        if let Ok(b) = engine.decode(&clean) {
            return Ok(b.into());
        }
    }
    Err("not valid base64".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_header() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("prefer", v.parse().unwrap());
            prefer_wait(&m, 60)
        };
        assert_eq!(h("wait"), Some(Duration::from_secs(60)));
        assert_eq!(h("wait=5"), Some(Duration::from_secs(5)));
        assert_eq!(h("respond-async, wait=500"), Some(Duration::from_secs(60)));
        assert_eq!(h("respond-async"), None);
        assert_eq!(prefer_wait(&HeaderMap::new(), 60), None);
    }

    #[test]
    fn base64_forms() {
        assert_eq!(&decode_base64("aGk=").unwrap()[..], b"hi");
        assert_eq!(&decode_base64("aGk").unwrap()[..], b"hi");
        assert_eq!(
            &decode_base64("data:image/png;base64,aGk=").unwrap()[..],
            b"hi"
        );
        assert!(decode_base64("data:text/plain,hi").is_err());
        assert!(decode_base64("!!!").is_err());
    }
}
