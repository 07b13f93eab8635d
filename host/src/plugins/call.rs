//! Running one guest call: a fresh `Store` with the call's limits, on the current (blocking)
//! thread, and turning whatever ended it into a [`CallError`].

use super::errors::{CallError, Violation};
use super::limits::Limits;
use super::sched;
use super::state::{CallEnv, CallState, Limiter, LogBuffer, LogLevel, LogLine, SharedLog};
use super::stdio::LogPipe;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::WasiHttpCtx;

/// What a call cost, recorded on the job whether it succeeded or not.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CallReport {
    pub plugin: String,
    pub version: u32,
    pub hash: String,
    /// Instantiation plus the call, in microseconds.
    pub wall_us: u64,
    /// Of which inside `models.run`.
    pub model_us: u64,
    pub fuel_used: u64,
    pub host_calls: u64,
    /// Linear memory plus host images, at the end of the call.
    pub memory_bytes: u64,
    pub logs: Vec<LogLine>,
}

/// How the closure run inside the store failed.
pub(crate) enum Fault {
    /// Instantiation or the guest call failed (trap, limit, link error).
    Wasm(wasmtime::Error),
    /// The guest returned, but its result is refused.
    Call(CallError),
}

impl From<wasmtime::Error> for Fault {
    fn from(e: wasmtime::Error) -> Self {
        Self::Wasm(e)
    }
}

impl From<CallError> for Fault {
    fn from(e: CallError) -> Self {
        Self::Call(e)
    }
}

/// Runs `f` in a fresh store limited by `env.limits`. Blocking.
pub(crate) fn execute<R>(
    engine: &Engine,
    demote_after: Option<Duration>,
    env: Arc<CallEnv>,
    report: &mut CallReport,
    f: impl FnOnce(&mut Store<CallState>) -> Result<R, Fault>,
) -> Result<R, CallError> {
    let limits = env.limits.clone();
    let log: SharedLog = Arc::new(Mutex::new(LogBuffer {
        lines: Vec::new(),
        bytes: 0,
        limit: limits.log_bytes,
        exceeded: false,
    }));
    // Deny by default: no preopens, no environment, no arguments, no sockets. Clocks and
    // random come with the context; stdout/stderr feed the bounded log.
    let wasi = WasiCtx::builder()
        .stdout(LogPipe::new(log.clone(), LogLevel::Stdout))
        .stderr(LogPipe::new(log.clone(), LogLevel::Stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let state = CallState {
        table: ResourceTable::new(),
        wasi,
        http: WasiHttpCtx::new(),
        http_hooks: super::http::DenyOutgoing,
        env,
        limiter: Limiter {
            memory_limit: limits.memory_bytes,
            memory_used: 0,
            table_limit: limits.table_elements,
            instance_limit: limits.instances,
            violation: None,
        },
        log: log.clone(),
        host_calls: 0,
        started: Instant::now(),
        model_time: Default::default(),
        violation: None,
        demoted_from: None,
    };
    let mut store = Store::new(engine, state);
    if demote_after.is_some()
        && store.data().env.load.hot()
        && let Some(nice) = sched::current_nice()
        && sched::set_nice(sched::DEMOTED_NICE.max(nice))
    {
        // This tenant has been keeping a core busy: its call starts at low priority.
        store.data_mut().demoted_from = Some(nice);
    }
    store.limiter(|s| &mut s.limiter);
    let result = (|| {
        store.set_fuel(limits.fuel)?;
        let wall = limits.wall_time();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            let ran = ctx.data().guest_time();
            if ran > wall {
                ctx.data_mut().violation = Some(Violation::Timeout);
                return Err(Violation::Timeout.into());
            }
            if let Some(after) = demote_after
                && ran > after
                && ctx.data().demoted_from.is_none()
                && let Some(nice) = sched::current_nice()
                && sched::set_nice(sched::DEMOTED_NICE.max(nice))
            {
                ctx.data_mut().demoted_from = Some(nice);
            }
            Ok(UpdateDeadline::Continue(1))
        });
        f(&mut store)
    })();
    store.data().env.load.add(store.data().guest_time());
    if let Some(nice) = store.data().demoted_from {
        // Supported was checked at startup, so this succeeds; the thread is reused.
        if !sched::set_nice(nice) {
            tracing::warn!("could not restore a plugin thread's priority to {nice}");
        }
    }
    let fuel_left = store.get_fuel().unwrap_or(0);
    let data = store.data();
    report.wall_us = data.started.elapsed().as_micros() as u64;
    report.model_us = data.model_time.as_micros() as u64;
    report.fuel_used = limits.fuel.saturating_sub(fuel_left);
    report.host_calls = data.host_calls;
    report.memory_bytes = data.limiter.memory_used;
    let violation = data
        .violation
        .clone()
        .or_else(|| data.limiter.violation.clone());
    let log_exceeded;
    {
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        log_exceeded = log.exceeded;
        report.logs = std::mem::take(&mut log.lines);
    }
    drop(store);
    match result {
        Ok(r) => Ok(r),
        Err(Fault::Call(e)) => Err(e),
        Err(Fault::Wasm(e)) => Err(classify(
            e,
            violation,
            log_exceeded,
            fuel_left,
            &limits,
            &report.logs,
        )),
    }
}

/// Names the limit or trap that ended a call.
fn classify(
    err: wasmtime::Error,
    violation: Option<Violation>,
    log_exceeded: bool,
    fuel_left: u64,
    limits: &Limits,
    logs: &[LogLine],
) -> CallError {
    let violation = violation
        .or_else(|| err.downcast_ref::<Violation>().cloned())
        .or_else(|| {
            err.chain()
                .find_map(|e| e.downcast_ref::<Violation>().cloned())
        })
        .or(log_exceeded.then_some(Violation::LogBytes));
    if let Some(v) = violation {
        return match v {
            Violation::Timeout => CallError::Timeout {
                limit_ms: limits.wall_time_ms,
            },
            Violation::Memory(m) => CallError::MemoryLimit(m),
            Violation::Table(m) => CallError::TableLimit(m),
            Violation::LogBytes => CallError::LogLimit {
                limit: limits.log_bytes,
            },
            Violation::HostCalls => CallError::HostCallLimit {
                limit: limits.host_calls,
            },
        };
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => CallError::Timeout {
                limit_ms: limits.wall_time_ms,
            },
            Trap::OutOfFuel => CallError::FuelExhausted { limit: limits.fuel },
            Trap::StackOverflow => CallError::StackOverflow,
            other => {
                // A Rust guest's panic message went to stderr just before the trap, often
                // in several writes (location, then message).
                let stderr: Vec<&str> = logs
                    .iter()
                    .filter(|l| l.level == LogLevel::Stderr)
                    .map(|l| l.message.as_str())
                    .collect();
                let panic = stderr
                    .iter()
                    .rposition(|m| m.contains("panicked"))
                    .map(|i| {
                        let text = stderr[i..]
                            .join(" ")
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ");
                        let text: String = text.chars().take(300).collect();
                        format!(" ({text})")
                    })
                    .unwrap_or_default();
                CallError::Trap(format!("{other}{panic}"))
            }
        };
    }
    if fuel_left == 0 {
        return CallError::FuelExhausted { limit: limits.fuel };
    }
    let text = format!("{err:#}");
    if text.contains("concurrent") && text.contains("limit") {
        return CallError::Busy(text);
    }
    if text.contains("instance") && text.contains("limit") {
        return CallError::InstanceLimit {
            limit: limits.instances,
        };
    }
    CallError::Trap(text)
}
