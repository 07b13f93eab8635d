//! Compute-pipeline cache and the kernel description launchers fill in.
//!
//! A kernel is one `.wgsl` file. Variants are made by a generated prelude —
//! `enable f16;` when needed, `alias T`/`T4` for the storage dtype and
//! `const NAME = value;` lines — never by copying files. Every pipeline gets an
//! explicit bind-group layout: binding 0 is the `Params` uniform, bindings
//! 1.. are storage buffers in the order the launcher lists them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::DType;

/// How a storage binding is used by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    ReadWrite,
}

/// What a launcher tells the runtime about one kernel variant.
#[derive(Debug, Clone)]
pub struct Kernel<'a> {
    /// Op name, used for the cache key and the profile table (e.g. "matmul").
    pub op: &'static str,
    /// The WGSL source (usually `include_str!("op.wgsl")`).
    pub source: &'static str,
    /// Entry point.
    pub entry: &'static str,
    /// Storage dtype: sets `alias T` and `T4`, and adds `enable f16;` for f16.
    pub dtype: DType,
    /// Extra constants, emitted as `const NAME = VALUE;` (VALUE is WGSL text,
    /// e.g. `"64u"`, `"true"`, `"0.5"`).
    pub defines: Vec<(&'static str, String)>,
    /// Shared WGSL snippets inserted between the prelude and `source`
    /// (e.g. [`crate::ops::epilogue::EPILOGUE_WGSL`]).
    pub includes: &'static [&'static str],
    /// Storage bindings (1..=n), in order.
    pub bindings: &'a [Access],
    /// Whether the shader uses f16 even when `dtype` is f32 (mixed kernels).
    pub needs_f16: bool,
    /// Extra `enable` directives (e.g. `wgpu_cooperative_matrix`), which must
    /// precede every declaration and so cannot come from `includes`.
    pub enables: &'static [&'static str],
}

impl<'a> Kernel<'a> {
    /// A kernel with no defines or includes; add them with the builders.
    pub fn new(
        op: &'static str,
        source: &'static str,
        dtype: DType,
        bindings: &'a [Access],
    ) -> Self {
        Kernel {
            op,
            source,
            entry: "main",
            dtype,
            defines: Vec::new(),
            includes: &[],
            bindings,
            needs_f16: false,
            enables: &[],
        }
    }
    pub fn entry(mut self, entry: &'static str) -> Self {
        self.entry = entry;
        self
    }
    pub fn define(mut self, name: &'static str, value: impl ToString) -> Self {
        self.defines.push((name, value.to_string()));
        self
    }
    pub fn defines(mut self, d: impl IntoIterator<Item = (&'static str, String)>) -> Self {
        self.defines.extend(d);
        self
    }
    pub fn enables(mut self, e: &'static [&'static str]) -> Self {
        self.enables = e;
        self
    }
    pub fn includes(mut self, inc: &'static [&'static str]) -> Self {
        self.includes = inc;
        self
    }

    /// Full WGSL text: the generated prelude followed by the source.
    pub fn full_source(&self) -> String {
        let mut s = String::new();
        if self.dtype == DType::F16 || self.needs_f16 {
            s.push_str("enable f16;\n");
        }
        for e in self.enables {
            s.push_str(&format!("enable {e};\n"));
        }
        let t = self.dtype.wgsl();
        s.push_str(&format!("alias T = {t};\nalias T4 = vec4<{t}>;\n"));
        for (name, value) in &self.defines {
            s.push_str(&format!("const {name} = {value};\n"));
        }
        for inc in self.includes {
            s.push_str(inc);
            s.push('\n');
        }
        s.push_str(self.source);
        s
    }

    fn key(&self) -> PipelineKey {
        PipelineKey {
            op: self.op,
            // Launchers that generate source (unrolled variants) pass a
            // distinct leaked string per variant: key on its address too.
            source: self.source.as_ptr() as usize,
            entry: self.entry,
            dtype: self.dtype,
            defines: self
                .defines
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            // Key on the snippets' addresses: two variants that differ only
            // in which snippet they include must not share a pipeline.
            includes: self.includes.iter().map(|s| s.as_ptr() as usize).collect(),
            bindings: self.bindings.to_vec(),
            needs_f16: self.needs_f16,
            enables: self.enables.join(","),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    op: &'static str,
    source: usize,
    entry: &'static str,
    dtype: DType,
    defines: String,
    includes: Vec<usize>,
    bindings: Vec<Access>,
    needs_f16: bool,
    enables: String,
}

/// A compiled pipeline and the layout its bind groups must follow.
pub struct CompiledKernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    map: Mutex<HashMap<PipelineKey, Arc<CompiledKernel>>>,
}

impl PipelineCache {
    pub(crate) fn len(&self) -> usize {
        self.map.lock().expect("pipeline cache lock").len()
    }

    pub(crate) fn get_or_create(
        &self,
        device: &wgpu::Device,
        k: &Kernel<'_>,
    ) -> Arc<CompiledKernel> {
        let key = k.key();
        if let Some(p) = self.map.lock().expect("pipeline cache lock").get(&key) {
            return p.clone();
        }
        // Compile outside the lock: shader compilation can take a while and
        // other threads may want unrelated pipelines meanwhile.
        let compiled = Arc::new(compile(device, k));
        self.map
            .lock()
            .expect("pipeline cache lock")
            .entry(key)
            .or_insert(compiled)
            .clone()
    }
}

fn compile(device: &wgpu::Device, k: &Kernel<'_>) -> CompiledKernel {
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }];
    for (i, a) in k.bindings.iter().enumerate() {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: i as u32 + 1,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage {
                    read_only: *a == Access::Read,
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    let label = format!("easel.{}.{}", k.op, k.entry);
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(&label),
        entries: &entries,
    });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(&label),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let source = k.full_source();
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(&label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&label),
        layout: Some(&pl),
        module: &module,
        entry_point: Some(k.entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &[],
            // Our kernels initialise the workgroup memory they read.
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    CompiledKernel { pipeline, layout }
}
