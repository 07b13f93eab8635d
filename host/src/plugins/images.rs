//! Host-owned images and the operations the `images` interface offers on them.
//!
//! Pixels live behind an `Arc`, so passing an image into a guest and back (or to a model)
//! moves a handle, not the bytes.

use image::{ImageFormat, ImageReader, RgbaImage, imageops};
use std::io::Cursor;
use std::sync::Arc;

/// The largest width or height an image operation may produce.
pub const MAX_DIMENSION: u32 = 16_384;

/// An RGBA8 image owned by the host, with text metadata.
#[derive(Clone, Debug)]
pub struct PluginImage {
    pub pixels: Arc<RgbaImage>,
    pub metadata: Vec<(String, String)>,
}

/// Why an image operation failed (the guest sees `code` and the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageOpError {
    #[error("invalid_argument: {0}")]
    Invalid(String),
    #[error("decode_error: {0}")]
    Decode(String),
    #[error("encode_error: {0}")]
    Encode(String),
}

impl ImageOpError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_argument",
            Self::Decode(_) => "decode_error",
            Self::Encode(_) => "encode_error",
        }
    }
}

/// Encoded formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    Webp,
}

/// How `resize` maps the source onto the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    Fill,
    Contain,
    Cover,
}

fn check_dims(width: u32, height: u32) -> Result<(), ImageOpError> {
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(ImageOpError::Invalid(format!(
            "{width}x{height} is outside 1..={MAX_DIMENSION} per side"
        )));
    }
    Ok(())
}

impl PluginImage {
    pub fn new(pixels: RgbaImage) -> Self {
        Self {
            pixels: Arc::new(pixels),
            metadata: Vec::new(),
        }
    }

    pub fn width(&self) -> u32 {
        self.pixels.width()
    }

    pub fn height(&self) -> u32 {
        self.pixels.height()
    }

    /// RGBA bytes held.
    pub fn size_bytes(&self) -> u64 {
        self.pixels.as_raw().len() as u64
    }

    /// Whether any pixel is not fully opaque.
    pub fn has_alpha(&self) -> bool {
        self.pixels.pixels().any(|p| p.0[3] != 255)
    }

    fn derived(&self, pixels: RgbaImage) -> Self {
        Self {
            pixels: Arc::new(pixels),
            metadata: self.metadata.clone(),
        }
    }

    /// Bytes a `width` x `height` result will take, checked against the dimension cap.
    pub fn planned_bytes(width: u32, height: u32) -> Result<u64, ImageOpError> {
        check_dims(width, height)?;
        Ok(width as u64 * height as u64 * 4)
    }

