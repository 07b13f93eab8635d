//! [`PluginHost`]: the registry of tenants' plugin versions and the entry points the API
//! calls (upload, list, delete, pin, logs, processor/router calls, HTTP endpoints).

use super::Called;
use super::bindings::{ProcessorPre, RouterPre};
use super::call::{CallReport, Contention, GuestFuture, Throttle, execute};
use super::compile::{forbidden_imports, infer_world, load_or_compile};
use super::engine::{PluginHostConfig, build_engine, build_linker, engine_key, start_ticker};
use super::errors::{CallError, InitError, UploadError};
use super::kv_store::{KvStore, MemoryKv};
use super::manifest::{Granted, Manifest, TenantPolicy, World};
use super::model_runner::{ModelRunner, NoModels};
use super::state::{CallEnv, CallState, LogLine};
use super::tenant_load::{Activity, ActivityGuard, LongSlot, TenantLoad};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Semaphore;
use wasmtime::component::Linker;
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// Lines of log kept per plugin for `GET /v1/plugins/{name}/logs`.
const KEPT_LOG_LINES: usize = 1_000;
/// Longest plugin name.
const MAX_NAME: usize = 64;

/// What an upload produced, and what `GET /v1/plugins/{name}` lists.
#[derive(Clone, Debug, Serialize)]
pub struct PluginVersionInfo {
    pub name: String,
    /// 1, 2, ... per plugin name; versions are immutable.
    pub version: u32,
    /// SHA-256 of the component bytes, hex.
    pub hash: String,
    pub world: World,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub size_bytes: usize,
    /// Compile time, or the time to load the cached artefact when `cached`.
    pub compile_ms: f64,
    pub cached: bool,
}

#[derive(Clone)]
pub(crate) enum Pre {
    Processor(ProcessorPre<CallState>),
    Router(RouterPre<CallState>),
    Endpoint(ProxyPre<CallState>),
}

pub(crate) struct Loaded {
    pub info: PluginVersionInfo,
    pub manifest: Manifest,
    pub config: Arc<BTreeMap<String, String>>,
    pub pre: Pre,
}

/// A plugin's versions as `GET /v1/plugins/{name}` shows them.
#[derive(Clone, Debug)]
pub struct PluginVersions {
    /// Oldest first.
    pub versions: Vec<PluginVersionInfo>,
    /// The version calls use: the pinned one, else the latest.
    pub active: u32,
    pub pinned: Option<u32>,
}

/// A logged line and the call it came from.
#[derive(Clone, Debug, Serialize)]
pub struct LogRecord {
    pub version: u32,
    #[serde(flatten)]
    pub line: LogLine,
}

struct Entry {
    versions: Vec<Arc<Loaded>>,
    pinned: Option<u32>,
    logs: Arc<Mutex<VecDeque<LogRecord>>>,
}

impl Entry {
    fn active(&self) -> Option<&Arc<Loaded>> {
        match self.pinned {
            Some(v) => self.versions.iter().find(|l| l.info.version == v),
            None => self.versions.last(),
        }
    }
}

struct Tenant {
    policy: Arc<TenantPolicy>,
    load: Arc<TenantLoad>,
    /// Calls in flight ([`TenantPolicy::max_open_calls`]).
    slots: Arc<Semaphore>,
    /// Calls past their first epoch tick ([`TenantPolicy::max_concurrent_calls`]).
    long_slots: Arc<Semaphore>,
    plugins: BTreeMap<String, Entry>,
}

fn slot_semaphores(policy: &TenantPolicy) -> (Arc<Semaphore>, Arc<Semaphore>) {
    let long = policy.max_concurrent_calls.max(1);
    (
        Arc::new(Semaphore::new(policy.max_open_calls.max(long))),
        Arc::new(Semaphore::new(long)),
    )
}

impl Tenant {
    fn new(policy: TenantPolicy) -> Self {
        let (slots, long_slots) = slot_semaphores(&policy);
        Self {
            slots,
            long_slots,
            policy: Arc::new(policy),
            load: Default::default(),
            plugins: BTreeMap::new(),
        }
    }
}

