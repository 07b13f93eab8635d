//! The job record and its states.

use serde::{Deserialize, Serialize};

use crate::tasks::{Params, Progress};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }
    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "canceled" => JobStatus::Canceled,
            _ => return None,
        })
    }
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled
        )
    }
}

/// What happened to the credits a job reserved at submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CreditsState {
    /// Held while the job is queued or running.
    Reserved,
    /// Kept: the job succeeded.
    Charged,
    /// Returned: the job failed or was canceled.
    Refunded,
}

impl CreditsState {
    pub fn as_str(self) -> &'static str {
        match self {
            CreditsState::Reserved => "reserved",
            CreditsState::Charged => "charged",
            CreditsState::Refunded => "refunded",
        }
    }
    pub fn parse(s: &str) -> CreditsState {
        match s {
            "charged" => CreditsState::Charged,
            "refunded" => CreditsState::Refunded,
            _ => CreditsState::Reserved,
        }
    }
}

/// Webhook events a job can send (`webhook_events_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookEvent {
    Start,
    Progress,
    Completed,
}

impl WebhookEvent {
    pub fn parse(s: &str) -> Option<WebhookEvent> {
        match s.trim() {
            "start" => Some(WebhookEvent::Start),
            "progress" => Some(WebhookEvent::Progress),
            "completed" => Some(WebhookEvent::Completed),
            _ => None,
        }
    }
    /// The `type` field of the webhook payload.
    pub fn type_name(self) -> &'static str {
        match self {
            WebhookEvent::Start => "job.started",
            WebhookEvent::Progress => "job.progress",
            WebhookEvent::Completed => "job.completed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInput {
    pub name: String,
    pub file_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOutput {
    pub file_id: String,
    pub content_type: String,
    pub bytes: i64,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobFailure {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub seq: i64,
    pub id: String,
    pub tenant_id: String,
    pub task: String,
    pub status: JobStatus,
    pub priority: i64,
    pub params: Params,
    pub inputs: Vec<JobInput>,
    pub outputs: Vec<JobOutput>,
    pub error: Option<JobFailure>,
    pub progress: Option<Progress>,
    pub logs: String,
    pub attempts: u32,
    pub credits: i64,
    pub credits_state: CreditsState,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub webhook_url: Option<String>,
    pub webhook_events: Vec<WebhookEvent>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The tenant plugins the job ran through (router, processors), in order.
    pub plugin_steps: Vec<super::plugins::PluginStep>,
}
