//! Image upscaling with the ESRGAN family: the library entry point shared by
//! the CLI and the HTTP API.
//!
//! The image is converted to planar f32 in [0, 1] on the host, run through
//! the model whole or in overlapping tiles (each tile's input is extended by
//! `tile_pad` pixels of real context, and only its centre is kept), then
//! clamped to [0, 1] and quantised with `floor(v * max + 0.5)`. This follows
//! Real-ESRGAN's `RealESRGANer`: grey images go through the model as RGB and
//! come back as luma; an alpha channel is upscaled by the model as a grey
//! image (`alpha_upsampler='realesrgan'`); 16-bit images stay 16-bit.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use easel_kernels::{DType, Gpu, KernelError, Tensor};
use image::{DynamicImage, ImageBuffer, Luma, LumaA, Rgb, Rgba};

use crate::models::esrgan::{ModelError, UpscaleModel};
use crate::models::registry::{self, RegistryError};
use crate::weights::Weights;

/// Default memory budget of one forward pass when tiles are chosen
/// automatically.
pub const DEFAULT_MEMORY_BUDGET: u64 = 2 << 30;
/// Default limit on output pixels (after `outscale`).
pub const DEFAULT_MAX_OUTPUT_PIXELS: u64 = 8192 * 8192;
/// Smallest automatic tile side.
const MIN_AUTO_TILE: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum UpscaleError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// Unknown or invalid model name, or an unreadable models directory.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("invalid {param}: {msg}")]
    BadOption { param: &'static str, msg: String },
    #[error("the output would be {width}x{height}, over the limit of {limit} pixels")]
    OutputTooLarge { width: u64, height: u64, limit: u64 },
    #[error("the image is empty ({width}x{height})")]
    EmptyImage { width: u32, height: u32 },
    #[error(
        "the model has {in_ch} input and {out_ch} output channels; only 1- or 3-channel models \
         with as many outputs as inputs can upscale images"
    )]
    UnsupportedChannels { in_ch: usize, out_ch: usize },
    #[error(
        "even a {tile}x{tile} tile needs more than the memory budget of {budget} bytes or the \
         adapter's largest binding of {binding} bytes"
    )]
    NoTileFits {
        tile: usize,
        budget: u64,
        binding: u64,
    },
    #[error("canceled")]
    Canceled,
}

/// How to run an upscale.
#[derive(Debug, Clone)]
pub struct UpscaleOptions {
    /// `None`: whole image if it fits the memory budget, else automatic
    /// tiles; `Some(0)`: whole image always; `Some(n)`: `n`x`n` input tiles.
    pub tile: Option<usize>,
    /// Context pixels added on each side of a tile (`None`: the model's
    /// [`UpscaleModel::default_tile_pad`]).
    pub tile_pad: Option<usize>,
    /// Final scale relative to the input (`None`: the model's scale). Other
    /// values resize the model output with Lanczos3.
    pub outscale: Option<f64>,
    /// Bytes one forward pass may use when tiles are chosen automatically.
    pub memory_budget: u64,
    /// Largest output (width * height) accepted.
    pub max_output_pixels: u64,
    /// Checked before every tile: once set, the upscale stops with
    /// [`UpscaleError::Canceled`] (the HTTP API's job cancel).
    pub cancel: Arc<AtomicBool>,
}

impl Default for UpscaleOptions {
    fn default() -> Self {
        Self {
            tile: None,
            tile_pad: None,
            outscale: None,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            max_output_pixels: DEFAULT_MAX_OUTPUT_PIXELS,
            cancel: Arc::default(),
        }
    }
}

/// Resolves `name` in `models_dir` and loads it in `dtype`.
pub fn load_model(
    gpu: &Gpu,
    models_dir: &Path,
    name: &str,
    dtype: DType,
) -> Result<UpscaleModel, UpscaleError> {
    let entry = registry::resolve(models_dir, name)?;
    let weights = Weights::open(&entry.weights_path).map_err(ModelError::from)?;
    Ok(UpscaleModel::load(&weights, gpu, dtype)?)
}

