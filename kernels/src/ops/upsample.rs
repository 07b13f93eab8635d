//! 2-D resizing of NCHW tensors: nearest and bilinear with PyTorch's
//! `F.interpolate` coordinate rules (bilinear without antialias, so it also
//! downscales the way PyTorch does).

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::{Access, Cost, Kernel, KernelError, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    runs_row: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    step: u32,
    step_rem: u32,
    scale_h: f32,
    scale_w: f32,
    /// Channels of x, channels of the output buffer, first output channel.
    c: u32,
    out_c: u32,
    out_off: u32,
    _pad: [u32; 3],
}

/// Outputs per invocation along a row: CPU adapters pay per invocation and
/// per integer division, GPUs want one store per lane.
fn default_run(gpu: &crate::Gpu) -> usize {
    if gpu.class() == crate::AdapterClass::Cpu {
        8
    } else {
        1
    }
}

/// Nearest-neighbour resize: `src = floor(dst * in / out)` per axis.
pub fn upsample_nearest(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    resize(x, out_h, out_w, None, default_run(x.gpu()), None)
}

/// Bilinear resize. With `align_corners` the corner pixels of input and
/// output coincide; without it pixel centres are at half-integers and source
/// coordinates below 0 are clamped to 0 (PyTorch).
pub fn upsample_bilinear(
    x: &Tensor,
    out_h: usize,
    out_w: usize,
    align_corners: bool,
) -> Result<Tensor> {
    resize(
        x,
        out_h,
        out_w,
        Some(align_corners),
        default_run(x.gpu()),
        None,
    )
}

/// [`upsample_bilinear`] written into channels `channel_offset..+C` of
/// `out` `[N, C_out, H_out, W_out]`: a decoder's concatenated input is then
/// filled in place, with no concat copy.
pub fn upsample_bilinear_into(
    x: &Tensor,
    out: &Tensor,
    channel_offset: usize,
    align_corners: bool,
) -> Result<()> {
    const OP: &str = "upsample_bilinear";
    if out.rank() != 4 || x.rank() != 4 {
        return shape_err(
            OP,
            format!(
                "expected NCHW input and output, got {:?} and {:?}",
                x.shape(),
                out.shape()
            ),
        );
    }
    let (xs, os) = (x.shape(), out.shape());
    if os[0] != xs[0] || channel_offset + xs[1] > os[1] {
        return shape_err(
            OP,
            format!(
                "{:?} does not fit in {:?} at channel {channel_offset}",
                xs, os
            ),
        );
    }
    if out.dtype() != x.dtype() {
        return Err(KernelError::DType {
            op: OP,
            expected: x.dtype(),
            got: out.dtype(),
        });
    }
    if x.same_storage(out) {
        return shape_err(OP, "the output must not share storage with the input");
    }
    resize(
        x,
        os[2],
        os[3],
        Some(align_corners),
        default_run(x.gpu()),
        Some((out, channel_offset)),
    )?;
    Ok(())
}

/// Source-coordinate scale of one axis for bilinear (PyTorch's
/// `area_pixel_compute_scale` without an explicit scale factor).
fn bilinear_scale(n_in: usize, n_out: usize, align: bool) -> f32 {
    if align {
        if n_out > 1 {
            (n_in - 1) as f32 / (n_out - 1) as f32
        } else {
            0.0
        }
    } else {
        n_in as f32 / n_out as f32
    }
}

