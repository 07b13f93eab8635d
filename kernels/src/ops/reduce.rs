//! Sum and mean over any set of axes (f32 accumulation).

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::tensor::contiguous_strides;
use crate::{Access, Cost, Kernel, KernelError, Tensor};

/// Most kept or reduced axis groups after merging (WGSL `vec4`).
const GROUPS: usize = 4;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n_out: u32,
    n_red: u32,
    scale: f32,
    _pad: u32,
    kshape: [u32; 4],
    kstride: [u32; 4],
    rshape: [u32; 4],
    rstride: [u32; 4],
}

/// Sum over `axes` (all axes when empty, as `torch.sum(x, dim=[])`).
/// `keepdim` leaves the reduced axes as size 1.
pub fn sum(x: &Tensor, axes: &[usize], keepdim: bool) -> Result<Tensor> {
    reduce(x, axes, keepdim, false)
}

/// Mean over `axes` (all axes when empty).
pub fn mean(x: &Tensor, axes: &[usize], keepdim: bool) -> Result<Tensor> {
    reduce(x, axes, keepdim, true)
}

/// The reduced-axis mask, validated.
fn axis_mask(op: &'static str, rank: usize, axes: &[usize]) -> Result<Vec<bool>> {
    let mut mask = vec![axes.is_empty(); rank];
    for &a in axes {
        if a >= rank || std::mem::replace(&mut mask[a], true) {
            return shape_err(op, format!("axes {axes:?} invalid for rank {rank}"));
        }
    }
    Ok(mask)
}

/// Kept and reduced groups as (sizes, input strides): size-1 axes dropped,
/// neighbouring axes of the same kind merged, padded in front to 4.
type Groups = ([u32; 4], [u32; 4]);
fn groups(shape: &[usize], mask: &[bool]) -> Option<(Groups, Groups)> {
    let strides = contiguous_strides(shape);
    let mut lists: [Vec<(usize, usize)>; 2] = [Vec::new(), Vec::new()];
    let mut last_kind = None;
    for d in (0..shape.len()).filter(|&d| shape[d] != 1) {
        let kind = mask[d] as usize;
        let list = &mut lists[kind];
        match list.last_mut() {
            // Same kind as the previous non-trivial axis: contiguous, merge.
            Some((s, st)) if last_kind == Some(kind) => {
                *s *= shape[d];
                *st = strides[d];
            }
            _ => list.push((shape[d], strides[d])),
        }
        last_kind = Some(kind);
    }
    let pack = |l: &[(usize, usize)]| -> Option<Groups> {
        if l.len() > GROUPS {
            return None;
        }
        let (mut s, mut st) = ([1u32; 4], [0u32; 4]);
        let pad = GROUPS - l.len();
        for (i, &(a, b)) in l.iter().enumerate() {
            s[pad + i] = a as u32;
            st[pad + i] = b as u32;
        }
        Some((s, st))
    };
    Some((pack(&lists[0])?, pack(&lists[1])?))
}

fn reduce(x: &Tensor, axes: &[usize], keepdim: bool, mean: bool) -> Result<Tensor> {
    let op = if mean { "mean" } else { "sum" };
    let mask = axis_mask(op, x.rank(), axes)?;
    if x.numel() == 0 {
        return Err(KernelError::Empty {
            op,
            shape: x.shape().to_vec(),
        });
    }
    let Some(((kshape, kstride), (rshape, rstride))) = groups(x.shape(), &mask) else {
        return shape_err(
            op,
            format!("axes {axes:?} of {:?} alternate too often", x.shape()),
        );
    };
    let out_shape: Vec<usize> = (0..x.rank())
        .filter_map(|d| match (mask[d], keepdim) {
            (false, _) => Some(x.shape()[d]),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect();
    let n_red: usize = (0..x.rank())
        .filter(|&d| mask[d])
        .map(|d| x.shape()[d])
        .product();
    let gpu = x.gpu();
    let y = Tensor::empty_for(gpu, op, &out_shape, x.dtype())?;
    let n_out = y.numel();
    let params = Params {
        n_out: n_out as u32,
        n_red: n_red as u32,
        scale: if mean { 1.0 / n_red as f32 } else { 1.0 },
        _pad: 0,
        kshape,
        kstride,
        rshape,
        rstride,
    };
    // Long reductions over few outputs need a workgroup each to use the
    // device; many short ones are cheaper as one invocation each.
    let wg = n_red >= 256 || n_out < 1024;
    let groups = if wg { n_out } else { n_out.div_ceil(256) };
    const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite];
    let kernel = Kernel::new(op, include_str!("reduce.wgsl"), x.dtype(), BINDINGS).define("WG", wg);
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[x.bind(), y.bind()],
        gpu.grid(groups as u64)?,
        Cost::new(x.numel() as f64, (x.size_bytes() + y.size_bytes()) as f64),
    )?;
    Ok(y)
}

