//! `easel-host`: model architectures built from the kernels, the HTTP API,
//! the job queue, storage, tenants and the plugin host, plus the `easel` CLI.

pub mod api;
pub mod background;
pub mod cli;
pub mod config;
pub mod db;
pub mod ids;
pub mod imageio;
pub mod import;
pub mod jobs;
pub mod metrics;
pub mod models;
pub mod plugins;
pub mod server;
pub mod storage;
pub mod tasks;
pub mod tenants;
pub mod testing;
pub mod upscale;
pub mod webhooks;
pub mod weights;
