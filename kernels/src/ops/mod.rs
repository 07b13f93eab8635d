//! The ops. Each op is one `.wgsl` kernel file plus one launcher `.rs` file
//! holding the Rust entry points, the CPU reference and the tests.

pub mod attention;
pub mod binary;
pub mod cast;
pub mod concat;
pub mod conv2d;
pub mod conv_transpose2d;
pub mod deform_conv2d;
pub mod epilogue;
pub mod group_norm;
pub mod image;
pub mod layer_norm;
pub mod matmul;
mod matmul_wide;
pub mod permute;
pub mod pixel_shuffle;
pub mod pool;
pub mod reduce;
pub mod slice;
pub mod softmax;
pub mod unary;
pub mod upsample;

pub use epilogue::{Activation, Epilogue};
