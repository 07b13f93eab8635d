//! Image conversion: interleaved 8/16-bit pixels <-> `[1, C, H, W]`
//! tensors, with a per-channel affine map (normalisation) on the way.
//!
//! Pixels cross the bus as packed u32 words, 4x (8-bit) or 2x (16-bit)
//! smaller than f32 tensors. The packed buffers are held in F32 tensors used
//! as raw storage; the shader declares them `array<u32>`.

use bytemuck::{Pod, Zeroable};

use crate::error::{Result, shape_err};
use crate::{Access, Cost, DType, Gpu, Kernel, KernelError, Tensor};

/// Layout of interleaved (HWC) pixel data.
#[derive(Debug, Clone, Copy)]
pub struct ImageSpec {
    pub width: usize,
    pub height: usize,
    /// Interleaved channels, 1..=4.
    pub channels: usize,
    /// 8 or 16 (u16 little-endian).
    pub bit_depth: u8,
}

impl ImageSpec {
    /// Bytes of the interleaved data.
    pub fn bytes(&self) -> usize {
        self.width * self.height * self.channels * (self.bit_depth as usize / 8)
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    hw: u32,
    channels: u32,
    bits: u32,
    n_samples: u32,
    _pad: [u32; 3],
    scale: [f32; 4],
    offset: [f32; 4],
}

const FROM_PIXELS: &[&str] = &["alias S = u32;\nalias D = T;"];
const TO_PIXELS: &[&str] = &["alias S = T;\nalias D = u32;"];

fn check_depth(op: &'static str, bits: u8) -> Result<()> {
    if bits == 8 || bits == 16 {
        Ok(())
    } else {
        shape_err(op, format!("bit depth {bits} is not 8 or 16"))
    }
}

/// `pixels`: interleaved HWC, u8 or little-endian u16. Takes the first
/// `take_channels` channels (e.g. RGB of RGBA);
/// `value = raw * scale[c] + offset[c]` with raw in 0..=255 or 0..=65535.
/// Output `[1, take_channels, H, W]` in `dtype`.
pub fn image_to_tensor(
    gpu: &Gpu,
    pixels: &[u8],
    spec: ImageSpec,
    take_channels: usize,
    scale: [f32; 4],
    offset: [f32; 4],
    dtype: DType,
) -> Result<Tensor> {
    const OP: &str = "image_to_tensor";
    check_depth(OP, spec.bit_depth)?;
    if !(1..=4).contains(&spec.channels) || !(1..=spec.channels).contains(&take_channels) {
        return shape_err(
            OP,
            format!(
                "cannot take {take_channels} of {} channels (1..=4)",
                spec.channels
            ),
        );
    }
    let shape = [1, take_channels, spec.height, spec.width];
    if spec.width == 0 || spec.height == 0 {
        return Err(KernelError::Empty {
            op: OP,
            shape: shape.to_vec(),
        });
    }
    if pixels.len() != spec.bytes() {
        return shape_err(
            OP,
            format!(
                "{} bytes given, {spec:?} needs {}",
                pixels.len(),
                spec.bytes()
            ),
        );
    }
    let raw = Tensor::empty_for(gpu, OP, &[pixels.len().div_ceil(4)], DType::F32)?;
    gpu.upload(raw.buffer(), pixels);
    let y = Tensor::empty_for(gpu, OP, &shape, dtype)?;
    let params = Params {
        n: y.numel() as u32,
        hw: (spec.width * spec.height) as u32,
        channels: spec.channels as u32,
        bits: spec.bit_depth as u32,
        n_samples: (spec.width * spec.height * spec.channels) as u32,
        _pad: [0; 3],
        scale,
        offset,
    };
    const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite];
    let kernel = Kernel::new(OP, include_str!("image.wgsl"), dtype, BINDINGS)
        .define("TO_IMAGE", false)
        .includes(FROM_PIXELS);
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[raw.bind(), y.bind()],
        gpu.grid((y.numel() as u64).div_ceil(256))?,
        Cost::new(
            2.0 * y.numel() as f64,
            (pixels.len() + y.size_bytes()) as f64,
        ),
    )?;
    Ok(y)
}