    /// Decodes PNG, JPEG or WebP; `max_alloc` bounds the decoder's allocations so a
    /// decompression bomb fails instead of exhausting memory.
    pub fn decode(bytes: &[u8], max_alloc: u64) -> Result<Self, ImageOpError> {
        let mut reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ImageOpError::Decode(e.to_string()))?;
        match reader.format() {
            Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP) => {}
            other => {
                return Err(ImageOpError::Decode(format!(
                    "unsupported format {other:?} (PNG, JPEG and WebP are)"
                )));
            }
        }
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_DIMENSION);
        limits.max_image_height = Some(MAX_DIMENSION);
        limits.max_alloc = Some(max_alloc);
        reader.limits(limits);
        let img = reader
            .decode()
            .map_err(|e| ImageOpError::Decode(e.to_string()))?;
        Ok(Self::new(img.into_rgba8()))
    }

    /// A solid image.
    pub fn filled(width: u32, height: u32, rgba: [u8; 4]) -> Result<Self, ImageOpError> {
        check_dims(width, height)?;
        Ok(Self::new(RgbaImage::from_pixel(
            width,
            height,
            image::Rgba(rgba),
        )))
    }

    /// An image from raw RGBA8 bytes.
    pub fn from_rgba(width: u32, height: u32, pixels: Vec<u8>) -> Result<Self, ImageOpError> {
        check_dims(width, height)?;
        let expected = width as usize * height as usize * 4;
        if pixels.len() != expected {
            return Err(ImageOpError::Invalid(format!(
                "{width}x{height} RGBA needs {expected} bytes, got {}",
                pixels.len()
            )));
        }
        let img = RgbaImage::from_raw(width, height, pixels)
            .ok_or_else(|| ImageOpError::Invalid("pixel buffer size".into()))?;
        Ok(Self::new(img))
    }

    /// Encodes; PNG carries the metadata as text chunks.
    pub fn encode(&self, format: Format) -> Result<Vec<u8>, ImageOpError> {
        let mut out = Vec::new();
        let err = |e: &dyn std::fmt::Display| ImageOpError::Encode(e.to_string());
        match format {
            Format::Png => {
                let mut enc = png::Encoder::new(&mut out, self.width(), self.height());
                enc.set_color(png::ColorType::Rgba);
                enc.set_depth(png::BitDepth::Eight);
                for (k, v) in &self.metadata {
                    enc.add_itxt_chunk(k.clone(), v.clone())
                        .map_err(|e| err(&e))?;
                }
                let mut w = enc.write_header().map_err(|e| err(&e))?;
                w.write_image_data(self.pixels.as_raw())
                    .map_err(|e| err(&e))?;
                w.finish().map_err(|e| err(&e))?;
            }
            Format::Jpeg => {
                let rgb = image::DynamicImage::ImageRgba8((*self.pixels).clone()).into_rgb8();
                rgb.write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
                    .map_err(|e| err(&e))?;
            }
            Format::Webp => {
                self.pixels
                    .write_to(&mut Cursor::new(&mut out), ImageFormat::WebP)
                    .map_err(|e| err(&e))?;
            }
        }
        Ok(out)
    }

    /// Resizes with a Catmull-Rom filter.
    pub fn resize(
        &self,
        width: u32,
        height: u32,
        fit: Fit,
        background: Option<[u8; 4]>,
    ) -> Result<Self, ImageOpError> {
        check_dims(width, height)?;
        let (sw, sh) = (self.width() as f64, self.height() as f64);
        let filter = imageops::FilterType::CatmullRom;
        let out = match fit {
            Fit::Fill => imageops::resize(&*self.pixels, width, height, filter),
            Fit::Contain => {
                let s = (width as f64 / sw).min(height as f64 / sh);
                let (w, h) = (
                    ((sw * s).round() as u32).clamp(1, width),
                    ((sh * s).round() as u32).clamp(1, height),
                );
                let inner = imageops::resize(&*self.pixels, w, h, filter);
                let mut canvas =
                    RgbaImage::from_pixel(width, height, image::Rgba(background.unwrap_or([0; 4])));
                imageops::overlay(
                    &mut canvas,
                    &inner,
                    ((width - w) / 2) as i64,
                    ((height - h) / 2) as i64,
                );
                canvas
            }
            Fit::Cover => {
                let s = (width as f64 / sw).max(height as f64 / sh);
                let (w, h) = (
                    ((sw * s).round() as u32).max(width),
                    ((sh * s).round() as u32).max(height),
                );
                let scaled = imageops::resize(&*self.pixels, w, h, filter);
                imageops::crop_imm(&scaled, (w - width) / 2, (h - height) / 2, width, height)
                    .to_image()
            }
        };
        Ok(self.derived(out))
    }

    /// The rectangle at (`x`, `y`); it must lie inside the image.
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> Result<Self, ImageOpError> {
        check_dims(width, height)?;
        if x as u64 + width as u64 > self.width() as u64
            || y as u64 + height as u64 > self.height() as u64
        {
            return Err(ImageOpError::Invalid(format!(
                "crop {width}x{height} at ({x},{y}) leaves the {}x{} image",
                self.width(),
                self.height()
            )));
        }
        Ok(self.derived(imageops::crop_imm(&*self.pixels, x, y, width, height).to_image()))
    }

    /// `top` alpha-blended over this image at (`x`, `y`) with `opacity`.
    pub fn composite(
        &self,
        top: &PluginImage,
        x: i32,
        y: i32,
        opacity: f32,
    ) -> Result<Self, ImageOpError> {
        if !(0.0..=1.0).contains(&opacity) {
            return Err(ImageOpError::Invalid(format!(
                "opacity {opacity} is outside 0..=1"
            )));
        }
        let mut out = (*self.pixels).clone();
        if opacity >= 1.0 {
            imageops::overlay(&mut out, &*top.pixels, x as i64, y as i64);
        } else {
            let mut faded = (*top.pixels).clone();
            for p in faded.pixels_mut() {
                p.0[3] = (p.0[3] as f32 * opacity).round() as u8;
            }
            imageops::overlay(&mut out, &faded, x as i64, y as i64);
        }
        Ok(self.derived(out))
    }

    /// Draws ASCII `text` with the 8x8 bitmap font scaled by `scale`; other characters draw
    /// as `?`.
    pub fn draw_text(
        &self,
        text: &str,
        x: i32,
        y: i32,
        scale: u32,
        color: [u8; 4],
    ) -> Result<Self, ImageOpError> {
        if !(1..=64).contains(&scale) {
            return Err(ImageOpError::Invalid(format!(
                "scale {scale} is outside 1..=64"
            )));
        }
        if text.len() > 4096 {
            return Err(ImageOpError::Invalid("text longer than 4096 bytes".into()));
        }
        let mut out = (*self.pixels).clone();
        let (w, h) = (out.width() as i64, out.height() as i64);
        let s = scale as i64;
        let a = color[3] as u32;
        for (i, ch) in text.chars().enumerate() {
            let code = if ch.is_ascii() && !ch.is_ascii_control() {
                ch as usize
            } else {
                b'?' as usize
            };
            let glyph = font8x8::legacy::BASIC_LEGACY[code];
            let gx = x as i64 + i as i64 * 8 * s;
            if gx >= w {
                break;
            }
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    // Bit 0 is the leftmost pixel of the row.
                    if bits >> col & 1 == 0 {
                        continue;
                    }
                    for dy in 0..s {
                        for dx in 0..s {
                            let px = gx + col as i64 * s + dx;
                            let py = y as i64 + row as i64 * s + dy;
                            if px < 0 || py < 0 || px >= w || py >= h {
                                continue;
                            }
                            let p = out.get_pixel_mut(px as u32, py as u32);
                            for c in 0..3 {
                                p.0[c] =
                                    ((color[c] as u32 * a + p.0[c] as u32 * (255 - a)) / 255) as u8;
                            }
                            p.0[3] = p.0[3].max(color[3]);
                        }
                    }
                }
            }
        }
        Ok(self.derived(out))
    }

    /// This image with metadata `key` = `value` (replacing an earlier value).
    pub fn with_metadata(&self, key: &str, value: &str) -> Result<Self, ImageOpError> {
        if key.is_empty() || key.len() > 79 || value.len() > 64 << 10 {
            return Err(ImageOpError::Invalid(
                "metadata keys are 1-79 bytes and values at most 64 KiB".into(),
            ));
        }
        let mut out = self.clone();
        out.metadata.retain(|(k, _)| k != key);
        out.metadata.push((key.to_owned(), value.to_owned()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> PluginImage {
        PluginImage::new(RgbaImage::from_fn(w, h, |x, y| {
            image::Rgba([(x * 255 / w) as u8, (y * 255 / h) as u8, 0, 255])
        }))
    }

    #[test]
    fn png_round_trip_keeps_pixels_and_metadata() {
        let img = gradient(17, 9).with_metadata("author", "easel").unwrap();
        let png = img.encode(Format::Png).unwrap();
        let back = PluginImage::decode(&png, 1 << 20).unwrap();
        assert_eq!(back.pixels.as_raw(), img.pixels.as_raw());
        let text = String::from_utf8_lossy(&png);
        assert!(
            text.contains("author") && text.contains("easel"),
            "iTXt chunk written"
        );
    }

    #[test]
    fn contain_pads_with_background_and_keeps_aspect() {
        let img = PluginImage::filled(200, 100, [255, 0, 0, 255]).unwrap();
        let out = img
            .resize(100, 100, Fit::Contain, Some([255, 255, 255, 255]))
            .unwrap();
        assert_eq!((out.width(), out.height()), (100, 100));
        assert_eq!(
            out.pixels.get_pixel(50, 5).0,
            [255, 255, 255, 255],
            "padding"
        );
        assert_eq!(out.pixels.get_pixel(50, 50).0, [255, 0, 0, 255], "content");
        let cover = img.resize(100, 100, Fit::Cover, None).unwrap();
        assert_eq!(
            cover.pixels.get_pixel(50, 5).0,
            [255, 0, 0, 255],
            "cover has no padding"
        );
    }

    #[test]
    fn crop_and_composite_place_pixels_exactly() {
        let img = gradient(32, 32);
        let c = img.crop(4, 6, 8, 8).unwrap();
        assert_eq!(c.pixels.get_pixel(0, 0), img.pixels.get_pixel(4, 6));
        assert!(img.crop(30, 0, 8, 8).is_err());
        let dot = PluginImage::filled(2, 2, [0, 0, 255, 255]).unwrap();
        let out = img.composite(&dot, 3, 3, 1.0).unwrap();
        assert_eq!(out.pixels.get_pixel(4, 4).0, [0, 0, 255, 255]);
        assert_eq!(out.pixels.get_pixel(5, 5), img.pixels.get_pixel(5, 5));
        let half = img.composite(&dot, 3, 3, 0.5).unwrap();
        let p = half.pixels.get_pixel(3, 3).0;
        let base = img.pixels.get_pixel(3, 3).0;
        assert!(
            (p[2] as i32 - (base[2] as i32 + 255) / 2).abs() <= 1,
            "{p:?} vs {base:?}"
        );
    }

    #[test]
    fn draw_text_marks_pixels_inside_the_glyph_box_only() {
        let img = PluginImage::filled(64, 32, [0, 0, 0, 255]).unwrap();
        let out = img.draw_text("H", 8, 8, 2, [255, 255, 255, 255]).unwrap();
        let lit: Vec<(u32, u32)> = out
            .pixels
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] == 255)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert!(lit.len() > 20, "an H at scale 2 lights many pixels");
        assert!(
            lit.iter()
                .all(|&(x, y)| (8..24).contains(&x) && (8..24).contains(&y))
        );
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        assert!(PluginImage::filled(0, 5, [0; 4]).is_err());
        assert!(PluginImage::filled(MAX_DIMENSION + 1, 5, [0; 4]).is_err());
        assert!(PluginImage::from_rgba(2, 2, vec![0; 15]).is_err());
        assert_eq!(
            PluginImage::decode(b"nope", 1 << 20).unwrap_err().code(),
            "decode_error"
        );
    }
}
