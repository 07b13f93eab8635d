//! A postprocess hook that runs a model on the job's first output through `models.run` and
//! attaches the model's images after the job's own; the output metadata becomes the run's.
//!
//! Config (per tenant, from the manifest): `task` (required), `model` (optional) and
//! `params` (`name=value&...`, integers where they parse, text otherwise). Any error of the
//! run (a refused model, too few credits, a failed task) is returned as the hook's own, so
//! the job fails with it.

use easel_sdk::prelude::*;
use easel_sdk::{Param, run_model};

struct ModelsPost;

fn setting(key: &str) -> Option<String> {
    easel_sdk::config::get(key).ok().flatten()
}

fn params(spec: &str) -> Vec<Param> {
    spec.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, v) = pair.split_once('=').unwrap_or((pair, ""));
            let value = match v.parse::<i64>() {
                Ok(n) => Value::Integer(n),
                Err(_) => Value::Text(v.to_owned()),
            };
            Param {
                name: name.to_owned(),
                value,
            }
        })
        .collect()
}

impl Processor for ModelsPost {
    fn postprocess(_ctx: Context, mut out: Output) -> Result<Output> {
        let task = setting("task")
            .ok_or_else(|| PluginError::new("bad_config", "the config names no `task`"))?;
        let model = setting("model");
        let params = params(&setting("params").unwrap_or_default());
        let first = out
            .images
            .first()
            .ok_or_else(|| PluginError::new("no_image", "the job has no output image"))?;
        let run = run_model(&task, model.as_deref(), &params, &[first])?;
        out.images.extend(run.images);
        out.metadata = run.metadata;
        Ok(out)
    }
}

export_processor!(ModelsPost);
