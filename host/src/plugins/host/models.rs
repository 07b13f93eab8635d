//! `easel:plugin/models`: runs a task through the server's [`ModelRunner`], limited to the
//! models both the plugin asked for and the tenant may use.
//!
//! [`ModelRunner`]: crate::plugins::ModelRunner

use super::{HostResult, error};
use crate::plugins::bindings::easel::plugin::models::{self, ModelOutput};
use crate::plugins::bindings::easel::plugin::types::Param;
use crate::plugins::images::PluginImage;
use crate::plugins::model_runner::{ModelCall, ModelRefusal, ModelRunError};
use crate::plugins::state::CallState;
use crate::plugins::values::params_from_wit;
use std::time::Instant;
use wasmtime::component::Resource;

impl models::Host for CallState {
    async fn run(
        &mut self,
        task: String,
        model: Option<String>,
        params: Vec<Param>,
        inputs: Vec<Resource<PluginImage>>,
    ) -> wasmtime::Result<HostResult<ModelOutput>> {
        self.charge_call()?;
        let env = self.env.clone();
        if !env
            .granted
            .may_run(&env.policy.allowed_models, &task, model.as_deref())
        {
            let name = match &model {
                Some(m) => format!("{task}/{m}"),
                None => task.clone(),
            };
            let refusal = ModelRunError::new(
                "permission_denied",
                format!("this plugin may not run model `{name}` for this tenant"),
            );
            env.models.refused(ModelRefusal {
                tenant: &env.tenant,
                plugin: &env.plugin,
                task: &task,
                model: model.as_deref(),
                error: &refusal,
            });
            return Ok(Err(error(&refusal.code, refusal.message)));
        }
        let params = match params_from_wit(params) {
            Ok(p) => p,
            Err(e) => return Ok(Err(error("invalid_argument", e.to_string()))),
        };
        let inputs = inputs
            .iter()
            .map(|r| Ok(self.table.get(r)?.clone()))
            .collect::<wasmtime::Result<Vec<PluginImage>>>()?;
        let started = Instant::now();
        let paused = self.clock.pause();
        let result = env
            .models
            .run(ModelCall {
                tenant: &env.tenant,
                plugin: &env.plugin,
                task: &task,
                model: model.as_deref(),
                params: &params,
                inputs,
            })
            .await;
        // Model time runs on the GPU scheduler, not in the guest: it is not the plugin's.
        self.model_time += started.elapsed();
        drop(paused);
        let out = match result {
            Ok(out) => out,
            Err(e) => return Ok(Err(error(&e.code, e.message))),
        };
        let mut images = Vec::with_capacity(out.images.len());
        for img in out.images {
            self.limiter.charge_host_bytes(img.size_bytes())?;
            images.push(self.table.push(img)?);
        }
        Ok(Ok(ModelOutput {
            images,
            metadata: out.metadata.to_string(),
        }))
    }
}
