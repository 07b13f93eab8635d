//! Element-wise add / sub / mul / div with NumPy broadcasting, and the scaled
//! sum `alpha * a + beta * b` used by residual connections.

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::{Access, Cost, Kernel, KernelError, Tensor};

const OP: &str = "binary";
/// Most dims a (collapsed) broadcast can have; sized by the `Params` arrays.
const MAX_RANK: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    fn code(self) -> u32 {
        match self {
            BinaryOp::Add => 0,
            BinaryOp::Sub => 1,
            BinaryOp::Mul => 2,
            BinaryOp::Div => 3,
        }
    }

    /// CPU reference for one element.
    pub fn apply(self, u: f32, v: f32) -> f32 {
        match self {
            BinaryOp::Add => u + v,
            BinaryOp::Sub => u - v,
            BinaryOp::Mul => u * v,
            BinaryOp::Div => u / v,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    rank: u32,
    alpha: f32,
    beta: f32,
    shape: [u32; MAX_RANK],
    sa: [u32; MAX_RANK],
    sb: [u32; MAX_RANK],
}

/// The NumPy broadcast of two shapes (right-aligned; each pair of dims must
/// be equal or contain a 1).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() {
            1
        } else {
            a[i - (rank - a.len())]
        };
        let db = if i < rank - b.len() {
            1
        } else {
            b[i - (rank - b.len())]
        };
        out[i] = match (da, db) {
            _ if da == db => da,
            (1, _) => db,
            (_, 1) => da,
            _ => {
                return shape_err(
                    OP,
                    format!("shapes {a:?} and {b:?} cannot be broadcast (dim {i}: {da} vs {db})"),
                );
            }
        };
    }
    Ok(out)
}

/// Element strides of `shape` (right-aligned into `out`), 0 on broadcast dims.
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let lead = out.len() - shape.len();
    let cont = crate::tensor::contiguous_strides(shape);
    (0..out.len())
        .map(|i| {
            if i < lead || shape[i - lead] == 1 {
                0
            } else {
                cont[i - lead]
            }
        })
        .collect()
}

/// Drops size-1 dims and merges neighbours that are contiguous for both
/// inputs, so the kernel's index loop runs as few times as possible
/// (e.g. `[N,C,H,W] + [1,C,1,1]` becomes `[N,C,H*W]`).
fn collapse(shape: &[usize], sa: &[usize], sb: &[usize]) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (mut dims, mut a, mut b) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..shape.len() {
        if shape[i] == 1 {
            continue;
        }
        let k = dims.len();
        if k > 0 && a[k - 1] == sa[i] * shape[i] && b[k - 1] == sb[i] * shape[i] {
            dims[k - 1] *= shape[i];
            a[k - 1] = sa[i];
            b[k - 1] = sb[i];
            continue;
        }
        dims.push(shape[i]);
        a.push(sa[i]);
        b.push(sb[i]);
    }
    if dims.is_empty() {
        return (vec![1], vec![0], vec![0]);
    }
    (dims, a, b)
}

fn pad(v: &[usize]) -> [u32; MAX_RANK] {
    let mut out = [0u32; MAX_RANK];
    for (o, &x) in out.iter_mut().zip(v) {
        *o = x as u32;
    }
    out
}

/// `op(alpha * a, beta * b)` with broadcasting; the shared launcher.
fn launch(a: &Tensor, alpha: f32, b: &Tensor, beta: f32, op: BinaryOp) -> Result<Tensor> {
    for t in [a, b] {
        if t.numel() == 0 {
            return Err(KernelError::Empty {
                op: OP,
                shape: t.shape().to_vec(),
            });
        }
    }
    if a.dtype() != b.dtype() {
        return Err(KernelError::DType {
            op: OP,
            expected: a.dtype(),
            got: b.dtype(),
        });
    }
    let out_shape = broadcast_shape(a.shape(), b.shape())?;
    if out_shape.len() > MAX_RANK {
        return shape_err(
            OP,
            format!("rank {} exceeds the maximum of {MAX_RANK}", out_shape.len()),
        );
    }
    let gpu = a.gpu();
    let y = Tensor::empty_for(gpu, OP, &out_shape, a.dtype())?;
    let n = y.numel();
    let vec4 = a.shape() == b.shape() && n.is_multiple_of(4);
    let (dims, sa, sb) = collapse(
        &out_shape,
        &broadcast_strides(a.shape(), &out_shape),
        &broadcast_strides(b.shape(), &out_shape),
    );
    let threads = if vec4 { n / 4 } else { n };
    let params = Params {
        n: threads as u32,
        rank: dims.len() as u32,
        alpha,
        beta,
        shape: pad(&dims),
        sa: pad(&sa),
        sb: pad(&sb),
    };
    const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite];
    let kernel = Kernel::new(OP, include_str!("binary.wgsl"), a.dtype(), BINDINGS)
        .entry(if vec4 { "main_vec4" } else { "main" })
        .define("OP", format!("{}u", op.code()));
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[a.bind(), b.bind(), y.bind()],
        gpu.grid((threads as u64).div_ceil(256))?,
        Cost::new(
            3.0 * n as f64,
            (a.size_bytes() + b.size_bytes() + y.size_bytes()) as f64,
        ),
    )?;
    Ok(y)
}

/// NumPy broadcasting over any rank (up to 8 dims); output shape = broadcast shape.
pub fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    launch(a, 1.0, b, 1.0, op)
}
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, BinaryOp::Add)
}
pub fn sub(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, BinaryOp::Sub)
}
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, BinaryOp::Mul)
}
pub fn div(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, BinaryOp::Div)
}
/// `alpha * a + beta * b` with broadcasting (residual connections: RRDB's
/// `out * 0.2 + x`).
pub fn add_scaled(a: &Tensor, alpha: f32, b: &Tensor, beta: f32) -> Result<Tensor> {
    launch(a, alpha, b, beta, BinaryOp::Add)
}

