//! `easel:plugin/log`: bounded log lines the tenant can read back.

use super::{HostResult, denied};
use crate::plugins::bindings::easel::plugin::log::{self, Level};
use crate::plugins::state::{CallState, LogLevel};

impl log::Host for CallState {
    fn write(&mut self, level: Level, message: String) -> wasmtime::Result<HostResult<()>> {
        self.charge_call()?;
        if !self.env.granted.log {
            return Ok(Err(denied("log")));
        }
        let level = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let pushed = self
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(level, &message);
        if let Err(v) = pushed {
            self.violation = Some(v.clone());
            return Err(v.into());
        }
        Ok(Ok(()))
    }
}
