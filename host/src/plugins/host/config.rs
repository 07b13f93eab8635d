//! `easel:plugin/config`: the plugin's per-tenant settings from its manifest.

use super::{HostResult, denied};
use crate::plugins::bindings::easel::plugin::config;
use crate::plugins::state::CallState;

impl config::Host for CallState {
    fn get(&mut self, key: String) -> wasmtime::Result<HostResult<Option<String>>> {
        self.charge_call()?;
        if !self.env.granted.config {
            return Ok(Err(denied("config")));
        }
        Ok(Ok(self.env.config.get(&key).cloned()))
    }

    fn get_all(&mut self) -> wasmtime::Result<HostResult<Vec<(String, String)>>> {
        self.charge_call()?;
        if !self.env.granted.config {
            return Ok(Err(denied("config")));
        }
        Ok(Ok(self
            .env
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}
