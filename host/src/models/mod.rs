//! Model architectures built from the kernels, one folder per family.

pub mod esrgan;
