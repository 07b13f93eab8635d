//! The tenant-plugin pipeline around a job's task: router → preprocess → task(s) →
//! postprocess → storage.
//!
//! Which plugins run is the tenant's choice per task: an explicit pipeline
//! ([`super::pipelines`]: a router and ordered `preprocess` / `postprocess` lists) when one
//! is configured for the task; otherwise the plugins themselves decide: a processor or router
//! whose active version's manifest lists the task in `tasks` (or `*`) hooks it. Then the
//! first such router (by plugin name) plans the steps and every such processor, in name
//! order, preprocesses the request and, in reverse order, postprocesses the output (like
//! nested middleware). Each call is recorded on the job (plugin, version, wall time, fuel);
//! a plugin error fails the job with the plugin's code (`plugin_timeout`, `plugin_trap`, ...).
//!
//! A router's plan is paid for: the job's credits become the sum of the planned tasks'
//! costs, the difference with what submit reserved is reserved (or returned) before any step
//! runs, and a tenant who cannot pay fails the job with `insufficient_credits`. The usual end
//! of a job then charges or refunds the whole amount.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Jobs;
use super::model::Job;
use super::plugin_models::{IN_JOB, InJob, ModelRun, Slot};
use super::worker::{Failure, JobSink};
use crate::plugins::images::Format;
use crate::plugins::{
    CallError, CallReport, Called, ImageInfo, ModelRunError, PluginHost, PluginImage, PluginOutput,
    PluginRequest, World,
};
use crate::tasks::{self, Input, Output, Task, TaskContext};
use crate::tenants::ledger;

/// One plugin call of a job, as `GET /v1/jobs/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginStep {
    /// `route`, `preprocess` or `postprocess`.
    pub stage: String,
    pub plugin: String,
    pub version: u32,
    pub wall_us: u64,
    pub fuel_used: u64,
    pub host_calls: u64,
    /// `code: message` when the call failed.
    pub error: Option<String>,
    /// On a `route` step: the tasks the router planned, in order, with their credits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Vec<PlannedTask>>,
    /// Credits the plugin's `models.run` calls charged during this step (on top of the job's).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub model_credits: i64,
    /// The plugin's `models.run` calls during this step, in order, refused ones included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_runs: Vec<ModelRun>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// One task of a router's plan and what it costs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlannedTask {
    pub task: String,
    pub credits: i64,
}

/// The plugins a job runs through, from the tenant's pipeline or the manifests.
#[derive(Debug, Default, PartialEq)]
struct Stages {
    router: Option<String>,
    preprocess: Vec<String>,
    postprocess: Vec<String>,
}

impl Stages {
    fn is_empty(&self) -> bool {
        self.router.is_none() && self.preprocess.is_empty() && self.postprocess.is_empty()
    }

    /// The manifest-based default: the first hooked router; processors in name order
    /// before the task and in reverse order after it.
    fn from_hooked(hooked: &[(String, World)]) -> Self {
        let processors: Vec<String> = hooked
            .iter()
            .filter(|(_, w)| *w == World::Processor)
            .map(|(n, _)| n.clone())
            .collect();
        Self {
            router: hooked
                .iter()
                .find(|(_, w)| *w == World::Router)
                .map(|(n, _)| n.clone()),
            postprocess: processors.iter().rev().cloned().collect(),
            preprocess: processors,
        }
    }
}

impl PluginStep {
    fn new(stage: &str, r: &CallReport, error: Option<String>, model_runs: Vec<ModelRun>) -> Self {
        Self {
            model_credits: model_runs.iter().map(|r| r.credits).sum(),
            model_runs,
            stage: stage.to_owned(),
            plugin: r.plugin.clone(),
            version: r.version,
            wall_us: r.wall_us,
            fuel_used: r.fuel_used,
            host_calls: r.host_calls,
            error,
            plan: None,
        }
    }
}

