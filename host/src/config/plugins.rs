//! `[plugins]`: upload caps, the compile cache, the limits and capabilities of guest calls
//! (every tenant's defaults, the operator's caps) and per-tenant policies
//! (`[plugins.tenants.<tenant id>]`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::plugins::{HostPattern, KvQuota, LimitOverrides, Limits, TenantPolicy};

/// Tenant plugins (WebAssembly components): upload caps and the compile cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Largest component accepted by `PUT /v1/plugins/{name}` (also bounded by
    /// `limits.max_body_bytes`).
    pub max_component_bytes: usize,
    /// Longest a component may take to compile before the upload is refused, in seconds.
    pub compile_timeout_secs: u64,
    /// Where compiled artefacts are cached by content hash and engine version
    /// (default `<data dir>/plugin-cache`).
    pub cache_dir: Option<PathBuf>,
    /// Tasks (`upscale`) or `task/model` pairs every tenant's plugins may run through
    /// `models.run` (`*`: all); each run is charged the task's credits like a job.
    pub allowed_models: Vec<String>,
    /// Per-tenant replacements of `allowed_models`, by tenant id.
    pub tenant_models: BTreeMap<String, Vec<String>>,
    /// Quotas of each plugin's key-value store (`[plugins.kv]`).
    pub kv: KvQuotaConfig,
    /// Guest calls of one tenant that may run longer than 2 ms at once
    /// (default: half the cores, at least 1): what keeps one tenant's spinning plugins from
    /// taking every core.
    pub max_concurrent_calls: usize,
    /// Guest calls of one tenant in flight at once, short ones included (at least
    /// `max_concurrent_calls`).
    pub max_open_calls: usize,
    /// Every tenant's limits for one guest call (`[plugins.limits]`), over the built-in
    /// defaults; a plugin's manifest may ask for other values up to the caps.
    pub limits: LimitOverrides,
    /// The operator's caps (`[plugins.caps]`), over the built-in caps: no tenant setting or
    /// manifest goes past them.
    pub caps: LimitOverrides,
    /// Per-tenant policies by tenant id (`[plugins.tenants.<id>]`).
    pub tenants: BTreeMap<String, PluginTenantConfig>,
}

/// Quotas of the `kv` interface, per tenant and plugin (one scope each).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KvQuotaConfig {
    /// Keys one scope may hold.
    pub max_keys: usize,
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Keys plus values of one scope, in bytes.
    pub max_total_bytes: usize,
}

/// SQLite's default maximum length of a blob (`SQLITE_MAX_LENGTH`): a larger value could
/// never be stored.
const MAX_KV_VALUE_BYTES: usize = 1_000_000_000;

impl Default for KvQuotaConfig {
    fn default() -> Self {
        let q = KvQuota::default();
        KvQuotaConfig {
            max_keys: q.max_keys,
            max_key_bytes: q.max_key_bytes,
            max_value_bytes: q.max_value_bytes,
            max_total_bytes: q.max_total_bytes,
        }
    }
}

impl KvQuotaConfig {
    pub fn quota(&self) -> KvQuota {
        KvQuota {
            max_keys: self.max_keys,
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
            max_total_bytes: self.max_total_bytes,
        }
    }

