//! 2-D max and average pooling with PyTorch's output-size rules, including
//! `ceil_mode` (IS-Net max-pools odd sizes with it).

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::{Access, Cost, Kernel, KernelError, Tensor};

/// Window, stride and padding as (height, width).
#[derive(Debug, Clone, Copy)]
pub struct Pool2dConfig {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    /// Round the output size up; the last window must still start inside
    /// the input or the left padding.
    pub ceil_mode: bool,
    /// Average pooling divides by the window including padding.
    pub count_include_pad: bool,
}

impl Pool2dConfig {
    /// Square window `k`, stride `s`, no padding, floor mode, and
    /// `count_include_pad` on (PyTorch's defaults).
    pub fn new(k: usize, s: usize) -> Self {
        Self {
            kernel: (k, k),
            stride: (s, s),
            padding: (0, 0),
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    /// Output size along one axis (PyTorch `pooling_output_shape`), or
    /// `None` when the window does not fit.
    pub fn out_size(n: usize, k: usize, s: usize, pad: usize, ceil: bool) -> Option<usize> {
        let span = (n + 2 * pad).checked_sub(k)?;
        let mut out = if ceil { span.div_ceil(s) } else { span / s } + 1;
        if ceil && (out - 1) * s >= n + pad {
            out -= 1;
        }
        Some(out)
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    in_h: i32,
    in_w: i32,
    out_h: u32,
    out_w: u32,
    kh: i32,
    kw: i32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
    include_pad: u32,
}

pub fn max_pool2d(x: &Tensor, cfg: &Pool2dConfig) -> Result<Tensor> {
    pool(x, cfg, true)
}

pub fn avg_pool2d(x: &Tensor, cfg: &Pool2dConfig) -> Result<Tensor> {
    pool(x, cfg, false)
}

/// Validates and returns `[n, c, out_h, out_w]`.
fn out_shape(op: &'static str, shape: &[usize], cfg: &Pool2dConfig) -> Result<[usize; 4]> {
    let &[n, c, h, w] = shape else {
        return shape_err(op, format!("expected an NCHW tensor, got shape {shape:?}"));
    };
    let (kh, kw) = cfg.kernel;
    let (sh, sw) = cfg.stride;
    let (ph, pw) = cfg.padding;
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
        return shape_err(op, format!("kernel and stride must be positive: {cfg:?}"));
    }
    if ph > kh / 2 || pw > kw / 2 {
        return shape_err(
            op,
            format!("padding must be at most half the kernel: {cfg:?}"),
        );
    }
    let oh = Pool2dConfig::out_size(h, kh, sh, ph, cfg.ceil_mode);
    let ow = Pool2dConfig::out_size(w, kw, sw, pw, cfg.ceil_mode);
    match (oh, ow) {
        (Some(oh), Some(ow)) if oh > 0 && ow > 0 => Ok([n, c, oh, ow]),
        _ => shape_err(op, format!("window {cfg:?} does not fit input {h}x{w}")),
    }
}

fn pool(x: &Tensor, cfg: &Pool2dConfig, max: bool) -> Result<Tensor> {
    let op = if max { "max_pool2d" } else { "avg_pool2d" };
    if x.numel() == 0 {
        return Err(KernelError::Empty {
            op,
            shape: x.shape().to_vec(),
        });
    }
    let shape = out_shape(op, x.shape(), cfg)?;
    let gpu = x.gpu();
    let y = Tensor::empty_for(gpu, op, &shape, x.dtype())?;
    let total = y.numel();
    let params = Params {
        n: total as u32,
        in_h: x.shape()[2] as i32,
        in_w: x.shape()[3] as i32,
        out_h: shape[2] as u32,
        out_w: shape[3] as u32,
        kh: cfg.kernel.0 as i32,
        kw: cfg.kernel.1 as i32,
        sh: cfg.stride.0 as i32,
        sw: cfg.stride.1 as i32,
        ph: cfg.padding.0 as i32,
        pw: cfg.padding.1 as i32,
        include_pad: cfg.count_include_pad as u32,
    };
    const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite];
    // 2x2 / stride 2 max pooling of rows of a multiple of 8 pixels (U^2-Net's
    // downsampling) has a vectorised kernel: 4 outputs per invocation.
    let vec2x2 = max
        && cfg.kernel == (2, 2)
        && cfg.stride == (2, 2)
        && cfg.padding == (0, 0)
        && x.shape()[3].is_multiple_of(8);
    let mut kernel =
        Kernel::new(op, include_str!("pool.wgsl"), x.dtype(), BINDINGS).define("MAX", max);
    let invocations = if vec2x2 {
        kernel = kernel.entry("max2");
        total / 4
    } else {
        total
    };
    let params = Params {
        n: invocations as u32,
        ..params
    };
    let taps = cfg.kernel.0 * cfg.kernel.1;
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[x.bind(), y.bind()],
        gpu.grid((invocations as u64).div_ceil(256))?,
        Cost::new(
            (total * taps) as f64,
            (x.size_bytes() + y.size_bytes()) as f64,
        ),
    )?;
    Ok(y)
}

