//! A tenant's recent guest time, so that a tenant whose calls keep a core busy (many short
//! calls back to back, each under the per-call throttle threshold) has its next calls
//! throttled from their first epoch tick.

/// A tenant's recent guest time, decaying exponentially.
#[derive(Debug)]
pub(crate) struct TenantLoad {
    /// (decayed busy seconds, when last updated).
    state: std::sync::Mutex<(f64, std::time::Instant)>,
}

/// Decay time constant of [`TenantLoad`].
const LOAD_TAU_S: f64 = 0.1;
/// Busy fraction of one core above which a tenant's calls start throttled.
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
