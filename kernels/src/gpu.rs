//! The GPU handle: device, queue, shared command batch, pools and caches.
//!
//! Ops record compute passes into one shared command encoder. The batch is
//! submitted when it is full, when the host needs data back, or on
//! [`Gpu::flush`] — never between the ops of a forward pass, so a model runs
//! without a single device poll until its output is read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use wgpu::util::DeviceExt;

use crate::adapter::{self, AdapterClass, AdapterReport};
use crate::error::{KernelError, Result};
use crate::pipeline::{Kernel, PipelineCache};
use crate::pool::{BufferPool, MemoryStats, PooledBuffer};
use crate::profile::{self, Cost, OpProfile, Profiler};

/// Passes recorded before the batch is submitted on its own.
const MAX_PASSES_PER_BATCH: u32 = 512;
/// Size of the uniform arena that holds every `Params` of one batch.
const UNIFORM_ARENA_BYTES: u64 = 512 * 1024;

/// Features granted on the device, which kernels branch on.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Caps {
    pub shader_f16: bool,
    pub subgroup: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    pub timestamp_query: bool,
    pub cooperative_matrix: bool,
    /// Square cooperative-matrix size (8 or 16) with f16 A/B and an f32
    /// accumulator, 0 when the adapter has no such configuration.
    pub coop_f16_f32acc: u32,
    /// Square cooperative-matrix size with f32 A/B/accumulator, 0 if none.
    pub coop_f32: u32,
}

/// The largest square cooperative-matrix sizes naga can express (8, 16) for
/// (f16 x f16 + f32, f32 x f32 + f32), 0 where the adapter has none.
fn coop_sizes(adapter: &wgpu::Adapter) -> (u32, u32) {
    use wgpu::CooperativeScalarType as S;
    let mut out = (0, 0);
    for p in adapter.cooperative_matrix_properties() {
        let square = p.m_size == p.n_size && p.n_size == p.k_size;
        if !square || !(p.m_size == 8 || p.m_size == 16) || p.cr_type != S::F32 {
            continue;
        }
        match p.ab_type {
            S::F16 => out.0 = out.0.max(p.m_size),
            S::F32 => out.1 = out.1.max(p.m_size),
            _ => {}
        }
    }
    out
}

struct Batch {
    encoder: Option<wgpu::CommandEncoder>,
    passes: u32,
    uniform_data: Vec<u8>,
    profiled: Vec<(&'static str, Cost)>,
}

pub(crate) struct GpuInner {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    report: AdapterReport,
    class: AdapterClass,
    caps: Caps,
    limits: wgpu::Limits,
    pool: BufferPool,
    pipelines: PipelineCache,
    batch: Mutex<Batch>,
    uniform_arena: wgpu::Buffer,
    uniform_align: u64,
    dummy: wgpu::Buffer,
    profiler: Option<Mutex<Profiler>>,
    device_error: Arc<Mutex<Option<String>>>,
}

/// A handle to one GPU device. Cheap to clone; all clones share the device,
/// the buffer pool, the pipeline cache and the command batch.
#[derive(Clone)]
pub struct Gpu {
    pub(crate) inner: Arc<GpuInner>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.inner.info.name)
            .field("backend", &self.inner.report.backend)
            .finish()
    }
}

/// A storage buffer range bound to one kernel binding.
#[derive(Clone, Copy)]
pub struct Bind<'a> {
    pub buffer: &'a wgpu::Buffer,
    /// Bytes bound from offset 0 (a multiple of 4).
    pub size: u64,
}

/// Options for opening a device; `Default` reads the environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuOptions {
    /// Per-op timestamp profiling; `None` = `EASEL_PROFILE`.
    pub profile: Option<bool>,
}

impl Gpu {
    /// Opens the adapter chosen by [`adapter`]'s rules (type preference,
    /// `EASEL_ADAPTER`, `EASEL_BACKEND`) with every optional feature it has.
    pub fn new() -> Result<Gpu> {
        Self::with_options(GpuOptions::default())
    }

    pub fn with_options(opts: GpuOptions) -> Result<Gpu> {
        let backends = adapter::backends_from_env()?;
        let instance = adapter::make_instance(backends);
        let adapters = adapter::enumerate(&instance, backends);
        let idx = adapter::choose(&adapters)?;
        let report = adapter::report(idx, &adapters[idx], true);
        Self::open(
            adapters.into_iter().nth(idx).expect("index valid"),
            report,
            opts,
        )
    }

