//! Element-wise activations (relu, leaky_relu, prelu, silu, gelu, sigmoid,
//! tanh) and scale/shift, in one kernel selected by the `ACT` constant.

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::ops::epilogue::{Activation, EPILOGUE_WGSL};
use crate::{Access, Cost, Kernel, KernelError, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    channels: u32,
    inner: u32,
    slope_n: u32,
    scale: f32,
    shift: f32,
    slope: f32,
    out_scale: f32,
    out_shift: f32,
    _pad: [u32; 3],
}

/// `y = act(x * scale + shift) * out_scale + out_shift`, with PReLU slopes
/// per channel along axis 1 (NCHW) when `act` is [`Activation::PRelu`].
#[derive(Debug, Clone, Copy)]
pub struct UnaryOpts<'a> {
    pub act: Activation,
    pub slopes: Option<&'a Tensor>,
    pub scale: f32,
    pub shift: f32,
    pub out_scale: f32,
    pub out_shift: f32,
}

impl Default for UnaryOpts<'_> {
    fn default() -> Self {
        Self {
            act: Activation::None,
            slopes: None,
            scale: 1.0,
            shift: 0.0,
            out_scale: 1.0,
            out_shift: 0.0,
        }
    }
}

const OP: &str = "unary";

/// General element-wise op; the functions below are shorthands.
pub fn unary(x: &Tensor, o: &UnaryOpts<'_>) -> Result<Tensor> {
    if x.numel() == 0 {
        return Err(KernelError::Empty {
            op: OP,
            shape: x.shape().to_vec(),
        });
    }
    let channels = if x.rank() >= 2 { x.shape()[1] } else { 1 };
    let inner: usize = if x.rank() >= 2 {
        x.shape()[2..].iter().product()
    } else {
        1
    };
    let slope_n = match (o.act, o.slopes) {
        (Activation::PRelu, Some(s)) if s.numel() == channels || s.numel() == 1 => {
            if s.dtype() != x.dtype() {
                return Err(KernelError::DType {
                    op: OP,
                    expected: x.dtype(),
                    got: s.dtype(),
                });
            }
            s.numel()
        }
        (Activation::PRelu, Some(s)) => {
            return shape_err(
                OP,
                format!(
                    "prelu slopes have {} elements, channel axis has {channels}",
                    s.numel()
                ),
            );
        }
        (Activation::PRelu, None) => return shape_err(OP, "prelu needs slopes"),
        _ => 1,
    };
    let gpu = x.gpu();
    let y = Tensor::empty_for(gpu, OP, x.shape(), x.dtype())?;
    let params = Params {
        n: x.numel() as u32,
        channels: channels as u32,
        inner: inner as u32,
        slope_n: slope_n as u32,
        scale: o.scale,
        shift: o.shift,
        slope: o.act.param(),
        out_scale: o.out_scale,
        out_shift: o.out_shift,
        _pad: [0; 3],
    };
    const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite];
    let kernel = Kernel::new(OP, include_str!("unary.wgsl"), x.dtype(), BINDINGS)
        .define("ACT", format!("{}u", o.act.code()))
        .includes(&[EPILOGUE_WGSL]);
    let slopes = o.slopes.map(|s| s.bind()).unwrap_or(gpu.dummy());
    let n = x.numel() as u64;
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[x.bind(), slopes, y.bind()],
        gpu.grid(n.div_ceil(256))?,
        Cost::new(n as f64 * 4.0, (2 * x.size_bytes()) as f64),
    )?;
    Ok(y)
}

pub fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    unary(
        x,
        &UnaryOpts {
            act,
            ..Default::default()
        },
    )
}
pub fn relu(x: &Tensor) -> Result<Tensor> {
    activation(x, Activation::Relu)
}
pub fn leaky_relu(x: &Tensor, slope: f32) -> Result<Tensor> {
    activation(x, Activation::LeakyRelu(slope))
}
/// PReLU with per-channel slopes along axis 1 (or one shared slope).
pub fn prelu(x: &Tensor, slopes: &Tensor) -> Result<Tensor> {
    unary(
        x,
        &UnaryOpts {
            act: Activation::PRelu,
            slopes: Some(slopes),
            ..Default::default()
        },
    )
}
pub fn silu(x: &Tensor) -> Result<Tensor> {
    activation(x, Activation::Silu)
}
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    activation(x, Activation::GeluErf)
}
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    activation(x, Activation::GeluTanh)
}
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    activation(x, Activation::Sigmoid)
}
pub fn tanh(x: &Tensor) -> Result<Tensor> {
    activation(x, Activation::Tanh)
}
/// `x * scale + shift`.
pub fn scale_shift(x: &Tensor, scale: f32, shift: f32) -> Result<Tensor> {
    unary(
        x,
        &UnaryOpts {
            scale,
            shift,
            ..Default::default()
        },
    )
}

