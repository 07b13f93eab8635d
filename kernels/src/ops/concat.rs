//! Concatenation along any axis: one strided block copy per input, each
//! writing its slice of the output. The same copy kernel serves
//! [`crate::ops::slice`].

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::{Access, Cost, Kernel, KernelError, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    row: u32,
    src_stride: u32,
    dst_stride: u32,
    src_off: u32,
    dst_off: u32,
    _pad: [u32; 2],
}

/// One strided block copy (see `concat.wgsl`): `rows` rows of `row`
/// elements, rows `src_stride`/`dst_stride` apart, from `x` at `src_off`
/// into `y` at `dst_off` (all in elements).
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_block(
    op: &'static str,
    x: &Tensor,
    y: &Tensor,
    rows: usize,
    row: usize,
    src_stride: usize,
    dst_stride: usize,
    src_off: usize,
    dst_off: usize,
) -> Result<()> {
    let n = rows * row;
    let params = Params {
        n: n as u32,
        row: row as u32,
        src_stride: src_stride as u32,
        dst_stride: dst_stride as u32,
        src_off: src_off as u32,
        dst_off: dst_off as u32,
        _pad: [0; 2],
    };
    const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite];
    let kernel = Kernel::new(op, include_str!("concat.wgsl"), x.dtype(), BINDINGS);
    let gpu = x.gpu();
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[x.bind(), y.bind()],
        gpu.grid((n as u64).div_ceil(256))?,
        Cost::new(0.0, (2 * n * x.dtype().size()) as f64),
    )
}

/// Concatenates `xs` along `axis`. All inputs need the same rank, dtype and
/// sizes on every other axis.
pub fn concat(xs: &[&Tensor], axis: usize) -> Result<Tensor> {
    const OP: &str = "concat";
    let Some(first) = xs.first() else {
        return shape_err(OP, "no input tensors");
    };
    let rank = first.rank();
    if axis >= rank {
        return shape_err(OP, format!("axis {axis} out of range for rank {rank}"));
    }
    let mut along = 0;
    for (i, x) in xs.iter().enumerate() {
        if x.numel() == 0 {
            return Err(KernelError::Empty {
                op: OP,
                shape: x.shape().to_vec(),
            });
        }
        if x.dtype() != first.dtype() {
            return Err(KernelError::DType {
                op: OP,
                expected: first.dtype(),
                got: x.dtype(),
            });
        }
        let same =
            x.rank() == rank && (0..rank).all(|d| d == axis || x.shape()[d] == first.shape()[d]);
        if !same {
            return shape_err(
                OP,
                format!(
                    "input {i} has shape {:?}, incompatible with {:?} along axis {axis}",
                    x.shape(),
                    first.shape()
                ),
            );
        }
        along += x.shape()[axis];
    }
    let mut shape = first.shape().to_vec();
    shape[axis] = along;
    let rows: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let y = Tensor::empty_for(first.gpu(), OP, &shape, first.dtype())?;
    let mut offset = 0;
    for x in xs {
        let row = x.shape()[axis] * inner;
        copy_block(OP, x, &y, rows, row, row, along * inner, 0, offset)?;
        offset += row;
    }
    Ok(y)
}

/// CPU reference of [`concat`].
pub fn reference(xs: &[(&[f32], &[usize])], axis: usize) -> Vec<f32> {
    let shape = xs[0].1;
    let rows: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut y = Vec::new();
    for r in 0..rows {
        for (data, s) in xs {
            let row = s[axis] * inner;
            y.extend_from_slice(&data[r * row..(r + 1) * row]);
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn concat_three_inputs_on_each_axis() {
        let Some(gpu) = test_gpu() else { return };
        for dtype in test_dtypes(&gpu) {
            for axis in [0, 1, 2, 3] {
                let mut shapes = vec![[2, 3, 13, 17], [2, 3, 13, 17], [2, 3, 13, 17]];
                for (k, s) in shapes.iter_mut().enumerate() {
                    s[axis] = [1, 5, 64][k].min(if axis == 1 { 64 } else { 7 });
                }
                let data: Vec<_> = shapes
                    .iter()
                    .enumerate()
                    .map(|(k, s)| {
                        let n = s.iter().product();
                        upload(&gpu, s, &rand_vec(n, k as u64 + 10, -1.0, 1.0), dtype)
                    })
                    .collect();
                let ts: Vec<&Tensor> = data.iter().map(|(t, _)| t).collect();
                let y = concat(&ts, axis).unwrap();
                let mut want_shape = shapes[0].to_vec();
                want_shape[axis] = shapes.iter().map(|s| s[axis]).sum();
                assert_eq!(y.shape(), want_shape.as_slice());
                let refs: Vec<(&[f32], &[usize])> = data
                    .iter()
                    .zip(&shapes)
                    .map(|((_, v), s)| (v.as_slice(), s.as_slice()))
                    .collect();
                let got = y.to_f32_vec().unwrap();
                assert_eq!(got, reference(&refs, axis), "axis {axis} {dtype}");
            }
        }
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let dt = crate::DType::F32;
        let a = Tensor::zeros(&gpu, &[1, 3, 4, 4], dt).unwrap();
        let b = Tensor::zeros(&gpu, &[1, 3, 5, 4], dt).unwrap();
        assert!(concat(&[], 0).is_err());
        assert!(matches!(
            concat(&[&a, &b], 1),
            Err(KernelError::Shape { .. })
        ));
        assert!(concat(&[&a, &b], 2).is_ok());
        assert!(concat(&[&a, &a], 4).is_err());
        let c = Tensor::zeros(&gpu, &[1, 3, 4], dt).unwrap();
        assert!(concat(&[&a, &c], 0).is_err());
        let e = Tensor::empty(&gpu, &[1, 0, 4, 4], dt).unwrap();
        assert!(matches!(
            concat(&[&a, &e], 1),
            Err(KernelError::Empty { .. })
        ));
        if gpu.caps().shader_f16 {
            let h = Tensor::zeros(&gpu, &[1, 3, 4, 4], crate::DType::F16).unwrap();
            assert!(matches!(
                concat(&[&a, &h], 1),
                Err(KernelError::DType { .. })
            ));
        }
    }
}
