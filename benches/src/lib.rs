//! Benchmarks.

pub mod server;
