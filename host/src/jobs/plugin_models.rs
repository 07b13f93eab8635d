//! The server's [`ModelRunner`]: a plugin's `models.run` runs a registry task for the
//! tenant, paid for and scheduled like a job.
//!
//! - The task is looked up in the registry, its parameters (plus `model`, when the call
//!   names one) are validated like a request's and [`Task::check`]ed (installed models), and
//!   the input images become PNG inputs named after the task's inputs, in order. The plugin's
//!   and tenant's model permissions were checked by the host before the call gets here.
//! - The task's price (`Registry::cost`, what a job of it costs) is taken from the tenant's
//!   balance in one conditional update (`insufficient_credits` when it cannot pay) and given
//!   back when the run fails. The charge is logged, counted in `credits_charged_total`, and,
//!   inside a job, recorded on the plugin step (`model_credits`, and each run, refused
//!   ones included, in `model_runs`).
//! - Lanes: a call from a plugin inside a job (pre/postprocess, route) runs under that
//!   job's lane slot: waiting for another slot of the same lane while holding one could
//!   deadlock once every slot is held by such jobs. Only a CPU job's plugin asking for a
//!   GPU task takes a GPU slot (waits only ever go CPU → GPU, never back, so no cycle). A
//!   call from an endpoint holds no slot, so it takes one of the task's lane, sharing
//!   `jobs.gpu_concurrency` / `jobs.cpu_concurrency` with the jobs. A router's planned
//!   GPU step in a CPU job takes a GPU slot the same way (`jobs/plugins.rs`).
//! - The task runs on a blocking thread under `jobs.timeout_secs`; inside a job it stops
//!   when the job is canceled, and an endpoint's run stops when its caller goes away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};

use super::Jobs;
use super::model::Job;
use super::plugins::plugin_params_to_task;
use super::worker::Failure;
use crate::plugins::images::Format;
use crate::plugins::{
    ModelCall, ModelFuture, ModelRefusal, ModelResult, ModelRunError, ModelRunner, ParamValue,
    PluginImage,
};
use crate::tasks::{Input, Progress, ProgressSink, Task, TaskContext};
use crate::tenants::ledger;

tokio::task_local! {
    /// Set by the job pipeline around its plugin calls: the job they run inside.
    pub(super) static IN_JOB: InJob;
}

/// One `models.run` call of a plugin step, as `GET /v1/jobs/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelRun {
    pub task: String,
    pub model: Option<String>,
    /// Credits the run cost (0 when it was refused, failed and refunded, or is free).
    pub credits: i64,
    /// `code: message` when the run was refused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The job a plugin call runs inside.
#[derive(Clone)]
pub(super) struct InJob {
    job_id: String,
    /// The lane whose slot the job holds.
    gpu: bool,
    canceled: Arc<AtomicBool>,
    /// Model runs since the last [`InJob::take_runs`].
    runs: Arc<Mutex<Vec<RunRecord>>>,
}

/// A model run and the error the guest got from it.
pub(super) type RunRecord = (ModelRun, Option<ModelRunError>);

impl InJob {
    pub(super) fn new(job: &Job, gpu: bool, canceled: Arc<AtomicBool>) -> Self {
        Self {
            job_id: job.id.clone(),
            gpu,
            canceled,
            runs: Default::default(),
        }
    }

    fn push(&self, task: &str, model: Option<&str>, credits: i64, error: Option<&ModelRunError>) {
        let run = ModelRun {
            task: task.to_owned(),
            model: model.map(str::to_owned),
            credits,
            error: error.map(ToString::to_string),
        };
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.push((run, error.cloned()));
    }