/// Records the call (with its model runs and the credits they charged) and turns its
/// failure into the job's. A guest that returns the error one of its model runs got,
/// unchanged, fails the job with that error's code (`permission_denied`,
/// `insufficient_credits`, ...): the host made that error, so its code is the job's cause.
fn record<T>(
    steps: &mut Vec<PluginStep>,
    stage: &str,
    c: Called<T>,
    in_job: &InJob,
) -> Result<T, Failure> {
    let runs = in_job.take_runs();
    let relayed = match &c.result {
        Err(CallError::Guest { code, message }) => runs
            .iter()
            .filter_map(|(run, e)| Some((run, e.as_ref()?)))
            .find(|(_, e)| e.code == *code && e.message == *message)
            .map(|(run, e)| {
                ModelRunError::new(
                    e.code.clone(),
                    format!(
                        "{stage} plugin `{}`: models.run `{}`: {}",
                        c.report.plugin, run.task, e.message
                    ),
                )
            }),
        _ => None,
    };
    let runs = runs.into_iter().map(|(run, _)| run).collect();
    match c.result {
        Ok(v) => {
            steps.push(PluginStep::new(stage, &c.report, None, runs));
            Ok(v)
        }
        Err(e) => {
            steps.push(PluginStep::new(stage, &c.report, Some(e.to_string()), runs));
            Err(match relayed {
                Some(r) => Failure::Model(r),
                None => Failure::Other(
                    e.code(),
                    format!("{stage} plugin `{}`: {e}", c.report.plugin),
                ),
            })
        }
    }
}

fn bad_plugin_output(message: String) -> Failure {
    Failure::Other("plugin_bad_output", message)
}

fn format_of(content_type: &str) -> Format {
    match content_type {
        "image/jpeg" => Format::Jpeg,
        "image/webp" => Format::Webp,
        _ => Format::Png,
    }
}

fn content_type_of(f: Format) -> &'static str {
    match f {
        Format::Png => "image/png",
        Format::Jpeg => "image/jpeg",
        Format::Webp => "image/webp",
    }
}

fn task_params_to_plugin(p: &tasks::Params) -> crate::plugins::Params {
    p.0.iter()
        .map(|(k, v)| {
            let j = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
            (k.clone(), j.into())
        })
        .collect()
}

/// A plugin's parameters for `task`, checked like a request's.
pub(super) fn plugin_params_to_task(
    task: &dyn Task,
    p: &crate::plugins::Params,
) -> Result<tasks::Params, Failure> {
    let raw = p
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect();
    tasks::params::validate(task.name(), &task.params(), &raw).map_err(|e| {
        bad_plugin_output(format!(
            "the plugin's parameters for `{}`: {}",
            task.name(),
            e.message
        ))
    })
}

impl Jobs {
    /// Connects the plugin host (the server does once, at start); without one, jobs run
    /// their task alone.
    pub fn set_plugins(&self, host: PluginHost) {
        let _ = self.plugins.set(host);
    }

    fn decode(&self, bytes: &[u8]) -> Result<PluginImage, Failure> {
        let max = self.limits.max_pixels.saturating_mul(4);
        PluginImage::decode(bytes, max)
            .map_err(|e| Failure::Other("invalid_image", format!("decoding for a plugin: {e}")))
    }

    fn encode(img: &PluginImage, f: Format) -> Result<Bytes, Failure> {
        img.encode(f)
            .map(Bytes::from)
            .map_err(|e| bad_plugin_output(format!("encoding a plugin's image: {e}")))
    }

    /// The plugins `job` runs through: the tenant's pipeline for the task, else the
    /// manifest default.
    async fn stages(&self, host: &PluginHost, job: &Job) -> Result<Stages, Failure> {
        let configured = self
            .pipeline_config(&job.tenant_id, &job.task)
            .await
            .map_err(|e| {
                Failure::Other(
                    "internal_error",
                    format!("reading the tenant's pipeline: {e}"),
                )
            })?;
        Ok(match configured {
            Some(p) => Stages {
                router: p.config.router,
                preprocess: p.config.preprocess,
                postprocess: p.config.postprocess,
            },
            None => Stages::from_hooked(&host.hooked(&job.tenant_id, &job.task)),
        })
    }