/// `t` `[1, C, H, W]` -> interleaved HWC bytes of `bit_depth` 8 or 16
/// (u16 little-endian): `raw = floor(clamp(v * scale[c] + offset[c], 0,
/// max) + 0.5)`. C in 1..=4. Reads the data back (waits for the GPU).
pub fn tensor_to_image(
    t: &Tensor,
    scale: [f32; 4],
    offset: [f32; 4],
    bit_depth: u8,
) -> Result<Vec<u8>> {
    const OP: &str = "tensor_to_image";
    check_depth(OP, bit_depth)?;
    let &[1, c, h, w] = t.shape() else {
        return shape_err(OP, format!("expected [1, C, H, W], got {:?}", t.shape()));
    };
    if !(1..=4).contains(&c) {
        return shape_err(OP, format!("{c} channels; images have 1..=4"));
    }
    if t.numel() == 0 {
        return Err(KernelError::Empty {
            op: OP,
            shape: t.shape().to_vec(),
        });
    }
    let spec = ImageSpec {
        width: w,
        height: h,
        channels: c,
        bit_depth,
    };
    let bytes = spec.bytes();
    let words = bytes.div_ceil(4);
    let gpu = t.gpu();
    let raw = Tensor::empty_for(gpu, OP, &[words], DType::F32)?;
    let params = Params {
        n: words as u32,
        hw: (w * h) as u32,
        channels: c as u32,
        bits: bit_depth as u32,
        n_samples: t.numel() as u32,
        _pad: [0; 3],
        scale,
        offset,
    };
    const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite];
    let kernel = Kernel::new(OP, include_str!("image.wgsl"), t.dtype(), BINDINGS)
        .define("TO_IMAGE", true)
        .includes(TO_PIXELS);
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[t.bind(), raw.bind()],
        gpu.grid((words as u64).div_ceil(256))?,
        Cost::new(4.0 * t.numel() as f64, (t.size_bytes() + bytes) as f64),
    )?;
    gpu.download(raw.buffer(), bytes as u64)
}

/// CPU reference of [`image_to_tensor`] (values in CHW order).
pub fn reference_to_tensor(
    pixels: &[u8],
    spec: ImageSpec,
    take: usize,
    scale: [f32; 4],
    offset: [f32; 4],
) -> Vec<f32> {
    let hw = spec.width * spec.height;
    let mut y = Vec::with_capacity(take * hw);
    for c in 0..take {
        for pix in 0..hw {
            let k = pix * spec.channels + c;
            let raw = if spec.bit_depth == 8 {
                pixels[k] as f32
            } else {
                u16::from_le_bytes([pixels[2 * k], pixels[2 * k + 1]]) as f32
            };
            y.push(raw * scale[c] + offset[c]);
        }
    }
    y
}

