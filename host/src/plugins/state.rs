//! The state of one plugin call: everything its `Store` holds, the resource limiter, and the
//! bounded log the guest writes to (through `log` or stdout/stderr).

use super::errors::Violation;
use super::kv_store::{KvScope, KvStore};
use super::limits::Limits;
use super::manifest::{Granted, TenantPolicy};
use super::model_runner::ModelRunner;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Log severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    /// Written to stdout.
    Stdout,
    /// Written to stderr (a Rust guest's panic message lands here).
    Stderr,
}

/// One line of a plugin's log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// The log of one call, bounded by the log-byte limit.
#[derive(Debug)]
pub(crate) struct LogBuffer {
    pub lines: Vec<LogLine>,
    pub bytes: u64,
    pub limit: u64,
    pub exceeded: bool,
}

impl LogBuffer {
    /// Appends a line; past the limit, marks the buffer and refuses.
    pub fn push(&mut self, level: LogLevel, message: &str) -> Result<(), Violation> {
        let len = message.len() as u64;
        if self.exceeded || self.bytes + len > self.limit {
            self.exceeded = true;
            return Err(Violation::LogBytes);
        }
        self.bytes += len;
        self.lines.push(LogLine {
            level,
            message: message.to_owned(),
        });
        Ok(())
    }
}

pub(crate) type SharedLog = Arc<Mutex<LogBuffer>>;

/// What a call may touch, fixed before it starts.
pub(crate) struct CallEnv {
    pub tenant: String,
    pub plugin: String,
    pub limits: Limits,
    pub granted: Granted,
    pub policy: Arc<TenantPolicy>,
    pub config: Arc<BTreeMap<String, String>>,
    pub kv: Arc<dyn KvStore>,
    pub models: Arc<dyn ModelRunner>,
    /// The tenant's recent guest time (a hot tenant's calls are throttled).
    pub load: Arc<super::tenant_load::TenantLoad>,
}

impl CallEnv {
    pub fn kv_scope(&self) -> KvScope {
        KvScope {
            tenant: self.tenant.clone(),
            plugin: self.plugin.clone(),
        }
    }
}

/// Counts linear memory, tables and instances against the call's limits.
pub(crate) struct Limiter {
    pub memory_limit: u64,
    /// Linear memory of every memory of the component, plus host images it created.
    pub memory_used: u64,
    pub table_limit: u64,
    pub instance_limit: u32,
    pub violation: Option<Violation>,
}

impl Limiter {
    /// Charges `bytes` of host memory made on the guest's behalf (images).
    pub fn charge_host_bytes(&mut self, bytes: u64) -> Result<(), Violation> {
        if self.memory_used + bytes > self.memory_limit {
            let v = Violation::Memory(format!(
                "a host image of {bytes} bytes would take the call past {} bytes",
                self.memory_limit
            ));
            self.violation = Some(v.clone());
            return Err(v);
        }
        self.memory_used += bytes;
        Ok(())
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = (desired - current) as u64;
        if self.memory_used + grow > self.memory_limit {
            // An error (not `Ok(false)`) so the call ends with a named limit instead of the
            // guest's own out-of-memory handling (a Rust guest would abort with a trap).
            let v = Violation::Memory(format!(
                "growing linear memory to {desired} bytes would take the call past {} bytes",
                self.memory_limit
            ));
            self.violation = Some(v.clone());
            return Err(v.into());
        }
        self.memory_used += grow;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.table_limit {
            let v = Violation::Table(format!(
                "a table of {desired} elements exceeds {}",
                self.table_limit
            ));
            self.violation = Some(v.clone());
            return Err(v.into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instance_limit as usize
    }

    fn tables(&self) -> usize {
        self.instance_limit as usize * 4
    }

    fn memories(&self) -> usize {
        self.instance_limit as usize
    }
}

/// Everything a plugin call's `Store` holds.
pub(crate) struct CallState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub http_hooks: super::net::OutgoingHttp,
    pub env: Arc<CallEnv>,
    pub limiter: Limiter,
    pub log: SharedLog,
    pub host_calls: u64,
    pub started: Instant,
    /// Time spent in `models.run`, which the wall-time limit does not count.
    pub model_time: Duration,
    /// The wall-time clock, paused in `models.run` and while waiting for the long-call slot.
    pub clock: GuestClock,
    pub violation: Option<Violation>,
}

impl CallState {
    /// Counts one host call against the budget.
    pub fn charge_call(&mut self) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.env.limits.host_calls {
            self.violation = Some(Violation::HostCalls);
            return Err(Violation::HostCalls.into());
        }
        Ok(())
    }

    /// The guest's running time so far (model time and the wait for a long-call slot
    /// excluded).
    pub fn guest_time(&self) -> Duration {
        self.clock.guest_time()
    }
}

/// A call's wall-time clock: the time since it started less the time it spent where the
/// guest is not to blame (`models.run`, waiting for a long-call slot). It is shared with the
/// call's watchdog, which ends a guest blocked in the host (a sleep, an outgoing request)
/// once its limit passes: epoch ticks only reach a guest that is running.
#[derive(Clone, Debug)]
pub(crate) struct GuestClock {
    started: Instant,
    paused: Arc<Mutex<Paused>>,
}

#[derive(Debug, Default)]
struct Paused {
    total: Duration,
    /// Set while paused; pauses do not nest (a paused call is not running guest code).
    since: Option<Instant>,
}

impl GuestClock {
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
            paused: Default::default(),
        }
    }

    pub fn guest_time(&self) -> Duration {
        let p = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        let paused = p.total + p.since.map_or(Duration::ZERO, |s| s.elapsed());
        self.started.elapsed().saturating_sub(paused)
    }

    /// Stops the clock until the returned guard drops.
    pub fn pause(&self) -> ClockPause {
        let mut p = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        let owner = p.since.is_none();
        if owner {
            p.since = Some(Instant::now());
        }
        ClockPause {
            paused: self.paused.clone(),
            owner,
        }
    }
}

/// Restarts its [`GuestClock`] when dropped.
pub(crate) struct ClockPause {
    paused: Arc<Mutex<Paused>>,
    owner: bool,
}

impl Drop for ClockPause {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        let mut p = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(since) = p.since.take() {
            p.total += since.elapsed();
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}
