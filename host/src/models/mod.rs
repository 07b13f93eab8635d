//! Model architectures built from the kernels.

pub mod rsu;
