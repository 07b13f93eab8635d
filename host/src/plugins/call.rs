//! Running one guest call: a fresh `Store` with the call's limits, on the current async task
//! (the guest runs on a fiber and yields to the executor at every epoch tick), and turning
//! whatever ended it into a [`CallError`].

use super::errors::{CallError, Violation};
use super::limits::Limits;
use super::net::OutgoingHttp;
use super::state::{
    CallEnv, CallState, GuestClock, Limiter, LogBuffer, LogLevel, LogLine, SharedLog,
};
use super::stdio::LogPipe;
use super::tenant_load::LongSlot;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The guest's part of a call: instantiates and calls into the store it is given.
pub(crate) type GuestFuture<'a, R> = Pin<Box<dyn Future<Output = Result<R, Fault>> + Send + 'a>>;

/// Boxes the guest's part of a call (and fixes its output type for `?` inside).
pub(crate) fn guest<'a, R>(
    f: impl Future<Output = Result<R, Fault>> + Send + 'a,
) -> GuestFuture<'a, R> {
    Box::pin(f)
}

/// When and how hard runaway guests are slowed down (see
/// [`PluginHostConfig::throttle_after`](super::PluginHostConfig::throttle_after)).
#[derive(Clone, Debug)]
pub(crate) struct Throttle {
    /// `None`: never throttle.
    pub after: Option<Duration>,
    pub pause: Duration,
    pub contention: Arc<Contention>,
    pub activity: Arc<super::tenant_load::Activity>,
}

/// A call that has run this long needs one of its tenant's long-call slots. Not "at the first
/// epoch tick": a short call can straddle a tick boundary after a few microseconds.
const LONG_CALL: Duration = Duration::from_millis(2);

/// A yield that took longer than this ran other tasks: the workers are contended.
const CONTENDED: Duration = Duration::from_micros(20);
/// How long one contended yield keeps throttled guests pausing.
const BUSY_WINDOW: Duration = Duration::from_millis(100);

/// When a throttled guest last found other tasks waiting for its worker, shared by all calls.
#[derive(Debug)]
pub(crate) struct Contention {
    since: Instant,
    /// Microseconds after `since` of the last contended yield (0: never).
    last_us: AtomicU64,
}

impl Contention {
    pub fn new() -> Self {
        Self {
            since: Instant::now(),
            last_us: AtomicU64::new(0),
        }
    }

    fn mark(&self) {
        let now = self.since.elapsed().as_micros() as u64;
        self.last_us.store(now.max(1), Ordering::Relaxed);
    }

    fn recent(&self) -> bool {
        let last = self.last_us.load(Ordering::Relaxed);
        last != 0 && self.since.elapsed().as_micros() as u64 - last < BUSY_WINDOW.as_micros() as u64
    }
}

/// A throttled guest's yield. A runaway call (past the threshold) always pauses, so it takes
/// about `tick / (tick + pause)` of a worker. A call throttled only because its tenant is hot
/// goes to the back of the worker's queue and pauses only while any throttled guest has
/// recently found other tasks waiting (this one included) and another tenant has work in
/// flight: a lone tenant's back-to-back short calls keep their speed, idle server or not.
async fn throttled_yield(runaway: bool, throttle: Throttle, tenant: String) {
    if !runaway {
        let yielded = Instant::now();
        tokio::task::yield_now().await;
        if yielded.elapsed() >= CONTENDED {
            throttle.contention.mark();
        }
        if !throttle.contention.recent() || !throttle.activity.others_active(&tenant) {
            return;
        }
    }
    let pause = throttle.pause;
    tokio::time::sleep(pause).await;
}

/// Runs `f` in a fresh store limited by `env.limits`, on the calling task.
pub(crate) async fn execute<R>(
    engine: &Engine,
    throttle: Throttle,
    env: Arc<CallEnv>,
    long: Arc<LongSlot>,
    report: &mut CallReport,
    f: impl for<'a> FnOnce(&'a mut Store<CallState>) -> GuestFuture<'a, R>,
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
        http_hooks: OutgoingHttp {
            policy: env.policy.clone(),
            timeout: limits.wall_time(),
            max_body: usize::try_from(limits.output_bytes).unwrap_or(usize::MAX),
        },
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
        clock: GuestClock::start(),
        violation: None,
    };
    // A tenant that has been keeping a core busy is throttled from its call's first tick.
    let hot = throttle.after.is_some() && state.env.load.hot();
    let tenant = state.env.tenant.clone();
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    let result = match store.set_fuel(limits.fuel) {
        Ok(()) => {
            let wall = limits.wall_time();
            let clock = store.data().clock.clone();
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(move |mut ctx| {
                let ran = ctx.data().guest_time();
                if ran > wall {
                    ctx.data_mut().violation = Some(Violation::Timeout);
                    return Err(Violation::Timeout.into());
                }
                // Every tick gives the worker back to the executor, so a spinning guest
                // delays other tasks on its worker by one tick at most; a throttled one
                // also pauses (see `throttled_yield`). A call that has run `LONG_CALL`
                // waits for one of the tenant's long-call slots.
                let runaway = throttle.after.is_some_and(|after| ran > after);
                let slot = (long.needed() && ran >= LONG_CALL).then(|| {
                    let paused = ctx.data().clock.pause();
                    let take = long.clone().take();
                    async move {
                        take.await;
                        drop(paused);
                    }
                });
                let pause = (runaway || hot)
                    .then(|| throttled_yield(runaway, throttle.clone(), tenant.clone()));
                Ok(if slot.is_none() && pause.is_none() {
                    UpdateDeadline::Yield(1)
                } else {
                    UpdateDeadline::YieldCustom(
                        1,
                        Box::pin(async move {
                            if let Some(slot) = slot {
                                slot.await;
                            }
                            if let Some(pause) = pause {
                                pause.await;
                            }
                        }),
                    )
                })
            });
            // The watchdog ends a guest that blocks in the host past its limit; dropping
            // the call's future abandons the guest, and the store is dropped below.
            let watchdog = async move {
                loop {
                    let ran = clock.guest_time();
                    if ran > wall {
                        return;
                    }
                    tokio::time::sleep(wall - ran + Duration::from_millis(1)).await;
                }
            };
            // Guest first: a call that completes in its first poll (most do) never polls
            // the watchdog, so it never registers (and cancels) a timer.
            let outcome = tokio::select! {
                biased;
                r = f(&mut store) => Some(r),
                () = watchdog => None,
            };
            outcome.unwrap_or_else(|| {
                store.data_mut().violation = Some(Violation::Timeout);
                Err(Fault::Wasm(Violation::Timeout.into()))
            })
        }
        Err(e) => Err(Fault::Wasm(e)),
    };
    store.data().env.load.add(store.data().guest_time());
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
