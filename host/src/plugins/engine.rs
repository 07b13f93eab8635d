//! The wasmtime engine every plugin runs on: async support (guests run on the tokio workers
//! and yield at every epoch), pooling allocator, fuel, epoch interruption, and the ticker
//! thread that drives epochs.

use super::bindings::Processor;
use super::limits::Limits;
use super::state::CallState;
use std::path::PathBuf;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

/// Operator settings of the plugin host.
#[derive(Clone, Debug)]
pub struct PluginHostConfig {
    /// Where compiled components are cached (keyed by content hash and engine).
    pub cache_dir: PathBuf,
    /// Largest component accepted at upload.
    pub max_component_bytes: usize,
    /// Longest a compile may take before the upload is refused.
    pub compile_timeout: Duration,
    /// Ceilings no tenant or plugin setting can exceed.
    pub caps: Limits,
    /// How often the engine's epoch advances. A running guest yields its async worker to
    /// other tasks at every tick, and wall-time limits are checked at this granularity.
    pub epoch_tick: Duration,
    /// Component instances alive at once (the pooling allocator's slots).
    pub pool_instances: u32,
    /// Native stack a guest may use (deep recursion ends in `plugin_stack_overflow`).
    pub max_wasm_stack: usize,
    /// Largest HTTP request body passed to an endpoint plugin.
    pub max_http_request_bytes: usize,
    /// A guest call that has run this long is throttled for the rest of the call (`None`
    /// never throttles): it pauses for [`throttle_pause`] at each epoch tick, leaving the
    /// workers to other tasks. Calls of a tenant that has recently kept more than half a core
    /// busy are throttled from their first tick, but pause only while the workers are
    /// contended (so a lone tenant's back-to-back calls keep their speed).
    ///
    /// [`throttle_pause`]: Self::throttle_pause
    pub throttle_after: Option<Duration>,
    /// How long a throttled guest pauses at an epoch tick: with a tick of `t` it takes about
    /// `t / (t + pause)` of a worker (25% with the defaults).
    pub throttle_pause: Duration,
}

impl PluginHostConfig {
    /// Defaults with the cache under `data_dir/plugin-cache`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: data_dir.into().join("plugin-cache"),
            max_component_bytes: 64 << 20,
            compile_timeout: Duration::from_secs(120),
            caps: Limits::operator_cap_default(),
            epoch_tick: Duration::from_millis(1),
            pool_instances: 256,
            max_wasm_stack: 512 << 10,
            max_http_request_bytes: 16 << 20,
            throttle_after: Some(Duration::from_millis(5)),
            throttle_pause: Duration::from_millis(3),
        }
    }
}

pub(crate) fn build_engine(cfg: &PluginHostConfig) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    let n = cfg.pool_instances.max(1);
    pool.total_component_instances(n)
        // Rust components hold a few core instances; JavaScript and Python ones more.
        .total_core_instances(n * 16)
        .total_memories(n * 2)
        .total_tables(n * 4)
        .max_core_instances_per_component(cfg.caps.instances)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_memory_size(cfg.caps.memory_bytes as usize)
        .table_elements(cfg.caps.table_elements as usize)
        // One fiber stack per running call.
        .total_stacks(n)
        // Reset the first pages of a freed slot with memset rather than madvise: returning
        // them to the kernel costs a TLB shootdown (an IPI to every core) per instance, which
        // dominated short endpoint calls under load.
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10);
    // With Linux's `PAGEMAP_SCAN` (6.7+) the reset finds the pages the guest actually wrote
    // (the kept size then caps dirty pages, not addresses) and restores only those, instead
    // of memsetting the whole kept megabyte and madvising the rest of the memory. The slot
    // still returns to its initial image before reuse. Wasmtime leaves the scan off by
    // default; older kernels keep the plain memset.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes);
    }
    let mut c = Config::new();
    c.wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(cfg.max_wasm_stack)
        // The fiber a guest runs on holds its wasm stack plus the host functions' frames.
        .async_stack_size((cfg.max_wasm_stack + (1 << 20)).max(2 << 20))
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&c)
}

/// Advances the engine's epoch every `tick` until the engine is dropped.
pub(crate) fn start_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        })
        .expect("spawning the epoch thread");
}

/// One linker for every world: WASI (clocks, random, cli, io, filesystem without preopens),
/// `wasi:http` types, and the `easel:plugin` host interfaces.
pub(crate) fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Processor::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// A stable key for the engine's compiled-code compatibility (cache file names).
pub(crate) fn engine_key(engine: &Engine) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}
