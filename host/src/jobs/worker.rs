//! Running one job: start it, feed the task its inputs on a blocking thread,
//! store its outputs, and end it as succeeded, failed or canceled. Whatever
//! happens to the task (error, panic, timeout, cancel) the job ends with a
//! recorded reason; only a crash of the whole process leaves it `running`,
//! and start-up recovery handles that.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::events::JobEvent;
use super::model::*;
use super::scheduler::QueuedJob;
use super::view::JobView;
use super::{JobError, Jobs, store};
use crate::ids;
use crate::storage::files::{FileKind, NewFile};
use crate::tasks::{Input, Progress, ProgressSink, TaskError};
use crate::webhooks;

/// Job logs kept in the record; older lines are dropped beyond this.
const MAX_LOG_BYTES: usize = 64 * 1024;

impl Jobs {
    pub(super) async fn run(self: Arc<Self>, q: QueuedJob) {
        // A running job keeps its tenant active for the plugin host's fairness.
        let _active = self.plugins.get().map(|h| h.activity().enter(&q.tenant_id));
        let flag = Arc::new(AtomicBool::new(false));
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(q.id.clone(), flag.clone());
        if let Err(e) = self.run_inner(&q, flag).await {
            // The record could not be updated (database or storage down):
            // the job stays as the database has it and recovery picks it up.
            tracing::error!("job {}: {e}", q.id);
        }
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&q.id);
        self.sched.finished(q.gpu);
    }

    async fn run_inner(
        self: &Arc<Self>,
        q: &QueuedJob,
        canceled: Arc<AtomicBool>,
    ) -> Result<(), JobError> {
        let id = q.id.clone();
        let urls = self.urls.clone();
        let job = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                if !store::mark_running(&tx, &id, ids::now_ms())? {
                    return Ok::<_, JobError>(None);
                }
                let job = store::get(&tx, &id)?.ok_or_else(|| JobError::NotFound(id.clone()))?;
                if let Some(url) = &job.webhook_url
                    && job.webhook_events.contains(&WebhookEvent::Start)
                {
                    let data = serde_json::to_value(JobView::new(&job, &urls)).expect("serializes");
                    webhooks::enqueue(
                        &tx,
                        &job.id,
                        &job.tenant_id,
                        WebhookEvent::Start,
                        url,
                        &data,
                    )?;
                }
                tx.commit()?;
                Ok(Some(job))
            })
            .await?;
        let Some(job) = job else { return Ok(()) }; // canceled while queued
        if job.webhook_events.contains(&WebhookEvent::Start) {
            self.webhooks.wake();
        }
        if let Some(s) = job.started_at {
            self.metrics
                .job_queue_wait
                .with_label_values(&[&job.task])
                .observe((s - job.created_at).max(0) as f64 / 1000.0);
        }
        self.events.publish(
            &job.id,
            JobEvent::Started {
                attempt: job.attempts,
            },
        );

        let sink = Arc::new(JobSink::new(self.clone(), &job));
        let outcome = self.execute(&job, sink.clone(), canceled.clone()).await;
        let logs = Some(sink.take_logs());
        let fail = |code: &str, message: String| {
            Some(JobFailure {
                code: code.into(),
                message,
            })
        };
        match outcome {
            Ok(outputs) if !canceled.load(Ordering::Relaxed) => {
                let mut recs = Vec::with_capacity(outputs.len());
                for o in outputs {
                    let new = NewFile {
                        tenant_id: job.tenant_id.clone(),
                        kind: FileKind::Output,
                        job_id: Some(job.id.clone()),
                        filename: None,
                        content_type: o.content_type.clone(),
                        width: o.width,
                        height: o.height,
                    };
                    match self.files.put_blob(new, o.bytes).await {
                        Ok(r) => recs.push(r),
                        Err(e) => {
                            for r in &recs {
                                let _ = self.files.blobs.delete(&r.key()).await;
                            }
                            let f =
                                fail("storage_error", format!("could not store the output: {e}"));
                            self.finish(
                                &job.id,
                                JobStatus::Running,
                                JobStatus::Failed,
                                vec![],
                                f,
                                logs,
                                vec![],
                            )
                            .await?;
                            return Ok(());
                        }
                    }
                }
                let outs = recs
                    .iter()
                    .map(|r| JobOutput {
                        file_id: r.id.clone(),
                        content_type: r.content_type.clone(),
                        bytes: r.bytes,
                        width: r.width,
                        height: r.height,
                    })
                    .collect();
                self.finish(
                    &job.id,
                    JobStatus::Running,
                    JobStatus::Succeeded,
                    outs,
                    None,
                    logs,
                    recs,
                )
                .await?;
            }
            Ok(_) | Err(Failure::Task(TaskError::Canceled)) => {
                let f = fail("canceled", "canceled by request while running".into());
                self.finish(
                    &job.id,
                    JobStatus::Running,
                    JobStatus::Canceled,
                    vec![],
                    f,
                    logs,
                    vec![],
                )
                .await?;
            }
            Err(Failure::Task(e)) => {
                let f = fail(e.code(), e.to_string());
                self.finish(
                    &job.id,
                    JobStatus::Running,
                    JobStatus::Failed,
                    vec![],
                    f,
                    logs,
                    vec![],
                )
                .await?;
            }
            Err(Failure::Other(code, message)) => {
                self.finish(
                    &job.id,
                    JobStatus::Running,
                    JobStatus::Failed,
                    vec![],
                    fail(code, message),
                    logs,
                    vec![],
                )
                .await?;
            }
            Err(Failure::Model(e)) => {
                self.finish(
                    &job.id,
                    JobStatus::Running,
                    JobStatus::Failed,
                    vec![],
                    fail(&e.code, e.message),
                    logs,
                    vec![],
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn execute(
        &self,
        job: &Job,
        sink: Arc<JobSink>,
        canceled: Arc<AtomicBool>,
    ) -> Result<Vec<crate::tasks::Output>, Failure> {
        let task = self.registry.get(&job.task).ok_or_else(|| {
            Failure::Other(
                "unknown_task",
                format!("task `{}` is not available on this server", job.task),
            )
        })?;
        if task.needs_gpu()
            && let Err(e) = &self.gpu
        {
            return Err(Failure::Task(TaskError::GpuUnavailable(e.clone())));
        }
        let mut inputs = Vec::with_capacity(job.inputs.len());
        for i in &job.inputs {
            let rec = self
                .files
                .get(i.file_id.clone(), Some(job.tenant_id.clone()))
                .await
                .map_err(|e| {
                    Failure::Other(
                        "input_missing",
                        format!("input `{}` ({}): {e}", i.name, i.file_id),
                    )
                })?;
            let bytes = self.files.read(&rec).await.map_err(|e| {
                Failure::Other(
                    "input_missing",
                    format!("input `{}` ({}): {e}", i.name, i.file_id),
                )
            })?;
            inputs.push(Input {
                name: i.name.clone(),
                bytes,
                content_type: rec.content_type,
            });
        }
        self.run_pipeline(job, task, inputs, sink, canceled).await
    }
}

pub(super) enum Failure {
    Task(TaskError),
    Other(&'static str, String),
    /// A plugin's `models.run` call failed (or was refused) and the plugin returned that
    /// error unchanged: the job fails with the run's own code.
    Model(crate::plugins::ModelRunError),
}

struct SinkState {
    logs: String,
    last_save: Option<Instant>,
    last_webhook: Option<Instant>,
}

/// Receives a running task's progress and logs: publishes them live, saves
/// them to the record at most every 250 ms, and sends `progress` webhooks
/// (at most one a second) when the job asked for them.
pub(super) struct JobSink {
    jobs: Arc<Jobs>,
    job_id: String,
    tenant_id: String,
    webhook: Option<String>,
    state: Mutex<SinkState>,
}

impl JobSink {
    fn new(jobs: Arc<Jobs>, job: &Job) -> JobSink {
        JobSink {
            jobs,
            job_id: job.id.clone(),
            tenant_id: job.tenant_id.clone(),
            webhook: job
                .webhook_url
                .clone()
                .filter(|_| job.webhook_events.contains(&WebhookEvent::Progress)),
            state: Mutex::new(SinkState {
                logs: job.logs.clone(),
                last_save: None,
                last_webhook: None,
            }),
        }
    }

    fn take_logs(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .logs
            .clone()
    }
}

impl ProgressSink for JobSink {
    fn progress(&self, p: Progress) {
        let p = Progress {
            fraction: p.fraction.clamp(0.0, 1.0),
            ..p
        };
        self.jobs
            .events
            .publish(&self.job_id, JobEvent::Progress(p.clone()));
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let save = st
            .last_save
            .is_none_or(|t| now - t >= Duration::from_millis(250));
        let hook = self.webhook.is_some()
            && st
                .last_webhook
                .is_none_or(|t| now - t >= Duration::from_secs(1));
        if !save && !hook {
            return;
        }
        st.last_save = Some(now);
        if hook {
            st.last_webhook = Some(now);
        }
        let logs = st.logs.clone();
        drop(st);
        // Called on the task's blocking thread, so a synchronous write is fine.
        let progress = serde_json::to_string(&p).expect("serializes");
        let r = self.jobs.db.call_sync(|c| -> Result<(), JobError> {
            store::save_progress(c, &self.job_id, &progress, &logs)?;
            if let Some(url) = &self.webhook
                && hook
                && let Some(job) = store::get(c, &self.job_id)?
            {
                let data =
                    serde_json::to_value(JobView::new(&job, &self.jobs.urls)).expect("serializes");
                webhooks::enqueue(
                    c,
                    &self.job_id,
                    &self.tenant_id,
                    WebhookEvent::Progress,
                    url,
                    &data,
                )?;
            }
            Ok(())
        });
        match r {
            Ok(()) if hook => self.jobs.webhooks.wake(),
            Ok(()) => {}
            Err(e) => tracing::warn!("job {}: saving progress: {e}", self.job_id),
        }
    }

    fn log(&self, line: String) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.logs
            .push_str(&format!("[{}] {line}\n", ids::rfc3339(ids::now_ms())));
        if st.logs.len() > MAX_LOG_BYTES {
            let cut = st.logs.len() - MAX_LOG_BYTES;
            let cut = (cut..st.logs.len())
                .find(|&i| st.logs.is_char_boundary(i))
                .unwrap_or(st.logs.len());
            st.logs.drain(..cut);
        }
        drop(st);
        self.jobs
            .events
            .publish(&self.job_id, JobEvent::Log { message: line });
    }
}
