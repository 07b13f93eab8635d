//! Server configuration: built-in defaults, overridden by `easel.toml`, then by
//! `EASEL_*` environment variables, then by command-line flags.
//!
//! Environment variables map onto the file's keys: `EASEL_LISTEN` sets
//! `listen`, and a double underscore descends into a section, so
//! `EASEL_JOBS__GPU_CONCURRENCY=2` sets `[jobs] gpu_concurrency = 2`. Values
//! are read as TOML literals when they parse as one (numbers, booleans) and as
//! strings otherwise. Variables whose first segment is not a key of this file
//! (`EASEL_ADAPTER`, `EASEL_DATA_DIR`, ...) belong to other parts of Easel and
//! are left alone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod plugins;
pub use plugins::{Capability, KvQuotaConfig, KvQuotaOverrides, PluginTenantConfig, PluginsConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Everything `easel serve` can be told. All fields have defaults, so an
/// empty file (or none) is a valid configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `HOST:PORT` to listen on.
    pub listen: String,
    /// Base URL clients reach the server at (e.g. `https://img.example.com`);
    /// when set, output URLs are absolute, otherwise relative to the server.
    pub public_url: Option<String>,
    /// Key guarding `/v1/admin/*`; the admin API is disabled when unset.
    pub admin_key: Option<String>,
    /// Register the diagnostic tasks `noop` and `noop-gpu` (tests, benchmarks).
    pub debug_tasks: bool,
    pub limits: Limits,
    pub jobs: JobsConfig,
    pub rate_limit: RateLimitConfig,
    pub storage: StorageConfig,
    pub webhooks: WebhookConfig,
    pub gpu: GpuConfig,
    pub plugins: PluginsConfig,
    /// Credit cost per task, overriding each task's default.
    pub credits: std::collections::BTreeMap<String, u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            admin_key: None,
            debug_tasks: false,
            limits: Limits::default(),
            jobs: JobsConfig::default(),
            rate_limit: RateLimitConfig::default(),
            storage: StorageConfig::default(),
            webhooks: WebhookConfig::default(),
            gpu: GpuConfig::default(),
            plugins: PluginsConfig::default(),
            credits: Default::default(),
        }
    }
}

/// Request limits; each violation is a 4xx naming the field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body in bytes (uploads included).
    pub max_body_bytes: usize,
    /// Largest input image, width × height.
    pub max_pixels: u64,
    /// Largest input or output width or height.
    pub max_dimension: u32,
    /// Longest time an input image may take to decode, in milliseconds.
    pub decode_timeout_ms: u64,
    /// Cap on `Prefer: wait=N`, in seconds (and the wait for a bare `Prefer: wait`).
    pub max_wait_secs: u64,
    /// Largest page of `GET /v1/jobs`.
    pub max_page_size: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 << 20,
            max_pixels: 40_000_000,
            max_dimension: 12_000,
            decode_timeout_ms: 10_000,
            max_wait_secs: 60,
            max_page_size: 100,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Jobs that need the GPU running at once.
    pub gpu_concurrency: usize,
    /// CPU-only jobs running at once.
    pub cpu_concurrency: usize,
    /// Queued jobs across all tenants before submissions get 503.
    pub max_queued: usize,
    /// Queued jobs per tenant before that tenant's submissions get 429.
    pub max_queued_per_tenant: usize,
    /// Times a job is started; a job interrupted by a crash is retried until
    /// this many attempts were made, then failed with `interrupted`.
    pub max_attempts: u32,
    /// Longest a job may run before it fails with `timeout`, in seconds.
    pub timeout_secs: u64,
    /// On SIGTERM, how long running jobs may take to finish, in seconds.
    pub shutdown_grace_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            gpu_concurrency: 1,
            cpu_concurrency: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            max_queued: 1000,
            max_queued_per_tenant: 200,
            max_attempts: 2,
            timeout_secs: 600,
            shutdown_grace_secs: 30,
        }
    }
}

