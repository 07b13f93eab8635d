//! Pixel shuffle (depth to space) and unshuffle (space to depth) on NCHW
//! tensors, with PyTorch's channel ordering.

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::{Access, Cost, Kernel, KernelError, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    r: u32,
    _pad: [u32; 3],
}

/// `[N, C*r*r, H, W] -> [N, C, H*r, W*r]` (`nn.PixelShuffle(r)`).
pub fn pixel_shuffle(x: &Tensor, r: usize) -> Result<Tensor> {
    const OP: &str = "pixel_shuffle";
    let [n, cr2, h, w] = check(OP, x, r)?;
    if cr2 % (r * r) != 0 {
        return shape_err(
            OP,
            format!("channels {cr2} are not divisible by r*r = {}", r * r),
        );
    }
    run(
        OP,
        x,
        [n, cr2 / (r * r), h * r, w * r],
        cr2 / (r * r),
        h,
        w,
        r,
        false,
    )
}

/// `[N, C, H*r, W*r] -> [N, C*r*r, H, W]` (`nn.PixelUnshuffle(r)`).
pub fn pixel_unshuffle(x: &Tensor, r: usize) -> Result<Tensor> {
    const OP: &str = "pixel_unshuffle";
    let [n, c, bh, bw] = check(OP, x, r)?;
    if bh % r != 0 || bw % r != 0 {
        return shape_err(
            OP,
            format!("spatial size {bh}x{bw} is not divisible by r = {r}"),
        );
    }
    run(
        OP,
        x,
        [n, c * r * r, bh / r, bw / r],
        c,
        bh / r,
        bw / r,
        r,
        true,
    )
}

fn check(op: &'static str, x: &Tensor, r: usize) -> Result<[usize; 4]> {
    let [n, c, h, w] = x.shape() else {
        return shape_err(
            op,
            format!("expected an NCHW tensor, got shape {:?}", x.shape()),
        );
    };
    if x.numel() == 0 {
        return Err(KernelError::Empty {
            op,
            shape: x.shape().to_vec(),
        });
    }
    if r == 0 {
        return shape_err(op, "factor r must be at least 1");
    }
    Ok([*n, *c, *h, *w])
}

fn run(
    op: &'static str,
    x: &Tensor,
    out_shape: [usize; 4],
    c: usize,
    h: usize,
    w: usize,
    r: usize,
    unshuffle: bool,
) -> Result<Tensor> {
    let gpu = x.gpu();
    let y = Tensor::empty_for(gpu, op, &out_shape, x.dtype())?;
    let total = y.numel();
    let params = Params {
        n: total as u32,
        c: c as u32,
        h: h as u32,
        w: w as u32,
        r: r as u32,
        _pad: [0; 3],
    };
    const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite];
    let kernel = Kernel::new(op, include_str!("pixel_shuffle.wgsl"), x.dtype(), BINDINGS)
        .define("UNSHUFFLE", unshuffle);
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[x.bind(), y.bind()],
        gpu.grid((total as u64).div_ceil(256))?,
        Cost::new(0.0, (2 * x.size_bytes()) as f64),
    )?;
    Ok(y)
}

/// CPU reference of [`pixel_shuffle`] on `[n, c*r*r, h, w]` data.
pub fn reference_shuffle(x: &[f32], [n, crr, h, w]: [usize; 4], r: usize) -> Vec<f32> {
    let c = crr / (r * r);
    let mut y = vec![0.0; x.len()];
    for b in 0..n {
        for ci in 0..crr {
            let (co, i, j) = (ci / (r * r), (ci / r) % r, ci % r);
            for yy in 0..h {
                for xx in 0..w {
                    let src = ((b * crr + ci) * h + yy) * w + xx;
                    let dst = ((b * c + co) * h * r + yy * r + i) * w * r + xx * r + j;
                    y[dst] = x[src];
                }
            }
        }
    }
    y
}