    /// Runs the job's task, through the tenant's plugins when any are configured or hook
    /// it, and records the plugin steps on the job (failed or not).
    pub(super) async fn run_pipeline(
        &self,
        job: &Job,
        task: Arc<dyn Task>,
        inputs: Vec<Input>,
        sink: Arc<JobSink>,
        canceled: Arc<AtomicBool>,
    ) -> Result<Vec<Output>, Failure> {
        let stages = match self.plugins.get() {
            Some(h) => self.stages(h, job).await?,
            None => Stages::default(),
        };
        if stages.is_empty() {
            return self
                .run_task(job, task, inputs, job.params.clone(), sink, canceled)
                .await;
        }
        let host = self.plugins.get().expect("checked above").clone();
        let mut steps = Vec::new();
        let r = self
            .pipeline(
                &host, job, task, inputs, &stages, sink, canceled, &mut steps,
            )
            .await;
        let (id, json) = (
            job.id.clone(),
            serde_json::to_string(&steps).expect("steps serialize"),
        );
        let saved = self
            .db
            .call(move |c| {
                c.execute(
                    "UPDATE jobs SET plugin_steps = ?2 WHERE id = ?1",
                    rusqlite::params![id, json],
                )
                .map_err(crate::db::DbError::from)
            })
            .await;
        if let Err(e) = saved {
            tracing::warn!("job {}: recording plugin steps: {e}", job.id);
        }
        r
    }

