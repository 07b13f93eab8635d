//! `easel bench ...`: benchmarks on the chosen adapter.

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Kernel benchmarks (matmul, conv2d) on the chosen adapter.
    Kernels(KernelArgs),
}

#[derive(Debug, clap::Args)]
pub struct KernelArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Kernels(a) => {
            anyhow::bail!("kernel benchmarks are not wired yet (json={})", a.json)
        }
    }
}