/// CPU reference of [`unary`] on NCHW-style data (`channels` = axis 1).
pub fn reference(x: &[f32], shape: &[usize], o: &UnaryOpts<'_>, slopes: &[f32]) -> Vec<f32> {
    let channels = if shape.len() >= 2 { shape[1] } else { 1 };
    let inner: usize = if shape.len() >= 2 {
        shape[2..].iter().product()
    } else {
        1
    };
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = if slopes.len() > 1 {
                slopes[(i / inner) % channels]
            } else {
                slopes.first().copied().unwrap_or(0.0)
            };
            o.act.apply(v * o.scale + o.shift, s) * o.out_scale + o.out_shift
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    const SHAPES: &[&[usize]] = &[
        &[1, 3, 13, 17],
        &[2, 5, 7, 3],
        &[1, 64, 9, 11],
        &[1],
        &[1, 1, 1, 1],
        &[300, 257],
    ];

    #[test]
    fn every_activation_matches_reference_on_odd_shapes() {
        let Some(gpu) = test_gpu() else { return };
        let acts = [
            Activation::None,
            Activation::Relu,
            Activation::LeakyRelu(0.2),
            Activation::PRelu,
            Activation::Silu,
            Activation::GeluErf,
            Activation::GeluTanh,
            Activation::Sigmoid,
            Activation::Tanh,
        ];
        for dtype in test_dtypes(&gpu) {
            for (si, shape) in SHAPES.iter().enumerate() {
                let n: usize = shape.iter().product();
                let c = if shape.len() >= 2 { shape[1] } else { 1 };
                let (x, xs) = upload(&gpu, shape, &rand_vec(n, si as u64, -6.0, 6.0), dtype);
                let (s, ss) = upload(&gpu, &[c], &rand_vec(c, 99, -0.5, 0.5), dtype);
                for act in acts {
                    let o = UnaryOpts {
                        act,
                        slopes: Some(&s),
                        scale: 1.5,
                        shift: -0.25,
                        out_scale: 0.5,
                        out_shift: 0.125,
                    };
                    let got = unary(&x, &o).unwrap().to_f32_vec().unwrap();
                    let want = reference(&xs, shape, &o, &ss);
                    assert_close(
                        &format!("{act:?} {shape:?} {dtype}"),
                        &got,
                        &want,
                        tol(dtype),
                    );
                }
            }
        }
    }

    #[test]
    fn shorthands_and_errors() {
        let Some(gpu) = test_gpu() else { return };
        let (x, xs) = upload(
            &gpu,
            &[2, 3],
            &[-2.0, -1.0, 0.0, 1.0, 2.0, 3.0],
            crate::DType::F32,
        );
        assert_eq!(
            relu(&x).unwrap().to_f32_vec().unwrap(),
            vec![0.0, 0.0, 0.0, 1.0, 2.0, 3.0]
        );
        let got = scale_shift(&x, 2.0, 1.0).unwrap().to_f32_vec().unwrap();
        assert_eq!(got, xs.iter().map(|v| v * 2.0 + 1.0).collect::<Vec<_>>());
        let empty = Tensor::empty(&gpu, &[0, 3], crate::DType::F32).unwrap();
        assert!(matches!(relu(&empty), Err(KernelError::Empty { .. })));
        let bad = Tensor::from_f32(&gpu, &[2], &[0.1, 0.2], crate::DType::F32).unwrap();
        let x3 = Tensor::from_f32(&gpu, &[1, 3, 2], &[0.0; 6], crate::DType::F32).unwrap();
        assert!(prelu(&x3, &bad).is_err());
    }
}
