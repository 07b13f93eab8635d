//! The job core: submit, run, cancel, wait, recover. It knows tasks, storage,
//! tenants' credits and webhooks, and nothing about HTTP: the API (and later
//! other dialects) map requests onto [`Jobs`].

pub mod events;
pub mod model;
pub mod pipelines;
mod plugin_models;
pub mod plugins;
pub mod scheduler;
pub mod store;
pub mod view;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::ErrorCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::RecvError;

use crate::config::{JobsConfig, Limits};
use crate::db::{Db, DbError};
use crate::ids;
use crate::metrics::Metrics;
use crate::storage::files::{self, FileError, FileKind, FileRecord, Files, NewFile};
use crate::tasks::image_io::{self, ImageLimits};
use crate::tasks::{ModelCache, ParamError, Registry, params};
use crate::tenants::{Tenant, ledger};
use crate::webhooks::{self, Webhooks, ssrf};
use events::{EventBus, JobEvent};
use model::*;
use scheduler::{QueuedJob, Scheduler};
use view::{JobView, Urls};

pub use plugin_models::PluginModels;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no task named `{0}`")]
    UnknownTask(String),
    #[error("{0}")]
    InvalidParam(ParamError),
    #[error("{message}")]
    InvalidInput {
        code: &'static str,
        param: String,
        message: String,
    },
    #[error("file {id} not found")]
    FileNotFound { param: String, id: String },
    #[error("this job costs {needed} credits; the balance is {balance}")]
    InsufficientCredits { needed: i64, balance: i64 },
    #[error("the job queue is full ({0} jobs); try again later")]
    QueueFull(usize),
    #[error("this tenant already has {0} queued jobs, the most allowed; wait for some to finish")]
    TenantQueueFull(usize),
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyMismatch,
    #[error("job {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Files(#[from] FileError),
}

impl From<rusqlite::Error> for JobError {
    fn from(e: rusqlite::Error) -> Self {
        JobError::Db(e.into())
    }
}

fn bad_param(param: &str, message: impl Into<String>) -> JobError {
    JobError::InvalidParam(ParamError {
        param: param.to_owned(),
        message: message.into(),
    })
}

/// Where one task input comes from.
pub enum InputSource {
    /// Bytes sent with the request (multipart file or base64).
    Bytes {
        bytes: Bytes,
        filename: Option<String>,
    },
    /// A file uploaded earlier with `POST /v1/files`.
    File(String),
}

/// A request for a job, independent of how it arrived.
pub struct SubmitRequest {
    pub task: String,
    pub inputs: Vec<(String, InputSource)>,
    pub params: serde_json::Map<String, Value>,
    /// 0..=9 (default 5): order among this tenant's queued jobs.
    pub priority: Option<i64>,
    pub webhook: Option<String>,
    pub webhook_events: Option<Vec<String>>,
    pub idempotency_key: Option<String>,
}

pub enum Submitted {
    Created(Job),
    /// The same Idempotency-Key and request were seen before: that job.
    Replayed(Job),
}

/// A page of jobs.
pub struct Page {
    pub jobs: Vec<Job>,
    pub has_more: bool,
}

/// Everything the core needs, built once by the server.
pub struct JobsDeps {
    pub db: Db,
    pub files: Files,
    pub registry: Registry,
    pub webhooks: Arc<Webhooks>,
    pub metrics: Arc<Metrics>,
    pub gpu: Result<easel_kernels::Gpu, String>,
    pub models: Arc<ModelCache>,
    pub limits: Limits,
    pub config: JobsConfig,
    pub urls: Urls,
}

pub struct Jobs {
    pub db: Db,
    pub files: Files,
    pub registry: Registry,
    pub webhooks: Arc<Webhooks>,
    pub metrics: Arc<Metrics>,
    pub gpu: Result<easel_kernels::Gpu, String>,
    pub models: Arc<ModelCache>,
    pub limits: Limits,
    pub config: JobsConfig,
    pub urls: Urls,
    pub sched: Scheduler,
    pub events: EventBus,
    /// Cancel flags of running jobs.
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
    draining: AtomicBool,
    /// The tenant-plugin host, once the server connects it ([`Jobs::set_plugins`]).
    plugins: std::sync::OnceLock<crate::plugins::PluginHost>,
}

