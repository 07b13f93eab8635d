//! The job as clients see it (API responses, SSE `completed`, webhook
//! payloads): times as RFC 3339, outputs with fresh signed URLs.

use serde::Serialize;

use super::model::*;
use crate::ids;
use crate::storage::signing::UrlSigner;
use crate::tasks::Progress;

/// Builds client-facing URLs: relative to the server, or absolute under
/// `public_url` when configured.
#[derive(Clone)]
pub struct Urls {
    pub signer: UrlSigner,
    pub base: String,
}

impl Urls {
    pub fn new(signer: UrlSigner, public_url: Option<&str>) -> Self {
        Urls {
            signer,
            base: public_url.unwrap_or("").trim_end_matches('/').to_owned(),
        }
    }
    pub fn path(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }
    pub fn file(&self, id: &str) -> String {
        self.path(&self.signer.sign(id, ids::now_ms() / 1000))
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OutputView {
    pub file_id: String,
    /// Signed download URL (relative to the server unless `public_url` is set); expires.
    pub url: String,
    pub content_type: String,
    pub bytes: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InputView {
    pub name: String,
    pub file_id: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobUrls {
    pub get: String,
    pub cancel: String,
    pub events: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    /// Always `job`.
    pub object: &'static str,
    pub task: String,
    pub status: JobStatus,
    pub priority: i64,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub progress: Option<Progress>,
    /// The effective parameters, defaults included.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    pub inputs: Vec<InputView>,
    pub outputs: Vec<OutputView>,
    /// Set when `status` is `failed` (or `canceled`).
    pub error: Option<JobFailure>,
    /// Times the job was started; above 1 when a crash interrupted a run.
    pub attempts: u32,
    pub credits: i64,
    pub credits_state: CreditsState,
    pub logs: String,
    pub webhook: Option<String>,
    pub webhook_events_filter: Vec<WebhookEvent>,
    pub urls: JobUrls,
    /// Each tenant plugin step the job ran (router, preprocess, postprocess): which plugin
    /// and version, wall time, fuel, and the error that ended it.
    pub plugins: Vec<super::plugins::PluginStep>,
}

impl JobView {
    pub fn new(j: &Job, urls: &Urls) -> JobView {
        JobView {
            id: j.id.clone(),
            object: "job",
            task: j.task.clone(),
            status: j.status,
            priority: j.priority,
            created_at: ids::rfc3339(j.created_at),
            started_at: j.started_at.map(ids::rfc3339),
            completed_at: j.finished_at.map(ids::rfc3339),
            progress: j.progress.clone(),
            params: serde_json::to_value(&j.params).expect("params serialize"),
            inputs: j
                .inputs
                .iter()
                .map(|i| InputView {
                    name: i.name.clone(),
                    file_id: i.file_id.clone(),
                })
                .collect(),
            outputs: j
                .outputs
                .iter()
                .map(|o| OutputView {
                    file_id: o.file_id.clone(),
                    url: urls.file(&o.file_id),
                    content_type: o.content_type.clone(),
                    bytes: o.bytes,
                    width: o.width,
                    height: o.height,
                })
                .collect(),
            error: j.error.clone(),
            plugins: j.plugin_steps.clone(),
            attempts: j.attempts,
            credits: j.credits,
            credits_state: j.credits_state,
            logs: j.logs.clone(),
            webhook: j.webhook_url.clone(),
            webhook_events_filter: j.webhook_events.clone(),
            urls: JobUrls {
                get: urls.path(&format!("/v1/jobs/{}", j.id)),
                cancel: urls.path(&format!("/v1/jobs/{}/cancel", j.id)),
                events: urls.path(&format!("/v1/jobs/{}/events", j.id)),
            },
        }
    }
}