/// CPU reference: `op(alpha * a, beta * b)` broadcast; returns data and shape.
pub fn reference(
    a: &[f32],
    a_shape: &[usize],
    alpha: f32,
    b: &[f32],
    b_shape: &[usize],
    beta: f32,
    op: BinaryOp,
) -> Result<(Vec<f32>, Vec<usize>)> {
    let out = broadcast_shape(a_shape, b_shape)?;
    let (sa, sb) = (
        broadcast_strides(a_shape, &out),
        broadcast_strides(b_shape, &out),
    );
    let n: usize = out.iter().product();
    let data = (0..n)
        .map(|i| {
            let (mut rem, mut ia, mut ib) = (i, 0, 0);
            for d in (0..out.len()).rev() {
                let c = rem % out[d];
                rem /= out[d];
                ia += c * sa[d];
                ib += c * sb[d];
            }
            op.apply(alpha * a[ia], beta * b[ib])
        })
        .collect();
    Ok((data, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    const OPS: [BinaryOp; 4] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div];

    fn check(gpu: &crate::Gpu, sa: &[usize], sb: &[usize], seed: u64) {
        for dtype in test_dtypes(gpu) {
            let na: usize = sa.iter().product();
            let nb: usize = sb.iter().product();
            let (a, av) = upload(gpu, sa, &rand_vec(na, seed, -3.0, 3.0), dtype);
            // b kept away from 0 so div is well conditioned.
            let bdata: Vec<f32> = rand_vec(nb, seed + 7, 0.5, 2.0)
                .iter()
                .enumerate()
                .map(|(i, v)| if i % 3 == 0 { -v } else { *v })
                .collect();
            let (b, bv) = upload(gpu, sb, &bdata, dtype);
            for op in OPS {
                let got = binary(&a, &b, op).unwrap();
                let (want, shape) = reference(&av, sa, 1.0, &bv, sb, 1.0, op).unwrap();
                assert_eq!(got.shape(), &shape[..]);
                let what = format!("{op:?} {sa:?} {sb:?} {dtype}");
                assert_close(&what, &got.to_f32_vec().unwrap(), &want, tol(dtype));
            }
            let got = add_scaled(&a, 0.2, &b, -1.5).unwrap();
            let (want, _) = reference(&av, sa, 0.2, &bv, sb, -1.5, BinaryOp::Add).unwrap();
            let what = format!("add_scaled {sa:?} {sb:?} {dtype}");
            assert_close(&what, &got.to_f32_vec().unwrap(), &want, tol(dtype));
        }
    }

    #[test]
    fn equal_shapes_vec4_and_scalar_paths() {
        let Some(gpu) = test_gpu() else { return };
        check(&gpu, &[1, 3, 13, 17], &[1, 3, 13, 17], 1); // 663: scalar path
        check(&gpu, &[2, 64, 8, 8], &[2, 64, 8, 8], 2); // vec4 path
        check(&gpu, &[1], &[1], 3);
        check(&gpu, &[4], &[4], 4);
    }

    #[test]
    fn broadcasting_matches_reference() {
        let Some(gpu) = test_gpu() else { return };
        let cases: &[(&[usize], &[usize])] = &[
            (&[1, 5, 13, 17], &[1, 5, 1, 1]), // per-channel bias
            (&[2, 3, 7, 9], &[3, 1, 1]),
            (&[1, 3, 13, 17], &[1]),                    // scalar
            (&[1], &[2, 3, 4]),                         // scalar on the left
            (&[4, 1, 6], &[1, 5, 1]),                   // both broadcast
            (&[2, 1, 3, 1, 5, 1], &[1, 4, 1, 2, 1, 6]), // rank 6
            (&[17], &[3, 17]),
            (&[1, 64, 9, 11], &[2, 64, 1, 11]),
        ];
        for (i, (sa, sb)) in cases.iter().enumerate() {
            check(&gpu, sa, sb, 10 + i as u64);
        }
    }

    #[test]
    fn collapse_merges_contiguous_dims() {
        let out = [2, 5, 13, 17];
        let (d, a, b) = collapse(
            &out,
            &broadcast_strides(&out, &out),
            &broadcast_strides(&[1, 5, 1, 1], &out),
        );
        assert_eq!(d, vec![2, 5, 221]);
        assert_eq!(a, vec![1105, 221, 1]);
        assert_eq!(b, vec![0, 1, 0]);
        let (d, _, _) = collapse(&[1, 1], &[0, 0], &[0, 0]);
        assert_eq!(d, vec![1]);
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let f = crate::DType::F32;
        let a = Tensor::zeros(&gpu, &[2, 3], f).unwrap();
        let b = Tensor::zeros(&gpu, &[4, 3, 2], f).unwrap();
        assert!(matches!(add(&a, &b), Err(KernelError::Shape { .. })));
        let e = Tensor::empty(&gpu, &[0, 3], f).unwrap();
        assert!(matches!(add(&a, &e), Err(KernelError::Empty { .. })));
        assert!(matches!(mul(&e, &a), Err(KernelError::Empty { .. })));
        let big = Tensor::zeros(&gpu, &[1; 9], f).unwrap();
        assert!(matches!(add(&big, &big), Err(KernelError::Shape { .. })));
        if gpu.caps().shader_f16 {
            let h = Tensor::zeros(&gpu, &[2, 3], crate::DType::F16).unwrap();
            assert!(matches!(add(&a, &h), Err(KernelError::DType { .. })));
        }
    }
}
