//! `/v1/jobs`: read, list, cancel, stream events, inspect webhook deliveries.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::auth::Authed;
use super::errors::{ApiError, ErrorBody};
use crate::jobs::events::JobEvent;
use crate::jobs::model::JobStatus;
use crate::jobs::view::JobView;
use crate::webhooks::Delivery;

type Tenant = axum::Extension<Authed>;

/// Get a job.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such job for this tenant", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn get(
    State(st): State<AppState>,
    axum::Extension(Authed(t)): Tenant,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(st.jobs.view(&st.jobs.get(&t.id, &id).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Page size (default 20, capped by limits.max_page_size).
    pub limit: Option<u32>,
    /// Cursor: the last job id of the previous page.
    pub after: Option<String>,
    /// Only jobs in this status.
    pub status: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<JobView>,
    pub has_more: bool,
    /// Pass as `after` to get the next page.
    pub next_cursor: Option<String>,
}

/// List this tenant's jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list(
    State(st): State<AppState>,
    axum::Extension(Authed(t)): Tenant,
    Query(q): Query<ListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let limit = ApiError::page_limit(q.limit, st.config.limits.max_page_size)?;
    let status = match q.status.as_deref() {
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                "must be queued, running, succeeded, failed or canceled",
            )
            .param("status")
        })?),
        None => None,
    };
    let page = st
        .jobs
        .list(&t.id, status, q.after.as_deref(), limit)
        .await?;
    let next_cursor = if page.has_more {
        page.jobs.last().map(|j| j.id.clone())
    } else {
        None
    };
    Ok(Json(JobList {
        object: "list",
        data: page.jobs.iter().map(|j| st.jobs.view(j)).collect(),
        has_more: page.has_more,
        next_cursor,
    }))
}

/// Cancel a job. A queued job is canceled at once and refunded; a running
/// job is asked to stop (the response waits up to 5 s for it). Ended jobs are
/// returned unchanged.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job after the cancel request", body = JobView),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such job for this tenant", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn cancel(
    State(st): State<AppState>,
    axum::Extension(Authed(t)): Tenant,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(st.jobs.view(&st.jobs.cancel(&t.id, &id).await?)))
}

/// Webhook deliveries of a job, with every attempt.
#[utoipa::path(get, path = "/v1/jobs/{id}/webhooks", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Deliveries, oldest first", body = [Delivery]),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such job for this tenant", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn webhooks(
    State(st): State<AppState>,
    axum::Extension(Authed(t)): Tenant,
    Path(id): Path<String>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    let job = st.jobs.get(&t.id, &id).await?;
    Ok(Json(st.jobs.webhooks.deliveries(job.id).await?))
}

/// Server-Sent Events for a job: `status` (the job now), then `queued`
/// (position), `started`, `progress` (fraction, step/tile counts), `log`,
/// and finally `completed` (the ended job); the stream then closes.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "text/event-stream of job events", content_type = "text/event-stream", body = String),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such job for this tenant", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn events(
    State(st): State<AppState>,
    axum::Extension(Authed(t)): Tenant,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let mut rx = st.jobs.events.subscribe(&id);
    let job = match st.jobs.get(&t.id, &id).await {
        Ok(j) => j,
        Err(e) => {
            drop(rx);
            st.jobs.events.release(&id);
            return Err(e.into());
        }
    };
    let (tx, out) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let jobs = st.jobs.clone();
        let send = |e: Event| {
            let tx = tx.clone();
            async move { tx.send(e).await.is_ok() }
        };
        if !send(json("status", &jobs.view(&job))).await {
            return;
        }
        let mut terminal = job.status.is_terminal();
        let mut last_position = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        while !terminal {
            if let Some(p) = jobs.position(&job.id)
                && last_position != Some(p)
            {
                last_position = Some(p);
                if !send(json("queued", &serde_json::json!({ "position": p }))).await {
                    break;
                }
            }
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = tick.tick() => continue,
                _ = tx.closed() => break,
            };
            let ended = match ev {
                Ok(JobEvent::Completed { .. }) | Err(RecvError::Closed) => true,
                Ok(ev) => {
                    let data = match &ev {
                        JobEvent::Progress(p) => serde_json::to_value(p).expect("serializes"),
                        other => serde_json::to_value(other).expect("serializes"),
                    };
                    if !send(json(ev.name(), &data)).await {
                        break;
                    }
                    false
                }
                Err(RecvError::Lagged(_)) => false,
            };
            if ended {
                match jobs.get(&job.tenant_id, &job.id).await {
                    Ok(j) if j.status.is_terminal() => {
                        send(json("completed", &jobs.view(&j))).await;
                    }
                    _ => {}
                }
                terminal = true;
            }
        }
        if job.status.is_terminal() {
            send(json("completed", &jobs.view(&job))).await;
        }
        drop(rx);
        jobs.events.release(&job.id);
    });
    let stream = futures_util::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|e| (Ok(e), out))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn json<T: Serialize>(name: &str, v: &T) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(v).expect("event data serializes"))
}
