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

/// Which tenants have work in flight: plugin calls (waiting for a slot or running) and what
/// the server registers (authenticated API requests, running jobs). A hot tenant's guests
/// pause only while another tenant is active: when the only work waiting is the tenant's
/// own, pausing slows it down and protects nobody.
#[derive(Debug, Default)]
pub struct Activity {
    counts: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl Activity {
    /// Marks `tenant` active until the guard drops.
    pub fn enter(self: &std::sync::Arc<Self>, tenant: &str) -> ActivityGuard {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *c.entry(tenant.to_owned()).or_default() += 1;
        ActivityGuard {
            activity: self.clone(),
            tenant: tenant.to_owned(),
        }
    }

    /// Whether any tenant other than `tenant` has work in flight.
    pub fn others_active(&self, tenant: &str) -> bool {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.keys().any(|t| t != tenant)
    }
}

/// Keeps a tenant marked active ([`Activity::enter`]).
#[derive(Debug)]
pub struct ActivityGuard {
    activity: std::sync::Arc<Activity>,
    tenant: String,
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        let mut c = self
            .activity
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.tenant);
            }
        }
    }
}

/// A call's claim on one of its tenant's long-call slots
/// ([`TenantPolicy::max_concurrent_calls`](super::TenantPolicy::max_concurrent_calls)), taken
/// once the call has run 2 ms: calls that finish sooner never wait for one.
#[derive(Debug)]
pub(crate) struct LongSlot {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    permit: std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
    /// Whether the call has asked for its slot (a closed semaphore leaves `permit` empty).
    asked: std::sync::atomic::AtomicBool,
}

impl LongSlot {
    pub fn new(slots: std::sync::Arc<tokio::sync::Semaphore>) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            slots,
            permit: std::sync::Mutex::new(None),
            asked: Default::default(),
        })
    }

    /// Whether the call still has to take its slot.
    pub fn needed(&self) -> bool {
        !self.asked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for a slot and keeps it until the call ends.
    pub async fn take(self: std::sync::Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.asked.swap(true, Ordering::Relaxed) {
            return;
        }
        let permit = self.slots.clone().acquire_owned().await.ok();
        *self.permit.lock().unwrap_or_else(|p| p.into_inner()) = permit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn activity_counts_other_tenants_only() {
        let a = Arc::new(Activity::default());
        assert!(!a.others_active("t1"));
        let g1 = a.enter("t1");
        let g1b = a.enter("t1");
        assert!(!a.others_active("t1"), "a tenant's own work does not count");
        assert!(a.others_active("t2"));
        drop(g1);
        assert!(
            a.others_active("t2"),
            "one of t1's two calls is still in flight"
        );
        drop(g1b);
        assert!(!a.others_active("t2"));
        let _g2 = a.enter("t2");
        assert!(a.others_active("t1"));
    }

    #[tokio::test]
    async fn long_slots_cap_concurrent_long_calls() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let first = LongSlot::new(slots.clone());
        let second = LongSlot::new(slots.clone());
        assert!(first.needed());
        first.clone().take().await;
        assert!(!first.needed());
        assert_eq!(
            slots.available_permits(),
            0,
            "the first call holds the only slot"
        );
        let waiting = tokio::spawn(second.clone().take());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the second call waits for the slot");
        drop(first);
        waiting.await.unwrap();
        assert_eq!(slots.available_permits(), 0, "now the second call holds it");
        drop(second);
        assert_eq!(
            slots.available_permits(),
            1,
            "ending the call frees the slot"
        );
    }
}
