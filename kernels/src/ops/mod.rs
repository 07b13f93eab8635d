//! The ops. Each op is one `.wgsl` kernel file plus one launcher `.rs` file
//! holding the Rust entry points, the CPU reference and the tests.

pub mod binary;
pub mod epilogue;

pub use epilogue::{Activation, Epilogue};
pub mod group_norm;
pub mod layer_norm;
pub mod softmax;
pub mod unary;
