//! Image decoding and encoding at the edges: PNG (8/16-bit, gray, gray+alpha,
//! RGB, RGBA), JPEG (EXIF orientation applied) and WebP, with explicit size
//! limits checked from the header before any pixel buffer is allocated.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::error::{ImageError, LimitErrorKind};
use image::{DynamicImage, ImageDecoder, ImageReader};

pub use image::DynamicImage as Image;

#[derive(Debug, thiserror::Error)]
pub enum ImageIoError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unsupported image format{}; supported: PNG, JPEG, WebP", .detected.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Unsupported { detected: Option<String> },
    #[error("truncated {format} file: the data ends before the image is complete")]
    Truncated { format: &'static str },
    #[error("corrupt {format} file: {msg}")]
    Corrupt { format: &'static str, msg: String },
    #[error("image is {width}x{height}, over the {limit} limit")]
    TooLarge {
        width: u32,
        height: u32,
        limit: String,
    },
    #[error("cannot encode {format}: {msg}")]
    Encode { format: &'static str, msg: String },
}

/// Largest image accepted on input. Checked against the header, so a small
/// file declaring a huge image (a decompression bomb) is rejected before
/// decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    pub max_width: u32,
    pub max_height: u32,
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_width: 16384,
            max_height: 16384,
            max_pixels: 64 * 1024 * 1024,
        }
    }
}

impl ImageLimits {
    pub fn check(&self, width: u32, height: u32) -> Result<(), ImageIoError> {
        let too_large = |limit: String| {
            Err(ImageIoError::TooLarge {
                width,
                height,
                limit,
            })
        };
        if width > self.max_width {
            return too_large(format!("maximum width of {} px", self.max_width));
        }
        if height > self.max_height {
            return too_large(format!("maximum height of {} px", self.max_height));
        }
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return too_large(format!("maximum of {} pixels", self.max_pixels));
        }
        Ok(())
    }
}

/// Formats we read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    WebP,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Png => "PNG",
            Format::Jpeg => "JPEG",
            Format::WebP => "WebP",
        }
    }

    /// From a file extension (`png`, `jpg`/`jpeg`, `webp`, any case).
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "png" => Some(Format::Png),
            "jpg" | "jpeg" => Some(Format::Jpeg),
            "webp" => Some(Format::WebP),
            _ => None,
        }
    }

    fn from_image(f: image::ImageFormat) -> Option<Format> {
        match f {
            image::ImageFormat::Png => Some(Format::Png),
            image::ImageFormat::Jpeg => Some(Format::Jpeg),
            image::ImageFormat::WebP => Some(Format::WebP),
            _ => None,
        }
    }
}

/// Output settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    pub format: Format,
    /// JPEG quality 1..=100 (other formats are lossless).
    pub jpeg_quality: u8,
}

impl EncodeOptions {
    pub fn new(format: Format) -> Self {
        EncodeOptions {
            format,
            jpeg_quality: 92,
        }
    }
}

fn map_decode_error(e: ImageError, format: Format) -> ImageIoError {
    let name = format.name();
    match e {
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ImageIoError::Truncated { format: name }
        }
        ImageError::Limits(l) => match l.kind() {
            LimitErrorKind::DimensionError | LimitErrorKind::InsufficientMemory => {
                ImageIoError::Corrupt {
                    format: name,
                    msg: format!("decoder limit exceeded: {l}"),
                }
            }
            _ => ImageIoError::Corrupt {
                format: name,
                msg: l.to_string(),
            },
        },
        ImageError::Unsupported(u) => ImageIoError::Corrupt {
            format: name,
            msg: format!("unsupported feature: {u}"),
        },
        other => {
            let msg = other.to_string();
            // The PNG and WebP decoders report a short read as a format error.
            let lower = msg.to_ascii_lowercase();
            if lower.contains("eof")
                || lower.contains("end of file")
                || lower.contains("unexpected end")
                || lower.contains("truncated")
            {
                ImageIoError::Truncated { format: name }
            } else {
                ImageIoError::Corrupt { format: name, msg }
            }
        }
    }
}

