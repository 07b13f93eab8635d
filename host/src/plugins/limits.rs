//! Resource limits: tenant defaults, per-plugin overrides, operator caps.
//!
//! The effective limit of a call is `min(plugin override or tenant default, operator cap)`:
//! a tenant and a plugin author can ask for less or (up to the cap) more, never past the cap.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Every limit a plugin call runs under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time the guest may run (time spent inside `models.run` is not counted).
    pub wall_time_ms: u64,
    /// Wasm fuel (about one unit per instruction).
    pub fuel: u64,
    /// Linear memory of all the component's memories together, plus host images it creates.
    pub memory_bytes: u64,
    /// Elements of any one table.
    pub table_elements: u64,
    /// Core instances the component may create.
    pub instances: u32,
    /// Bytes of output: images (RGBA), audio, metadata, HTTP response bodies.
    pub output_bytes: u64,
    /// Bytes written to the log (log interface plus stdout/stderr).
    pub log_bytes: u64,
    /// Calls into the `easel:plugin` host interfaces.
    pub host_calls: u64,
}

impl Limits {
    /// The defaults a tenant gets when nothing is configured.
    pub fn tenant_default() -> Self {
        Self {
            wall_time_ms: 2_000,
            fuel: 2_000_000_000,
            memory_bytes: 128 << 20,
            table_elements: 20_000,
            instances: 32,
            output_bytes: 64 << 20,
            log_bytes: 64 << 10,
            host_calls: 10_000,
        }
    }

    /// The operator's caps when nothing is configured.
    pub fn operator_cap_default() -> Self {
        Self {
            wall_time_ms: 30_000,
            fuel: 50_000_000_000,
            memory_bytes: 1 << 30,
            table_elements: 1_000_000,
            instances: 64,
            output_bytes: 512 << 20,
            log_bytes: 1 << 20,
            host_calls: 1_000_000,
        }
    }

    /// `self` with `overrides` applied, then clamped to `cap`.
    pub fn effective(&self, overrides: &LimitOverrides, cap: &Limits) -> Limits {
        Limits {
            wall_time_ms: overrides
                .wall_time_ms
                .unwrap_or(self.wall_time_ms)
                .min(cap.wall_time_ms),
            fuel: overrides.fuel.unwrap_or(self.fuel).min(cap.fuel),
            memory_bytes: overrides
                .memory_bytes
                .unwrap_or(self.memory_bytes)
                .min(cap.memory_bytes),
            table_elements: overrides
                .table_elements
                .unwrap_or(self.table_elements)
                .min(cap.table_elements),
            instances: overrides
                .instances
                .unwrap_or(self.instances)
                .min(cap.instances),
            output_bytes: overrides
                .output_bytes
                .unwrap_or(self.output_bytes)
                .min(cap.output_bytes),
            log_bytes: overrides
                .log_bytes
                .unwrap_or(self.log_bytes)
                .min(cap.log_bytes),
            host_calls: overrides
                .host_calls
                .unwrap_or(self.host_calls)
                .min(cap.host_calls),
        }
    }

    /// The wall-time limit as a duration.
    pub fn wall_time(&self) -> Duration {
        Duration::from_millis(self.wall_time_ms)
    }
}

/// Per-plugin overrides from its manifest; `None` keeps the tenant's value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitOverrides {
    pub wall_time_ms: Option<u64>,
    pub fuel: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub table_elements: Option<u64>,
    pub instances: Option<u32>,
    pub output_bytes: Option<u64>,
    pub log_bytes: Option<u64>,
    pub host_calls: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_caps_win() {
        let tenant = Limits::tenant_default();
        let cap = Limits {
            wall_time_ms: 5_000,
            ..Limits::operator_cap_default()
        };
        let o = LimitOverrides {
            wall_time_ms: Some(60_000),
            fuel: Some(10),
            ..Default::default()
        };
        let e = tenant.effective(&o, &cap);
        assert_eq!(e.wall_time_ms, 5_000, "cap wins over a larger override");
        assert_eq!(e.fuel, 10, "a smaller override applies");
        assert_eq!(
            e.memory_bytes, tenant.memory_bytes,
            "unset keeps the tenant value"
        );
    }
}
