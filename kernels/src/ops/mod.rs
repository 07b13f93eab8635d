//! The ops. Each op is one `.wgsl` kernel file plus one launcher `.rs` file
//! holding the Rust entry points, the CPU reference and the tests.

pub mod epilogue;

pub use epilogue::{Activation, Epilogue};
pub mod attention;
pub mod matmul;
pub mod unary;