pub(crate) struct Inner {
    pub engine: Engine,
    /// Whether throttled guests recently found the workers contended.
    contention: Arc<Contention>,
    activity: Arc<Activity>,
    linker: Linker<CallState>,
    engine_key: String,
    pub cfg: PluginHostConfig,
    kv: Arc<dyn KvStore>,
    models: Arc<dyn ModelRunner>,
    /// The policy of tenants the operator set none for.
    default_policy: RwLock<TenantPolicy>,
    tenants: RwLock<HashMap<String, Tenant>>,
}

/// The plugin host. Cheap to clone; share one per server.
#[derive(Clone)]
pub struct PluginHost {
    pub(crate) inner: Arc<Inner>,
}

/// A call ready to run: the plugin version, the environment, and a concurrency slot.
pub(crate) struct Prepared {
    pub loaded: Arc<Loaded>,
    pub env: Arc<CallEnv>,
    permit: tokio::sync::OwnedSemaphorePermit,
    long: Arc<LongSlot>,
    logs: Arc<Mutex<VecDeque<LogRecord>>>,
    /// The tenant counts as active from asking for a slot to the end of the call.
    _active: ActivityGuard,
}

fn validate_name(name: &str) -> Result<(), UploadError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(UploadError::InvalidName(format!(
            "{name:?}: 1-{MAX_NAME} of [a-z0-9_-], starting with a letter or digit"
        )))
    }
}

impl PluginHost {
    /// Starts the engine (and its epoch thread) with the in-memory key-value store and no
    /// model runner; see [`with_models`](Self::with_models) and [`with_kv`](Self::with_kv).
    pub fn new(cfg: PluginHostConfig) -> Result<Self, InitError> {
        Self::with_parts(cfg, Arc::new(MemoryKv::new()), Arc::new(NoModels))
    }

    /// Which tenants have work in flight. The server marks its API requests and running
    /// jobs here too, so that a hot tenant's guests pause only while another tenant waits.
    pub fn activity(&self) -> Arc<Activity> {
        self.inner.activity.clone()
    }