/// Token bucket per API key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Bucket size: requests allowed in a burst.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_second: 10.0,
            burst: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// `<data-dir>/blobs`.
    Local,
    /// An S3-compatible bucket (`[storage.s3]`).
    S3,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    /// Uploads and outputs are deleted this many seconds after creation.
    pub retention_secs: u64,
    /// How long a signed file URL stays valid, in seconds.
    pub url_ttl_secs: u64,
    /// How often the retention sweeper runs, in seconds.
    pub sweep_interval_secs: u64,
    /// Secret for signed URLs; generated into `<data-dir>/url-signing.key` when unset.
    pub url_signing_secret: Option<String>,
    pub s3: S3Config,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: StorageBackend::Local,
            retention_secs: 24 * 3600,
            url_ttl_secs: 3600,
            sweep_interval_secs: 60,
            url_signing_secret: None,
            s3: S3Config::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// e.g. `us-east-1`; S3-compatible stores usually accept any value.
    pub region: Option<String>,
    /// Custom endpoint for S3-compatible stores (MinIO, R2, Ceph ...).
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow a plain-http endpoint.
    pub allow_http: bool,
    /// Key prefix inside the bucket.
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Allow webhook targets on loopback and private networks (SSRF guard off).
    pub allow_private: bool,
    /// Time allowed for one delivery attempt, in milliseconds.
    pub attempt_timeout_ms: u64,
    /// Delay before the first retry, in milliseconds; doubles each retry.
    pub initial_backoff_ms: u64,
    /// Longest delay between retries, in milliseconds.
    pub max_backoff_ms: u64,
    /// Give up on a message this many seconds after it was created.
    pub max_age_secs: u64,
    /// Give up after this many attempts.
    pub max_attempts: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private: false,
            attempt_timeout_ms: 10_000,
            initial_backoff_ms: 5_000,
            max_backoff_ms: 3_600_000,
            max_age_secs: 24 * 3600,
            max_attempts: 12,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuConfig {
    /// Open a GPU adapter at start. When false (or none is found) GPU tasks
    /// fail with `gpu_unavailable` and CPU tasks still run.
    pub enabled: bool,
    /// When true, `/readyz` reports not-ready without a GPU.
    pub required: bool,
    /// Bytes of GPU memory loaded models may hold; least-recently-used
    /// models are evicted beyond it.
    pub model_memory_budget_bytes: u64,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            enabled: true,
            required: false,
            model_memory_budget_bytes: 4 << 30,
        }
    }
}

impl Config {
    /// Defaults ← `file` (if given; a missing explicit file is an error) ←
    /// `EASEL_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        path: path.to_owned(),
                        source: Box::new(e),
                    })?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: file
                        .map(Path::to_owned)
                        .unwrap_or_else(|| "<environment>".into()),
                    source: Box::new(e),
                })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.jobs.gpu_concurrency == 0 || self.jobs.cpu_concurrency == 0 {
            return bad("jobs.gpu_concurrency and jobs.cpu_concurrency must be at least 1");
        }
        if self.jobs.max_attempts == 0 {
            return bad("jobs.max_attempts must be at least 1");
        }
        if self.rate_limit.per_second.is_nan()
            || self.rate_limit.per_second <= 0.0
            || self.rate_limit.burst == 0
        {
            return bad("rate_limit.per_second must be > 0 and rate_limit.burst >= 1");
        }
        if self.storage.backend == StorageBackend::S3 && self.storage.s3.bucket.is_empty() {
            return bad("storage.backend = \"s3\" needs storage.s3.bucket");
        }
        self.plugins.validate().map_err(ConfigError::Invalid)?;
        if self.limits.max_page_size == 0 {
            return bad("limits.max_page_size must be at least 1");
        }
        Ok(())
    }
}

/// Top-level keys of [`Config`]; only `EASEL_*` variables under these apply.
const KEYS: &[&str] = &[
    "listen",
    "public_url",
    "admin_key",
    "debug_tasks",
    "limits",
    "jobs",
    "rate_limit",
    "storage",
    "webhooks",
    "gpu",
    "plugins",
    "credits",
];