/// CPU reference (f64 accumulation) of [`sum`] / [`mean`]; the output is in
/// row-major order over the kept axes.
pub fn reference(x: &[f32], shape: &[usize], axes: &[usize], mean: bool) -> Vec<f32> {
    let mask = axis_mask("reference", shape.len(), axes).expect("valid axes");
    let strides = contiguous_strides(shape);
    let kept: Vec<usize> = (0..shape.len()).filter(|&d| !mask[d]).collect();
    let n_out: usize = kept.iter().map(|&d| shape[d]).product();
    let mut acc = vec![0f64; n_out];
    let mut count = vec![0usize; n_out];
    for (i, &v) in x.iter().enumerate() {
        let o = kept
            .iter()
            .fold(0, |o, &d| o * shape[d] + (i / strides[d]) % shape[d]);
        acc[o] += v as f64;
        count[o] += 1;
    }
    acc.iter()
        .zip(&count)
        .map(|(&s, &c)| if mean { s / c as f64 } else { s } as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn reductions_match_reference() {
        let Some(gpu) = test_gpu() else { return };
        let cases: &[(&[usize], &[usize])] = &[
            (&[1, 3, 13, 17], &[2, 3]),
            (&[1, 3, 13, 17], &[1]),
            (&[2, 64, 9, 11], &[0, 2]),
            (&[2, 5, 7, 3], &[1, 3]),
            (&[2, 5, 7, 3], &[]),
            (&[1, 64, 33, 35], &[1]),
            (&[3, 1, 4, 5, 2], &[0, 1, 4]),
            (&[2, 3, 2, 3, 2, 3], &[1, 3, 5]),
            (&[5], &[0]),
            (&[300, 257], &[1]),
            (&[4, 3, 200], &[0, 2]),
            (&[5, 1100, 3], &[0, 2]),
        ];
        for dtype in test_dtypes(&gpu) {
            for (ci, &(shape, axes)) in cases.iter().enumerate() {
                let n = shape.iter().product();
                let (x, xs) = upload(&gpu, shape, &rand_vec(n, ci as u64, -1.0, 1.0), dtype);
                for keepdim in [false, true] {
                    for is_mean in [false, true] {
                        let f = if is_mean { mean } else { sum };
                        let y = f(&x, axes, keepdim).unwrap();
                        let red = |d: usize| axes.is_empty() || axes.contains(&d);
                        let want_shape: Vec<usize> = (0..shape.len())
                            .filter(|&d| keepdim || !red(d))
                            .map(|d| if red(d) { 1 } else { shape[d] })
                            .collect();
                        assert_eq!(y.shape(), want_shape.as_slice());
                        let want = reference(&xs, shape, axes, is_mean);
                        let what = format!("mean={is_mean} {shape:?} {axes:?} {dtype}");
                        assert_close(&what, &y.to_f32_vec().unwrap(), &want, tol(dtype));
                    }
                }
            }
        }
    }

    #[test]
    fn reference_sums_rows_and_columns() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(reference(&x, &[2, 3], &[0], false), vec![5.0, 7.0, 9.0]);
        assert_eq!(reference(&x, &[2, 3], &[1], true), vec![2.0, 5.0]);
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let dt = crate::DType::F32;
        let x = Tensor::zeros(&gpu, &[2, 3, 4], dt).unwrap();
        assert!(matches!(
            sum(&x, &[3], false),
            Err(KernelError::Shape { .. })
        ));
        assert!(mean(&x, &[1, 1], false).is_err());
        let e = Tensor::empty(&gpu, &[2, 0], dt).unwrap();
        assert!(matches!(
            sum(&e, &[0], false),
            Err(KernelError::Empty { .. })
        ));
        let alt = Tensor::zeros(&gpu, &[2, 2, 2, 2, 2, 2, 2, 2, 2, 2], dt).unwrap();
        assert!(sum(&alt, &[1, 3, 5, 7, 9], false).is_err());
    }
}
