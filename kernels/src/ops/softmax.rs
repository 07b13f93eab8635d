//! Softmax over the last axis (attention scores, classifier logits).

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::{Access, Cost, Kernel, KernelError, Tensor};

const OP: &str = "softmax";

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    len: u32,
    _pad: [u32; 2],
}

/// Threads per row: short rows would leave most of a big workgroup idle at
/// every barrier of the tree reduction.
fn workgroup_size(len: usize) -> u32 {
    if len <= 1024 { 64 } else { 256 }
}

/// Numerically stable softmax over the last axis, for rows of any length.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    if x.numel() == 0 {
        return Err(KernelError::Empty {
            op: OP,
            shape: x.shape().to_vec(),
        });
    }
    if x.rank() == 0 {
        return shape_err(OP, "softmax needs at least one axis");
    }
    let len = x.dim(-1);
    let rows = x.numel() / len;
    let gpu = x.gpu();
    let y = Tensor::empty_for(gpu, OP, x.shape(), x.dtype())?;
    let params = Params {
        rows: rows as u32,
        len: len as u32,
        _pad: [0; 2],
    };
    const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite];
    let kernel = Kernel::new(OP, include_str!("softmax.wgsl"), x.dtype(), BINDINGS)
        .define("WG", format!("{}u", workgroup_size(len)));
    let n = x.numel() as f64;
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[x.bind(), y.bind()],
        gpu.grid(rows as u64)?,
        // Two reads and one write per element; ~5 flops with exp counted once.
        Cost::new(5.0 * n, 3.0 * x.size_bytes() as f64),
    )?;
    Ok(y)
}

/// CPU reference (f64 accumulation), over rows of `len`.
pub fn reference(x: &[f32], len: usize) -> Vec<f32> {
    x.chunks(len)
        .flat_map(|row| {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
            row.iter().map(move |&v| ((v as f64 - m).exp() / s) as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn matches_reference_on_odd_rows() {
        let Some(gpu) = test_gpu() else { return };
        let shapes: &[&[usize]] = &[
            &[1],
            &[5, 1],
            &[3, 7],
            &[1, 3, 13, 17],
            &[4, 1000],
            &[2, 1025],
            &[1, 100_000],
            &[300, 77],
        ];
        for dtype in test_dtypes(&gpu) {
            for (i, shape) in shapes.iter().enumerate() {
                let n: usize = shape.iter().product();
                let (x, xv) = upload(&gpu, shape, &rand_vec(n, i as u64, -8.0, 8.0), dtype);
                let got = softmax(&x).unwrap().to_f32_vec().unwrap();
                let want = reference(&xv, *shape.last().unwrap());
                // Probabilities average 1/len: scale by len so the 1.0 floor
                // of assert_close does not hide errors on long rows.
                let len = *shape.last().unwrap() as f32;
                let scaled = |v: &[f32]| v.iter().map(|p| p * len).collect::<Vec<_>>();
                let what = format!("{shape:?} {dtype}");
                assert_close(&what, &scaled(&got), &scaled(&want), tol(dtype));
                let rowsum: f32 = got[..shape[shape.len() - 1]].iter().sum();
                assert!(
                    (rowsum - 1.0).abs() < 1e-2,
                    "{shape:?}: row sums to {rowsum}"
                );
            }
        }
    }

    #[test]
    fn stable_for_large_values_and_masks() {
        let Some(gpu) = test_gpu() else { return };
        let f = crate::DType::F32;
        // +1000 offset overflows a naive exp; -inf entries are masked positions.
        let mut data: Vec<f32> = rand_vec(2 * 513, 5, -4.0, 4.0)
            .iter()
            .map(|v| v + 1000.0)
            .collect();
        data[3] = f32::NEG_INFINITY;
        data[600] = f32::NEG_INFINITY;
        let (x, xv) = upload(&gpu, &[2, 513], &data, f);
        let got = softmax(&x).unwrap().to_f32_vec().unwrap();
        assert_eq!(got[3], 0.0);
        let scaled = |v: &[f32]| v.iter().map(|p| p * 513.0).collect::<Vec<_>>();
        assert_close("offset", &scaled(&got), &scaled(&reference(&xv, 513)), 1e-4);
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let e = Tensor::empty(&gpu, &[3, 0], crate::DType::F32).unwrap();
        assert!(matches!(softmax(&e), Err(KernelError::Empty { .. })));
    }
}
