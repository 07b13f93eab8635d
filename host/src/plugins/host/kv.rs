//! `easel:plugin/kv`: the tenant- and plugin-scoped key-value store, within the tenant's
//! quota.

use super::{HostResult, denied, error};
use crate::plugins::bindings::easel::plugin::kv;
use crate::plugins::kv_store::KvError;
use crate::plugins::manifest::KvQuota;
use crate::plugins::state::CallState;

fn kv_error(e: KvError) -> crate::plugins::bindings::easel::plugin::types::PluginError {
    error(e.code(), e.to_string())
}

impl CallState {
    fn kv_gate(&mut self) -> wasmtime::Result<HostResult<KvQuota>> {
        self.charge_call()?;
        Ok(self.env.granted.kv.clone().ok_or_else(|| denied("kv")))
    }
}

impl kv::Host for CallState {
    fn get(&mut self, key: String) -> wasmtime::Result<HostResult<Option<Vec<u8>>>> {
        if let Err(e) = self.kv_gate()? {
            return Ok(Err(e));
        }
        Ok(self
            .env
            .kv
            .get(&self.env.kv_scope(), &key)
            .map_err(kv_error))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<HostResult<()>> {
        let quota = match self.kv_gate()? {
            Ok(q) => q,
            Err(e) => return Ok(Err(e)),
        };
        Ok(self
            .env
            .kv
            .set(&self.env.kv_scope(), &key, &value, &quota)
            .map_err(kv_error))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<HostResult<bool>> {
        if let Err(e) = self.kv_gate()? {
            return Ok(Err(e));
        }
        Ok(self
            .env
            .kv
            .delete(&self.env.kv_scope(), &key)
            .map_err(kv_error))
    }

    fn list_keys(&mut self, prefix: String) -> wasmtime::Result<HostResult<Vec<String>>> {
        if let Err(e) = self.kv_gate()? {
            return Ok(Err(e));
        }
        Ok(self
            .env
            .kv
            .list_keys(&self.env.kv_scope(), &prefix)
            .map_err(kv_error))
    }
}
