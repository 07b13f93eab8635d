//! The RSU family of salient-object / background-removal networks: IS-Net
//! (DIS), U²-Net and U²-Netp. All share the RSU blocks ([`rsu`]) and the
//! six-stage encoder-decoder ([`unet`]); [`RsuModel`] detects which one a
//! checkpoint holds from its tensor names and reads the widths from its
//! shapes.

pub mod isnet;
// The blocks are named after the family (RSU), as in the references.
#[allow(clippy::module_inception)]
pub mod rsu;
pub mod u2net;
pub mod unet;

use easel_kernels::{DType, Gpu, KernelError, Tensor};

use crate::weights::{WeightError, Weights};
pub use isnet::{IsNet, IsNetConfig};
pub use u2net::{U2Net, U2NetConfig};

#[derive(Debug, thiserror::Error)]
pub enum RsuError {
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("invalid RSU network: {0}")]
    Config(String),
}

/// Which network a checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsuArch {
    /// `ISNetDIS`: has `conv_in` (stride-2 stem), no `outconv`.
    IsNet,
    /// `U2NET` / `U2NETP`: has `outconv` fusing six side outputs.
    U2Net,
}

impl RsuArch {
    /// Detects the architecture from tensor names; `None` when the
    /// checkpoint is not an RSU network.
    pub fn detect(w: &Weights) -> Option<RsuArch> {
        if !w.contains("stage1.rebnconvin.conv_s1.weight") || !w.contains("side1.weight") {
            return None;
        }
        if w.contains("conv_in.weight") {
            Some(RsuArch::IsNet)
        } else if w.contains("outconv.weight") {
            Some(RsuArch::U2Net)
        } else {
            None
        }
    }

    /// The square input size the published weights were trained at.
    pub fn input_size(self) -> usize {
        match self {
            RsuArch::IsNet => 1024,
            RsuArch::U2Net => 320,
        }
    }
}

/// A loaded RSU network.
#[derive(Debug, Clone)]
pub enum RsuModel {
    IsNet(Box<IsNet>),
    U2Net(Box<U2Net>),
}

impl RsuModel {
    /// Detects the architecture and loads it in `dtype`.
    pub fn load(gpu: &Gpu, w: &Weights, dtype: DType) -> Result<RsuModel, RsuError> {
        match RsuArch::detect(w) {
            Some(RsuArch::IsNet) => Ok(RsuModel::IsNet(Box::new(IsNet::load(
                gpu,
                w,
                IsNetConfig::from_weights(w)?,
                dtype,
            )?))),
            Some(RsuArch::U2Net) => Ok(RsuModel::U2Net(Box::new(U2Net::load(
                gpu,
                w,
                U2NetConfig::from_weights(w)?,
                dtype,
            )?))),
            None => Err(RsuError::Config(format!(
                "{} holds neither an IS-Net (conv_in, stage*, side*) nor a U2-Net (stage*, side*, outconv)",
                w.path().display()
            ))),
        }
    }

    pub fn arch(&self) -> RsuArch {
        match self {
            RsuModel::IsNet(_) => RsuArch::IsNet,
            RsuModel::U2Net(_) => RsuArch::U2Net,
        }
    }

    /// Normalised image `[N, 3, H, W]` -> mask probabilities `[N, 1, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, RsuError> {
        match self {
            RsuModel::IsNet(m) => m.forward(x),
            RsuModel::U2Net(m) => m.forward(x),
        }
    }
}