/// f16 when the adapter has SHADER_F16 (unless `force_f32`), else f32.
pub fn default_dtype(gpu: &Gpu, force_f32: bool) -> DType {
    if gpu.caps().shader_f16 && !force_f32 {
        DType::F16
    } else {
        DType::F32
    }
}

/// Planar f32 image data: `planes[c][y * width + x]`.
#[derive(Debug, Clone)]
struct Planes {
    width: usize,
    height: usize,
    planes: Vec<Vec<f32>>,
}

/// Upscales `img`. `progress(done, total)` is called after every tile
/// (alpha tiles included).
pub fn upscale(
    gpu: &Gpu,
    model: &UpscaleModel,
    img: &DynamicImage,
    opts: &UpscaleOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<DynamicImage, UpscaleError> {
    let (in_ch, out_ch) = (model.in_channels(), model.out_channels());
    if !matches!(in_ch, 1 | 3) || in_ch != out_ch {
        return Err(UpscaleError::UnsupportedChannels { in_ch, out_ch });
    }
    let (width, height) = (img.width(), img.height());
    if width == 0 || height == 0 {
        return Err(UpscaleError::EmptyImage { width, height });
    }
    let scale = model.scale();
    let target = output_size(width, height, scale, opts)?;
    let color = img.color();
    let sixteen = color.bytes_per_pixel() / color.channel_count() > 1;
    let (rgb, alpha) = to_planes(img);
    let grey = rgb.planes.len() == 1;

    let pad = opts.tile_pad.unwrap_or_else(|| model.default_tile_pad());
    let tile = choose_tile(
        gpu,
        model,
        rgb.width,
        rgb.height,
        opts.tile,
        pad,
        opts.memory_budget,
    )?;
    let per_pass = tile.map_or(1, |t| rgb.width.div_ceil(t) * rgb.height.div_ceil(t));
    let total = per_pass * if alpha.is_some() { 2 } else { 1 };
    let mut done = 0;
    let mut tick = || {
        done += 1;
        progress(done, total);
    };

    let cancel = &opts.cancel;
    let out = run_image(
        gpu,
        model,
        &fit_channels(rgb, in_ch),
        (tile, pad),
        cancel,
        &mut tick,
    )?;
    let out = if grey {
        to_luma(out)
    } else {
        fit_channels(out, 3)
    };
    let alpha = match alpha {
        Some(a) => Some(to_luma(run_image(
            gpu,
            model,
            &fit_channels(a, in_ch),
            (tile, pad),
            cancel,
            &mut tick,
        )?)),
        None => None,
    };
    let upscaled = from_planes(out, alpha, sixteen);
    Ok(match target {
        Some((w, h)) => upscaled.resize_exact(w, h, image::imageops::FilterType::Lanczos3),
        None => upscaled,
    })
}

/// The final size when `outscale` differs from the model's scale, checking
/// the output limit either way.
fn output_size(
    width: u32,
    height: u32,
    scale: usize,
    opts: &UpscaleOptions,
) -> Result<Option<(u32, u32)>, UpscaleError> {
    let factor = match opts.outscale {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            return Err(UpscaleError::BadOption {
                param: "outscale",
                msg: format!("{s} is not a positive number"),
            });
        }
        Some(s) => s,
        None => scale as f64,
    };
    let size = |v: u32| ((v as f64 * factor).round() as u64).max(1);
    let (w, h) = (size(width), size(height));
    // The model output is always produced, so it is limited too.
    let (mw, mh) = (width as u64 * scale as u64, height as u64 * scale as u64);
    for (cw, ch) in [(w, h), (mw, mh)] {
        if cw.saturating_mul(ch) > opts.max_output_pixels {
            return Err(UpscaleError::OutputTooLarge {
                width: cw,
                height: ch,
                limit: opts.max_output_pixels,
            });
        }
    }
    Ok(((w, h) != (mw, mh)).then_some((w as u32, h as u32)))
}

