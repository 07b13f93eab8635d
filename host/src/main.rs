//! `easel`: the Easel server and CLI.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = easel_host::cli::Cli::parse();
    easel_host::cli::init_tracing(cli.verbose);
    match easel_host::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