/// Decodes PNG, JPEG or WebP bytes (format sniffed from the content).
pub fn decode(bytes: &[u8], limits: &ImageLimits) -> Result<DynamicImage, ImageIoError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageIoError::Corrupt {
            format: "image",
            msg: e.to_string(),
        })?;
    let Some(image_format) = reader.format() else {
        return Err(ImageIoError::Unsupported { detected: None });
    };
    let format = Format::from_image(image_format).ok_or_else(|| ImageIoError::Unsupported {
        detected: Some(format!("{image_format:?}")),
    })?;
    // Header only: check our limits before any decoder sizes a buffer.
    let mut probe = ImageReader::with_format(Cursor::new(bytes), image_format);
    probe.no_limits();
    let (w, h) = probe
        .into_dimensions()
        .map_err(|e| map_decode_error(e, format))?;
    limits.check(w, h)?;
    // The image crate's own limits back ours up inside the decoders; the
    // allocation bound covers the largest accepted image at 16-bit RGBA.
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_width);
    l.max_image_height = Some(limits.max_height);
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(l);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| map_decode_error(e, format))?;
    let orientation = decoder
        .orientation()
        .map_err(|e| map_decode_error(e, format))?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| map_decode_error(e, format))?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Reads and decodes an image file.
pub fn read(path: &Path, limits: &ImageLimits) -> Result<DynamicImage, ImageIoError> {
    let bytes = std::fs::read(path).map_err(|source| ImageIoError::Read {
        path: path.into(),
        source,
    })?;
    decode(&bytes, limits)
}

/// Encodes an image. PNG keeps 16-bit depth; JPEG and WebP are 8-bit (JPEG
/// drops alpha; WebP is lossless).
pub fn encode(img: &DynamicImage, opts: EncodeOptions) -> Result<Vec<u8>, ImageIoError> {
    let mut out = Vec::new();
    let name = opts.format.name();
    let enc_err = |e: ImageError| ImageIoError::Encode {
        format: name,
        msg: e.to_string(),
    };
    match opts.format {
        Format::Png => {
            let img = match img {
                DynamicImage::ImageLuma8(_)
                | DynamicImage::ImageLumaA8(_)
                | DynamicImage::ImageRgb8(_)
                | DynamicImage::ImageRgba8(_)
                | DynamicImage::ImageLuma16(_)
                | DynamicImage::ImageLumaA16(_)
                | DynamicImage::ImageRgb16(_)
                | DynamicImage::ImageRgba16(_) => img.clone(),
                // Float images: PNG has no float, keep the precision in 16 bits.
                other if other.color().has_alpha() => DynamicImage::ImageRgba16(other.to_rgba16()),
                other => DynamicImage::ImageRgb16(other.to_rgb16()),
            };
            img.write_with_encoder(PngEncoder::new(&mut out))
                .map_err(enc_err)?;
        }
        Format::Jpeg => {
            if !(1..=100).contains(&opts.jpeg_quality) {
                return Err(ImageIoError::Encode {
                    format: name,
                    msg: format!("quality {} is outside 1..=100", opts.jpeg_quality),
                });
            }
            let img = if img.color().has_color() {
                DynamicImage::ImageRgb8(img.to_rgb8())
            } else {
                DynamicImage::ImageLuma8(img.to_luma8())
            };
            img.write_with_encoder(JpegEncoder::new_with_quality(&mut out, opts.jpeg_quality))
                .map_err(enc_err)?;
        }
        Format::WebP => {
            let img = if img.color().has_alpha() {
                DynamicImage::ImageRgba8(img.to_rgba8())
            } else {
                DynamicImage::ImageRgb8(img.to_rgb8())
            };
            img.write_with_encoder(WebPEncoder::new_lossless(&mut out))
                .map_err(enc_err)?;
        }
    }
    Ok(out)
}