/// The tile side, or `None` for the whole image.
fn choose_tile(
    gpu: &Gpu,
    model: &UpscaleModel,
    w: usize,
    h: usize,
    tile: Option<usize>,
    pad: usize,
    budget: u64,
) -> Result<Option<usize>, UpscaleError> {
    let m = model.input_multiple();
    match tile {
        Some(0) => return Ok(None),
        Some(t) if t < m => {
            return Err(UpscaleError::BadOption {
                param: "tile",
                msg: format!("{t} is smaller than the model's input multiple {m}"),
            });
        }
        // A tile covering the image is the whole image.
        Some(t) if t >= w && t >= h => return Ok(None),
        Some(t) => return Ok(Some(t)),
        None => {}
    }
    let dsize = model.dtype().size() as u64;
    let binding = gpu.max_binding_bytes();
    let fits = |tw: usize, th: usize| {
        let (tw, th) = (tw.next_multiple_of(m), th.next_multiple_of(m));
        model.largest_tensor_elems(th, tw) as u64 * dsize <= binding
            && model.peak_elems(th, tw) as u64 * dsize <= budget
    };
    if fits(w, h) {
        return Ok(None);
    }
    let mut t = w.max(h).next_multiple_of(8);
    while t > MIN_AUTO_TILE && !fits(t + 2 * pad, t + 2 * pad) {
        t -= 8;
    }
    if !fits(t + 2 * pad, t + 2 * pad) {
        return Err(UpscaleError::NoTileFits {
            tile: t,
            budget,
            binding,
        });
    }
    Ok(Some(t))
}

/// Runs the model over `img`, whole or tile by tile, returning the unclamped
/// output planes.
fn run_image(
    gpu: &Gpu,
    model: &UpscaleModel,
    img: &Planes,
    (tile, pad): (Option<usize>, usize),
    cancel: &AtomicBool,
    tick: &mut dyn FnMut(),
) -> Result<Planes, UpscaleError> {
    let check = || {
        if cancel.load(Ordering::Relaxed) {
            Err(UpscaleError::Canceled)
        } else {
            Ok(())
        }
    };
    check()?;
    let s = model.scale();
    let (w, h) = (img.width, img.height);
    let Some(t) = tile else {
        let out = run_region(gpu, model, img, (0, 0, w, h))?;
        tick();
        return Ok(out);
    };
    let mut out = Planes {
        width: w * s,
        height: h * s,
        planes: vec![vec![0.0; w * h * s * s]; img.planes.len()],
    };
    for y0 in (0..h).step_by(t) {
        for x0 in (0..w).step_by(t) {
            check()?;
            let (x1, y1) = ((x0 + t).min(w), (y0 + t).min(h));
            let (px0, py0) = (x0.saturating_sub(pad), y0.saturating_sub(pad));
            let (px1, py1) = ((x1 + pad).min(w), (y1 + pad).min(h));
            let part = run_region(gpu, model, img, (px0, py0, px1, py1))?;
            // Keep only the tile's own pixels of the padded result.
            let (ox, oy) = ((x0 - px0) * s, (y0 - py0) * s);
            let row = (x1 - x0) * s;
            for (dst, src) in out.planes.iter_mut().zip(&part.planes) {
                for y in 0..(y1 - y0) * s {
                    let from = (oy + y) * part.width + ox;
                    let to = (y0 * s + y) * out.width + x0 * s;
                    dst[to..to + row].copy_from_slice(&src[from..from + row]);
                }
            }
            tick();
        }
    }
    Ok(out)
}

