//! Importing weights from other formats.

pub mod onnx;