/// CPU reference of [`pixel_unshuffle`] on `[n, c, h*r, w*r]` data.
pub fn reference_unshuffle(x: &[f32], [n, c, bh, bw]: [usize; 4], r: usize) -> Vec<f32> {
    let (h, w) = (bh / r, bw / r);
    let mut y = vec![0.0; x.len()];
    for b in 0..n {
        for ci in 0..c {
            for yy in 0..bh {
                for xx in 0..bw {
                    let co = ci * r * r + (yy % r) * r + xx % r;
                    let dst = ((b * c * r * r + co) * h + yy / r) * w + xx / r;
                    y[dst] = x[((b * c + ci) * bh + yy) * bw + xx];
                }
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn shuffle_and_unshuffle_match_reference() {
        let Some(gpu) = test_gpu() else { return };
        // (shuffle input shape, r)
        let cases: &[([usize; 4], usize)] = &[
            ([1, 12, 13, 17], 2),
            ([2, 45, 5, 3], 3),
            ([1, 64, 7, 9], 4),
            ([1, 5, 3, 1], 1),
            ([1, 4, 1, 1], 2),
        ];
        for dtype in test_dtypes(&gpu) {
            for (ci, &(shape, r)) in cases.iter().enumerate() {
                let n: usize = shape.iter().product();
                let (x, xs) = upload(&gpu, &shape, &rand_vec(n, ci as u64, -3.0, 3.0), dtype);
                let y = pixel_shuffle(&x, r).unwrap();
                let big = [shape[0], shape[1] / (r * r), shape[2] * r, shape[3] * r];
                assert_eq!(y.shape(), &big);
                let want = reference_shuffle(&xs, shape, r);
                let got = y.to_f32_vec().unwrap();
                assert_eq!(got, want, "shuffle {shape:?} r={r} {dtype}");
                // Unshuffle of a fresh large image, and the round trip.
                let (b, bs) = upload(&gpu, &big, &rand_vec(n, 50 + ci as u64, -3.0, 3.0), dtype);
                let u = pixel_unshuffle(&b, r).unwrap();
                assert_eq!(u.shape(), &shape);
                let got = u.to_f32_vec().unwrap();
                assert_eq!(got, reference_unshuffle(&bs, big, r), "unshuffle {big:?}");
                let back = pixel_unshuffle(&y, r).unwrap().to_f32_vec().unwrap();
                assert_eq!(back, xs, "round trip {shape:?}");
            }
        }
    }

    #[test]
    fn reference_follows_pytorch_order() {
        // torch.pixel_shuffle(arange(8).view(1, 8, 1, 1), 2): channel 0 takes
        // inputs 0..4 in row-major 2x2 order, channel 1 takes 4..8.
        let x: Vec<f32> = (0..8).map(|v| v as f32).collect();
        assert_eq!(reference_shuffle(&x, [1, 8, 1, 1], 2), x);
        let x: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let y = reference_shuffle(&x, [1, 4, 1, 2], 2);
        // Output [1, 1, 2, 4]: row 0 = c0[w0], c1[w0], c0[w1], c1[w1].
        assert_eq!(y, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let dt = crate::DType::F32;
        let x = Tensor::zeros(&gpu, &[1, 6, 4, 4], dt).unwrap();
        assert!(matches!(
            pixel_shuffle(&x, 2),
            Err(KernelError::Shape { .. })
        ));
        assert!(matches!(
            pixel_unshuffle(&x, 3),
            Err(KernelError::Shape { .. })
        ));
        assert!(pixel_shuffle(&x, 0).is_err());
        let x3 = Tensor::zeros(&gpu, &[6, 4, 4], dt).unwrap();
        assert!(pixel_unshuffle(&x3, 2).is_err());
        let e = Tensor::empty(&gpu, &[1, 4, 0, 4], dt).unwrap();
        assert!(matches!(
            pixel_shuffle(&e, 2),
            Err(KernelError::Empty { .. })
        ));
    }
}