    /// The model runs of the plugin call that just ended, with the errors they gave the
    /// guest.
    pub(super) fn take_runs(&self) -> Vec<RunRecord> {
        std::mem::take(&mut *self.runs.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Runs plugins' model calls through the job core (see the module docs).
pub struct PluginModels {
    // Weak: the job core holds the plugin host, which holds this.
    jobs: Weak<Jobs>,
}

impl PluginModels {
    pub fn new(jobs: &Arc<Jobs>) -> Self {
        Self {
            jobs: Arc::downgrade(jobs),
        }
    }
}

impl ModelRunner for PluginModels {
    fn run<'a>(&'a self, call: ModelCall<'a>) -> ModelFuture<'a> {
        Box::pin(async move {
            let in_job = IN_JOB.try_with(InJob::clone).ok();
            let task = call.task;
            let model = params_model(&call).as_str().map(str::to_owned);
            let jobs = self.jobs.upgrade().ok_or_else(|| {
                ModelRunError::new("model_unavailable", "the server is shutting down")
            });
            let r = match jobs {
                Ok(jobs) => jobs.run_for_plugin(call).await,
                Err(e) => Err(e),
            };
            if let Some(j) = &in_job {
                match &r {
                    Ok((_, credits)) => j.push(task, model.as_deref(), *credits, None),
                    Err(e) => j.push(task, model.as_deref(), 0, Some(e)),
                }
            }
            r.map(|(result, _)| result)
        })
    }

    fn refused(&self, refusal: ModelRefusal<'_>) {
        if let Ok(j) = IN_JOB.try_with(InJob::clone) {
            j.push(refusal.task, refusal.model, 0, Some(refusal.error));
        }
    }
}

fn invalid(message: impl Into<String>) -> ModelRunError {
    ModelRunError::new("invalid_argument", message)
}

fn from_failure(f: Failure) -> ModelRunError {
    match f {
        Failure::Task(e) => ModelRunError::new(e.code(), e.to_string()),
        Failure::Other(code, message) => ModelRunError::new(code, message),
        Failure::Model(e) => e,
    }
}

/// Frees a lane slot taken for a run, however the run ends.
pub(super) struct Slot<'a> {
    jobs: &'a Jobs,
    gpu: bool,
}

impl<'a> Slot<'a> {
    /// Waits for a slot of the lane.
    pub(super) async fn take(jobs: &'a Jobs, gpu: bool) -> Slot<'a> {
        jobs.sched.acquire(gpu).await;
        Slot { jobs, gpu }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.jobs.sched.finished(self.gpu);
    }
}

/// Stops an endpoint's run when its future is dropped (the caller went away).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Where a plugin's run reports: no job record to update, so the server log.
struct RunLog {
    who: String,
}

impl ProgressSink for RunLog {
    fn progress(&self, _p: Progress) {}
    fn log(&self, line: String) {
        tracing::debug!("{}: {line}", self.who);
    }
}

/// A call's task, validated parameters and PNG inputs.
type Prepared = (Arc<dyn Task>, crate::tasks::Params, Vec<Input>);

impl Jobs {
    /// The task, validated parameters and PNG inputs of a call.
    fn prepare_call(&self, call: &ModelCall<'_>) -> Result<Prepared, ModelRunError> {
        let task = self.registry.get(call.task).ok_or_else(|| {
            ModelRunError::new(
                "unknown_task",
                format!("task `{}` is not available on this server", call.task),
            )
        })?;
        let mut params = call.params.to_vec();
        if let Some(m) = call.model {
            if !task.params().iter().any(|p| p.name == "model") {
                return Err(invalid(format!(
                    "task `{}` has no model to choose; call it without one",
                    call.task
                )));
            }
            match params.iter().find(|(k, _)| k == "model") {
                Some((_, ParamValue::Text(t))) if t == m => {}
                Some(_) => {
                    return Err(invalid(format!(
                        "the model `{m}` and the `model` parameter disagree"
                    )));
                }
                None => params.push(("model".into(), ParamValue::Text(m.to_owned()))),
            }
        }
        let params = plugin_params_to_task(task.as_ref(), &params).map_err(|f| match f {
            Failure::Other(_, m) | Failure::Model(ModelRunError { message: m, .. }) => invalid(m),
            Failure::Task(e) => invalid(e.to_string()),
        })?;
        let specs = task.inputs();
        if call.inputs.len() > specs.len() {
            return Err(invalid(format!(
                "task `{}` takes at most {} image(s), got {}",
                call.task,
                specs.len(),
                call.inputs.len()
            )));
        }
        if let Some(missing) = specs[call.inputs.len()..].iter().find(|s| s.required) {
            return Err(invalid(format!(
                "task `{}` needs the `{}` image (pass images in the order of the task's inputs)",
                call.task, missing.name
            )));
        }
        let names: Vec<&str> = specs[..call.inputs.len()].iter().map(|s| s.name).collect();
        task.check(&params, &names).map_err(|e| {
            // The checks the specs cannot express are mostly about installed models.
            let code = if e.param == "model" {
                "model_unavailable"
            } else {
                "invalid_argument"
            };
            ModelRunError::new(
                code,
                format!("task `{}`: {}: {}", call.task, e.param, e.message),
            )
        })?;
        if task.needs_gpu()
            && let Err(e) = &self.gpu
        {
            return Err(ModelRunError::new(
                "gpu_unavailable",
                format!(
                    "task `{}` needs a GPU and none is available: {e}",
                    call.task
                ),
            ));
        }
        let mut inputs = Vec::with_capacity(call.inputs.len());
        for (img, name) in call.inputs.iter().zip(&names) {
            let bytes = img
                .encode(Format::Png)
                .map_err(|e| invalid(format!("encoding the `{name}` image: {e}")))?;
            inputs.push(Input {
                name: (*name).to_owned(),
                bytes: bytes.into(),
                content_type: "image/png".into(),
            });
        }
        Ok((task, params, inputs))
    }

    /// Adds `amount` to the call's tenant with its ledger entry, in one transaction. A
    /// debit the balance cannot cover changes nothing and returns `Err(balance)`.
    async fn move_credits(
        &self,
        call: &ModelCall<'_>,
        in_job: Option<&InJob>,
        amount: i64,
        reason: ledger::Reason,
    ) -> Result<Result<(), i64>, crate::db::DbError> {
        let (tenant, plugin, task) = (
            call.tenant.to_owned(),
            call.plugin.to_owned(),
            call.task.to_owned(),
        );
        let job = in_job.map(|j| j.job_id.clone());
        self.db
            .call(move |c| -> Result<Result<(), i64>, crate::db::DbError> {
                let tx = c.transaction()?;
                let mut change = ledger::Change::new(&tenant, amount, reason)
                    .plugin(&plugin)
                    .task(&task);
                change.job_id = job.as_deref();
                if !ledger::apply(&tx, &change)? {
                    let balance = tx.query_row(
                        "SELECT credits FROM tenants WHERE id = ?1",
                        [&tenant],
                        |r| r.get(0),
                    )?;
                    return Ok(Err(balance));
                }
                tx.commit()?;
                Ok(Ok(()))
            })
            .await
    }

    /// Takes `credits` from the tenant if the balance covers them (`insufficient_credits`
    /// otherwise).
    async fn charge(
        &self,
        call: &ModelCall<'_>,
        in_job: Option<&InJob>,
        credits: i64,
    ) -> Result<(), ModelRunError> {
        let r = self
            .move_credits(call, in_job, -credits, ledger::Reason::PluginModelCharge)
            .await
            .map_err(|e| ModelRunError::new("internal_error", format!("charging credits: {e}")))?;
        r.map_err(|balance| {
            ModelRunError::new(
                "insufficient_credits",
                format!("this run costs {credits} credits; the balance is {balance}"),
            )
        })
    }

    async fn refund(&self, call: &ModelCall<'_>, in_job: Option<&InJob>, credits: i64) {
        let r = self
            .move_credits(call, in_job, credits, ledger::Reason::PluginModelRefund)
            .await;
        if let Err(e) = r {
            tracing::error!("refunding {credits} credits to tenant {}: {e}", call.tenant);
        }
    }

    /// One `models.run` call of a plugin (see the module docs), and the credits it cost.
    async fn run_for_plugin(
        &self,
        call: ModelCall<'_>,
    ) -> Result<(ModelResult, i64), ModelRunError> {
        let (task, params, inputs) = self.prepare_call(&call)?;
        let in_job = IN_JOB.try_with(InJob::clone).ok();
        let cost = self.registry.cost(task.as_ref()) as i64;
        if cost > 0 {
            self.charge(&call, in_job.as_ref(), cost).await?;
        }
        let run = self
            .run_plugin_task(&call, task.clone(), params, inputs, in_job.as_ref())
            .await;
        let result = run.and_then(|outputs| {
            let max = self.limits.max_pixels.saturating_mul(4);
            let mut images = Vec::with_capacity(outputs.len());
            let mut described = Vec::with_capacity(outputs.len());
            for o in &outputs {
                let img = PluginImage::decode(&o.bytes, max).map_err(|e| {
                    ModelRunError::new("task_failed", format!("decoding the task's output: {e}"))
                })?;
                described.push(serde_json::json!({
                    "content_type": o.content_type,
                    "width": img.pixels.width(),
                    "height": img.pixels.height(),
                }));
                images.push(img);
            }
            Ok(ModelResult {
                images,
                metadata: serde_json::json!({
                    "task": task.name(),
                    "model": params_model(&call),
                    "credits": cost,
                    "outputs": described,
                }),
            })
        });
        match &result {
            Ok(_) => {
                tracing::info!(
                    tenant = call.tenant,
                    plugin = call.plugin,
                    task = call.task,
                    credits = cost,
                    job = in_job.as_ref().map(|j| j.job_id.as_str()),
                    "plugin model run charged"
                );
                if cost > 0 {
                    self.metrics
                        .credits_charged
                        .with_label_values(&[call.tenant])
                        .inc_by(cost as u64);
                }
            }
            Err(e) => {
                tracing::info!(
                    tenant = call.tenant,
                    plugin = call.plugin,
                    task = call.task,
                    "plugin model run failed ({e}); {cost} credits refunded"
                );
                if cost > 0 {
                    self.refund(&call, in_job.as_ref(), cost).await;
                }
            }
        }
        result.map(|r| (r, cost))
    }

    /// Runs the task in the right lane slot (see the module docs).
    async fn run_plugin_task(
        &self,
        call: &ModelCall<'_>,
        task: Arc<dyn Task>,
        params: crate::tasks::Params,
        inputs: Vec<Input>,
        in_job: Option<&InJob>,
    ) -> Result<Vec<crate::tasks::Output>, ModelRunError> {
        let needs_slot = match in_job {
            Some(j) => task.needs_gpu() && !j.gpu,
            None => true,
        };
        let lane = task.needs_gpu();
        let _slot = if needs_slot {
            Some(Slot::take(self, lane).await)
        } else {
            None
        };
        let (canceled, _guard) = match in_job {
            Some(j) => (j.canceled.clone(), None),
            None => {
                let flag = Arc::new(AtomicBool::new(false));
                (flag.clone(), Some(CancelOnDrop(flag)))
            }
        };
        let who = format!("plugin {}/{} task {}", call.tenant, call.plugin, call.task);
        let ctx = TaskContext {
            job_id: in_job.map_or_else(|| format!("plugin:{}", call.plugin), |j| j.job_id.clone()),
            tenant_id: call.tenant.to_owned(),
            attempt: 1,
            gpu: self.gpu.clone(),
            models: self.models.clone(),
            limits: self.image_limits(),
            canceled,
            sink: Arc::new(RunLog { who }),
        };
        self.run_blocking(ctx, task, inputs, params)
            .await
            .map_err(from_failure)
    }
}

fn params_model(call: &ModelCall<'_>) -> serde_json::Value {
    match call.model {
        Some(m) => m.into(),
        None => match call.params.iter().find(|(k, _)| k == "model") {
            Some((_, ParamValue::Text(t))) => t.clone().into(),
            _ => serde_json::Value::Null,
        },
    }
}
