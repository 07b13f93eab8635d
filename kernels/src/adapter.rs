//! Adapter discovery and selection.
//!
//! Preference order is discrete > integrated > virtual > CPU, overridable with
//! `EASEL_ADAPTER=<index or name substring>` and
//! `EASEL_BACKEND=vulkan|metal|dx12|gl`. The index refers to the order in which
//! [`list_adapters`] (and `easel devices`) prints them.

use serde::Serialize;

use crate::error::{KernelError, Result};

/// The optional features Easel asks for when an adapter has them. Kernels pick
/// their variant from what was granted, never from what was asked.
pub fn wanted_features() -> wgpu::Features {
    wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP
        | wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
        | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
}

/// One adapter as `easel devices` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterReport {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device: u32,
    pub shader_f16: bool,
    pub subgroup: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    pub timestamp_query: bool,
    pub cooperative_matrix: bool,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    /// Whether [`select_adapter`] would pick this one.
    pub selected: bool,
}

fn backend_name(b: wgpu::Backend) -> &'static str {
    match b {
        wgpu::Backend::Vulkan => "vulkan",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        wgpu::Backend::Gl => "gl",
        wgpu::Backend::BrowserWebGpu => "webgpu",
        _ => "noop",
    }
}

fn type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u32 {
    // GL lacks compute features we rely on (f16, subgroups); take it last.
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

/// Backends to open, from `EASEL_BACKEND` (default: all native ones).
pub fn backends_from_env() -> Result<wgpu::Backends> {
    match std::env::var("EASEL_BACKEND") {
        Err(_) => Ok(wgpu::Backends::all() - wgpu::Backends::BROWSER_WEBGPU),
        Ok(v) => match v.to_ascii_lowercase().as_str() {
            "" => Ok(wgpu::Backends::all() - wgpu::Backends::BROWSER_WEBGPU),
            "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
            "metal" => Ok(wgpu::Backends::METAL),
            "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
            "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
            other => Err(KernelError::NoAdapter(format!(
                ": EASEL_BACKEND='{other}' is not one of vulkan, metal, dx12, gl"
            ))),
        },
    }
}

pub(crate) fn make_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    // Validation layers cost far more than our kernels on CPU devices; wgpu's
    // own validation stays on.
    desc.flags = wgpu::InstanceFlags::empty();
    wgpu::Instance::new(desc)
}

/// All adapters visible under the current `EASEL_BACKEND`, in a stable order.
pub(crate) fn enumerate(instance: &wgpu::Instance, backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
    adapters.sort_by_key(|a| {
        let i = a.get_info();
        (backend_rank(i.backend), i.name.clone())
    });
    adapters
}

/// Index of the adapter to use: `EASEL_ADAPTER` if set, else the best by type.
pub(crate) fn choose(adapters: &[wgpu::Adapter]) -> Result<usize> {
    let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
    let want = std::env::var("EASEL_ADAPTER").ok();
    choose_index(&infos, want.as_deref())
}

/// The selection rule on plain adapter descriptions (`want` is the value of
/// `EASEL_ADAPTER`: an index, or a case-insensitive name substring).
pub fn choose_index(infos: &[wgpu::AdapterInfo], want: Option<&str>) -> Result<usize> {
    if infos.is_empty() {
        return Err(KernelError::NoAdapter(
            " (on Linux without a GPU install Mesa's lavapipe: apt-get install mesa-vulkan-drivers)".into(),
        ));
    }
    if let Some(want) = want.map(str::trim).filter(|w| !w.is_empty()) {
        if let Ok(idx) = want.parse::<usize>() {
            return if idx < infos.len() {
                Ok(idx)
            } else {
                Err(KernelError::NoAdapter(format!(
                    ": EASEL_ADAPTER={idx} but only {} adapter(s) exist",
                    infos.len()
                )))
            };
        }
        let needle = want.to_ascii_lowercase();
        return infos
            .iter()
            .position(|i| i.name.to_ascii_lowercase().contains(&needle))
            .ok_or_else(|| {
                KernelError::NoAdapter(format!(
                    ": no adapter name contains '{want}' (EASEL_ADAPTER)"
                ))
            });
    }
    let best = infos
        .iter()
        .enumerate()
        .min_by_key(|(i, info)| (type_rank(info.device_type), backend_rank(info.backend), *i))
        .map(|(i, _)| i)
        .expect("non-empty");
    Ok(best)
}

