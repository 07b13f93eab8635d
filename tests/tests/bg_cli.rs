//! `easel run remove-background` / `replace-background` end to end on
//! files: output sizes for odd, tiny and very wide inputs, grayscale and
//! RGBA inputs, EXIF-rotated JPEGs, limits, and the interface others rely
//! on (`--models-dir ../shared/models --model isnet-dis --mask-only` writes
//! a single-channel mask at the input's size).
//!
//! Most cases use the tiny U²-Net fixture as the model (fast); what is
//! checked is the pipeline around it, the real weights are checked by
//! isnet_parity.rs.

use std::path::{Path, PathBuf};

use clap::Parser;
use easel_host::cli::run_bg::{
    RemoveBackgroundArgs, ReplaceBackgroundArgs, remove_background, replace_background,
};
use easel_kernels::testing::test_gpu;
use image::{ColorType, DynamicImage, GrayImage, ImageEncoder, Rgb, RgbImage, RgbaImage};

#[derive(Parser)]
struct Remove {
    #[command(flatten)]
    a: RemoveBackgroundArgs,
}
#[derive(Parser)]
struct Replace {
    #[command(flatten)]
    a: ReplaceBackgroundArgs,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/rsu")
}

fn tmp(name: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| easel_tests::scratch::dir("bg-cli"))
        .join(name)
}

/// A test picture: a bright disc on a dark gradient.
fn picture(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - w as f32 / 2.0, y as f32 - h as f32 / 2.0);
        if dx * dx + dy * dy < (w.min(h) as f32 / 3.0).powi(2) {
            Rgb([230, 200, 40])
        } else {
            Rgb([(x * 60 / w.max(1)) as u8, 30, (y * 60 / h.max(1)) as u8])
        }
    })
}

fn remove(args: &[&str], models: &Path) -> anyhow::Result<()> {
    let mut argv = vec!["remove"];
    argv.extend_from_slice(args);
    remove_background(Remove::try_parse_from(argv)?.a, models)
}

fn replace(args: &[&str], models: &Path) -> anyhow::Result<()> {
    let mut argv = vec!["replace"];
    argv.extend_from_slice(args);
    replace_background(Replace::try_parse_from(argv)?.a, models)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn odd_tiny_and_wide_inputs_keep_their_size() {
    if test_gpu().is_none() {
        return;
    }
    for (w, h) in [(333, 517), (1, 1), (8000, 200)] {
        let input = tmp(&format!("in-{w}x{h}.png"));
        picture(w, h).save(&input).unwrap();
        let mask = tmp(&format!("mask-{w}x{h}.png"));
        remove(
            &[
                "--model",
                "u2net-tiny",
                "-i",
                s(&input),
                "-o",
                s(&mask),
                "--mask-only",
            ],
            &fixtures(),
        )
        .unwrap();
        let m = image::open(&mask).unwrap();
        assert_eq!(
            m.color(),
            ColorType::L8,
            "{w}x{h}: mask must be single-channel"
        );
        assert_eq!((m.width(), m.height()), (w, h));
        let cut = tmp(&format!("cut-{w}x{h}.webp"));
        remove(
            &[
                "--model",
                "u2net-tiny",
                "-i",
                s(&input),
                "-o",
                s(&cut),
                "--feather",
                "2",
            ],
            &fixtures(),
        )
        .unwrap();
        let c = image::open(&cut).unwrap();
        assert_eq!(c.color(), ColorType::Rgba8);
        assert_eq!((c.width(), c.height()), (w, h));
    }
}

#[test]
fn grayscale_and_rgba_inputs() {
    if test_gpu().is_none() {
        return;
    }
    let gray = tmp("gray.png");
    DynamicImage::ImageRgb8(picture(61, 47))
        .to_luma8()
        .save(&gray)
        .unwrap();
    let out = tmp("gray-out.jpg");
    replace(
        &[
            "--model",
            "u2net-tiny",
            "-i",
            s(&gray),
            "-o",
            s(&out),
            "--color",
            "#00ff00",
        ],
        &fixtures(),
    )
    .unwrap();
    let o = image::open(&out).unwrap();
    assert_eq!(
        (o.width(), o.height(), o.color()),
        (61, 47, ColorType::Rgb8)
    );

    // An RGBA input whose left half is fully transparent: the cutout keeps
    // it transparent whatever the model says.
    let rgba = tmp("rgba.png");
    let src = picture(50, 30);
    RgbaImage::from_fn(50, 30, |x, y| {
        let p = src.get_pixel(x, y);
        image::Rgba([p[0], p[1], p[2], if x < 25 { 0 } else { 255 }])
    })
    .save(&rgba)
    .unwrap();
    let cut = tmp("rgba-cut.png");
    remove(
        &["--model", "u2net-tiny", "-i", s(&rgba), "-o", s(&cut)],
        &fixtures(),
    )
    .unwrap();
    let c = image::open(&cut).unwrap().to_rgba8();
    assert_eq!(c.dimensions(), (50, 30));
    assert!((0..30).all(|y| (0..25).all(|x| c.get_pixel(x, y)[3] == 0)));
}

/// Minimal TIFF/EXIF block with one Orientation tag.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend(8u32.to_le_bytes()); // IFD0 offset
    t.extend(1u16.to_le_bytes()); // one entry
    t.extend(0x0112u16.to_le_bytes()); // Orientation
    t.extend(3u16.to_le_bytes()); // SHORT
    t.extend(1u32.to_le_bytes()); // count
    t.extend(value.to_le_bytes());
    t.extend([0, 0]);
    t.extend(0u32.to_le_bytes()); // no next IFD
    t
}

