//! The ops. Each op is one `.wgsl` kernel file plus one launcher `.rs` file
//! holding the Rust entry points, the CPU reference and the tests.

pub mod conv2d;
pub mod conv_transpose2d;
pub mod epilogue;

pub use epilogue::{Activation, Epilogue};
pub mod unary;