    fn validate(&self, section: &str) -> Result<(), String> {
        let fields = [
            ("max_keys", self.max_keys),
            ("max_key_bytes", self.max_key_bytes),
            ("max_value_bytes", self.max_value_bytes),
            ("max_total_bytes", self.max_total_bytes),
        ];
        if let Some((name, _)) = fields.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{section}.{name} must be at least 1"));
        }
        if self.max_value_bytes > MAX_KV_VALUE_BYTES {
            return Err(format!(
                "{section}.max_value_bytes = {} exceeds the database's largest value ({MAX_KV_VALUE_BYTES} bytes)",
                self.max_value_bytes
            ));
        }
        // An entry is its key plus its value: quotas under which no entry of the allowed
        // sizes could be stored are a mistake, not a policy.
        for (name, v) in [
            ("max_key_bytes", self.max_key_bytes),
            ("max_value_bytes", self.max_value_bytes),
        ] {
            if v > self.max_total_bytes {
                return Err(format!(
                    "{section}.{name} = {v} exceeds {section}.max_total_bytes = {}",
                    self.max_total_bytes
                ));
            }
        }
        Ok(())
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            max_component_bytes: 64 << 20,
            compile_timeout_secs: 120,
            cache_dir: None,
            allowed_models: vec!["*".into()],
            tenant_models: Default::default(),
            kv: KvQuotaConfig::default(),
            // Half the cores: one tenant's long-running (or spinning) guests can never take
            // every core, so other tenants' requests always find a free worker.
            max_concurrent_calls: std::thread::available_parallelism()
                .map_or(1, |n| n.get() / 2)
                .max(1),
            max_open_calls: 8,
            limits: LimitOverrides::default(),
            caps: LimitOverrides::default(),
            tenants: BTreeMap::new(),
        }
    }
}

/// One tenant's plugin policy; unset keys keep the server-wide value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginTenantConfig {
    /// Limits of this tenant's guest calls, over `[plugins.limits]`.
    pub limits: LimitOverrides,
    /// Replaces `allowed_models` for this tenant.
    pub allowed_models: Option<Vec<String>>,
    /// Key-value quotas, over `[plugins.kv]`.
    pub kv: KvQuotaOverrides,
    /// Host interfaces this tenant's plugins may not use even when their manifest asks:
    /// any of `images`, `log`, `config`, `kv`.
    pub deny: Vec<Capability>,
    /// Destinations its guests may send HTTP requests to: `[http://|https://]host[:port]`,
    /// `*.` for subdomains. Empty (the default): no network.
    pub allow_hosts: Vec<HostPattern>,
    pub max_concurrent_calls: Option<usize>,
    pub max_open_calls: Option<usize>,
}

/// A host interface an operator can take away from a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Images,
    Log,
    Config,
    Kv,
}

/// Per-tenant replacements of `[plugins.kv]` quotas.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KvQuotaOverrides {
    pub max_keys: Option<usize>,
    pub max_key_bytes: Option<usize>,
    pub max_value_bytes: Option<usize>,
    pub max_total_bytes: Option<usize>,
}

impl KvQuotaOverrides {
    fn over(&self, base: &KvQuotaConfig) -> KvQuotaConfig {
        KvQuotaConfig {
            max_keys: self.max_keys.unwrap_or(base.max_keys),
            max_key_bytes: self.max_key_bytes.unwrap_or(base.max_key_bytes),
            max_value_bytes: self.max_value_bytes.unwrap_or(base.max_value_bytes),
            max_total_bytes: self.max_total_bytes.unwrap_or(base.max_total_bytes),
        }
    }
}

/// `base` with every set field of `o` applied (no clamping: see [`check_within`]).
fn apply(base: &Limits, o: &LimitOverrides) -> Limits {
    let no_cap = Limits {
        wall_time_ms: u64::MAX,
        fuel: u64::MAX,
        memory_bytes: u64::MAX,
        table_elements: u64::MAX,
        instances: u32::MAX,
        output_bytes: u64::MAX,
        log_bytes: u64::MAX,
        host_calls: u64::MAX,
    };
    base.effective(o, &no_cap)
}