#[test]
fn exif_rotated_jpeg_comes_out_upright() {
    if test_gpu().is_none() {
        return;
    }
    // Stored 40x20: left half red, right half blue. Orientation 6 = rotate
    // 90 degrees clockwise to display: 20x40, red on top, blue below.
    let stored = RgbImage::from_fn(40, 20, |x, _| {
        if x < 20 {
            Rgb([220, 0, 0])
        } else {
            Rgb([0, 0, 220])
        }
    });
    let path = tmp("rotated.jpg");
    let mut bytes = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
    enc.set_exif_metadata(exif_orientation(6)).unwrap();
    enc.write_image(stored.as_raw(), 40, 20, image::ExtendedColorType::Rgb8)
        .unwrap();
    std::fs::write(&path, bytes).unwrap();
    let out = tmp("rotated-out.png");
    replace(
        &[
            "--model",
            "u2net-tiny",
            "-i",
            s(&path),
            "-o",
            s(&out),
            "--blur",
            "0",
            "--no-decontaminate",
        ],
        &fixtures(),
    )
    .unwrap();
    // Blur 0 = the original as background: the composite is the image.
    let o = image::open(&out).unwrap().to_rgb8();
    assert_eq!(o.dimensions(), (20, 40));
    let top = o.get_pixel(10, 5);
    let bottom = o.get_pixel(10, 35);
    assert!(top[0] > 150 && top[2] < 80, "top {top:?}");
    assert!(bottom[2] > 150 && bottom[0] < 80, "bottom {bottom:?}");
}

#[test]
fn clear_errors_for_limits_models_and_formats() {
    let input = tmp("limit.png");
    picture(300, 200).save(&input).unwrap();
    let out = tmp("limit-out.png");
    let err = remove(
        &[
            "--model",
            "u2net-tiny",
            "-i",
            s(&input),
            "-o",
            s(&out),
            "--max-input-pixels",
            "50000",
        ],
        &fixtures(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("300x200"), "{err:#}");
    let err = remove(
        &["--model", "no-such-model", "-i", s(&input), "-o", s(&out)],
        &fixtures(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("not found"), "{err:#}");
    let err = remove(
        &[
            "--model",
            "u2net-tiny",
            "-i",
            s(&input),
            "-o",
            s(&out),
            "--threshold",
            "2",
        ],
        &fixtures(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("threshold"), "{err:#}");
    let bad = tmp("bad.png");
    std::fs::write(&bad, b"not an image").unwrap();
    let err = remove(
        &["--model", "u2net-tiny", "-i", s(&bad), "-o", s(&out)],
        &fixtures(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("decod"), "{err:#}");
    // replace-background needs exactly one background source.
    assert!(Replace::try_parse_from(["replace", "--model", "m", "-i", "a", "-o", "b"]).is_err());
    assert!(
        Replace::try_parse_from([
            "replace", "-i", "a", "-o", "b", "--color", "#fff", "--blur", "3"
        ])
        .is_err()
    );
    if test_gpu().is_some() {
        let jpg = tmp("cut.jpg");
        let err = remove(
            &["--model", "u2net-tiny", "-i", s(&input), "-o", s(&jpg)],
            &fixtures(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("alpha"), "{err:#}");
    }
}

/// The interface the other sessions rely on, with the real weights.
#[test]
fn isnet_dis_mask_only_writes_a_single_channel_mask_at_the_input_size() {
    if test_gpu().is_none() {
        return;
    }
    let models = easel_tests::shared_dir().join("models");
    let input = tmp("photo.png");
    picture(333, 517).save(&input).unwrap();
    let mask = tmp("photo-mask.png");
    // Through the real binary: this is the command line other sessions use.
    let out = std::process::Command::new(easel_tests::easel_bin())
        .args(["run", "remove-background", "--models-dir", s(&models)])
        .args([
            "--model",
            "isnet-dis",
            "--mask-only",
            "-i",
            s(&input),
            "-o",
            s(&mask),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "easel run remove-background failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = image::open(&mask).unwrap();
    assert_eq!(
        (m.width(), m.height(), m.color()),
        (333, 517, ColorType::L8)
    );
    // The disc is the salient object: its centre is foreground, a corner is not.
    let g: GrayImage = m.to_luma8();
    assert!(
        g.get_pixel(166, 258)[0] > 128,
        "centre {}",
        g.get_pixel(166, 258)[0]
    );
    assert!(
        g.get_pixel(2, 2)[0] < 128,
        "corner {}",
        g.get_pixel(2, 2)[0]
    );
}