/// Encodes and writes an image file.
pub fn write(path: &Path, img: &DynamicImage, opts: EncodeOptions) -> Result<(), ImageIoError> {
    let bytes = encode(img, opts)?;
    std::fs::write(path, bytes).map_err(|source| ImageIoError::Write {
        path: path.into(),
        source,
    })
}

/// Resizes to exactly `width` x `height` with a Lanczos3 filter (for
/// `--outscale` after the model's fixed scale). Keeps the pixel type.
pub fn resize(img: &DynamicImage, width: u32, height: u32) -> DynamicImage {
    if img.width() == width && img.height() == height {
        return img.clone();
    }
    img.resize_exact(width, height, image::imageops::FilterType::Lanczos3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    }

    /// A PNG header declaring `w`x`h` RGB8, with a valid IHDR CRC and a tiny IDAT.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut out, b"IEND", &[]);
        out
    }

    fn gradient_rgb8(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| {
            Rgb([(x * 7) as u8, (y * 11) as u8, ((x + y) * 3) as u8])
        }))
    }

    #[test]
    fn decompression_bomb_header_is_rejected_before_decoding() {
        let bomb = png_header(100_000, 100_000);
        assert!(bomb.len() < 100);
        match decode(&bomb, &ImageLimits::default()) {
            Err(ImageIoError::TooLarge {
                width: 100_000,
                height: 100_000,
                limit,
            }) => {
                assert!(limit.contains("maximum width of 16384"), "{limit}")
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let pixels = ImageLimits {
            max_width: 200_000,
            max_height: 200_000,
            max_pixels: 1 << 26,
        };
        let err = decode(&bomb, &pixels).unwrap_err().to_string();
        assert_eq!(
            err,
            "image is 100000x100000, over the maximum of 67108864 pixels limit"
        );
    }

    #[test]
    fn truncated_png_is_a_clear_error() {
        let full = encode(&gradient_rgb8(64, 64), EncodeOptions::new(Format::Png)).unwrap();
        for cut in [full.len() / 2, full.len() - 13, 40] {
            match decode(&full[..cut], &ImageLimits::default()) {
                Err(ImageIoError::Truncated { format: "PNG" }) => {}
                other => panic!("cut at {cut}: expected Truncated, got {other:?}"),
            }
        }
    }

    #[test]
    fn unsupported_formats_are_named() {
        let mut bmp = Vec::new();
        gradient_rgb8(4, 4)
            .write_to(&mut Cursor::new(&mut bmp), image::ImageFormat::Bmp)
            .unwrap();
        assert!(
            matches!(decode(&bmp, &ImageLimits::default()), Err(ImageIoError::Unsupported { detected: Some(d) }) if d == "Bmp")
        );
        assert!(matches!(
            decode(b"hello world", &ImageLimits::default()),
            Err(ImageIoError::Unsupported { detected: None })
        ));
    }

    #[test]
    fn png_round_trips_every_layout_and_depth() {
        let (w, h) = (5, 3);
        let imgs = [
            DynamicImage::ImageLuma8(ImageBuffer::from_fn(w, h, |x, y| {
                Luma([(x * 40 + y) as u8])
            })),
            DynamicImage::ImageLumaA8(ImageBuffer::from_fn(w, h, |x, y| {
                LumaA([(x * 40) as u8, (y * 90) as u8])
            })),
            gradient_rgb8(w, h),
            DynamicImage::ImageRgba8(ImageBuffer::from_fn(w, h, |x, y| {
                Rgba([x as u8, y as u8, 7, (x * 50) as u8])
            })),
            DynamicImage::ImageLuma16(ImageBuffer::from_fn(w, h, |x, y| {
                Luma([(x * 13000 + y) as u16])
            })),
            DynamicImage::ImageLumaA16(ImageBuffer::from_fn(w, h, |x, y| {
                LumaA([(x * 13000) as u16, (y * 30001) as u16])
            })),
            DynamicImage::ImageRgb16(ImageBuffer::from_fn(w, h, |x, y| {
                Rgb([(x * 12345) as u16, (y * 777) as u16, 65535])
            })),
            DynamicImage::ImageRgba16(ImageBuffer::from_fn(w, h, |x, y| {
                Rgba([x as u16, (y * 20000) as u16, 1, 65535])
            })),
        ];
        for img in imgs {
            let bytes = encode(&img, EncodeOptions::new(Format::Png)).unwrap();
            let back = decode(&bytes, &ImageLimits::default()).unwrap();
            assert_eq!(back, img, "{:?}", img.color());
        }
    }

    #[test]
    fn jpeg_and_webp_round_trip() {
        let img = gradient_rgb8(32, 24);
        let back = decode(
            &encode(&img, EncodeOptions::new(Format::WebP)).unwrap(),
            &ImageLimits::default(),
        )
        .unwrap();
        assert_eq!(back.to_rgb8(), img.to_rgb8(), "lossless WebP");
        let jpg = encode(
            &img,
            EncodeOptions {
                format: Format::Jpeg,
                jpeg_quality: 95,
            },
        )
        .unwrap();
        let back = decode(&jpg, &ImageLimits::default()).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (32, 24));
        let max_err = back
            .as_raw()
            .iter()
            .zip(img.to_rgb8().as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(max_err <= 24, "JPEG q95 max error {max_err}");
        let bad = EncodeOptions {
            format: Format::Jpeg,
            jpeg_quality: 0,
        };
        assert!(matches!(
            encode(&img, bad),
            Err(ImageIoError::Encode { .. })
        ));
    }

    /// Inserts an APP1 EXIF segment with the given orientation after SOI.
    fn with_exif_orientation(jpg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
        tiff.extend(1u16.to_be_bytes()); // one IFD entry
        tiff.extend(0x0112u16.to_be_bytes()); // Orientation
        tiff.extend(3u16.to_be_bytes()); // SHORT
        tiff.extend(1u32.to_be_bytes());
        tiff.extend(orientation.to_be_bytes());
        tiff.extend([0, 0]);
        tiff.extend(0u32.to_be_bytes()); // no next IFD
        let mut app1 = b"Exif\x00\x00".to_vec();
        app1.extend(tiff);
        let mut out = jpg[..2].to_vec();
        out.extend([0xff, 0xe1]);
        out.extend(((app1.len() + 2) as u16).to_be_bytes());
        out.extend(app1);
        out.extend(&jpg[2..]);
        out
    }

    #[test]
    fn jpeg_exif_orientation_is_applied() {
        let img = gradient_rgb8(40, 16);
        let jpg = encode(&img, EncodeOptions::new(Format::Jpeg)).unwrap();
        let plain = decode(&jpg, &ImageLimits::default()).unwrap();
        assert_eq!((plain.width(), plain.height()), (40, 16));
        // Orientation 6: the stored image must be rotated 90° clockwise to display.
        let rotated = decode(&with_exif_orientation(&jpg, 6), &ImageLimits::default()).unwrap();
        assert_eq!((rotated.width(), rotated.height()), (16, 40));
        assert_eq!(rotated.to_rgb8(), plain.rotate90().to_rgb8());
    }

    #[test]
    fn resize_uses_the_requested_size_and_keeps_depth() {
        let img =
            DynamicImage::ImageRgb16(ImageBuffer::from_pixel(8, 8, Rgb([1000u16, 2000, 3000])));
        let r = resize(&img, 13, 5);
        assert_eq!(
            (r.width(), r.height(), r.color()),
            (13, 5, image::ColorType::Rgb16)
        );
        // A flat image stays flat through a normalised filter.
        assert!(r.to_rgb16().pixels().all(|p| p.0 == [1000, 2000, 3000]));
    }
}