    /// Starts the engine with the given key-value store and model runner.
    pub fn with_parts(
        cfg: PluginHostConfig,
        kv: Arc<dyn KvStore>,
        models: Arc<dyn ModelRunner>,
    ) -> Result<Self, InitError> {
        let engine = build_engine(&cfg).map_err(|e| InitError(format!("{e:#}")))?;
        let linker = build_linker(&engine).map_err(|e| InitError(format!("{e:#}")))?;
        start_ticker(&engine, cfg.epoch_tick);
        Ok(Self {
            inner: Arc::new(Inner {
                engine_key: engine_key(&engine),
                engine,
                contention: Arc::new(Contention::new()),
                activity: Arc::new(Activity::default()),
                linker,
                cfg,
                kv,
                models,
                default_policy: RwLock::new(TenantPolicy::default()),
                tenants: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// The operator settings.
    pub fn config(&self) -> &PluginHostConfig {
        &self.inner.cfg
    }

    /// Sets a tenant's policy (limits, capabilities, models, concurrency). Tenants without one
    /// get [`TenantPolicy::default`]. Calls already running keep the policy they started with.
    pub fn set_policy(&self, tenant: &str, policy: TenantPolicy) {
        let mut tenants = self
            .inner
            .tenants
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match tenants.get_mut(tenant) {
            Some(t) => {
                (t.slots, t.long_slots) = slot_semaphores(&policy);
                t.policy = Arc::new(policy);
            }
            None => {
                tenants.insert(tenant.to_owned(), Tenant::new(policy));
            }
        }
    }

    /// Sets the policy of tenants without their own ([`TenantPolicy::default`] until then).
    /// Tenants the host already knows keep theirs: set it before plugins are registered.
    pub fn set_default_policy(&self, policy: TenantPolicy) {
        *self
            .inner
            .default_policy
            .write()
            .unwrap_or_else(|p| p.into_inner()) = policy;
    }

    fn default_policy(&self) -> TenantPolicy {
        self.inner
            .default_policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn policy(&self, tenant: &str) -> Arc<TenantPolicy> {
        let tenants = self.inner.tenants.read().unwrap_or_else(|p| p.into_inner());
        match tenants.get(tenant) {
            Some(t) => t.policy.clone(),
            None => Arc::new(self.default_policy()),
        }
    }

    /// Validates, compiles (or loads from the cache) and registers a new version of `name`.
    pub async fn upload(
        &self,
        tenant: &str,
        name: &str,
        bytes: Vec<u8>,
        manifest: Option<Manifest>,
    ) -> Result<PluginVersionInfo, UploadError> {
        self.register(tenant, name, bytes, manifest, None).await
    }

    /// Registers a stored version under its original number (the server reloading its
    /// persisted plugins at start), so version numbers survive a restart even when an older
    /// version can no longer be loaded.
    pub async fn restore(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
        bytes: Vec<u8>,
        manifest: Manifest,
    ) -> Result<PluginVersionInfo, UploadError> {
        self.register(tenant, name, bytes, Some(manifest), Some(version))
            .await
    }

    async fn register(
        &self,
        tenant: &str,
        name: &str,
        bytes: Vec<u8>,
        manifest: Option<Manifest>,
        version: Option<u32>,
    ) -> Result<PluginVersionInfo, UploadError> {
        validate_name(name)?;
        let cfg = &self.inner.cfg;
        if bytes.len() > cfg.max_component_bytes {
            return Err(UploadError::TooLarge {
                size: bytes.len(),
                limit: cfg.max_component_bytes,
            });
        }
        let manifest = manifest.unwrap_or_default();
        let policy = self.policy(tenant);
        check_overrides(&manifest, cfg)?;
        let hash = hex(&Sha256::digest(&bytes));
        let size_bytes = bytes.len();

        // Compiling is CPU-bound and slow: off the async runtime, with a deadline.
        let inner = self.inner.clone();
        let key = hash.clone();
        let job = tokio::task::spawn_blocking(move || {
            load_or_compile(
                &inner.engine,
                &inner.cfg.cache_dir,
                &inner.engine_key,
                &key,
                &bytes,
            )
        });
        let compiled = match tokio::time::timeout(cfg.compile_timeout, job).await {
            Err(_) => {
                return Err(UploadError::CompileTimeout {
                    limit_ms: cfg.compile_timeout.as_millis() as u64,
                });
            }
            Ok(Err(join)) => return Err(UploadError::Invalid(format!("compiler failed: {join}"))),
            Ok(Ok(r)) => r?,
        };

        let engine = &self.inner.engine;
        let ty = compiled.component.component_type();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
        let import_refs: Vec<&str> = imports.iter().map(String::as_str).collect();
        let bad = forbidden_imports(&import_refs, policy.network());
        if !bad.is_empty() {
            return Err(UploadError::ForbiddenImports(
                bad.into_iter().map(str::to_owned).collect(),
            ));
        }
        let export_refs: Vec<&str> = exports.iter().map(String::as_str).collect();
        let world = infer_world(&export_refs)?;
        if let Some(w) = manifest.world
            && w != world
        {
            return Err(UploadError::Manifest(format!(
                "world: the manifest says {} but the component exports a {}",
                w.as_str(),
                world.as_str()
            )));
        }
        let link = |e: wasmtime::Error| UploadError::Link(format!("{e:#}"));
        let ipre = self
            .inner
            .linker
            .instantiate_pre(&compiled.component)
            .map_err(link)?;
        let pre = match world {
            World::Processor => Pre::Processor(ProcessorPre::new(ipre).map_err(link)?),
            World::Router => Pre::Router(RouterPre::new(ipre).map_err(link)?),
            World::Endpoint => Pre::Endpoint(ProxyPre::new(ipre).map_err(link)?),
        };

        let default = self.default_policy();
        let mut tenants = self
            .inner
            .tenants
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let t = tenants
            .entry(tenant.to_owned())
            .or_insert_with(|| Tenant::new(default));
        let entry = t.plugins.entry(name.to_owned()).or_insert_with(|| Entry {
            versions: Vec::new(),
            pinned: None,
            logs: Default::default(),
        });
        let next = entry.versions.last().map_or(1, |l| l.info.version + 1);
        let version = version.unwrap_or(next).max(next);
        let info = PluginVersionInfo {
            name: name.to_owned(),
            version,
            hash,
            world,
            imports,
            exports,
            size_bytes,
            compile_ms: compiled.compile_ms,
            cached: compiled.cached,
        };
        entry.versions.push(Arc::new(Loaded {
            info: info.clone(),
            config: Arc::new(manifest.config.clone()),
            manifest,
            pre,
        }));
        Ok(info)
    }

    /// The active version of each of the tenant's plugins.
    pub fn list(&self, tenant: &str) -> Vec<PluginVersionInfo> {
        let tenants = self.inner.tenants.read().unwrap_or_else(|p| p.into_inner());
        tenants
            .get(tenant)
            .map(|t| {
                t.plugins
                    .values()
                    .filter_map(|e| e.active().map(|l| l.info.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The tenant's plugins whose active version hooks `task` (its manifest's `tasks` names
    /// it, or `*`), with their worlds, in name order: the job pipeline's router (the first
    /// router) and its processors (all of them, in this order).
    pub fn hooked(&self, tenant: &str, task: &str) -> Vec<(String, World)> {
        let tenants = self.inner.tenants.read().unwrap_or_else(|p| p.into_inner());
        let Some(t) = tenants.get(tenant) else {
            return Vec::new();
        };
        t.plugins
            .iter()
            .filter_map(|(name, e)| {
                let l = e.active()?;
                let hooks = l.manifest.tasks.iter().any(|t| t == task || t == "*");
                (hooks && l.info.world != World::Endpoint).then(|| (name.clone(), l.info.world))
            })
            .collect()
    }

    /// Every version of a plugin (oldest first), the active one and the pinned one, or `None`
    /// if unknown.
    pub fn versions(&self, tenant: &str, name: &str) -> Option<PluginVersions> {
        let tenants = self.inner.tenants.read().unwrap_or_else(|p| p.into_inner());
        let e = tenants.get(tenant)?.plugins.get(name)?;
        Some(PluginVersions {
            active: e.active()?.info.version,
            pinned: e.pinned,
            versions: e.versions.iter().map(|l| l.info.clone()).collect(),
        })
    }

    /// The world of the active version of a tenant's plugin, or `None` if unknown.
    pub fn world(&self, tenant: &str, name: &str) -> Option<World> {
        let tenants = self.inner.tenants.read().unwrap_or_else(|p| p.into_inner());
        let e = tenants.get(tenant)?.plugins.get(name)?;
        Some(e.active()?.info.world)
    }

    /// Removes a plugin and all its versions; false if it did not exist.
    pub fn delete(&self, tenant: &str, name: &str) -> bool {
        let mut tenants = self
            .inner
            .tenants
            .write()
            .unwrap_or_else(|p| p.into_inner());
        tenants
            .get_mut(tenant)
            .is_some_and(|t| t.plugins.remove(name).is_some())
    }

    /// Pins a version (or unpins with `None`, making the latest active).
    pub fn pin(&self, tenant: &str, name: &str, version: Option<u32>) -> Result<(), CallError> {
        let mut tenants = self
            .inner
            .tenants
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let e = tenants
            .get_mut(tenant)
            .and_then(|t| t.plugins.get_mut(name))
            .ok_or_else(|| CallError::NotFound(name.to_owned()))?;
        if let Some(v) = version
            && !e.versions.iter().any(|l| l.info.version == v)
        {
            return Err(CallError::VersionNotFound {
                plugin: name.to_owned(),
                version: v,
            });
        }
        e.pinned = version;
        Ok(())
    }

    /// The last log lines of a plugin (all versions), oldest first.
    pub fn logs(&self, tenant: &str, name: &str) -> Option<Vec<LogRecord>> {
        let tenants = self.inner.tenants.read().unwrap_or_else(|p| p.into_inner());
        let e = tenants.get(tenant)?.plugins.get(name)?;
        let logs = e.logs.lock().unwrap_or_else(|p| p.into_inner());
        Some(logs.iter().cloned().collect())
    }

    /// Resolves the active version and waits for one of the tenant's call slots.
    pub(crate) async fn prepare(
        &self,
        tenant: &str,
        name: &str,
        world: World,
    ) -> Result<Prepared, CallError> {
        let active = self.inner.activity.enter(tenant);
        let (loaded, policy, slots, long, logs, load) = {
            let tenants = self.inner.tenants.read().unwrap_or_else(|p| p.into_inner());
            let t = tenants
                .get(tenant)
                .ok_or_else(|| CallError::NotFound(name.to_owned()))?;
            let e = t
                .plugins
                .get(name)
                .ok_or_else(|| CallError::NotFound(name.to_owned()))?;
            let loaded = e
                .active()
                .ok_or_else(|| CallError::NotFound(name.to_owned()))?
                .clone();
            (
                loaded,
                t.policy.clone(),
                t.slots.clone(),
                LongSlot::new(t.long_slots.clone()),
                e.logs.clone(),
                t.load.clone(),
            )
        };
        if loaded.info.world != world {
            return Err(CallError::WrongWorld {
                plugin: name.to_owned(),
                expected: world.as_str(),
                actual: loaded.info.world.as_str(),
            });
        }
        let permit = slots
            .acquire_owned()
            .await
            .map_err(|_| CallError::Busy("the tenant's call slots were closed".into()))?;
        let env = Arc::new(CallEnv {
            tenant: tenant.to_owned(),
            plugin: name.to_owned(),
            limits: policy
                .limits
                .effective(&loaded.manifest.limits, &self.inner.cfg.caps),
            granted: Granted::new(&loaded.manifest.capabilities, &policy),
            policy,
            config: loaded.config.clone(),
            kv: self.inner.kv.clone(),
            models: self.inner.models.clone(),
            load,
        });
        Ok(Prepared {
            loaded,
            env,
            permit,
            long,
            logs,
            _active: active,
        })
    }

    /// Runs `f` in a fresh store on the calling task, then releases the call slot and keeps
    /// the log lines.
    pub(crate) async fn execute<R>(
        &self,
        prepared: Prepared,
        f: impl for<'a> FnOnce(&'a mut Store<CallState>, Pre) -> GuestFuture<'a, R>,
    ) -> Called<R> {
        let Prepared {
            loaded,
            env,
            permit,
            long,
            logs,
            _active,
        } = prepared;
        let mut report = CallReport {
            plugin: loaded.info.name.clone(),
            version: loaded.info.version,
            hash: loaded.info.hash.clone(),
            ..Default::default()
        };
        let cfg = &self.inner.cfg;
        let throttle = Throttle {
            after: cfg.throttle_after,
            pause: cfg.throttle_pause,
            contention: self.inner.contention.clone(),
            activity: self.inner.activity.clone(),
        };
        let pre = loaded.pre.clone();
        let result = execute(
            &self.inner.engine,
            throttle,
            env,
            long,
            &mut report,
            move |store| f(store, pre),
        )
        .await;
        drop(permit);
        let mut kept = logs.lock().unwrap_or_else(|p| p.into_inner());
        for line in &report.logs {
            if kept.len() == KEPT_LOG_LINES {
                kept.pop_front();
            }
            kept.push_back(LogRecord {
                version: loaded.info.version,
                line: line.clone(),
            });
        }
        Called { result, report }
    }

    /// `prepare` + `execute`.
    pub(crate) async fn run<R>(
        &self,
        tenant: &str,
        name: &str,
        world: World,
        f: impl for<'a> FnOnce(&'a mut Store<CallState>, Pre) -> GuestFuture<'a, R>,
    ) -> Called<R> {
        match self.prepare(tenant, name, world).await {
            Ok(prepared) => self.execute(prepared, f).await,
            Err(e) => Called {
                result: Err(e),
                report: CallReport {
                    plugin: name.to_owned(),
                    ..Default::default()
                },
            },
        }
    }
}

/// Refuses manifest limits above the operator's caps (rather than silently lowering them).
fn check_overrides(m: &Manifest, cfg: &PluginHostConfig) -> Result<(), UploadError> {
    let o = &m.limits;
    let c = &cfg.caps;
    let checks: [(&str, Option<u64>, u64); 8] = [
        ("wall_time_ms", o.wall_time_ms, c.wall_time_ms),
        ("fuel", o.fuel, c.fuel),
        ("memory_bytes", o.memory_bytes, c.memory_bytes),
        ("table_elements", o.table_elements, c.table_elements),
        ("instances", o.instances.map(u64::from), c.instances as u64),
        ("output_bytes", o.output_bytes, c.output_bytes),
        ("log_bytes", o.log_bytes, c.log_bytes),
        ("host_calls", o.host_calls, c.host_calls),
    ];
    for (field, asked, cap) in checks {
        if let Some(a) = asked
            && a > cap
        {
            return Err(UploadError::LimitExceedsCap(format!(
                "limits.{field} = {a} exceeds the operator's cap of {cap}"
            )));
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