/// CPU reference of both poolings (`max` picks max pooling), written as
/// PyTorch's CPU kernels compute it.
pub fn reference(x: &[f32], shape: [usize; 4], cfg: &Pool2dConfig, max: bool) -> Vec<f32> {
    let [n, c, h, w] = shape;
    let [_, _, oh, ow] = out_shape("pool", &shape, cfg).expect("valid config");
    let (kh, kw) = (cfg.kernel.0 as isize, cfg.kernel.1 as isize);
    let (ph, pw) = (cfg.padding.0 as isize, cfg.padding.1 as isize);
    let (hi, wi) = (h as isize, w as isize);
    let mut y = Vec::with_capacity(n * c * oh * ow);
    for plane in 0..n * c {
        let p = &x[plane * h * w..(plane + 1) * h * w];
        for oy in 0..oh as isize {
            for ox in 0..ow as isize {
                let ys = oy * cfg.stride.0 as isize - ph;
                let xs = ox * cfg.stride.1 as isize - pw;
                let (ye_pad, xe_pad) = ((ys + kh).min(hi + ph), (xs + kw).min(wi + pw));
                let pool_size = (ye_pad - ys) * (xe_pad - xs);
                let (y0, x0) = (ys.max(0), xs.max(0));
                let (y1, x1) = ((ys + kh).min(hi), (xs + kw).min(wi));
                let mut m = f32::NEG_INFINITY;
                let mut s = 0.0;
                for yy in y0..y1 {
                    for xx in x0..x1 {
                        let v = p[(yy * wi + xx) as usize];
                        if v > m || v.is_nan() {
                            m = v;
                        }
                        s += v;
                    }
                }
                let count = if cfg.count_include_pad {
                    pool_size
                } else {
                    (y1 - y0) * (x1 - x0)
                };
                y.push(if max { m } else { s / count as f32 });
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn cfg(k: usize, s: usize, p: usize, ceil: bool, inc: bool) -> Pool2dConfig {
        Pool2dConfig {
            padding: (p, p),
            ceil_mode: ceil,
            count_include_pad: inc,
            ..Pool2dConfig::new(k, s)
        }
    }

    #[test]
    fn output_sizes_follow_pytorch() {
        // torch.nn.MaxPool2d(2, 2, ceil_mode=True) on 13 -> 7, floor -> 6.
        assert_eq!(Pool2dConfig::out_size(13, 2, 2, 0, true), Some(7));
        assert_eq!(Pool2dConfig::out_size(13, 2, 2, 0, false), Some(6));
        assert_eq!(Pool2dConfig::out_size(17, 3, 2, 1, true), Some(9));
        // The last window would start in the right padding: dropped.
        assert_eq!(Pool2dConfig::out_size(5, 2, 2, 1, true), Some(3));
        assert_eq!(Pool2dConfig::out_size(2, 3, 1, 0, false), None);
        assert_eq!(Pool2dConfig::out_size(1, 1, 1, 0, true), Some(1));
    }

    #[test]
    fn pools_match_reference() {
        let Some(gpu) = test_gpu() else { return };
        let cases: &[([usize; 4], Pool2dConfig)] = &[
            ([1, 3, 13, 17], cfg(2, 2, 0, true, true)),
            ([1, 3, 13, 17], cfg(2, 2, 0, false, true)),
            ([1, 5, 13, 17], cfg(3, 2, 1, true, true)),
            ([1, 5, 13, 17], cfg(3, 2, 1, true, false)),
            ([2, 64, 9, 7], cfg(3, 1, 1, false, false)),
            ([1, 3, 5, 5], cfg(2, 2, 1, true, true)),
            ([1, 3, 5, 5], cfg(2, 2, 1, true, false)),
            (
                [1, 2, 11, 8],
                Pool2dConfig {
                    kernel: (3, 2),
                    stride: (2, 3),
                    padding: (1, 0),
                    ceil_mode: true,
                    count_include_pad: true,
                },
            ),
            ([1, 1, 1, 1], cfg(1, 1, 0, true, true)),
            // 2x2 / 2 on widths a multiple of 8 (the vectorised max path):
            // odd heights with ceil_mode (the last window row is the last
            // input row), an even height.
            ([1, 3, 13, 16], cfg(2, 2, 0, true, true)),
            ([2, 5, 6, 24], cfg(2, 2, 0, false, true)),
            ([1, 2, 3, 8], cfg(2, 2, 0, true, true)),
        ];
        for dtype in test_dtypes(&gpu) {
            for (ci, (shape, c)) in cases.iter().enumerate() {
                let n = shape.iter().product();
                let (x, xs) = upload(&gpu, shape, &rand_vec(n, ci as u64, -4.0, 4.0), dtype);
                for max in [true, false] {
                    let y = if max {
                        max_pool2d(&x, c)
                    } else {
                        avg_pool2d(&x, c)
                    }
                    .unwrap();
                    let want = reference(&xs, *shape, c, max);
                    let what = format!("max={max} {shape:?} {c:?} {dtype}");
                    assert_eq!(y.numel(), want.len(), "{what}");
                    assert_close(&what, &y.to_f32_vec().unwrap(), &want, tol(dtype));
                }
            }
        }
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let dt = crate::DType::F32;
        let x = Tensor::zeros(&gpu, &[1, 1, 4, 4], dt).unwrap();
        assert!(max_pool2d(&x, &cfg(3, 1, 2, false, true)).is_err());
        assert!(max_pool2d(&x, &cfg(5, 1, 0, false, true)).is_err());
        assert!(avg_pool2d(&x, &cfg(2, 0, 0, false, true)).is_err());
        let x3 = Tensor::zeros(&gpu, &[1, 4, 4], dt).unwrap();
        assert!(matches!(
            max_pool2d(&x3, &Pool2dConfig::new(2, 2)),
            Err(KernelError::Shape { .. })
        ));
        let e = Tensor::empty(&gpu, &[1, 0, 4, 4], dt).unwrap();
        assert!(matches!(
            avg_pool2d(&e, &Pool2dConfig::new(2, 2)),
            Err(KernelError::Empty { .. })
        ));
    }
}
