//! Axis permutation (rank <= 6) and transpose, materialised contiguously.

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::tensor::contiguous_strides;
use crate::{Access, Cost, Kernel, KernelError, Tensor};

const MAX_RANK: usize = 6;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
    shape: [u32; 8],
    stride: [u32; 8],
}

/// Output axis `d` is input axis `perm[d]` (`torch.permute`).
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    const OP: &str = "permute";
    let rank = x.rank();
    if perm.len() != rank || rank > MAX_RANK {
        return shape_err(
            OP,
            format!(
                "perm {perm:?} does not fit shape {:?} (rank <= {MAX_RANK})",
                x.shape()
            ),
        );
    }
    let mut seen = [false; MAX_RANK];
    for &a in perm {
        if a >= rank || std::mem::replace(&mut seen[a], true) {
            return shape_err(OP, format!("{perm:?} is not a permutation of 0..{rank}"));
        }
    }
    if x.numel() == 0 {
        return Err(KernelError::Empty {
            op: OP,
            shape: x.shape().to_vec(),
        });
    }
    let out_shape: Vec<usize> = perm.iter().map(|&a| x.shape()[a]).collect();
    let (shape, stride) = merged_dims(x.shape(), perm);
    if shape.len() <= 1 {
        // Only size-1 axes moved: the data order is unchanged.
        return x.reshape(&out_shape);
    }
    let gpu = x.gpu();
    let y = Tensor::empty_for(gpu, OP, &out_shape, x.dtype())?;
    // The innermost axis stays innermost with a length divisible by 4: copy vectors. Every
    // other input stride is then a multiple of that length, so of 4 too.
    let vec = stride.last() == Some(&1) && shape.last().is_some_and(|s| s.is_multiple_of(4));
    let (shape, stride) = if vec {
        let mut shape = shape;
        *shape.last_mut().expect("rank >= 2") /= 4;
        let last = stride.len() - 1;
        let stride: Vec<usize> = stride
            .iter()
            .enumerate()
            .map(|(d, &s)| if d == last { 1 } else { s / 4 })
            .collect();
        (shape, stride)
    } else {
        (shape, stride)
    };
    let n = if vec { y.numel() / 4 } else { y.numel() };
    let mut params = Params {
        n: n as u32,
        _pad: [0; 3],
        shape: [1; 8],
        stride: [0; 8],
    };
    let pad = MAX_RANK - shape.len();
    for (d, (&s, &st)) in shape.iter().zip(&stride).enumerate() {
        params.shape[pad + d] = s as u32;
        params.stride[pad + d] = st as u32;
    }
    const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite];
    let kernel = Kernel::new(OP, include_str!("permute.wgsl"), x.dtype(), BINDINGS).entry(if vec {
        "main4"
    } else {
        "main"
    });
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[x.bind(), y.bind()],
        gpu.grid((n as u64).div_ceil(256))?,
        Cost::new(0.0, (2 * x.size_bytes()) as f64),
    )?;
    Ok(y)
}

/// Swaps axes `a` and `b`.
pub fn transpose(x: &Tensor, a: usize, b: usize) -> Result<Tensor> {
    let rank = x.rank();
    if a >= rank || b >= rank {
        return shape_err(
            "transpose",
            format!("axes {a}, {b} out of range for shape {:?}", x.shape()),
        );
    }
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.swap(a, b);
    permute(x, &perm)
}

/// Output shape and the input stride of each output axis, with size-1 axes
/// dropped and runs of axes that stay adjacent merged, so the kernel does as
/// few divisions as the permutation allows.
fn merged_dims(in_shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let strides = contiguous_strides(in_shape);
    let mut shape: Vec<usize> = Vec::new();
    let mut stride: Vec<usize> = Vec::new();
    for &a in perm.iter().filter(|&&a| in_shape[a] != 1) {
        let (s, st) = (in_shape[a], strides[a]);
        match (shape.last_mut(), stride.last_mut()) {
            // The previous output axis steps exactly over this one in the
            // input: fold them into one axis.
            (Some(ps), Some(pst)) if *pst == st * s => {
                *ps *= s;
                *pst = st;
            }
            _ => {
                shape.push(s);
                stride.push(st);
            }
        }
    }
    (shape, stride)
}