/// Resizes into a new tensor, or into `into` = (buffer, first channel).
fn resize(
    x: &Tensor,
    out_h: usize,
    out_w: usize,
    bilinear: Option<bool>,
    run: usize,
    into: Option<(&Tensor, usize)>,
) -> Result<Tensor> {
    let op = if bilinear.is_some() {
        "upsample_bilinear"
    } else {
        "upsample_nearest"
    };
    if x.rank() != 4 {
        return shape_err(
            op,
            format!("expected an NCHW tensor, got shape {:?}", x.shape()),
        );
    }
    if x.numel() == 0 {
        return Err(KernelError::Empty {
            op,
            shape: x.shape().to_vec(),
        });
    }
    if out_h == 0 || out_w == 0 {
        return shape_err(op, format!("output size {out_h}x{out_w} is empty"));
    }
    let (n, c, in_h, in_w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    // The nearest index is computed as dst * in / out in u32.
    if (out_h as u64) * (in_h as u64) > u32::MAX as u64
        || (out_w as u64) * (in_w as u64) > u32::MAX as u64
    {
        return shape_err(
            op,
            format!("resize {in_h}x{in_w} -> {out_h}x{out_w} is too large"),
        );
    }
    let gpu = x.gpu();
    let (y, out_c, out_off) = match into {
        Some((t, off)) => (t.clone(), t.shape()[1], off),
        None => (
            Tensor::empty_for(gpu, op, &[n, c, out_h, out_w], x.dtype())?,
            c,
            0,
        ),
    };
    let align = bilinear.unwrap_or(false);
    let total = n * c * out_h * out_w;
    let runs_row = out_w.div_ceil(run);
    let runs = n * c * out_h * runs_row;
    let params = Params {
        n: runs as u32,
        runs_row: runs_row as u32,
        in_h: in_h as u32,
        in_w: in_w as u32,
        out_h: out_h as u32,
        out_w: out_w as u32,
        step: (in_w / out_w) as u32,
        step_rem: (in_w % out_w) as u32,
        scale_h: bilinear_scale(in_h, out_h, align),
        scale_w: bilinear_scale(in_w, out_w, align),
        c: c as u32,
        out_c: out_c as u32,
        out_off: out_off as u32,
        _pad: [0; 3],
    };
    const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite];
    let mut kernel = Kernel::new(op, include_str!("upsample.wgsl"), x.dtype(), BINDINGS)
        .define("BILINEAR", bilinear.is_some())
        .define("ALIGN", align)
        .define("RUN", format!("{run}u"));
    if bilinear.is_some() && run == 8 && out_w.is_multiple_of(8) {
        kernel = kernel.entry("bil8");
    }
    let taps = if bilinear.is_some() { 4 } else { 1 };
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[x.bind(), y.bind()],
        gpu.grid((runs as u64).div_ceil(256))?,
        Cost::new(
            (total * taps * 3) as f64,
            ((taps + 1) * total * x.dtype().size()) as f64,
        ),
    )?;
    Ok(y)
}