/// What start-up recovery found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recovery {
    pub requeued: usize,
    pub failed: usize,
    pub queued: usize,
}

impl Jobs {
    pub fn new(d: JobsDeps) -> Arc<Jobs> {
        let sched = Scheduler::new(d.config.gpu_concurrency, d.config.cpu_concurrency);
        Arc::new(Jobs {
            db: d.db,
            files: d.files,
            registry: d.registry,
            webhooks: d.webhooks,
            metrics: d.metrics,
            gpu: d.gpu,
            models: d.models,
            limits: d.limits,
            config: d.config,
            urls: d.urls,
            sched,
            events: EventBus::default(),
            running: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            plugins: Default::default(),
        })
    }

    pub fn image_limits(&self) -> ImageLimits {
        ImageLimits {
            max_pixels: self.limits.max_pixels,
            max_dimension: self.limits.max_dimension,
            decode_timeout: Duration::from_millis(self.limits.decode_timeout_ms),
        }
    }

    pub fn view(&self, job: &Job) -> JobView {
        JobView::new(job, &self.urls)
    }

    /// Checks and records a job, reserving its credits; it is then queued.
    pub async fn submit(&self, tenant: &Tenant, req: SubmitRequest) -> Result<Submitted, JobError> {
        let task = self
            .registry
            .get(&req.task)
            .ok_or_else(|| JobError::UnknownTask(req.task.clone()))?;
        let params = params::validate(task.name(), &task.params(), &req.params)
            .map_err(JobError::InvalidParam)?;
        let input_names: Vec<&str> = req.inputs.iter().map(|(n, _)| n.as_str()).collect();
        task.check(&params, &input_names)
            .map_err(JobError::InvalidParam)?;
        let priority = req.priority.unwrap_or(5);
        if !(0..=9).contains(&priority) {
            return Err(bad_param(
                "priority",
                format!("must be between 0 and 9, got {priority}"),
            ));
        }
        if let Some(u) = &req.webhook {
            let url = ssrf::parse(u).map_err(|e| bad_param("webhook", e.to_string()))?;
            ssrf::resolve(&url, self.webhooks.allow_private())
                .await
                .map_err(|e| bad_param("webhook", e.to_string()))?;
        }
        let webhook_events = match (&req.webhook, &req.webhook_events) {
            (_, None) => vec![WebhookEvent::Completed],
            (None, Some(_)) => {
                return Err(bad_param(
                    "webhook_events_filter",
                    "given without a webhook URL",
                ));
            }
            (Some(_), Some(list)) => {
                let mut v = Vec::new();
                for s in list {
                    let e = WebhookEvent::parse(s).ok_or_else(|| {
                        bad_param(
                            "webhook_events_filter",
                            format!("`{s}` is not one of start, progress, completed"),
                        )
                    })?;
                    if !v.contains(&e) {
                        v.push(e);
                    }
                }
                v
            }
        };

        // Inputs: names the task knows, required ones present, images within limits.
        let specs = task.inputs();
        for (i, (name, _)) in req.inputs.iter().enumerate() {
            if !specs.iter().any(|s| s.name == name) {
                let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
                return Err(JobError::InvalidInput {
                    code: "unknown_input",
                    param: name.clone(),
                    message: format!(
                        "task `{}` takes no input `{name}` (inputs: {})",
                        task.name(),
                        known.join(", ")
                    ),
                });
            }
            if req.inputs[..i].iter().any(|(n, _)| n == name) {
                return Err(JobError::InvalidInput {
                    code: "duplicate_input",
                    param: name.clone(),
                    message: format!("input `{name}` given more than once"),
                });
            }
        }
        for s in specs.iter().filter(|s| s.required) {
            if !req.inputs.iter().any(|(n, _)| n == s.name) {
                return Err(JobError::InvalidInput {
                    code: "missing_input",
                    param: s.name.to_owned(),
                    message: format!(
                        "task `{t}` needs an `{n}` input: a multipart file `{n}`, base64 in `{n}`, or `{n}_file_id`",
                        t = task.name(),
                        n = s.name
                    ),
                });
            }
        }
        let limits = self.image_limits();
        let mut fresh = Vec::new();
        let mut existing = Vec::new();
        let mut fingerprint = Vec::new();
        for (name, src) in req.inputs {
            let invalid = |e: image_io::ImageError, param: String| JobError::InvalidInput {
                code: e.code,
                param,
                message: e.message,
            };
            match src {
                InputSource::Bytes { bytes, filename } => {
                    let probe =
                        image_io::probe(&bytes, &limits).map_err(|e| invalid(e, name.clone()))?;
                    fingerprint.push(json!([name, hex::encode(Sha256::digest(&bytes))]));
                    fresh.push((name, bytes, filename, probe));
                }
                InputSource::File(id) => {
                    let param = format!("{name}_file_id");
                    let rec = if ids::is_id(&id, "file") {
                        self.files.get(id.clone(), Some(tenant.id.clone())).await
                    } else {
                        Err(FileError::NotFound(id.clone()))
                    };
                    let rec = match rec {
                        Err(FileError::NotFound(_)) => {
                            return Err(JobError::FileNotFound { param, id });
                        }
                        r => r?,
                    };
                    if let (Some(w), Some(h)) = (rec.width, rec.height) {
                        check_dims(w, h, &limits).map_err(|e| invalid(e, param.clone()))?;
                    }
                    fingerprint.push(json!([name, rec.sha256]));
                    existing.push((name, rec));
                }
            }
        }
        let request_hash = hex::encode(Sha256::digest(
            json!({
                "task": task.name(), "params": params, "inputs": fingerprint, "priority": priority,
                "webhook": req.webhook, "events": webhook_events,
            })
            .to_string(),
        ));

        let tenant_id = tenant.id.clone();
        if let Some(key) = &req.idempotency_key {
            if key.is_empty() || key.len() > 255 {
                return Err(bad_param("Idempotency-Key", "must be 1 to 255 characters"));
            }
            let (t, k) = (tenant_id.clone(), key.clone());
            if let Some(j) = self
                .db
                .call(move |c| store::by_idempotency_key(c, &t, &k))
                .await?
            {
                return replay(j, &request_hash);
            }
        }
        let depth = self.sched.depth();
        if depth.gpu_queued + depth.cpu_queued >= self.config.max_queued {
            return Err(JobError::QueueFull(self.config.max_queued));
        }
        if self.sched.queued_for(&tenant.id) >= self.config.max_queued_per_tenant {
            return Err(JobError::TenantQueueFull(self.config.max_queued_per_tenant));
        }

        let job_id = ids::new_id("job");
        let mut new_files: Vec<FileRecord> = Vec::new();
        let mut inputs = Vec::new();
        for (name, bytes, filename, probe) in fresh {
            let new = NewFile {
                tenant_id: tenant_id.clone(),
                kind: FileKind::Input,
                job_id: Some(job_id.clone()),
                filename,
                content_type: image_io::content_type(probe.format).to_owned(),
                width: Some(probe.width),
                height: Some(probe.height),
            };
            match self.files.put_blob(new, bytes).await {
                Ok(rec) => {
                    inputs.push(JobInput {
                        name,
                        file_id: rec.id.clone(),
                    });
                    new_files.push(rec);
                }
                Err(e) => {
                    self.delete_blobs(&new_files).await;
                    return Err(e.into());
                }
            }
        }
        inputs.extend(existing.into_iter().map(|(name, rec)| JobInput {
            name,
            file_id: rec.id,
        }));

        let cost = self.registry.cost(task.as_ref()) as i64;
        let mut job = Job {
            seq: 0,
            id: job_id,
            tenant_id: tenant_id.clone(),
            task: task.name().to_owned(),
            status: JobStatus::Queued,
            priority,
            params,
            inputs,
            outputs: vec![],
            error: None,
            progress: None,
            logs: String::new(),
            attempts: 0,
            credits: cost,
            credits_state: CreditsState::Reserved,
            idempotency_key: req.idempotency_key.clone(),
            request_hash: request_hash.clone(),
            webhook_url: req.webhook.clone(),
            webhook_events,
            created_at: ids::now_ms(),
            started_at: None,
            finished_at: None,
            plugin_steps: vec![],
        };

        enum Outcome {
            Inserted(i64),
            Broke { balance: i64 },
            Duplicate,
        }
        let (j, recs) = (job.clone(), new_files.clone());
        let outcome = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                for r in &recs {
                    files::insert(&tx, r)?;
                }
                if j.credits > 0 {
                    let charge =
                        ledger::Change::new(&j.tenant_id, -j.credits, ledger::Reason::JobCharge)
                            .job(&j.id, &j.task);
                    if !ledger::apply(&tx, &charge)? {
                        let balance = tx.query_row(
                            "SELECT credits FROM tenants WHERE id = ?1",
                            [&j.tenant_id],
                            |r| r.get(0),
                        )?;
                        return Ok::<_, JobError>(Outcome::Broke { balance });
                    }
                }
                let seq = match store::insert(&tx, &j) {
                    Ok(seq) => seq,
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == ErrorCode::ConstraintViolation =>
                    {
                        return Ok(Outcome::Duplicate);
                    }
                    Err(e) => return Err(e.into()),
                };
                tx.commit()?;
                Ok(Outcome::Inserted(seq))
            })
            .await;
        match outcome {
            Ok(Outcome::Inserted(seq)) => job.seq = seq,
            Ok(Outcome::Broke { balance }) => {
                self.delete_blobs(&new_files).await;
                return Err(JobError::InsufficientCredits {
                    needed: cost,
                    balance,
                });
            }
            Ok(Outcome::Duplicate) => {
                // A concurrent request with the same key won the race.
                self.delete_blobs(&new_files).await;
                let key = req.idempotency_key.clone().unwrap_or_default();
                let existing = self
                    .db
                    .call(move |c| store::by_idempotency_key(c, &tenant_id, &key))
                    .await?;
                return match existing {
                    Some(j) => replay(j, &request_hash),
                    None => Err(JobError::Db(DbError::Corrupt(
                        "idempotency conflict without a job".into(),
                    ))),
                };
            }
            Err(e) => {
                self.delete_blobs(&new_files).await;
                return Err(e);
            }
        }
        self.sched.push(QueuedJob {
            id: job.id.clone(),
            tenant_id: job.tenant_id.clone(),
            tenant_priority: tenant.priority,
            priority,
            seq: job.seq,
            gpu: task.needs_gpu(),
        });
        Ok(Submitted::Created(job))
    }

    async fn delete_blobs(&self, recs: &[FileRecord]) {
        for r in recs {
            let _ = self.files.blobs.delete(&r.key()).await;
        }
    }

    /// `tenant`'s job `id`; another tenant's job is "not found".
    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<Job, JobError> {
        if !ids::is_id(id, "job") {
            return Err(JobError::NotFound(id.to_owned()));
        }
        let i = id.to_owned();
        let job = self.db.call(move |c| store::get(c, &i)).await?;
        job.filter(|j| j.tenant_id == tenant_id)
            .ok_or_else(|| JobError::NotFound(id.to_owned()))
    }

    /// Newest first; `after` is the last job id of the previous page.
    pub async fn list(
        &self,
        tenant_id: &str,
        status: Option<JobStatus>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page, JobError> {
        let before = match after {
            Some(a) => Some(
                self.get(tenant_id, a)
                    .await
                    .map_err(|_| bad_param("after", format!("no job {a}")))?
                    .seq,
            ),
            None => None,
        };
        let t = tenant_id.to_owned();
        let mut jobs = self
            .db
            .call(move |c| store::list(c, &t, status, before, limit + 1))
            .await?;
        let has_more = jobs.len() > limit as usize;
        jobs.truncate(limit as usize);
        Ok(Page { jobs, has_more })
    }

    /// Cancels a queued job at once (refunding its credits), or asks a running
    /// one to stop and waits briefly for it. Ended jobs are returned as they are.
    pub async fn cancel(&self, tenant_id: &str, id: &str) -> Result<Job, JobError> {
        let job = self.get(tenant_id, id).await?;
        if job.status == JobStatus::Queued {
            self.sched.remove(id);
            let failure = JobFailure {
                code: "canceled".into(),
                message: "canceled by request".into(),
            };
            if let Some(j) = self
                .finish(
                    id,
                    JobStatus::Queued,
                    JobStatus::Canceled,
                    vec![],
                    Some(failure),
                    None,
                    vec![],
                )
                .await?
            {
                return Ok(j);
            }
            // It started in between: cancel it as a running job.
        }
        let flag = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        match flag {
            Some(f) => {
                f.store(true, Ordering::Relaxed);
                self.wait(tenant_id, id, Duration::from_secs(5)).await
            }
            None => self.get(tenant_id, id).await,
        }
    }

    /// The job once it has ended, or as it stands after `timeout`.
    pub async fn wait(
        &self,
        tenant_id: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<Job, JobError> {
        let mut rx = self.events.subscribe(id);
        let job = match self.get(tenant_id, id).await {
            Ok(j) => j,
            Err(e) => {
                drop(rx);
                self.events.release(id);
                return Err(e);
            }
        };
        if !job.status.is_terminal() && !timeout.is_zero() {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Ok(JobEvent::Completed { .. })) | Ok(Err(RecvError::Closed)) | Err(_) => {
                        break;
                    }
                    Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
                }
            }
        }
        drop(rx);
        self.events.release(id);
        if job.status.is_terminal() {
            Ok(job)
        } else {
            self.get(tenant_id, id).await
        }
    }

    /// Ends a job `from` → `to` in one transaction (with its output records,
    /// credit movement and `completed` webhook), then tells listeners.
    /// `None` when the job was not in `from`.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        id: &str,
        from: JobStatus,
        to: JobStatus,
        outputs: Vec<JobOutput>,
        error: Option<JobFailure>,
        logs: Option<String>,
        output_files: Vec<FileRecord>,
    ) -> Result<Option<Job>, JobError> {
        let i = id.to_owned();
        let urls = self.urls.clone();
        let done = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                for r in &output_files {
                    files::insert(&tx, r)?;
                }
                let now = ids::now_ms();
                if !store::finish(
                    &tx,
                    &i,
                    from,
                    to,
                    &outputs,
                    error.as_ref(),
                    logs.as_deref(),
                    now,
                )? {
                    return Ok::<_, JobError>(None);
                }
                let job = store::get(&tx, &i)?.ok_or_else(|| JobError::NotFound(i.clone()))?;
                if let Some(url) = &job.webhook_url
                    && job.webhook_events.contains(&WebhookEvent::Completed)
                {
                    let data = serde_json::to_value(JobView::new(&job, &urls)).expect("serializes");
                    webhooks::enqueue(
                        &tx,
                        &job.id,
                        &job.tenant_id,
                        WebhookEvent::Completed,
                        url,
                        &data,
                    )?;
                }
                tx.commit()?;
                Ok(Some(job))
            })
            .await?;
        if let Some(job) = &done {
            let m = &self.metrics;
            m.jobs_finished
                .with_label_values(&[
                    job.task.as_str(),
                    job.tenant_id.as_str(),
                    job.status.as_str(),
                ])
                .inc();
            if let (Some(s), Some(f)) = (job.started_at, job.finished_at) {
                m.job_duration
                    .with_label_values(&[
                        job.task.as_str(),
                        job.tenant_id.as_str(),
                        job.status.as_str(),
                    ])
                    .observe((f - s) as f64 / 1000.0);
            }
            if job.credits_state == CreditsState::Charged && job.credits > 0 {
                m.credits_charged
                    .with_label_values(&[&job.tenant_id])
                    .inc_by(job.credits as u64);
            }
            // After the metrics: a waiter woken by this may read them at once.
            self.events
                .publish(&job.id, JobEvent::Completed { status: job.status });
            self.webhooks.wake();
        }
        Ok(done)
    }

    /// Recovers from the last run and starts dispatching. Jobs found running
    /// were interrupted: they are queued again while they have attempts left
    /// (their log says so), else failed with `interrupted` and refunded.
    pub async fn start(self: &Arc<Self>) -> Result<Recovery, JobError> {
        let mut rec = Recovery::default();
        let running = self
            .db
            .call(|c| store::with_status(c, JobStatus::Running))
            .await?;
        for (job, _) in running {
            if job.attempts < self.config.max_attempts {
                let note = format!(
                    "[{}] the server stopped during attempt {}; queued again (attempt {} of {} next)\n",
                    ids::rfc3339(ids::now_ms()),
                    job.attempts,
                    job.attempts + 1,
                    self.config.max_attempts
                );
                let id = job.id.clone();
                self.db
                    .call(move |c| store::requeue_interrupted(c, &id, &note))
                    .await?;
                rec.requeued += 1;
            } else {
                let failure = JobFailure {
                    code: "interrupted".into(),
                    message: format!(
                        "the server stopped while this job was running (attempt {} of {}); not retried",
                        job.attempts, self.config.max_attempts
                    ),
                };
                self.finish(
                    &job.id,
                    JobStatus::Running,
                    JobStatus::Failed,
                    vec![],
                    Some(failure),
                    None,
                    vec![],
                )
                .await?;
                rec.failed += 1;
            }
        }
        let queued = self
            .db
            .call(|c| store::with_status(c, JobStatus::Queued))
            .await?;
        for (job, tenant_priority) in queued {
            match self.registry.get(&job.task) {
                Some(task) => {
                    self.sched.push(QueuedJob {
                        id: job.id.clone(),
                        tenant_id: job.tenant_id.clone(),
                        tenant_priority,
                        priority: job.priority,
                        seq: job.seq,
                        gpu: task.needs_gpu(),
                    });
                    rec.queued += 1;
                }
                None => {
                    let failure = JobFailure {
                        code: "unknown_task".into(),
                        message: format!(
                            "task `{}` is no longer available on this server",
                            job.task
                        ),
                    };
                    self.finish(
                        &job.id,
                        JobStatus::Queued,
                        JobStatus::Failed,
                        vec![],
                        Some(failure),
                        None,
                        vec![],
                    )
                    .await?;
                    rec.failed += 1;
                }
            }
        }
        self.spawn_dispatcher();
        Ok(rec)
    }

    fn spawn_dispatcher(self: &Arc<Self>) {
        let jobs = self.clone();
        tokio::spawn(async move {
            loop {
                if jobs.draining.load(Ordering::Relaxed) {
                    break;
                }
                while let Some(q) = jobs.sched.next() {
                    let j = jobs.clone();
                    tokio::spawn(async move { j.run(q).await });
                }
                jobs.sched.changed().await;
            }
        });
    }

    /// Stops starting jobs and waits (up to `grace`) for running ones to end.
    /// Queued jobs stay queued in the database for the next start.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.draining.store(true, Ordering::Relaxed);
        self.sched.wake();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let d = self.sched.depth();
            if d.gpu_running + d.cpu_running == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Jobs ahead of `id` in its lane, while it is queued.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.sched.position(id)
    }

    /// Updates the gauges that are sampled rather than counted.
    pub fn refresh_gauges(&self) {
        let d = self.sched.depth();
        let m = &self.metrics;
        m.queue_depth
            .with_label_values(&["gpu"])
            .set(d.gpu_queued as i64);
        m.queue_depth
            .with_label_values(&["cpu"])
            .set(d.cpu_queued as i64);
        m.jobs_running
            .with_label_values(&["gpu"])
            .set(d.gpu_running as i64);
        m.jobs_running
            .with_label_values(&["cpu"])
            .set(d.cpu_running as i64);
        if let Ok(gpu) = &self.gpu {
            let s = gpu.memory_stats();
            m.gpu_memory
                .with_label_values(&["live"])
                .set(s.bytes_live as i64);
            m.gpu_memory
                .with_label_values(&["pooled"])
                .set(s.bytes_pooled as i64);
            m.gpu_memory
                .with_label_values(&["peak"])
                .set(s.peak_bytes as i64);
        }
        m.gpu_memory
            .with_label_values(&["models"])
            .set(self.models.resident_bytes() as i64);
    }
}

fn replay(job: Job, request_hash: &str) -> Result<Submitted, JobError> {
    if job.request_hash == request_hash {
        Ok(Submitted::Replayed(job))
    } else {
        Err(JobError::IdempotencyMismatch)
    }
}

fn check_dims(w: u32, h: u32, limits: &ImageLimits) -> Result<(), image_io::ImageError> {
    if w > limits.max_dimension
        || h > limits.max_dimension
        || u64::from(w) * u64::from(h) > limits.max_pixels
    {
        return Err(image_io::ImageError {
            code: "image_too_large",
            message: format!(
                "image is {w}x{h}; limits are {} per side and {} pixels",
                limits.max_dimension, limits.max_pixels
            ),
        });
    }
    Ok(())
}