pub(crate) fn report(index: usize, adapter: &wgpu::Adapter, selected: bool) -> AdapterReport {
    let info = adapter.get_info();
    let f = adapter.features();
    let l = adapter.limits();
    AdapterReport {
        index,
        name: info.name,
        backend: backend_name(info.backend).into(),
        device_type: type_name(info.device_type).into(),
        driver: info.driver,
        driver_info: info.driver_info,
        vendor: info.vendor,
        device: info.device,
        shader_f16: f.contains(wgpu::Features::SHADER_F16),
        subgroup: f.contains(wgpu::Features::SUBGROUP),
        subgroup_min_size: info.subgroup_min_size,
        subgroup_max_size: info.subgroup_max_size,
        timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
        cooperative_matrix: f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
        max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
        max_buffer_size: l.max_buffer_size,
        max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
        max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
        max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
        selected,
    }
}

/// Every adapter this process can see, with the one Easel would pick marked.
pub fn list_adapters() -> Result<Vec<AdapterReport>> {
    let backends = backends_from_env()?;
    let instance = make_instance(backends);
    let adapters = enumerate(&instance, backends);
    let chosen = choose(&adapters).ok();
    Ok(adapters
        .iter()
        .enumerate()
        .map(|(i, a)| report(i, a, Some(i) == chosen))
        .collect())
}

/// Broad family of an adapter, used to pick kernel tile shapes. CPU devices
/// (lavapipe, SwiftShader) are load-bound and prefer register blocking; real
/// GPUs prefer shared-memory tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum AdapterClass {
    Cpu,
    Nvidia,
    Amd,
    Intel,
    Apple,
    Other,
}

pub(crate) fn classify(info: &wgpu::AdapterInfo) -> AdapterClass {
    if info.device_type == wgpu::DeviceType::Cpu {
        return AdapterClass::Cpu;
    }
    match info.vendor {
        0x10de => AdapterClass::Nvidia,
        0x1002 | 0x1022 => AdapterClass::Amd,
        0x8086 => AdapterClass::Intel,
        0x106b => AdapterClass::Apple,
        _ => AdapterClass::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        name: &str,
        device_type: wgpu::DeviceType,
        backend: wgpu::Backend,
    ) -> wgpu::AdapterInfo {
        wgpu::AdapterInfo {
            name: name.into(),
            vendor: 0,
            device: 0,
            device_type,
            device_pci_bus_id: String::new(),
            driver: String::new(),
            driver_info: String::new(),
            backend,
            subgroup_min_size: 0,
            subgroup_max_size: 0,
            transient_saves_memory: None,
            limit_bucket: None,
        }
    }

    #[test]
    fn prefers_discrete_then_integrated_then_virtual_then_cpu() {
        use wgpu::{Backend::*, DeviceType::*};
        let list = vec![
            info("llvmpipe", Cpu, Vulkan),
            info("virgl", VirtualGpu, Vulkan),
            info("Intel UHD", IntegratedGpu, Vulkan),
            info("NVIDIA H100", DiscreteGpu, Gl),
            info("NVIDIA H100", DiscreteGpu, Vulkan),
        ];
        assert_eq!(
            choose_index(&list, None).unwrap(),
            4,
            "discrete on a native backend first"
        );
        assert_eq!(choose_index(&list[..3], None).unwrap(), 2);
        assert_eq!(choose_index(&list[..2], None).unwrap(), 1);
        assert_eq!(choose_index(&list[..1], None).unwrap(), 0);
    }

    #[test]
    fn easel_adapter_overrides_by_index_or_name() {
        use wgpu::{Backend::*, DeviceType::*};
        let list = vec![
            info("llvmpipe (LLVM 15)", Cpu, Vulkan),
            info("AMD Radeon", DiscreteGpu, Vulkan),
        ];
        assert_eq!(choose_index(&list, Some("0")).unwrap(), 0);
        assert_eq!(choose_index(&list, Some("LLVMpipe")).unwrap(), 0);
        assert_eq!(choose_index(&list, Some("radeon")).unwrap(), 1);
        assert_eq!(choose_index(&list, Some("")).unwrap(), 1);
        let e = choose_index(&list, Some("7")).unwrap_err().to_string();
        assert!(
            e.contains("EASEL_ADAPTER=7") && e.contains("2 adapter"),
            "{e}"
        );
        let e = choose_index(&list, Some("intel")).unwrap_err().to_string();
        assert!(e.contains("'intel'"), "{e}");
        assert!(
            choose_index(&[], None)
                .unwrap_err()
                .to_string()
                .contains("mesa-vulkan-drivers")
        );
    }
}