    /// Makes the job's reservation the cost of `plan`: reserves the difference from the
    /// tenant's balance (or returns it), in one transaction with the job's new amount.
    async fn reserve_plan(
        &self,
        job: &Job,
        router: &str,
        plan: &[PlannedTask],
    ) -> Result<(), Failure> {
        let total: i64 = plan.iter().map(|p| p.credits).sum();
        let (id, tenant) = (job.id.clone(), job.tenant_id.clone());
        let (task, router) = (job.task.clone(), router.to_owned());
        let r = self
            .db
            .call(
                move |c| -> Result<Result<(), (i64, i64)>, crate::db::DbError> {
                    let tx = c.transaction()?;
                    let (reserved, state): (i64, String) = tx.query_row(
                        "SELECT credits, credits_state FROM jobs WHERE id = ?1",
                        [&id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    if super::model::CreditsState::parse(&state)
                        != super::model::CreditsState::Reserved
                    {
                        return Err(crate::db::DbError::Corrupt(format!(
                            "job {id} has credits {state}, not reserved, while running"
                        )));
                    }
                    let extra = total - reserved;
                    let reason = if extra > 0 {
                        ledger::Reason::PlanCharge
                    } else {
                        ledger::Reason::PlanRefund
                    };
                    let change = ledger::Change::new(&tenant, -extra, reason)
                        .job(&id, &task)
                        .plugin(&router);
                    if extra != 0 && !ledger::apply(&tx, &change)? {
                        let balance: i64 = tx.query_row(
                            "SELECT credits FROM tenants WHERE id = ?1",
                            [&tenant],
                            |r| r.get(0),
                        )?;
                        return Ok(Err((reserved, balance)));
                    }
                    tx.execute(
                        "UPDATE jobs SET credits = ?2 WHERE id = ?1",
                        rusqlite::params![id, total],
                    )?;
                    tx.commit()?;
                    Ok(Ok(()))
                },
            )
            .await
            .map_err(|e| {
                Failure::Other(
                    "internal_error",
                    format!("reserving the plan's credits: {e}"),
                )
            })?;
        r.map_err(|(reserved, balance)| {
            let items: Vec<String> = plan
                .iter()
                .map(|p| format!("{} {}", p.task, p.credits))
                .collect();
            Failure::Other(
                "insufficient_credits",
                format!(
                    "the router's plan ({}) costs {total} credits; {reserved} were reserved at submit \
                     and the balance of {balance} cannot cover the other {}",
                    items.join(" + "),
                    total - reserved
                ),
            )
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn pipeline(
        &self,
        host: &PluginHost,
        job: &Job,
        task: Arc<dyn Task>,
        inputs: Vec<Input>,
        stages: &Stages,
        sink: Arc<JobSink>,
        canceled: Arc<AtomicBool>,
        steps: &mut Vec<PluginStep>,
    ) -> Result<Vec<Output>, Failure> {
        let tenant = job.tenant_id.as_str();
        // Plugin calls below run inside this job: their model runs use its lane slot.
        let in_job = InJob::new(job, task.needs_gpu(), canceled.clone());
        let mut params = job.params.clone();
        let mut images = Vec::with_capacity(inputs.len());
        for i in &inputs {
            images.push(self.decode(&i.bytes)?);
        }

        // Preprocess: each processor, in order, sees (and may change) the request.
        for p in &stages.preprocess {
            let req = PluginRequest {
                task: job.task.clone(),
                params: task_params_to_plugin(&params),
                images,
            };
            let called = IN_JOB
                .scope(in_job.clone(), host.call_preprocess(tenant, p, req))
                .await;
            let out = record(steps, "preprocess", called, &in_job)?;
            params = plugin_params_to_task(task.as_ref(), &out.params)?;
            images = out.images;
        }

        // Route: a plan of tasks (paid for before any runs), or the job's own task.
        let mut plan: Vec<(Arc<dyn Task>, tasks::Params)> = vec![(task.clone(), params.clone())];
        if let Some(r) = &stages.router {
            let infos = images
                .iter()
                .map(|i| ImageInfo {
                    width: i.pixels.width(),
                    height: i.pixels.height(),
                    has_alpha: i.pixels.pixels().any(|p| p[3] != 255),
                })
                .collect();
            let called = IN_JOB
                .scope(
                    in_job.clone(),
                    host.call_router(tenant, r, &job.task, task_params_to_plugin(&params), infos),
                )
                .await;
            let got = record(steps, "route", called, &in_job)?;
            if !got.steps.is_empty() {
                plan.clear();
                for s in got.steps {
                    let t = self.registry.get(&s.task).ok_or_else(|| {
                        bad_plugin_output(format!("the plan names unknown task `{}`", s.task))
                    })?;
                    let p = plugin_params_to_task(t.as_ref(), &s.params)?;
                    // Checked like a request (models installed, exclusive parameters)
                    // before anything is paid for or run.
                    let first = t.inputs().first().map_or("image", |i| i.name);
                    t.check(&p, &[first]).map_err(|e| {
                        bad_plugin_output(format!(
                            "the plan's `{}` step: {}: {}",
                            s.task, e.param, e.message
                        ))
                    })?;
                    plan.push((t, p));
                }
            }
            let priced: Vec<PlannedTask> = plan
                .iter()
                .map(|(t, _)| PlannedTask {
                    task: t.name().to_owned(),
                    credits: self.registry.cost(t.as_ref()) as i64,
                })
                .collect();
            if let Some(last) = steps.last_mut() {
                last.plan = Some(priced.clone());
            }
            self.reserve_plan(job, r, &priced).await?;
        }

        // The task(s): each step's outputs are the next step's input images.
        let mut current: Vec<Input> = Vec::with_capacity(images.len());
        let names: Vec<&str> = task.inputs().iter().map(|i| i.name).collect();
        for (k, img) in images.iter().enumerate() {
            let name = names.get(k).or(names.first()).copied().unwrap_or("image");
            current.push(Input {
                name: name.to_owned(),
                bytes: Self::encode(img, Format::Png)?,
                content_type: "image/png".into(),
            });
        }
        let mut outputs = Vec::new();
        for (t, p) in plan {
            // A planned GPU step of a CPU job holds a GPU slot too, so routers cannot take
            // the GPU past `jobs.gpu_concurrency` (CPU -> GPU waits only, as for `models.run`).
            let _gpu = if t.needs_gpu() && !task.needs_gpu() {
                Some(Slot::take(self, true).await)
            } else {
                None
            };
            outputs = self
                .run_task(job, t.clone(), current, p, sink.clone(), canceled.clone())
                .await?;
            let first = t.inputs().first().map_or("image", |i| i.name);
            current = outputs
                .iter()
                .map(|o| Input {
                    name: first.to_owned(),
                    bytes: o.bytes.clone(),
                    content_type: o.content_type.clone(),
                })
                .collect();
        }

        // Postprocess: each processor, in order, sees the output, in the task's formats.
        if stages.postprocess.is_empty() {
            return Ok(outputs);
        }
        let formats: Vec<Format> = outputs.iter().map(|o| format_of(&o.content_type)).collect();
        let mut out = PluginOutput::default();
        for o in &outputs {
            out.images.push(self.decode(&o.bytes)?);
        }
        for p in &stages.postprocess {
            let called = IN_JOB
                .scope(
                    in_job.clone(),
                    host.call_postprocess(
                        tenant,
                        p,
                        &job.task,
                        task_params_to_plugin(&params),
                        out,
                    ),
                )
                .await;
            out = record(steps, "postprocess", called, &in_job)?;
        }
        let mut final_outputs = Vec::with_capacity(out.images.len());
        for (k, img) in out.images.iter().enumerate() {
            let f = formats
                .get(k)
                .or(formats.last())
                .copied()
                .unwrap_or(Format::Png);
            final_outputs.push(Output {
                bytes: Self::encode(img, f)?,
                content_type: content_type_of(f).into(),
                width: Some(img.pixels.width()),
                height: Some(img.pixels.height()),
            });
        }
        Ok(final_outputs)
    }

    /// One task on a blocking thread, under the job timeout.
    pub(super) async fn run_task(
        &self,
        job: &Job,
        task: Arc<dyn Task>,
        inputs: Vec<Input>,
        params: tasks::Params,
        sink: Arc<JobSink>,
        canceled: Arc<AtomicBool>,
    ) -> Result<Vec<Output>, Failure> {
        let ctx = TaskContext {
            job_id: job.id.clone(),
            tenant_id: job.tenant_id.clone(),
            attempt: job.attempts,
            gpu: self.gpu.clone(),
            models: self.models.clone(),
            limits: self.image_limits(),
            canceled,
            sink,
        };
        self.run_blocking(ctx, task, inputs, params).await
    }

    /// Runs `task` on a blocking thread under the job timeout (`jobs.timeout_secs`); on
    /// timeout, raises `ctx.canceled` so the task stops at its next check.
    pub(super) async fn run_blocking(
        &self,
        ctx: TaskContext,
        task: Arc<dyn Task>,
        inputs: Vec<Input>,
        params: tasks::Params,
    ) -> Result<Vec<Output>, Failure> {
        let canceled = ctx.canceled.clone();
        let handle = tokio::task::spawn_blocking(move || task.run(&ctx, inputs, &params));
        let timeout = Duration::from_secs(self.config.timeout_secs);
        match tokio::time::timeout(timeout, handle).await {
            Ok(Ok(r)) => r.map_err(Failure::Task),
            Ok(Err(join)) => Err(Failure::Other(
                "task_panicked",
                format!("the task crashed: {join}"),
            )),
            Err(_) => {
                // Ask the task to stop at its next check; its result is dropped.
                canceled.store(true, Ordering::Relaxed);
                Err(Failure::Other(
                    "timeout",
                    format!("the job ran longer than {} s", timeout.as_secs()),
                ))
            }
        }
    }
}