/// CPU reference of both resizes on NCHW data. `bilinear` is `None` for
/// nearest, else `Some(align_corners)`.
pub fn reference(
    x: &[f32],
    shape: [usize; 4],
    out_h: usize,
    out_w: usize,
    bilinear: Option<bool>,
) -> Vec<f32> {
    let [n, c, ih, iw] = shape;
    let mut y = Vec::with_capacity(n * c * out_h * out_w);
    let coord = |dst: usize, n_in: usize, n_out: usize, align: bool| -> (usize, usize, f32) {
        let s = bilinear_scale(n_in, n_out, align);
        let f = if align {
            s * dst as f32
        } else {
            (s * (dst as f32 + 0.5) - 0.5).max(0.0)
        };
        let i0 = (f as usize).min(n_in - 1);
        let i1 = if i0 < n_in - 1 { i0 + 1 } else { i0 };
        (i0, i1, f - i0 as f32)
    };
    for plane in 0..n * c {
        let p = &x[plane * ih * iw..(plane + 1) * ih * iw];
        for oy in 0..out_h {
            for ox in 0..out_w {
                let v = match bilinear {
                    None => {
                        let sy = (oy * ih / out_h).min(ih - 1);
                        let sx = (ox * iw / out_w).min(iw - 1);
                        p[sy * iw + sx]
                    }
                    Some(align) => {
                        let (y0, y1, ly) = coord(oy, ih, out_h, align);
                        let (x0, x1, lx) = coord(ox, iw, out_w, align);
                        (1.0 - ly) * ((1.0 - lx) * p[y0 * iw + x0] + lx * p[y0 * iw + x1])
                            + ly * ((1.0 - lx) * p[y1 * iw + x0] + lx * p[y1 * iw + x1])
                    }
                };
                y.push(v);
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
    fn resizes_match_reference() {
        let Some(gpu) = test_gpu() else { return };
        // (input shape, output h, output w): 2.5x up, 0.37x down, mixed,
        // size-1 axes and identity.
        let cases: &[([usize; 4], usize, usize)] = &[
            ([1, 3, 13, 17], 33, 43),
            ([1, 3, 13, 17], 5, 6),
            ([2, 5, 7, 9], 14, 4),
            ([1, 64, 6, 5], 15, 12),
            ([1, 1, 1, 1], 3, 2),
            ([1, 2, 4, 4], 1, 1),
            ([1, 3, 13, 17], 13, 17),
            // Widths a multiple of 8 (the vectorised bilinear run): 2x and
            // 4x up (U^2-Net's decoder), down, and a 1-pixel-wide source.
            ([1, 3, 5, 12], 10, 24),
            ([2, 2, 3, 4], 12, 16),
            ([1, 2, 9, 40], 4, 16),
            ([1, 2, 3, 1], 5, 8),
        ];
        for dtype in test_dtypes(&gpu) {
            for (ci, &(shape, oh, ow)) in cases.iter().enumerate() {
                let n: usize = shape.iter().product();
                let (x, xs) = upload(&gpu, &shape, &rand_vec(n, ci as u64, -2.0, 2.0), dtype);
                for (mode, run) in [None, Some(false), Some(true)]
                    .into_iter()
                    .flat_map(|m| [(m, 1), (m, 3), (m, 8)])
                {
                    let y = resize(&x, oh, ow, mode, run, None).unwrap();
                    assert_eq!(y.shape(), &[shape[0], shape[1], oh, ow]);
                    let want = reference(&xs, shape, oh, ow, mode);
                    let what = format!("{mode:?} run {run} {shape:?}->{oh}x{ow} {dtype}");
                    assert_close(&what, &y.to_f32_vec().unwrap(), &want, tol(dtype));
                }
            }
        }
    }

    #[test]
    fn bilinear_into_a_channel_range() {
        let Some(gpu) = test_gpu() else { return };
        for dtype in test_dtypes(&gpu) {
            let (xs, (oc, off, oh, ow)) = ([2, 3, 5, 7], (8, 4, 11, 13));
            let n: usize = xs.iter().product();
            let (x, xv) = upload(&gpu, &xs, &rand_vec(n, 7, -2.0, 2.0), dtype);
            let on = 2 * oc * oh * ow;
            let (out, mut want) =
                upload(&gpu, &[2, oc, oh, ow], &rand_vec(on, 8, -1.0, 1.0), dtype);
            upsample_bilinear_into(&x, &out, off, false).unwrap();
            let up = reference(&xv, xs, oh, ow, Some(false));
            let plane = oh * ow;
            for b in 0..2 {
                let dst = (b * oc + off) * plane;
                want[dst..dst + 3 * plane].copy_from_slice(&up[b * 3 * plane..(b + 1) * 3 * plane]);
            }
            let what = format!("bilinear into channel {off} {dtype}");
            assert_close(&what, &out.to_f32_vec().unwrap(), &want, tol(dtype));
            // Does not fit / aliases.
            assert!(upsample_bilinear_into(&x, &out, 6, false).is_err());
            assert!(upsample_bilinear_into(&x, &x, 0, false).is_err());
        }
    }

    #[test]
    fn reference_follows_pytorch_rules() {
        // Values from torch.nn.functional.interpolate on arange(4).
        let x = [0.0, 1.0, 2.0, 3.0];
        let near = reference(&x, [1, 1, 1, 4], 1, 6, None);
        assert_eq!(near, vec![0.0, 0.0, 1.0, 2.0, 2.0, 3.0]);
        let half = reference(&x, [1, 1, 1, 4], 1, 8, Some(false));
        assert_eq!(half, vec![0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]);
        let corners = reference(&x, [1, 1, 1, 4], 1, 7, Some(true));
        assert_eq!(corners, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
        let down = reference(&x, [1, 1, 1, 4], 1, 2, Some(false));
        assert_eq!(down, vec![0.5, 2.5]);
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let dt = crate::DType::F32;
        let empty = Tensor::empty(&gpu, &[1, 0, 4, 4], dt).unwrap();
        assert!(matches!(
            upsample_nearest(&empty, 8, 8),
            Err(KernelError::Empty { .. })
        ));
        let x3 = Tensor::zeros(&gpu, &[3, 4, 4], dt).unwrap();
        assert!(matches!(
            upsample_bilinear(&x3, 8, 8, false),
            Err(KernelError::Shape { .. })
        ));
        let x = Tensor::zeros(&gpu, &[1, 1, 4, 4], dt).unwrap();
        assert!(upsample_nearest(&x, 0, 8).is_err());
    }
}
