//! Demoting runaway guests: a guest that has run longer than a threshold gets its thread's
//! nice value raised (lower CPU priority) for the rest of its call, so a tenant's spinning
//! plugin yields the CPU to other tenants' short calls. Linux only; where the process may not
//! restore a thread's priority afterwards (no CAP_SYS_NICE and a low RLIMIT_NICE), demotion is
//! switched off, because guest threads are reused.

/// The nice value demoted guest threads run at.
pub(crate) const DEMOTED_NICE: i32 = 19;

#[cfg(target_os = "linux")]
fn tid() -> libc::id_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as libc::id_t }
}

/// The calling thread's nice value.
#[cfg(target_os = "linux")]
pub(crate) fn current_nice() -> Option<i32> {
    // getpriority may legitimately return -1, so errno tells failure apart.
    // SAFETY: plain libc calls on the calling thread.
    unsafe {
        *libc::__errno_location() = 0;
        let n = libc::getpriority(libc::PRIO_PROCESS, tid());
        (*libc::__errno_location() == 0).then_some(n)
    }
}

/// Sets the calling thread's nice value; false if not permitted. At [`DEMOTED_NICE`] the
/// thread also moves to `SCHED_IDLE`, and back to `SCHED_OTHER` below it: a low nice value
/// alone still lets a spinning guest finish its time slice (a few ms) before a waking
/// thread of another tenant runs, once per wake-up — a job that hops between threads a
/// dozen times would pay that a dozen times. An idle-class thread is preempted at once.
#[cfg(target_os = "linux")]
pub(crate) fn set_nice(nice: i32) -> bool {
    let policy = if nice >= DEMOTED_NICE {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: on Linux, a thread id as the pid of sched_setscheduler and of PRIO_PROCESS
    // affects only that thread; `param` outlives the call.
    unsafe {
        libc::sched_setscheduler(tid() as libc::pid_t, policy, &param) == 0
            && libc::setpriority(libc::PRIO_PROCESS, tid(), nice) == 0
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn current_nice() -> Option<i32> {
    None
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn set_nice(_nice: i32) -> bool {
    false
}

/// Whether a thread can be demoted and then restored here (checked once, on a scratch
/// thread).
pub(crate) fn demotion_supported() -> bool {
    std::thread::spawn(|| {
        let Some(base) = current_nice() else {
            return false;
        };
        set_nice(DEMOTED_NICE) && set_nice(base) && current_nice() == Some(base)
    })
    .join()
    .unwrap_or(false)
}

/// A tenant's recent guest CPU time, decaying exponentially, so that a tenant whose calls
/// keep a core busy (many short calls back to back, each under the per-call threshold) runs
/// its next calls demoted from their first instruction.
#[derive(Debug)]
pub(crate) struct TenantLoad {
    /// (decayed busy seconds, when last updated).
    state: std::sync::Mutex<(f64, std::time::Instant)>,
}

/// Decay time constant of [`TenantLoad`].
const LOAD_TAU_S: f64 = 0.1;
/// Busy fraction of one core above which a tenant's calls start demoted.
const HOT_CORES: f64 = 0.5;

impl Default for TenantLoad {
    fn default() -> Self {
        Self {
            state: std::sync::Mutex::new((0.0, std::time::Instant::now())),
        }
    }
}

impl TenantLoad {
    fn decayed(state: &mut (f64, std::time::Instant)) -> f64 {
        let now = std::time::Instant::now();
        let dt = now.duration_since(state.1).as_secs_f64();
        state.0 *= (-dt / LOAD_TAU_S).exp();
        state.1 = now;
        state.0
    }

    /// Records `busy` of guest time.
    pub fn add(&self, busy: std::time::Duration) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Self::decayed(&mut s);
        s.0 += busy.as_secs_f64();
    }

    /// Whether the tenant has recently kept more than half a core busy.
    pub fn hot(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // A steady rate r of busy seconds per second settles at r * tau.
        Self::decayed(&mut s) > HOT_CORES * LOAD_TAU_S
    }
}
