//! `easel serve`: the HTTP server.

use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "EASEL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
}

pub fn run(args: Args, data_dir: &Path, models_dir: &Path) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(crate::server::serve(&args.listen, data_dir, models_dir))
}