/// Runs the model on the rectangle `(x0, y0, x1, y1)` of `img`, reflect-padded
/// on the right and bottom to the model's input multiple (as Real-ESRGAN does
/// for x2/x1 models) and cropped back.
fn run_region(
    gpu: &Gpu,
    model: &UpscaleModel,
    img: &Planes,
    (x0, y0, x1, y1): (usize, usize, usize, usize),
) -> Result<Planes, UpscaleError> {
    let m = model.input_multiple();
    let (w, h) = (x1 - x0, y1 - y0);
    let (pw, ph) = (w.next_multiple_of(m), h.next_multiple_of(m));
    let c = img.planes.len();
    let mut data = Vec::with_capacity(c * pw * ph);
    for plane in &img.planes {
        for y in 0..ph {
            let row = y0 + reflect(y, h);
            data.extend((0..pw).map(|x| plane[row * img.width + x0 + reflect(x, w)]));
        }
    }
    let x = Tensor::from_f32(gpu, &[1, c, ph, pw], &data, model.dtype())?;
    let y = model.forward(&x)?;
    let s = model.scale();
    let (ow, oh) = (pw * s, ph * s);
    let values = y.to_f32_vec()?;
    let (cw, ch) = (w * s, h * s);
    let planes = values
        .chunks_exact(ow * oh)
        .map(|p| {
            if (cw, ch) == (ow, oh) {
                p.to_vec()
            } else {
                (0..ch)
                    .flat_map(|r| p[r * ow..r * ow + cw].iter().copied())
                    .collect()
            }
        })
        .collect();
    Ok(Planes {
        width: cw,
        height: ch,
        planes,
    })
}

/// Index `i` of a line of `n` samples extended by mirroring (no repeated
/// edge), clamped where the mirror would run off a very short line.
fn reflect(i: usize, n: usize) -> usize {
    if i < n {
        i
    } else {
        (2 * (n - 1)).saturating_sub(i).min(n - 1)
    }
}

/// Colour planes (1 or 3) and the alpha plane, scaled to [0, 1].
fn to_planes(img: &DynamicImage) -> (Planes, Option<Planes>) {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let color = img.color();
    let grey = color.channel_count() <= 2;
    let n = if grey { 1 } else { 3 };
    let alpha = color.has_alpha();
    // Go through 16-bit (or f32 for float images) so no precision is lost.
    let (data, max): (Vec<f32>, f32) = match img {
        DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_) => {
            (img.to_rgba32f().into_raw(), 1.0)
        }
        _ if color.bytes_per_pixel() / color.channel_count() > 1 => (
            img.to_rgba16()
                .into_raw()
                .into_iter()
                .map(f32::from)
                .collect(),
            65535.0,
        ),
        _ => (
            img.to_rgba8()
                .into_raw()
                .into_iter()
                .map(f32::from)
                .collect(),
            255.0,
        ),
    };
    let plane = |c: usize| {
        data.chunks_exact(4)
            .map(|p| (p[c] / max).clamp(0.0, 1.0))
            .collect::<Vec<f32>>()
    };
    let rgb = Planes {
        width,
        height,
        planes: (0..n).map(plane).collect(),
    };
    let alpha = alpha.then(|| Planes {
        width,
        height,
        planes: vec![plane(3)],
    });
    (rgb, alpha)
}

/// Grey -> RGB by repetition, RGB -> grey by luma.
fn fit_channels(p: Planes, n: usize) -> Planes {
    match (p.planes.len(), n) {
        (1, 3) => Planes {
            planes: vec![
                p.planes[0].clone(),
                p.planes[0].clone(),
                p.planes[0].clone(),
            ],
            ..p
        },
        (3, 1) => to_luma(p),
        _ => p,
    }
}

/// BT.601 luma, as OpenCV's RGB -> GRAY (what Real-ESRGAN uses).
fn to_luma(p: Planes) -> Planes {
    if p.planes.len() == 1 {
        return p;
    }
    let [r, g, b] = [&p.planes[0], &p.planes[1], &p.planes[2]];
    let y = (0..r.len())
        .map(|i| 0.299 * r[i] + 0.587 * g[i] + 0.114 * b[i])
        .collect();
    Planes {
        planes: vec![y],
        ..p
    }
}

