//! `easel-host`: model architectures built from the kernels, the HTTP API,
//! the job queue, storage, tenants and the plugin host, plus the `easel` CLI.

pub mod cli;
pub mod plugins;
pub mod server;
pub mod weights;
