//! `easel devices`: every adapter this machine exposes.

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (one object per adapter, in an array).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let adapters = easel_kernels::list_adapters().context("listing GPU adapters")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&adapters)?);
        return Ok(());
    }
    if adapters.is_empty() {
        println!(
            "no GPU adapters found (on Linux without a GPU: apt-get install mesa-vulkan-drivers)"
        );
        return Ok(());
    }
    for a in &adapters {
        let mark = if a.selected { "*" } else { " " };
        println!(
            "{mark} [{}] {} ({}, {})",
            a.index, a.name, a.backend, a.device_type
        );
        println!("      driver: {} {}", a.driver, a.driver_info);
        println!("      vendor: {:#06x} device: {:#06x}", a.vendor, a.device);
        println!(
            "      features: f16={} subgroups={} (size {}..{}) timestamps={} cooperative_matrix={}",
            a.shader_f16,
            a.subgroup,
            a.subgroup_min_size,
            a.subgroup_max_size,
            a.timestamp_query,
            a.cooperative_matrix
        );
        println!(
            "      limits: max_storage_binding={} MiB max_buffer={} MiB workgroup_storage={} KiB invocations/workgroup={} workgroups/dim={} storage_buffers/stage={}",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_compute_invocations_per_workgroup,
            a.max_compute_workgroups_per_dimension,
            a.max_storage_buffers_per_shader_stage
        );
    }
    println!(
        "(* = the adapter Easel uses; override with EASEL_ADAPTER=<index|name> and EASEL_BACKEND=vulkan|metal|dx12|gl)"
    );
    Ok(())
}