    /// A process-wide shared device, opened on first use. Tests and the CLI
    /// use this so pipelines and pooled buffers are shared.
    pub fn shared() -> Result<Gpu> {
        static SHARED: OnceLock<std::result::Result<Gpu, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Gpu::new().map_err(|e| e.to_string()))
            .clone()
            .map_err(|m| KernelError::Device(format!("GPU unavailable: {m}")))
    }

    fn open(adapter: wgpu::Adapter, report: AdapterReport, opts: GpuOptions) -> Result<Gpu> {
        let info = adapter.get_info();
        let granted = adapter.features() & adapter::wanted_features();
        let limits = adapter.limits();
        let experimental = if granted.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            // SAFETY: the cooperative-matrix kernel is only used through the
            // matmul launcher, whose results are checked against the CPU
            // reference in tests; we accept wgpu's experimental-API terms.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("easel"),
            required_features: granted,
            required_limits: limits.clone(),
            experimental_features: experimental,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| KernelError::RequestDevice(e.to_string()))?;

        let device_error = Arc::new(Mutex::new(None::<String>));
        let slot = device_error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            tracing::error!("wgpu error: {e}");
            let mut s = slot.lock().expect("error slot");
            if s.is_none() {
                *s = Some(e.to_string());
            }
        }));

        let caps = Caps {
            shader_f16: granted.contains(wgpu::Features::SHADER_F16),
            subgroup: granted.contains(wgpu::Features::SUBGROUP),
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            timestamp_query: granted.contains(wgpu::Features::TIMESTAMP_QUERY),
            cooperative_matrix: granted.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
            coop_f16_f32acc: 0,
            coop_f32: 0,
        };
        let mut caps = caps;
        if caps.cooperative_matrix {
            (caps.coop_f16_f32acc, caps.coop_f32) = coop_sizes(&adapter);
        }
        let uniform_arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("easel.params"),
            size: UNIFORM_ARENA_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("easel.dummy"),
            size: 256,
            usage: crate::pool::TENSOR_USAGE,
            mapped_at_creation: false,
        });
        let want_profile = opts.profile.unwrap_or_else(profile::enabled_by_env);
        let profiler = (want_profile && caps.timestamp_query)
            .then(|| Mutex::new(Profiler::new(&device, &queue, MAX_PASSES_PER_BATCH)));
        if want_profile && !caps.timestamp_query {
            tracing::warn!("EASEL_PROFILE=1 but the adapter has no timestamp queries; no profile");
        }
        let class = adapter::classify(&info);
        tracing::info!(adapter = %info.name, backend = %report.backend, ?class, "GPU opened");
        Ok(Gpu {
            inner: Arc::new(GpuInner {
                uniform_align: limits.min_uniform_buffer_offset_alignment as u64,
                device,
                queue,
                info,
                report,
                class,
                caps,
                limits,
                pool: BufferPool::new(),
                pipelines: PipelineCache::default(),
                batch: Mutex::new(Batch {
                    encoder: None,
                    passes: 0,
                    uniform_data: Vec::with_capacity(64 * 1024),
                    profiled: Vec::new(),
                }),
                uniform_arena,
                dummy,
                profiler,
                device_error,
            }),
        })
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }
    /// The adapter as `easel devices` reports it.
    pub fn report(&self) -> &AdapterReport {
        &self.inner.report
    }
    pub fn class(&self) -> AdapterClass {
        self.inner.class
    }
    pub fn caps(&self) -> Caps {
        self.inner.caps
    }
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }
    /// Largest tensor (bytes) one binding can hold.
    pub fn max_binding_bytes(&self) -> u64 {
        self.inner
            .limits
            .max_storage_buffer_binding_size
            .min(self.inner.limits.max_buffer_size)
    }
    pub fn memory_stats(&self) -> MemoryStats {
        self.inner.pool.stats()
    }
    /// Returns pooled, unused buffers to the device.
    pub fn trim_pool(&self) {
        self.inner.pool.trim();
    }
    pub fn reset_peak_memory(&self) {
        self.inner.pool.reset_peak();
    }
    /// Number of compiled pipelines in the cache.
    pub fn pipeline_count(&self) -> usize {
        self.inner.pipelines.len()
    }
    /// A tiny storage buffer to bind where a kernel's optional input is absent.
    pub fn dummy(&self) -> Bind<'_> {
        Bind {
            buffer: &self.inner.dummy,
            size: 256,
        }
    }

    pub(crate) fn alloc(&self, op: &'static str, bytes: u64) -> Result<PooledBuffer> {
        let limit = self.max_binding_bytes();
        if bytes > limit {
            return Err(KernelError::TooLarge { op, bytes, limit });
        }
        Ok(self.inner.pool.get(&self.inner.device, bytes.max(4)))
    }

    /// Splits `groups` workgroups over x and y so no dimension exceeds the
    /// device limit. Kernels rebuild the linear index as
    /// `wid.x + wid.y * nwg.x` and bounds-check it.
    pub fn grid(&self, groups: u64) -> Result<[u32; 3]> {
        let max = self.inner.limits.max_compute_workgroups_per_dimension as u64;
        if groups == 0 {
            return Ok([0, 1, 1]);
        }
        if groups <= max {
            return Ok([groups as u32, 1, 1]);
        }
        let y = groups.div_ceil(max);
        if y > max {
            return Err(KernelError::TooLarge {
                op: "dispatch",
                bytes: groups,
                limit: max * max,
            });
        }
        let x = groups.div_ceil(y);
        Ok([x as u32, y as u32, 1])
    }

    fn with_encoder<R>(
        &self,
        batch: &mut Batch,
        f: impl FnOnce(&mut wgpu::CommandEncoder) -> R,
    ) -> R {
        let enc = batch.encoder.get_or_insert_with(|| {
            self.inner
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("easel.batch"),
                })
        });
        f(enc)
    }

    /// Records one kernel dispatch into the shared batch.
    ///
    /// `params` is the kernel's `Params` uniform (bytemuck bytes); `bufs` are
    /// bound to bindings 1.. in order and must match `kernel.bindings`.
    pub fn dispatch(
        &self,
        kernel: &Kernel<'_>,
        params: &[u8],
        bufs: &[Bind<'_>],
        workgroups: [u32; 3],
        cost: Cost,
    ) -> Result<()> {
        debug_assert_eq!(
            bufs.len(),
            kernel.bindings.len(),
            "{}: binding count",
            kernel.op
        );
        if workgroups.contains(&0) {
            return Ok(());
        }
        if kernel.dtype == crate::DType::F16 && !self.inner.caps.shader_f16 {
            return Err(KernelError::Unsupported {
                op: kernel.op,
                what: "f16 storage (SHADER_F16)".into(),
            });
        }
        let compiled = self
            .inner
            .pipelines
            .get_or_create(&self.inner.device, kernel);
        let mut batch = self.inner.batch.lock().expect("batch lock");
        let align = self.inner.uniform_align;
        let psize = (params.len() as u64).max(16).next_multiple_of(16);
        let mut offset = (batch.uniform_data.len() as u64).next_multiple_of(align);
        if offset + psize > UNIFORM_ARENA_BYTES || batch.passes >= MAX_PASSES_PER_BATCH {
            self.submit_locked(&mut batch);
            offset = 0;
        }
        batch.uniform_data.resize(offset as usize, 0);
        batch.uniform_data.extend_from_slice(params);
        batch.uniform_data.resize((offset + psize) as usize, 0);

        let mut entries = Vec::with_capacity(bufs.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.inner.uniform_arena,
                offset,
                size: std::num::NonZeroU64::new(psize),
            }),
        });
        for (i, b) in bufs.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buffer,
                    offset: 0,
                    size: std::num::NonZeroU64::new(b.size.max(4).next_multiple_of(4)),
                }),
            });
        }
        let bind_group = self
            .inner
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(kernel.op),
                layout: &compiled.layout,
                entries: &entries,
            });
        let pass_index = batch.passes;
        let profiler = self
            .inner
            .profiler
            .as_ref()
            .map(|p| p.lock().expect("profiler lock"));
        self.with_encoder(&mut batch, |enc| {
            let ts = profiler.as_ref().map(|p| wgpu::ComputePassTimestampWrites {
                query_set: &p.query_set,
                beginning_of_pass_write_index: Some(pass_index * 2),
                end_of_pass_write_index: Some(pass_index * 2 + 1),
            });
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(kernel.op),
                timestamp_writes: ts,
            });
            pass.set_pipeline(&compiled.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        });
        drop(profiler);
        batch.passes += 1;
        if self.inner.profiler.is_some() {
            batch.profiled.push((kernel.op, cost));
        }
        Ok(())
    }

    /// Records a buffer fill with zeros.
    pub(crate) fn clear(&self, buffer: &wgpu::Buffer, size: u64) {
        let mut batch = self.inner.batch.lock().expect("batch lock");
        self.with_encoder(&mut batch, |enc| {
            enc.clear_buffer(buffer, 0, Some(size.next_multiple_of(4)))
        });
    }

    /// Records an upload. It goes through the batch's encoder (not
    /// `queue.write_buffer`) so it is ordered after passes already recorded
    /// that may still read a recycled buffer.
    pub(crate) fn upload(&self, dst: &wgpu::Buffer, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let padded;
        let data = if bytes.len().is_multiple_of(4) {
            bytes
        } else {
            let mut v = bytes.to_vec();
            v.resize(bytes.len().next_multiple_of(4), 0);
            padded = v;
            &padded
        };
        let staging = self
            .inner
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("easel.upload"),
                contents: data,
                usage: wgpu::BufferUsages::COPY_SRC,
            });
        let mut batch = self.inner.batch.lock().expect("batch lock");
        self.with_encoder(&mut batch, |enc| {
            enc.copy_buffer_to_buffer(&staging, 0, dst, 0, data.len() as u64)
        });
    }

    /// Records a buffer-to-buffer copy.
    pub(crate) fn copy(&self, src: &wgpu::Buffer, dst: &wgpu::Buffer, size: u64) {
        let mut batch = self.inner.batch.lock().expect("batch lock");
        self.with_encoder(&mut batch, |enc| {
            enc.copy_buffer_to_buffer(src, 0, dst, 0, size.next_multiple_of(4))
        });
    }

    /// Reads `size` bytes of `src` back to the host. Submits the batch and waits.
    pub(crate) fn download(&self, src: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let padded = size.max(4).next_multiple_of(4);
        let staging = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("easel.download"),
            size: padded,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut batch = self.inner.batch.lock().expect("batch lock");
            self.with_encoder(&mut batch, |enc| {
                enc.copy_buffer_to_buffer(src, 0, &staging, 0, padded)
            });
            self.submit_locked(&mut batch);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| KernelError::Readback(e.to_string()))?;
        rx.recv()
            .map_err(|e| KernelError::Readback(e.to_string()))?
            .map_err(|e| KernelError::Readback(e.to_string()))?;
        self.check_error()?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| KernelError::Readback(format!("{e:?}")))?;
        let mut out = view.to_vec();
        drop(view);
        staging.unmap();
        out.truncate(size as usize);
        Ok(out)
    }

    fn submit_locked(&self, batch: &mut Batch) {
        let Some(mut enc) = batch.encoder.take() else {
            batch.uniform_data.clear();
            batch.passes = 0;
            return;
        };
        let profiled = std::mem::take(&mut batch.profiled);
        let mut profiler = self
            .inner
            .profiler
            .as_ref()
            .map(|p| p.lock().expect("profiler lock"));
        if let Some(p) = profiler.as_mut() {
            p.resolve(&mut enc, batch.passes);
        }
        if !batch.uniform_data.is_empty() {
            self.inner
                .queue
                .write_buffer(&self.inner.uniform_arena, 0, &batch.uniform_data);
        }
        self.inner.queue.submit([enc.finish()]);
        batch.uniform_data.clear();
        batch.passes = 0;
        if let Some(p) = profiler.as_mut() {
            p.collect(&self.inner.device, &profiled);
        }
    }

    /// Submits whatever has been recorded, without waiting.
    pub fn flush(&self) {
        let mut batch = self.inner.batch.lock().expect("batch lock");
        self.submit_locked(&mut batch);
    }

    /// Submits and waits until the GPU is idle; reports device errors.
    pub fn sync(&self) -> Result<()> {
        self.flush();
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| KernelError::Device(e.to_string()))?;
        self.check_error()
    }

    /// The first uncaptured wgpu error since the last check, if any.
    pub fn check_error(&self) -> Result<()> {
        match self.inner.device_error.lock().expect("error slot").take() {
            Some(e) => Err(KernelError::Device(e)),
            None => Ok(()),
        }
    }

    /// Whether `EASEL_PROFILE=1` took effect on this device.
    pub fn profiling(&self) -> bool {
        self.inner.profiler.is_some()
    }

    /// The per-op table accumulated so far (after a [`Gpu::sync`]).
    pub fn profile(&self) -> Option<BTreeMap<&'static str, OpProfile>> {
        self.flush();
        self.inner
            .profiler
            .as_ref()
            .map(|p| p.lock().expect("profiler lock").table.clone())
    }

    /// The per-op table as text, or `None` when profiling is off.
    pub fn profile_report(&self) -> Option<String> {
        self.profile().map(|t| profile::format_table(&t))
    }

    pub fn reset_profile(&self) {
        if let Some(p) = &self.inner.profiler {
            p.lock().expect("profiler lock").table.clear();
        }
    }
}

impl Drop for GpuInner {
    fn drop(&mut self) {
        if let Some(p) = &self.profiler
            && let Ok(p) = p.lock()
            && !p.table.is_empty()
        {
            eprintln!(
                "EASEL_PROFILE per-op GPU time ({}):\n{}",
                self.info.name,
                profile::format_table(&p.table)
            );
        }
    }
}