/// CPU reference of [`tensor_to_image`] on CHW values.
pub fn reference_to_image(
    t: &[f32],
    [c, h, w]: [usize; 3],
    scale: [f32; 4],
    offset: [f32; 4],
    bit_depth: u8,
) -> Vec<u8> {
    let max = if bit_depth == 8 { 255.0 } else { 65535.0 };
    let mut out = Vec::with_capacity(t.len() * bit_depth as usize / 8);
    for pix in 0..h * w {
        for ch in 0..c {
            let v = t[ch * h * w + pix] * scale[ch] + offset[ch];
            let raw = (v.clamp(0.0, max) + 0.5).floor() as u16;
            if bit_depth == 8 {
                out.push(raw as u8);
            } else {
                out.extend_from_slice(&raw.to_le_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
        rand_vec(n, seed, 0.0, 256.0)
            .iter()
            .map(|&v| v as u8)
            .collect()
    }

    #[test]
    fn upload_matches_reference_and_round_trips() {
        let Some(gpu) = test_gpu() else { return };
        for dtype in test_dtypes(&gpu) {
            for bits in [8u8, 16] {
                for (channels, take) in [(1, 1), (3, 3), (4, 4), (4, 3), (3, 1)] {
                    let spec = ImageSpec {
                        width: 17,
                        height: 13,
                        channels,
                        bit_depth: bits,
                    };
                    let px = random_bytes(spec.bytes(), (bits as usize * 10 + channels) as u64);
                    let max = if bits == 8 { 255.0 } else { 65535.0 };
                    // Normalise to about [-1, 1] with per-channel values.
                    let scale = [2.0 / max, 1.5 / max, 1.0 / max, 0.5 / max];
                    let offset = [-1.0, -0.5, 0.25, 0.0];
                    let what = format!("{bits}-bit {channels}->{take} {dtype}");
                    let t = image_to_tensor(&gpu, &px, spec, take, scale, offset, dtype).unwrap();
                    assert_eq!(t.shape(), &[1, take, 13, 17]);
                    let want = reference_to_tensor(&px, spec, take, scale, offset);
                    assert_close(&what, &t.to_f32_vec().unwrap(), &want, tol(dtype));
                    // Back to pixels with the inverse map: the original
                    // samples of the taken channels. f16 cannot carry 16 bits.
                    if take != channels || (bits == 16 && dtype == DType::F16) {
                        continue;
                    }
                    let inv_s = scale.map(|s| 1.0 / s);
                    let inv_o = [0, 1, 2, 3].map(|c| -offset[c] / scale[c]);
                    let back = tensor_to_image(&t, inv_s, inv_o, bits).unwrap();
                    assert_eq!(back, px, "round trip {what}");
                }
            }
        }
    }

    #[test]
    fn download_gives_exact_reference_bytes() {
        let Some(gpu) = test_gpu() else { return };
        for bits in [8u8, 16] {
            for c in [1, 3, 4] {
                let (h, w) = (13, 17);
                let n = c * h * w;
                let max = if bits == 8 { 255.0 } else { 65535.0 };
                // Targets beyond both ends (clamped) and fractions kept away
                // from .5 so FMA contraction cannot change the rounding.
                let target = rand_vec(n, c as u64 + bits as u64, -40.0, max + 40.0);
                let frac = rand_vec(n, 7, -0.3, 0.3);
                let scale = [max, max * 0.5, max * 0.25, max];
                let offset = [0.0, 2.0, -3.0, 1.0];
                let vals: Vec<f32> = (0..n)
                    .map(|i| {
                        let ch = i / (h * w);
                        (target[i].round() + frac[i] - offset[ch]) / scale[ch]
                    })
                    .collect();
                let t = Tensor::from_f32(&gpu, &[1, c, h, w], &vals, DType::F32).unwrap();
                let got = tensor_to_image(&t, scale, offset, bits).unwrap();
                let want = reference_to_image(&vals, [c, h, w], scale, offset, bits);
                assert_eq!(got.len(), h * w * c * bits as usize / 8);
                assert_eq!(got, want, "{bits}-bit c={c}");
            }
        }
    }

    #[test]
    fn reference_packs_little_endian() {
        let px = reference_to_image(&[1.0, 0.5], [2, 1, 1], [65535.0; 4], [0.0; 4], 16);
        assert_eq!(px, vec![0xff, 0xff, 0x00, 0x80]);
        let spec = ImageSpec {
            width: 1,
            height: 1,
            channels: 2,
            bit_depth: 16,
        };
        let v = reference_to_tensor(&[0x34, 0x12, 0xff, 0x00], spec, 2, [1.0; 4], [0.0; 4]);
        assert_eq!(v, vec![4660.0, 255.0]);
    }

    #[test]
    fn errors() {
        let Some(gpu) = test_gpu() else { return };
        let spec = ImageSpec {
            width: 2,
            height: 2,
            channels: 3,
            bit_depth: 8,
        };
        let s = [1.0; 4];
        let o = [0.0; 4];
        let f = DType::F32;
        assert!(image_to_tensor(&gpu, &[0; 11], spec, 3, s, o, f).is_err());
        assert!(image_to_tensor(&gpu, &[0; 12], spec, 4, s, o, f).is_err());
        assert!(image_to_tensor(&gpu, &[0; 12], spec, 0, s, o, f).is_err());
        let bad = ImageSpec {
            bit_depth: 12,
            ..spec
        };
        assert!(image_to_tensor(&gpu, &[0; 12], bad, 3, s, o, f).is_err());
        let empty = ImageSpec { width: 0, ..spec };
        assert!(matches!(
            image_to_tensor(&gpu, &[], empty, 3, s, o, f),
            Err(KernelError::Empty { .. })
        ));
        let t5 = Tensor::zeros(&gpu, &[1, 5, 2, 2], f).unwrap();
        assert!(tensor_to_image(&t5, s, o, 8).is_err());
        let t3 = Tensor::zeros(&gpu, &[3, 2, 2], f).unwrap();
        assert!(tensor_to_image(&t3, s, o, 8).is_err());
        let t = Tensor::zeros(&gpu, &[1, 3, 2, 2], f).unwrap();
        assert!(tensor_to_image(&t, s, o, 4).is_err());
    }
}
