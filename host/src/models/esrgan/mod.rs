//! The ESRGAN family of upscalers (Real-ESRGAN): RRDBNet and
//! SRVGGNetCompact, with their hyper-parameters detected from the tensor
//! names and shapes of a checkpoint (basicsr parameter names), so community
//! models with these layouts load without a config file.

pub mod rrdbnet;
pub mod srvgg;

use easel_kernels::ops::conv2d::{Conv2d, Conv2dConfig};
use easel_kernels::{DType, Gpu, KernelError, Tensor};

use crate::weights::{WeightError, Weights};

pub use rrdbnet::{RrdbConfig, RrdbNet};
pub use srvgg::{SrvggConfig, SrvggNet};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The tensors match neither RRDBNet nor SRVGGNetCompact.
    #[error("{path}: not a recognised upscaler checkpoint: {why}")]
    Unrecognised { path: String, why: String },
    /// Names match an architecture but the shapes do not fit together.
    #[error("{path}: inconsistent {arch} checkpoint: {msg}")]
    Inconsistent {
        path: String,
        arch: &'static str,
        msg: String,
    },
    /// The input tensor does not fit the model.
    #[error("{arch}: {msg}")]
    BadInput { arch: &'static str, msg: String },
}

/// Which architecture a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsrganConfig {
    Rrdb(RrdbConfig),
    Srvgg(SrvggConfig),
}

impl EsrganConfig {
    /// Detects the architecture and its hyper-parameters from the tensors.
    pub fn detect(w: &Weights) -> Result<EsrganConfig, ModelError> {
        if w.contains("conv_first.weight") && w.contains("body.0.rdb1.conv1.weight") {
            return Ok(EsrganConfig::Rrdb(RrdbConfig::detect(w)?));
        }
        if w.contains("body.0.weight") && w.contains("body.1.weight") {
            return Ok(EsrganConfig::Srvgg(SrvggConfig::detect(w)?));
        }
        Err(ModelError::Unrecognised {
            path: w.path().display().to_string(),
            why: "expected RRDBNet tensors (conv_first.weight, body.0.rdb1.conv1.weight) or \
                  SRVGGNetCompact tensors (body.0.weight, body.1.weight)"
                .into(),
        })
    }
}

/// A loaded upscaler of either architecture.
#[derive(Debug)]
pub enum UpscaleModel {
    // Boxed: the nets hold convs (a few hundred bytes each) inline.
    Rrdb(Box<RrdbNet>),
    Srvgg(Box<SrvggNet>),
}

impl UpscaleModel {
    /// Detects the architecture and uploads the weights in `dtype`.
    pub fn load(w: &Weights, gpu: &Gpu, dtype: DType) -> Result<UpscaleModel, ModelError> {
        Ok(match EsrganConfig::detect(w)? {
            EsrganConfig::Rrdb(c) => {
                UpscaleModel::Rrdb(Box::new(RrdbNet::load(w, &c, gpu, dtype)?))
            }
            EsrganConfig::Srvgg(c) => {
                UpscaleModel::Srvgg(Box::new(SrvggNet::load(w, &c, gpu, dtype)?))
            }
        })
    }

    /// `[1, C, H, W]` in [0, 1] -> `[1, C, H*scale, W*scale]` (unclamped).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        match self {
            UpscaleModel::Rrdb(m) => m.forward(x),
            UpscaleModel::Srvgg(m) => m.forward(x),
        }
    }

    pub fn scale(&self) -> usize {
        match self {
            UpscaleModel::Rrdb(m) => m.config().scale,
            UpscaleModel::Srvgg(m) => m.config().scale,
        }
    }

    /// Image channels in (1 or 3).
    pub fn in_channels(&self) -> usize {
        match self {
            UpscaleModel::Rrdb(m) => m.config().in_ch,
            UpscaleModel::Srvgg(m) => m.config().in_ch,
        }
    }

    pub fn out_channels(&self) -> usize {
        match self {
            UpscaleModel::Rrdb(m) => m.config().out_ch,
            UpscaleModel::Srvgg(m) => m.config().out_ch,
        }
    }

    /// Input height and width must be multiples of this (pixel-unshuffle).
    pub fn input_multiple(&self) -> usize {
        match self {
            UpscaleModel::Rrdb(m) => m.config().unshuffle,
            UpscaleModel::Srvgg(_) => 1,
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            UpscaleModel::Rrdb(m) => m.dtype(),
            UpscaleModel::Srvgg(m) => m.dtype(),
        }
    }

    /// Elements of the largest single tensor a forward pass on an `h`x`w`
    /// input allocates (it must fit one storage binding).
    pub fn largest_tensor_elems(&self, h: usize, w: usize) -> usize {
        match self {
            UpscaleModel::Rrdb(m) => m.config().largest_tensor_elems(h, w),
            UpscaleModel::Srvgg(m) => m.config().largest_tensor_elems(h, w),
        }
    }

    /// Elements live at the peak of a forward pass (a bound used to pick a
    /// tile size within a memory budget).
    pub fn peak_elems(&self, h: usize, w: usize) -> usize {
        match self {
            UpscaleModel::Rrdb(m) => m.config().peak_elems(h, w),
            UpscaleModel::Srvgg(m) => m.config().peak_elems(h, w),
        }
    }

    /// Context pixels around a tile that make tiled output match the whole
    /// image: SRVGG's receptive field is one pixel per conv, so its radius
    /// makes tiling exact; RRDBNet's field spans the image, and its
    /// influence has decayed below 8-bit rounding after about this many
    /// pixels (measured: see the tiled test).
    pub fn default_tile_pad(&self) -> usize {
        match self {
            UpscaleModel::Rrdb(_) => rrdbnet::DEFAULT_TILE_PAD,
            UpscaleModel::Srvgg(m) => m.config().num_conv + 2,
        }
    }

    pub fn arch_name(&self) -> &'static str {
        match self {
            UpscaleModel::Rrdb(_) => "RRDBNet",
            UpscaleModel::Srvgg(_) => "SRVGGNetCompact",
        }
    }
}

/// The shape of a stored tensor, or `Missing`.
pub(crate) fn shape_of(w: &Weights, name: &str) -> Result<Vec<usize>, ModelError> {
    Ok(w.shape(name)?.to_vec())
}

/// A 3x3 same-size conv `cin -> cout` from `<prefix>.weight` and
/// `<prefix>.bias`, both shape-checked.
pub(crate) fn load_conv3x3(
    w: &Weights,
    gpu: &Gpu,
    prefix: &str,
    cin: usize,
    cout: usize,
    dtype: DType,
) -> Result<Conv2d, ModelError> {
    let weight = w.tensor(gpu, &format!("{prefix}.weight"), &[cout, cin, 3, 3], dtype)?;
    let bias = w.tensor(gpu, &format!("{prefix}.bias"), &[cout], dtype)?;
    Ok(Conv2d::new(&weight, Some(&bias), Conv2dConfig::same3x3())?)
}
