//! Errors raised by the GPU runtime and the ops.

use crate::DType;

/// Everything that can go wrong in `easel-kernels`. Ops validate their inputs
/// before recording any GPU work, so an error never leaves a half-written
/// command batch behind.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("no GPU adapter found{0}")]
    NoAdapter(String),
    #[error("could not open the GPU device: {0}")]
    RequestDevice(String),
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },
    #[error("{op}: empty input tensor (shape {shape:?}) is not allowed")]
    Empty { op: &'static str, shape: Vec<usize> },
    #[error("{op}: dtype mismatch: expected {expected:?}, got {got:?}")]
    DType {
        op: &'static str,
        expected: DType,
        got: DType,
    },
    #[error(
        "{op}: tensor of {bytes} bytes exceeds the adapter's max storage binding of {limit} bytes; split the work (e.g. tiles) or use a GPU with larger bindings"
    )]
    TooLarge {
        op: &'static str,
        bytes: u64,
        limit: u64,
    },
    #[error("{op}: {what} is not supported on this adapter")]
    Unsupported { op: &'static str, what: String },
    #[error("{op}: data length {got} does not match shape {shape:?} ({expected} elements)")]
    DataLength {
        op: &'static str,
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("GPU buffer readback failed: {0}")]
    Readback(String),
    #[error("GPU device error: {0}")]
    Device(String),
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// Shorthand used by the op launchers to report a shape error.
pub fn shape_err<T>(op: &'static str, msg: impl Into<String>) -> Result<T> {
    Err(KernelError::Shape {
        op,
        msg: msg.into(),
    })
}
