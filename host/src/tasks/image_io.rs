//! Image decoding under limits (dimensions, pixels, memory, time) and
//! encoding, shared by every task that reads or writes images.

use std::io::Cursor;
use std::time::Duration;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

/// Limits applied to every input image.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    pub max_pixels: u64,
    pub max_dimension: u32,
    pub decode_timeout: Duration,
}

/// Why an image was refused; `code` is the API error code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ImageError {
    pub code: &'static str,
    pub message: String,
}

fn image_err(code: &'static str, message: impl Into<String>) -> ImageError {
    ImageError {
        code,
        message: message.into(),
    }
}

/// Format and size read from the header only (cheap; used at submit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

pub fn content_type(format: ImageFormat) -> &'static str {
    format.to_mime_type()
}

fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, ImageError> {
    let r = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| image_err("invalid_image", format!("could not read the image: {e}")))?;
    if r.format().is_none() {
        return Err(image_err(
            "unsupported_image_format",
            "not an image in a supported format (png, jpeg, webp, gif, bmp, tiff, ...)",
        ));
    }
    Ok(r)
}

fn check_size(width: u32, height: u32, limits: &ImageLimits) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(image_err("invalid_image", "the image has no pixels"));
    }
    if width > limits.max_dimension || height > limits.max_dimension {
        return Err(image_err(
            "image_too_large",
            format!(
                "image is {width}x{height}; the largest side allowed is {}",
                limits.max_dimension
            ),
        ));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(image_err(
            "image_too_large",
            format!(
                "image is {width}x{height} = {} pixels; at most {} allowed",
                u64::from(width) * u64::from(height),
                limits.max_pixels
            ),
        ));
    }
    Ok(())
}

/// Reads the header and checks the size limits without decoding pixels.
pub fn probe(bytes: &[u8], limits: &ImageLimits) -> Result<Probe, ImageError> {
    let r = reader(bytes)?;
    let format = r.format().expect("checked by reader()");
    let (width, height) = r.into_dimensions().map_err(|e| {
        image_err(
            "invalid_image",
            format!("could not read the image header: {e}"),
        )
    })?;
    check_size(width, height, limits)?;
    Ok(Probe {
        format,
        width,
        height,
    })
}

/// A decoded image with what a converter may want to keep.
pub struct Decoded {
    pub image: DynamicImage,
    pub format: ImageFormat,
    pub orientation: Orientation,
    pub icc_profile: Option<Vec<u8>>,
    pub exif: Option<Vec<u8>>,
}

/// Decodes on a helper thread and gives up after `limits.decode_timeout`
/// (the thread finishes in the background; its result is dropped).
pub fn decode(bytes: bytes::Bytes, limits: &ImageLimits) -> Result<Decoded, ImageError> {
    probe(&bytes, limits)?;
    let lim = *limits;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("easel-decode".into())
        .spawn(move || {
            let _ = tx.send(decode_now(&bytes, &lim));
        })
        .map_err(|e| image_err("internal", format!("could not start a decoder thread: {e}")))?;
    match rx.recv_timeout(limits.decode_timeout) {
        Ok(r) => r,
        Err(_) => Err(image_err(
            "decode_timeout",
            format!(
                "the image took longer than {} ms to decode",
                limits.decode_timeout.as_millis()
            ),
        )),
    }
}

fn decode_now(bytes: &[u8], limits: &ImageLimits) -> Result<Decoded, ImageError> {
    let mut r = reader(bytes)?;
    let format = r.format().expect("checked by reader()");
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_dimension);
    l.max_image_height = Some(limits.max_dimension);
    // Decoded RGBA f32 is the largest layout a decoder may allocate.
    l.max_alloc = Some(limits.max_pixels.saturating_mul(16).max(1 << 20));
    r.limits(l);
    let bad = |e: image::ImageError| match e {
        image::ImageError::Limits(e) => image_err("image_too_large", e.to_string()),
        e => image_err("invalid_image", format!("could not decode the image: {e}")),
    };
    let mut dec = r.into_decoder().map_err(bad)?;
    let orientation = dec.orientation().unwrap_or(Orientation::NoTransforms);
    let icc_profile = dec.icc_profile().ok().flatten();
    let exif = dec.exif_metadata().ok().flatten();
    let image = DynamicImage::from_decoder(dec).map_err(bad)?;
    Ok(Decoded {
        image,
        format,
        orientation,
        icc_profile,
        exif,
    })
}

/// Output formats tasks may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    Png,
    Jpeg,
    /// Lossless (the `image` crate's WebP encoder has no lossy mode).
    Webp,
}

