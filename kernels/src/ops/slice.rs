//! Slicing along one axis. The result is contiguous, copied by the strided
//! block-copy kernel of [`crate::ops::concat`].

use crate::error::{Result, shape_err};
use crate::ops::concat::copy_block;
use crate::{KernelError, Tensor};

/// Elements `start..end` of `axis` (a copy; the whole axis shares storage).
pub fn slice(x: &Tensor, axis: usize, start: usize, end: usize) -> Result<Tensor> {
    const OP: &str = "slice";
    if x.numel() == 0 {
        return Err(KernelError::Empty {
            op: OP,
            shape: x.shape().to_vec(),
        });
    }
    if axis >= x.rank() {
        return shape_err(
            OP,
            format!("axis {axis} out of range for shape {:?}", x.shape()),
        );
    }
    let dim = x.shape()[axis];
    if start >= end || end > dim {
        return shape_err(
            OP,
            format!("range {start}..{end} is empty or outside axis {axis} of size {dim}"),
        );
    }
    if start == 0 && end == dim {
        // Tensors are immutable once written, so sharing is safe.
        return Ok(x.clone());
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = end - start;
    let rows: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let y = Tensor::empty_for(x.gpu(), OP, &shape, x.dtype())?;
    let row = (end - start) * inner;
    copy_block(OP, x, &y, rows, row, dim * inner, row, start * inner, 0)?;
    Ok(y)
}

/// `len` elements of `axis` from `start` (`torch.narrow`).
pub fn narrow(x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
    match start.checked_add(len) {
        Some(end) => slice(x, axis, start, end),
        None => shape_err("narrow", format!("start {start} + len {len} overflows")),
    }
}

/// CPU reference of [`slice`].
pub fn reference(x: &[f32], shape: &[usize], axis: usize, start: usize, end: usize) -> Vec<f32> {
    let rows: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut y = Vec::new();
    for r in 0..rows {
        let base = r * shape[axis] * inner;
        y.extend_from_slice(&x[base + start * inner..base + end * inner]);
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn slices_match_reference() {
        let Some(gpu) = test_gpu() else { return };
        let shape = [2, 5, 13, 17];
        let n = shape.iter().product();
        for dtype in test_dtypes(&gpu) {
            let (x, xs) = upload(&gpu, &shape, &rand_vec(n, 3, -1.0, 1.0), dtype);
            for (axis, start, end) in [(0, 1, 2), (1, 1, 4), (1, 4, 5), (2, 0, 7), (3, 5, 16)] {
                let y = slice(&x, axis, start, end).unwrap();
                let mut s = shape.to_vec();
                s[axis] = end - start;
                assert_eq!(y.shape(), s.as_slice());
                let got = y.to_f32_vec().unwrap();
                let want = reference(&xs, &shape, axis, start, end);
                assert_eq!(got, want, "axis {axis} {start}..{end} {dtype}");
            }
            let y = narrow(&x, 3, 2, 9).unwrap().to_f32_vec().unwrap();
            assert_eq!(y, reference(&xs, &shape, 3, 2, 11));
            let whole = slice(&x, 1, 0, 5).unwrap();
            assert_eq!(whole.to_f32_vec().unwrap(), xs);
        }
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let dt = crate::DType::F32;
        let x = Tensor::zeros(&gpu, &[2, 3, 4], dt).unwrap();
        assert!(matches!(slice(&x, 3, 0, 1), Err(KernelError::Shape { .. })));
        assert!(slice(&x, 1, 2, 2).is_err());
        assert!(slice(&x, 1, 2, 4).is_err());
        assert!(narrow(&x, 2, 1, usize::MAX).is_err());
        let e = Tensor::empty(&gpu, &[0, 3], dt).unwrap();
        assert!(matches!(slice(&e, 1, 0, 1), Err(KernelError::Empty { .. })));
    }
}
