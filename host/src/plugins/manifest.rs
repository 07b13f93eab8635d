//! A plugin's manifest (what its author declares) and a tenant's policy (what the operator
//! grants). Capabilities a call gets are the manifest's requests intersected with the policy.

use super::errors::UploadError;
use super::limits::{LimitOverrides, Limits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The world a component implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    Processor,
    Router,
    Endpoint,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processor => "processor",
            Self::Router => "router",
            Self::Endpoint => "endpoint",
        }
    }
}

/// The host interfaces a plugin asks for. Absent fields ask for the interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capabilities {
    pub images: bool,
    /// Task names (`upscale`) or `task/model` pairs the plugin may run; `*` for any the
    /// tenant may use.
    pub models: Vec<String>,
    pub log: bool,
    pub config: bool,
    pub kv: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            images: true,
            models: vec!["*".into()],
            log: true,
            config: true,
            kv: true,
        }
    }
}

/// The optional manifest uploaded with a component.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Manifest {
    /// Must match the component's exports when given; inferred otherwise.
    pub world: Option<World>,
    /// Tasks a processor or router hooks into (the pipeline wiring reads this).
    pub tasks: Vec<String>,
    /// Path prefixes an endpoint serves under `/v1/x/{plugin}/` (all when empty).
    pub routes: Vec<String>,
    /// Per-tenant settings the plugin reads through the `config` interface.
    pub config: BTreeMap<String, String>,
    pub limits: LimitOverrides,
    pub capabilities: Capabilities,
}

impl Manifest {
    /// Parses a manifest JSON document, naming the bad field on error.
    pub fn from_json(bytes: &[u8]) -> Result<Self, UploadError> {
        serde_json::from_slice(bytes).map_err(|e| UploadError::Manifest(e.to_string()))
    }
}

/// Quotas of a tenant's key-value store, per plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvQuota {
    pub max_keys: usize,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_total_bytes: usize,
}

impl Default for KvQuota {
    fn default() -> Self {
        Self {
            max_keys: 1_000,
            max_key_bytes: 256,
            max_value_bytes: 64 << 10,
            max_total_bytes: 4 << 20,
        }
    }
}

/// What the operator lets a tenant's plugins do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPolicy {
    /// Default limits of this tenant's plugin calls (plugins may override within the caps).
    pub limits: Limits,
    pub images: bool,
    /// Models (task names or `task/model`; `*` for all) this tenant may run from plugins.
    pub allowed_models: Vec<String>,
    pub log: bool,
    pub config: bool,
    /// `None` denies the key-value store.
    pub kv: Option<KvQuota>,
    /// Destinations this tenant's guests may send HTTP requests to
    /// (`wasi:http/outgoing-handler`). A non-empty list also admits components that import
    /// `wasi:sockets/*` or the outgoing handler at upload; sockets themselves stay closed
    /// at run time, and requests elsewhere fail with `HTTP-request-denied`.
    pub allow_hosts: Vec<super::net::HostPattern>,
    /// Guest calls of this tenant that may run longer than 2 ms at once; a call reaching
    /// 2 ms waits (not counted against its wall time) at its next epoch tick until one of
    /// these is free. This is what keeps one tenant's spinning plugins from taking every core.
    pub max_concurrent_calls: usize,
    /// Guest calls of this tenant in flight at once (instances alive), short ones included;
    /// further calls wait before instantiating. Calls that finish within 2 ms need only
    /// this, so a tenant's many short calls (endpoints) are not serialized behind
    /// `max_concurrent_calls`. At least `max_concurrent_calls`.
    pub max_open_calls: usize,
}

impl TenantPolicy {
    /// Whether the operator lets this tenant's guests reach the network at all.
    pub fn network(&self) -> bool {
        !self.allow_hosts.is_empty()
    }
}

impl Default for TenantPolicy {
    fn default() -> Self {
        Self {
            limits: Limits::tenant_default(),
            images: true,
            allowed_models: Vec::new(),
            log: true,
            config: true,
            kv: Some(KvQuota::default()),
            allow_hosts: Vec::new(),
            max_concurrent_calls: 2,
            max_open_calls: 8,
        }
    }
}

/// The capabilities a call actually has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Granted {
    pub images: bool,
    pub models: Vec<String>,
    pub log: bool,
    pub config: bool,
    pub kv: Option<KvQuota>,
}

impl Granted {
    pub fn new(asked: &Capabilities, policy: &TenantPolicy) -> Self {
        let models = asked
            .models
            .iter()
            .filter(|m| model_allowed(&policy.allowed_models, m) || m.as_str() == "*")
            .cloned()
            .collect();
        Self {
            images: asked.images && policy.images,
            models,
            log: asked.log && policy.log,
            config: asked.config && policy.config,
            kv: if asked.kv { policy.kv.clone() } else { None },
        }
    }

    /// Whether this call may run `task` with `model`: both the plugin's request and the
    /// tenant's policy must allow it.
    pub fn may_run(&self, policy_models: &[String], task: &str, model: Option<&str>) -> bool {
        let check = |list: &[String]| {
            list.iter().any(|m| {
                m == "*" || m == task || model.is_some_and(|model| *m == format!("{task}/{model}"))
            })
        };
        check(&self.models) && check(policy_models)
    }
}

fn model_allowed(list: &[String], asked: &str) -> bool {
    list.iter()
        .any(|m| m == "*" || m == asked || asked.split_once('/').is_some_and(|(task, _)| m == task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_is_the_intersection() {
        let policy = TenantPolicy {
            allowed_models: vec!["upscale".into()],
            kv: None,
            ..Default::default()
        };
        let g = Granted::new(&Capabilities::default(), &policy);
        assert!(g.may_run(&policy.allowed_models, "upscale", None));
        assert!(g.may_run(&policy.allowed_models, "upscale", Some("x4")));
        assert!(!g.may_run(&policy.allowed_models, "remove-background", None));
        assert!(
            g.kv.is_none(),
            "the tenant's denial wins over the plugin's request"
        );
        let asked = Capabilities {
            models: vec!["remove-background".into()],
            ..Default::default()
        };
        let g = Granted::new(&asked, &policy);
        assert!(
            !g.may_run(&policy.allowed_models, "upscale", None),
            "plugin did not ask"
        );
    }

    #[test]
    fn manifest_names_unknown_fields() {
        let e = Manifest::from_json(br#"{"limits":{"wall_ms":5}}"#).unwrap_err();
        assert!(e.to_string().contains("wall_ms"), "{e}");
    }
}