/// CPU reference of [`permute`].
pub fn reference(x: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f32> {
    let strides = contiguous_strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
    (0..x.len())
        .map(|i| {
            let mut t = i;
            let mut src = 0;
            for d in (0..perm.len()).rev() {
                src += (t % out_shape[d]) * strides[perm[d]];
                t /= out_shape[d];
            }
            x[src]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn permutes_match_reference() {
        let Some(gpu) = test_gpu() else { return };
        let cases: &[(&[usize], &[usize])] = &[
            (&[1, 3, 13, 17], &[0, 2, 3, 1]),
            (&[2, 5, 7, 9], &[3, 1, 0, 2]),
            (&[2, 5, 7, 9], &[0, 1, 3, 2]),
            (&[1, 64, 6, 5], &[0, 2, 3, 1]),
            (&[2, 3, 4, 5, 6], &[4, 2, 0, 3, 1]),
            (&[3, 1, 4, 1, 5], &[1, 3, 4, 0, 2]),
            (&[2, 3, 2, 3, 2, 3], &[5, 0, 4, 1, 3, 2]),
            (&[2, 1, 3], &[1, 0, 2]),
            (&[37, 29], &[1, 0]),
            // The innermost axis stays innermost with a length divisible by 4: vector copies.
            (&[2, 5, 3, 8], &[0, 2, 1, 3]),
            (&[3, 4, 4], &[1, 0, 2]),
            (&[1, 2, 3, 2, 3, 12], &[0, 1, 3, 2, 4, 5]),
            (&[5, 3, 7, 4], &[2, 0, 1, 3]),
        ];
        for dtype in test_dtypes(&gpu) {
            for (ci, &(shape, perm)) in cases.iter().enumerate() {
                let n = shape.iter().product();
                let (x, xs) = upload(&gpu, shape, &rand_vec(n, ci as u64, -1.0, 1.0), dtype);
                let y = permute(&x, perm).unwrap();
                let out: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
                assert_eq!(y.shape(), out.as_slice());
                let got = y.to_f32_vec().unwrap();
                assert_eq!(
                    got,
                    reference(&xs, shape, perm),
                    "{shape:?} {perm:?} {dtype}"
                );
            }
            let (x, xs) = upload(&gpu, &[2, 5, 7], &rand_vec(70, 9, -1.0, 1.0), dtype);
            let t = transpose(&x, 2, 0).unwrap().to_f32_vec().unwrap();
            assert_eq!(t, reference(&xs, &[2, 5, 7], &[2, 1, 0]));
        }
    }

    #[test]
    fn reference_transposes_a_matrix() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            reference(&x, &[2, 3], &[1, 0]),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let dt = crate::DType::F32;
        let x = Tensor::zeros(&gpu, &[2, 3, 4], dt).unwrap();
        assert!(matches!(
            permute(&x, &[0, 1]),
            Err(KernelError::Shape { .. })
        ));
        assert!(permute(&x, &[0, 1, 1]).is_err());
        assert!(permute(&x, &[0, 1, 3]).is_err());
        assert!(transpose(&x, 0, 3).is_err());
        let x7 = Tensor::zeros(&gpu, &[1, 1, 1, 1, 1, 1, 2], dt).unwrap();
        assert!(permute(&x7, &[0, 1, 2, 3, 4, 6, 5]).is_err());
        let e = Tensor::empty(&gpu, &[2, 0], dt).unwrap();
        assert!(matches!(
            permute(&e, &[1, 0]),
            Err(KernelError::Empty { .. })
        ));
    }
}