/// Fails, naming the key, where `l` exceeds `cap`: a default the caps would silently cut is
/// a configuration mistake.
fn check_within(section: &str, l: &Limits, cap: &Limits) -> Result<(), String> {
    let pairs: [(&str, u64, u64); 8] = [
        ("wall_time_ms", l.wall_time_ms, cap.wall_time_ms),
        ("fuel", l.fuel, cap.fuel),
        ("memory_bytes", l.memory_bytes, cap.memory_bytes),
        ("table_elements", l.table_elements, cap.table_elements),
        ("instances", l.instances.into(), cap.instances.into()),
        ("output_bytes", l.output_bytes, cap.output_bytes),
        ("log_bytes", l.log_bytes, cap.log_bytes),
        ("host_calls", l.host_calls, cap.host_calls),
    ];
    for (name, v, c) in pairs {
        if v == 0 {
            return Err(format!("{section}.{name} must be at least 1"));
        }
        if v > c {
            return Err(format!(
                "{section}.{name} = {v} exceeds plugins.caps.{name} = {c}"
            ));
        }
    }
    Ok(())
}

fn check_calls(section: &str, concurrent: usize, open: usize) -> Result<(), String> {
    if concurrent == 0 || open < concurrent {
        return Err(format!(
            "{section}.max_concurrent_calls must be at least 1 and {section}.max_open_calls at least {section}.max_concurrent_calls"
        ));
    }
    Ok(())
}

impl PluginsConfig {
    /// The operator's caps.
    pub fn caps(&self) -> Limits {
        apply(&Limits::operator_cap_default(), &self.caps)
    }

    /// Every tenant's default limits.
    pub fn tenant_limits(&self) -> Limits {
        apply(&Limits::tenant_default(), &self.limits)
    }

    /// The policy of tenants without their own section.
    pub fn default_policy(&self) -> TenantPolicy {
        TenantPolicy {
            limits: self.tenant_limits(),
            allowed_models: self.allowed_models.clone(),
            kv: Some(self.kv.quota()),
            max_concurrent_calls: self.max_concurrent_calls,
            max_open_calls: self.max_open_calls,
            ..TenantPolicy::default()
        }
    }

