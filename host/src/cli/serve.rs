//! `easel serve`: the HTTP server.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on, HOST:PORT (default 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long, env = "EASEL_LISTEN")]
    pub listen: Option<String>,
    /// Configuration file (default: ./easel.toml when it exists). `EASEL_*`
    /// variables override it, and flags override both.
    #[arg(long, env = "EASEL_CONFIG")]
    pub config: Option<PathBuf>,
}

pub fn run(args: Args, data_dir: &Path, models_dir: &Path) -> anyhow::Result<()> {
    let file = args
        .config
        .or_else(|| Some(PathBuf::from("easel.toml")).filter(|p| p.exists()));
    let mut config =
        Config::load(file.as_deref(), std::env::vars()).context("loading the configuration")?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(crate::server::serve(config, data_dir, models_dir))
}
