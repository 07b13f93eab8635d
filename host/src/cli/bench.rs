//! `easel bench ...`: benchmarks on the chosen adapter.

use anyhow::Context;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Kernel benchmarks (matmul 1024^3..4096^3, conv2d 3x3 64->64) on the chosen adapter.
    Kernels(KernelArgs),
}

#[derive(Debug, clap::Args)]
pub struct KernelArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Skip the largest (4096^3) matmul.
    #[arg(long)]
    pub quick: bool,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Kernels(a) => kernels(a),
    }
}

fn kernels(args: KernelArgs) -> anyhow::Result<()> {
    let gpu = easel_kernels::Gpu::shared().context("opening the GPU")?;
    if !args.json {
        println!(
            "adapter: {} ({}, {:?})",
            gpu.info().name,
            gpu.report().backend,
            gpu.class()
        );
        println!(
            "{:<8} {:<5} {:<24} {:>11} {:>11}",
            "op", "dtype", "shape", "median ms", "GFLOP/s"
        );
    }
    easel_kernels::bench::standard_suite(&gpu, args.quick, |r| {
        if args.json {
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
        } else {
            println!(
                "{:<8} {:<5} {:<24} {:>11.3} {:>11.1}",
                r.op, r.dtype, r.shape, r.median_ms, r.gflops
            );
        }
    })?;
    if let Some(report) = gpu.profile_report() {
        eprintln!("{report}");
    }
    Ok(())
}
