//! A router whose plan comes from its config: `plan` is a `;`-separated list of steps, each
//! `task` or `task?name=value&...` (integers where they parse, text otherwise). Tests use it
//! to plan any registry task for any submitted one.

use easel_sdk::prelude::*;

struct RouterPlan;

fn step(spec: &str) -> Step {
    let (task, query) = spec.split_once('?').unwrap_or((spec, ""));
    let mut step = Step::new(task);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, v) = pair.split_once('=').unwrap_or((pair, ""));
        step = match v.parse::<i64>() {
            Ok(n) => step.with(name, n),
            Err(_) => step.with(name, v),
        };
    }
    step
}

impl Router for RouterPlan {
    fn route(_req: RouteRequest) -> Result<Plan> {
        let plan = easel_sdk::config::get("plan")
            .ok()
            .flatten()
            .ok_or_else(|| PluginError::new("bad_config", "the config names no `plan`"))?;
        Ok(Plan {
            steps: plan
                .split(';')
                .filter(|s| !s.is_empty())
                .map(step)
                .collect(),
        })
    }
}

export_router!(RouterPlan);
