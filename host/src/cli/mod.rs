//! The `easel` command line. Each subcommand lives in its own module with its
//! `Args` and `run`; this file only wires them together.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod bench;
pub mod devices;
pub mod models;
pub mod run;
pub mod run_bg;
pub mod serve;
pub mod tenants;

/// Easel: self-hosted AI image models on any GPU, with sandboxed tenant plugins.
#[derive(Debug, Parser)]
#[command(name = "easel", version, about)]
pub struct Cli {
    /// Data directory (jobs database, uploads, outputs).
    #[arg(
        long,
        global = true,
        env = "EASEL_DATA_DIR",
        default_value = "./easel-data"
    )]
    pub data_dir: PathBuf,
    /// Models directory (`<name>.safetensors` files and optional manifests).
    #[arg(
        long,
        global = true,
        env = "EASEL_MODELS_DIR",
        default_value = "./models"
    )]
    pub models_dir: PathBuf,
    /// More logging (-v info, -vv debug). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every GPU adapter with its backend, type, driver, features and limits.
    Devices(devices::Args),
    /// Run the HTTP server.
    Serve(serve::Args),
    /// List and import models in the models directory.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Run a model on local files.
    #[command(subcommand)]
    Run(run::RunCommand),
    /// Run benchmarks on the chosen adapter.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Manage tenants (API keys, credits).
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
}

/// Logging to stderr; `RUST_LOG` wins over `-v`.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Devices(a) => devices::run(a),
        Command::Serve(a) => serve::run(a, &cli.data_dir, &cli.models_dir),
        Command::Models(c) => models::run(c, &cli.models_dir),
        Command::Run(c) => run::run(c, &cli.models_dir),
        Command::Bench(c) => bench::run(c),
        Command::Tenants(c) => tenants::run(c, &cli.data_dir),
    }
}