fn lookup<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (first, rest) = path.split_first()?;
    let v = table.get(first)?;
    if rest.is_empty() {
        Some(v)
    } else {
        lookup(v.as_table()?, rest)
    }
}

fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let defaults = toml::Table::try_from(Config::default()).expect("the default config serializes");
    for (var, value) in env {
        let Some(rest) = var.strip_prefix("EASEL_") else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if !KEYS.contains(&path[0].as_str()) {
            continue;
        }
        // A value is a TOML literal where the key's default is not a string
        // (numbers, booleans, the credits map); text otherwise, so that a
        // key like `admin_key=12345` stays a string.
        let literal = match lookup(&defaults, &path) {
            Some(v) => !v.is_str(),
            None => path[0] == "credits",
        };
        let parsed = if literal {
            format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .ok_or_else(|| ConfigError::Env {
                    var: var.clone(),
                    message: format!("`{value}` is not a number or boolean"),
                })?
        } else {
            toml::Value::String(value.clone())
        };
        let mut node = &mut *table;
        for seg in &path[..path.len() - 1] {
            let entry = node
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(Default::default()));
            node = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
                var: var.clone(),
                message: format!("`{seg}` is not a section"),
            })?;
        }
        node.insert(path[path.len() - 1].clone(), parsed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.storage.backend, StorageBackend::Local);
    }

    #[test]
    fn env_overrides_file_and_ignores_foreign_vars() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("easel.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:1\"\n[jobs]\ngpu_concurrency = 3\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&path),
            env(&[
                ("EASEL_JOBS__GPU_CONCURRENCY", "2"),
                ("EASEL_ADMIN_KEY", "12345"),
                ("EASEL_ADAPTER", "0"),
                ("EASEL_WEBHOOKS__ALLOW_PRIVATE", "true"),
                ("EASEL_CREDITS__CONVERT", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:1");
        assert_eq!(c.jobs.gpu_concurrency, 2);
        assert_eq!(c.admin_key.as_deref(), Some("12345"));
        assert!(c.webhooks.allow_private);
        assert_eq!(c.credits["convert"], 7);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(Config::load(None, env(&[("EASEL_JOBS__GPU_CONCURENCY", "2")])).is_err());
        assert!(Config::load(None, env(&[("EASEL_JOBS__GPU_CONCURRENCY", "0")])).is_err());
        assert!(Config::load(None, env(&[("EASEL_STORAGE__BACKEND", "s3")])).is_err());
    }

    #[test]
    fn kv_quotas_default_to_the_hosts_and_are_validated() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert_eq!(c.plugins.kv.quota(), crate::plugins::KvQuota::default());
        let c = Config::load(
            None,
            env(&[
                ("EASEL_PLUGINS__KV__MAX_VALUE_BYTES", "100"),
                ("EASEL_PLUGINS__KV__MAX_KEYS", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(c.plugins.kv.quota().max_value_bytes, 100);
        assert_eq!(c.plugins.kv.quota().max_keys, 3);
        assert_eq!(
            c.plugins.kv.max_key_bytes, 256,
            "the others keep their defaults"
        );
        for (var, value, says) in [
            (
                "EASEL_PLUGINS__KV__MAX_KEYS",
                "0",
                "plugins.kv.max_keys must be at least 1",
            ),
            (
                "EASEL_PLUGINS__KV__MAX_TOTAL_BYTES",
                "1000",
                "plugins.kv.max_value_bytes = 65536 exceeds plugins.kv.max_total_bytes = 1000",
            ),
            (
                "EASEL_PLUGINS__KV__MAX_VALUE_BYTES",
                "2000000000",
                "exceeds the database's largest value",
            ),
            ("EASEL_PLUGINS__KV__MAX_KEY", "3", "max_key"),
        ] {
            let e = Config::load(None, env(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{var}={value}: {e}");
        }
    }
}
