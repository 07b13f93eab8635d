//! `easel-kernels`: Easel's GPU runtime on wgpu and its hand-written WGSL
//! compute kernels.
//!
//! Models call ops on [`Tensor`]s and never touch wgpu, so another backend
//! can be added without changing model code.

pub mod adapter;
pub mod bench;
pub mod dtype;
pub mod error;
pub mod gpu;
pub mod ops;
pub mod pipeline;
pub mod pool;
pub mod profile;
pub mod roofline;
pub mod tensor;
pub mod testing;

pub use adapter::{AdapterClass, AdapterReport, list_adapters};
pub use dtype::DType;
pub use error::{KernelError, Result};
pub use gpu::{Bind, Caps, Gpu, GpuOptions};
pub use ops::{Activation, Epilogue};
pub use pipeline::{Access, Kernel};
pub use pool::MemoryStats;
pub use profile::Cost;
pub use tensor::Tensor;
