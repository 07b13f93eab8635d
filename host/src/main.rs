//! `easel`: the Easel server and CLI.

use clap::Parser;

// The server allocates and frees many small, short-lived objects per request (a store and
// instance per plugin call, hyper's request/response parts) across worker threads; glibc's
// arenas pay for that in consolidation and cross-thread frees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
