//! Diagnostic tasks, registered only with `debug_tasks = true`: `noop` (CPU)
//! and `noop-gpu` (GPU lane). They let tests and benchmarks drive the job
//! machinery (progress, cancel, failure, long runs, crashes) without models.

use std::time::Duration;

use super::{Input, InputSpec, Output, ParamSpec, Params, Progress, Task, TaskContext, TaskError};

const OPTIONAL_IMAGE: &[InputSpec] = &[InputSpec {
    name: "image",
    required: false,
    description: "echoed back as the output when given",
}];

fn params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::int(
            "sleep_ms",
            0,
            600_000,
            "Total time to spend, split across the steps.",
        )
        .default(0),
        ParamSpec::int("steps", 1, 1000, "Progress steps to report.").default(1),
        ParamSpec::bool("fail", "Fail at the end instead of succeeding.").default(false),
    ]
}

fn run(
    name: &str,
    ctx: &TaskContext,
    inputs: Vec<Input>,
    p: &Params,
) -> Result<Vec<Output>, TaskError> {
    let steps = p.int("steps").unwrap_or(1) as u32;
    let per_step = Duration::from_millis(p.int("sleep_ms").unwrap_or(0) as u64 / u64::from(steps));
    for step in 1..=steps {
        // Sleep in slices so a cancel is noticed promptly.
        let mut left = per_step;
        while !left.is_zero() {
            ctx.check_canceled()?;
            let slice = left.min(Duration::from_millis(20));
            std::thread::sleep(slice);
            left -= slice;
        }
        ctx.check_canceled()?;
        ctx.progress(Progress::steps(step, steps));
        ctx.log(format!("{name}: step {step}/{steps}"));
    }
    if p.bool("fail").unwrap_or(false) {
        return Err(TaskError::Failed(format!("{name} was asked to fail")));
    }
    Ok(match inputs.into_iter().next() {
        Some(i) => vec![Output {
            bytes: i.bytes,
            content_type: i.content_type,
            width: None,
            height: None,
        }],
        None => vec![Output {
            bytes: serde_json::json!({"task": name, "attempt": ctx.attempt, "steps": steps})
                .to_string()
                .into(),
            content_type: "application/json".into(),
            width: None,
            height: None,
        }],
    })
}

pub struct Noop;

impl Task for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }
    fn description(&self) -> &'static str {
        "Diagnostic: waits, reports progress, optionally fails (CPU lane)."
    }
    fn inputs(&self) -> &'static [InputSpec] {
        OPTIONAL_IMAGE
    }
    fn params(&self) -> Vec<ParamSpec> {
        params()
    }
    fn credits(&self) -> u64 {
        0
    }
    fn needs_gpu(&self) -> bool {
        false
    }
    fn run(
        &self,
        ctx: &TaskContext,
        inputs: Vec<Input>,
        p: &Params,
    ) -> Result<Vec<Output>, TaskError> {
        run("noop", ctx, inputs, p)
    }
}

pub struct NoopGpu;

impl Task for NoopGpu {
    fn name(&self) -> &'static str {
        "noop-gpu"
    }
    fn description(&self) -> &'static str {
        "Diagnostic: like noop, on the GPU lane; fails with gpu_unavailable without a GPU."
    }
    fn inputs(&self) -> &'static [InputSpec] {
        OPTIONAL_IMAGE
    }
    fn params(&self) -> Vec<ParamSpec> {
        params()
    }
    fn credits(&self) -> u64 {
        0
    }
    fn needs_gpu(&self) -> bool {
        true
    }
    fn run(
        &self,
        ctx: &TaskContext,
        inputs: Vec<Input>,
        p: &Params,
    ) -> Result<Vec<Output>, TaskError> {
        ctx.gpu()?;
        run("noop-gpu", ctx, inputs, p)
    }
}