/// `floor(clamp(v, 0, 1) * max + 0.5)`: NaN becomes 0, negatives 0.
fn quantise(v: f32, max: f32) -> f32 {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    (v * max + 0.5).floor()
}

fn from_planes(color: Planes, alpha: Option<Planes>, sixteen: bool) -> DynamicImage {
    let (w, h) = (color.width as u32, color.height as u32);
    let mut planes: Vec<&[f32]> = color.planes.iter().map(Vec::as_slice).collect();
    if let Some(a) = &alpha {
        planes.push(&a.planes[0]);
    }
    let n = planes.len();
    let max = if sixteen { 65535.0 } else { 255.0 };
    let samples = (0..color.width * color.height)
        .flat_map(|i| planes.iter().map(move |p| quantise(p[i], max)));
    if sixteen {
        let raw: Vec<u16> = samples.map(|v| v as u16).collect();
        match n {
            1 => DynamicImage::ImageLuma16(
                ImageBuffer::<Luma<u16>, _>::from_raw(w, h, raw).expect("size"),
            ),
            2 => DynamicImage::ImageLumaA16(
                ImageBuffer::<LumaA<u16>, _>::from_raw(w, h, raw).expect("size"),
            ),
            3 => DynamicImage::ImageRgb16(
                ImageBuffer::<Rgb<u16>, _>::from_raw(w, h, raw).expect("size"),
            ),
            _ => DynamicImage::ImageRgba16(
                ImageBuffer::<Rgba<u16>, _>::from_raw(w, h, raw).expect("size"),
            ),
        }
    } else {
        let raw: Vec<u8> = samples.map(|v| v as u8).collect();
        match n {
            1 => DynamicImage::ImageLuma8(
                ImageBuffer::<Luma<u8>, _>::from_raw(w, h, raw).expect("size"),
            ),
            2 => DynamicImage::ImageLumaA8(
                ImageBuffer::<LumaA<u8>, _>::from_raw(w, h, raw).expect("size"),
            ),
            3 => DynamicImage::ImageRgb8(
                ImageBuffer::<Rgb<u8>, _>::from_raw(w, h, raw).expect("size"),
            ),
            _ => DynamicImage::ImageRgba8(
                ImageBuffer::<Rgba<u8>, _>::from_raw(w, h, raw).expect("size"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_mirrors_without_repeating_the_edge() {
        assert_eq!(
            (0..7).map(|i| reflect(i, 5)).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 3, 2]
        );
        assert_eq!(reflect(1, 1), 0);
    }

    #[test]
    fn quantise_clamps_instead_of_wrapping() {
        assert_eq!(quantise(-0.01, 255.0), 0.0);
        assert_eq!(quantise(1.5, 255.0), 255.0);
        assert_eq!(quantise(0.5, 255.0), 128.0);
        assert_eq!(quantise(f32::NAN, 65535.0), 0.0);
    }

    #[test]
    fn outscale_is_validated_and_limited() {
        let opts = |outscale, max| UpscaleOptions {
            outscale,
            max_output_pixels: max,
            ..Default::default()
        };
        assert_eq!(output_size(10, 10, 4, &opts(None, 1 << 20)).unwrap(), None);
        assert_eq!(
            output_size(10, 10, 4, &opts(Some(4.0), 1 << 20)).unwrap(),
            None
        );
        assert_eq!(
            output_size(10, 7, 4, &opts(Some(2.5), 1 << 20)).unwrap(),
            Some((25, 18))
        );
        assert!(output_size(10, 10, 4, &opts(Some(-1.0), 1 << 20)).is_err());
        assert!(output_size(10, 10, 4, &opts(Some(f64::NAN), 1 << 20)).is_err());
        assert!(matches!(
            output_size(100, 100, 4, &opts(None, 1000)),
            Err(UpscaleError::OutputTooLarge { .. })
        ));
    }
}