    /// Tenants with a policy of their own: `[plugins.tenants.<id>]` and the older
    /// `tenant_models` (which only replaces `allowed_models`).
    pub fn tenant_policies(&self) -> BTreeMap<String, TenantPolicy> {
        let base = self.default_policy();
        let mut out = BTreeMap::new();
        for (id, models) in &self.tenant_models {
            out.insert(
                id.clone(),
                TenantPolicy {
                    allowed_models: models.clone(),
                    ..base.clone()
                },
            );
        }
        for (id, t) in &self.tenants {
            let denied = |c| t.deny.contains(&c);
            let models = t
                .allowed_models
                .clone()
                .or_else(|| self.tenant_models.get(id).cloned())
                .unwrap_or_else(|| base.allowed_models.clone());
            out.insert(
                id.clone(),
                TenantPolicy {
                    limits: apply(&base.limits, &t.limits),
                    images: !denied(Capability::Images),
                    allowed_models: models,
                    log: !denied(Capability::Log),
                    config: !denied(Capability::Config),
                    kv: (!denied(Capability::Kv)).then(|| t.kv.over(&self.kv).quota()),
                    allow_hosts: t.allow_hosts.clone(),
                    max_concurrent_calls: t
                        .max_concurrent_calls
                        .unwrap_or(base.max_concurrent_calls),
                    max_open_calls: t.max_open_calls.unwrap_or(base.max_open_calls),
                },
            );
        }
        out
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.max_component_bytes == 0 || self.compile_timeout_secs == 0 {
            return Err(
                "plugins.max_component_bytes and plugins.compile_timeout_secs must be > 0".into(),
            );
        }
        self.kv.validate("plugins.kv")?;
        check_calls("plugins", self.max_concurrent_calls, self.max_open_calls)?;
        let caps = self.caps();
        check_within("plugins.caps", &caps, &caps)?;
        check_within("plugins.limits", &self.tenant_limits(), &caps)?;
        for (id, t) in &self.tenants {
            let section = format!("plugins.tenants.{id}");
            check_within(
                &format!("{section}.limits"),
                &apply(&self.tenant_limits(), &t.limits),
                &caps,
            )?;
            t.kv.over(&self.kv).validate(&format!("{section}.kv"))?;
            check_calls(
                &section,
                t.max_concurrent_calls.unwrap_or(self.max_concurrent_calls),
                t.max_open_calls.unwrap_or(self.max_open_calls),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(toml: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("easel.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load(Some(&path), Vec::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn tenant_sections_override_the_server_wide_policy() {
        let c = load(
            r#"
[plugins]
allowed_models = ["upscale"]
[plugins.limits]
wall_time_ms = 500
[plugins.caps]
wall_time_ms = 10000
[plugins.kv]
max_keys = 50
[plugins.tenants.tnt_a]
limits = { wall_time_ms = 8000, fuel = 1000 }
allowed_models = ["*"]
kv = { max_keys = 5 }
deny = ["images", "log"]
allow_hosts = ["api.example.com", "https://*.example.org:8443"]
max_concurrent_calls = 1
max_open_calls = 3
"#,
        )
        .unwrap();
        let p = &c.plugins;
        assert_eq!(p.caps().wall_time_ms, 10_000);
        let d = p.default_policy();
        assert_eq!(d.limits.wall_time_ms, 500);
        assert_eq!(d.allowed_models, ["upscale"]);
        assert!(!d.network(), "no network unless allow-listed");
        let a = &p.tenant_policies()["tnt_a"];
        assert_eq!(a.limits.wall_time_ms, 8000);
        assert_eq!(a.limits.fuel, 1000);
        assert_eq!(
            a.limits.memory_bytes, d.limits.memory_bytes,
            "unset keys inherit"
        );
        assert_eq!(a.allowed_models, ["*"]);
        let kv = a.kv.as_ref().unwrap();
        assert_eq!(
            (kv.max_keys, kv.max_value_bytes),
            (5, d.kv.as_ref().unwrap().max_value_bytes)
        );
        assert!(!a.images && !a.log && a.config);
        assert!(a.network());
        assert!(a.allow_hosts[1].matches(true, "x.example.org", 8443));
        assert_eq!((a.max_concurrent_calls, a.max_open_calls), (1, 3));
    }

    #[test]
    fn kv_can_be_denied_and_tenant_models_still_apply() {
        let c = load(
            r#"
[plugins.tenant_models]
tnt_b = ["convert"]
[plugins.tenants.tnt_c]
deny = ["kv"]
"#,
        )
        .unwrap();
        let t = c.plugins.tenant_policies();
        assert_eq!(t["tnt_b"].allowed_models, ["convert"]);
        assert!(t["tnt_c"].kv.is_none());
        assert!(t["tnt_c"].images);
    }

    #[test]
    fn mistakes_are_refused_naming_the_key() {
        for (toml, want) in [
            (
                "[plugins.limits]\nwall_time_ms = 40000",
                "plugins.limits.wall_time_ms = 40000 exceeds plugins.caps.wall_time_ms = 30000",
            ),
            (
                "[plugins.tenants.t1.limits]\nfuel = 0",
                "plugins.tenants.t1.limits.fuel must be at least 1",
            ),
            (
                "[plugins.tenants.t1.kv]\nmax_value_bytes = 400\nmax_total_bytes = 300",
                "plugins.tenants.t1.kv.max_value_bytes = 400 exceeds plugins.tenants.t1.kv.max_total_bytes = 300",
            ),
            (
                "[plugins.tenants.t1]\nmax_concurrent_calls = 4\nmax_open_calls = 2",
                "plugins.tenants.t1.max_open_calls at least",
            ),
            (
                "[plugins.tenants.t1]\nallow_hosts = [\"ftp://x\"]",
                "`ftp://x`",
            ),
            (
                "[plugins.tenants.t1]\ndeny = [\"gpu\"]",
                "unknown variant `gpu`",
            ),
            (
                "[plugins.tenants.t1]\nnetwork = true",
                "unknown field `network`",
            ),
        ] {
            let e = load(toml).unwrap_err();
            assert!(e.contains(want), "{toml}: {e}");
        }
    }
}