impl OutFormat {
    pub fn parse(s: &str) -> Option<OutFormat> {
        match s {
            "png" => Some(OutFormat::Png),
            "jpeg" | "jpg" => Some(OutFormat::Jpeg),
            "webp" => Some(OutFormat::Webp),
            _ => None,
        }
    }
    pub fn from_input(f: ImageFormat) -> OutFormat {
        match f {
            ImageFormat::Jpeg => OutFormat::Jpeg,
            ImageFormat::WebP => OutFormat::Webp,
            _ => OutFormat::Png,
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            OutFormat::Png => "image/png",
            OutFormat::Jpeg => "image/jpeg",
            OutFormat::Webp => "image/webp",
        }
    }
}

/// Metadata to write into the output.
#[derive(Default)]
pub struct Metadata {
    pub icc_profile: Option<Vec<u8>>,
    pub exif: Option<Vec<u8>>,
}

/// Encodes `image`. JPEG has no alpha, so callers flatten first; this
/// converts whatever remains to RGB8.
pub fn encode(
    image: &DynamicImage,
    format: OutFormat,
    quality: u8,
    meta: Metadata,
) -> Result<Vec<u8>, ImageError> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    let fail = |e: image::ImageError| {
        image_err("encode_failed", format!("could not encode the output: {e}"))
    };
    fn add_meta(enc: &mut impl ImageEncoder, meta: Metadata) {
        // Formats that cannot carry a kind of metadata drop it silently;
        // stripping is the default anyway.
        if let Some(icc) = meta.icc_profile {
            let _ = enc.set_icc_profile(icc);
        }
        if let Some(exif) = meta.exif {
            let _ = enc.set_exif_metadata(exif);
        }
    }
    match format {
        OutFormat::Png => {
            let mut enc = image::codecs::png::PngEncoder::new(&mut out);
            add_meta(&mut enc, meta);
            image.write_with_encoder(enc).map_err(fail)?;
        }
        OutFormat::Jpeg => {
            let rgb = DynamicImage::ImageRgb8(image.to_rgb8());
            let mut enc =
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100));
            add_meta(&mut enc, meta);
            rgb.write_with_encoder(enc).map_err(fail)?;
        }
        OutFormat::Webp => {
            let img = match image {
                DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => image.clone(),
                i if i.color().has_alpha() => DynamicImage::ImageRgba8(i.to_rgba8()),
                i => DynamicImage::ImageRgb8(i.to_rgb8()),
            };
            let mut enc = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
            add_meta(&mut enc, meta);
            img.write_with_encoder(enc).map_err(fail)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ImageLimits {
        ImageLimits {
            max_pixels: 10_000,
            max_dimension: 200,
            decode_timeout: Duration::from_secs(5),
        }
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        encode(
            &DynamicImage::new_rgb8(w, h),
            OutFormat::Png,
            90,
            Metadata::default(),
        )
        .unwrap()
    }

    #[test]
    fn probe_checks_limits() {
        assert_eq!(probe(&png(50, 40), &limits()).unwrap().width, 50);
        assert_eq!(
            probe(&png(201, 1), &limits()).unwrap_err().code,
            "image_too_large"
        );
        assert_eq!(
            probe(&png(101, 100), &limits()).unwrap_err().code,
            "image_too_large"
        );
        assert_eq!(
            probe(b"hello world", &limits()).unwrap_err().code,
            "unsupported_image_format"
        );
        let mut truncated = png(10, 10);
        truncated.truncate(20);
        assert!(decode(truncated.into(), &limits()).is_err());
    }

    #[test]
    fn slow_decodes_time_out() {
        let big = encode(
            &DynamicImage::new_rgb8(3000, 3000),
            OutFormat::Png,
            90,
            Metadata::default(),
        )
        .unwrap();
        let lim = ImageLimits {
            max_pixels: 1 << 26,
            max_dimension: 4000,
            decode_timeout: Duration::from_micros(1),
        };
        assert_eq!(
            decode(big.clone().into(), &lim).err().unwrap().code,
            "decode_timeout"
        );
        let lim = ImageLimits {
            decode_timeout: Duration::from_secs(60),
            ..lim
        };
        assert_eq!(decode(big.into(), &lim).unwrap().image.width(), 3000);
    }

    #[test]
    fn round_trips_every_format() {
        let img = DynamicImage::new_rgba8(8, 6);
        for f in [OutFormat::Png, OutFormat::Jpeg, OutFormat::Webp] {
            let bytes = encode(&img, f, 80, Metadata::default()).unwrap();
            let d = decode(bytes.into(), &limits()).unwrap();
            assert_eq!((d.image.width(), d.image.height()), (8, 6));
            assert_eq!(OutFormat::from_input(d.format), f);
        }
    }
}
