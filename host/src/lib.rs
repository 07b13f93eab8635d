//! `easel-host`: model architectures built from the kernels, the HTTP API,
//! the job queue, storage, tenants and the plugin host, plus the `easel` CLI.

pub mod background;
pub mod cli;
pub mod imageio;
pub mod import;
pub mod models;
pub mod plugins;
pub mod server;
pub mod testing;
pub mod upscale;
pub mod weights;
