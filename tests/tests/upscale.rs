//! Real-ESRGAN on the kernels against PyTorch references (../shared).
//!
//! References are float32 PyTorch outputs (zero padding, whole image);
//! both sides are quantised as `floor(clamp(v, 0, 1) * 255 + 0.5)` and
//! compared by PSNR: >= 45 dB in f32, >= 40 dB in f16, and tiled vs whole
//! >= 50 dB.

use easel_host::models::esrgan::{ModelError, UpscaleModel};
use easel_host::models::registry::RegistryError;
use easel_host::upscale::{self, UpscaleError, UpscaleOptions};
use easel_host::weights::WeightError;
use easel_kernels::testing::test_gpu;
use easel_kernels::{DType, Gpu};
use easel_tests::{npy, psnr_u8, shared_dir, shared_file};

fn input() -> image::DynamicImage {
    image::open(shared_file("fixtures/upscale/input-32x32.png")).expect("decoding the fixture")
}

/// The reference `[3, H, W]` quantised to interleaved RGB8.
fn reference_rgb8(model: &str) -> Vec<u8> {
    let (shape, data) = npy::read_f32(&shared_file(&format!(
        "fixtures/upscale/{model}.zeropad.f32.npy"
    )))
    .expect("reading the reference .npy");
    let [c, h, w] = shape[..] else {
        panic!("reference shape {shape:?}")
    };
    let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5).floor() as u8;
    (0..h * w)
        .flat_map(|i| (0..c).map(move |ch| i + ch * h * w))
        .map(|i| q(data[i]))
        .collect()
}

fn load(gpu: &Gpu, name: &str, dtype: DType) -> UpscaleModel {
    upscale::load_model(gpu, &shared_dir().join("models"), name, dtype).expect("loading the model")
}

fn run(
    gpu: &Gpu,
    model: &UpscaleModel,
    img: &image::DynamicImage,
    tile: Option<usize>,
) -> image::DynamicImage {
    let opts = UpscaleOptions {
        tile,
        ..Default::default()
    };
    upscale::upscale(gpu, model, img, &opts, &mut |_, _| {}).expect("upscale")
}

fn check_against_reference(name: &str) {
    let Some(gpu) = test_gpu() else { return };
    let want = reference_rgb8(name);
    let mut dtypes = vec![(DType::F32, 45.0)];
    if gpu.caps().shader_f16 {
        dtypes.push((DType::F16, 40.0));
    }
    for (dtype, min_db) in dtypes {
        let model = load(&gpu, name, dtype);
        let out = run(&gpu, &model, &input(), Some(0));
        assert_eq!((out.width(), out.height()), (128, 128));
        let db = psnr_u8(out.as_rgb8().expect("RGB out").as_raw(), &want);
        eprintln!("{name} {dtype}: PSNR {db:.2} dB vs PyTorch f32 (min {min_db})");
        assert!(
            db >= min_db,
            "{name} {dtype}: PSNR {db:.2} dB < {min_db} dB"
        );
    }
}

#[test]
fn realesrgan_x4plus_matches_pytorch() {
    check_against_reference("realesrgan-x4plus");
}

#[test]
fn animevideov3_matches_pytorch() {
    check_against_reference("realesr-animevideov3-x4");
}

#[test]
fn tiled_matches_whole_image() {
    let Some(gpu) = test_gpu() else { return };
    // 64x64 so that 32-px tiles with their context are smaller than the image.
    let img = input().resize_exact(64, 64, image::imageops::FilterType::Lanczos3);
    for name in ["realesr-animevideov3-x4", "realesrgan-x4plus"] {
        let model = load(&gpu, name, DType::F32);
        let whole = run(&gpu, &model, &img, Some(0));
        let mut ticks = Vec::new();
        let opts = UpscaleOptions {
            tile: Some(32),
            ..Default::default()
        };
        let tiled = upscale::upscale(&gpu, &model, &img, &opts, &mut |d, t| ticks.push((d, t)))
            .expect("tiled");
        assert_eq!(
            ticks,
            [(1, 4), (2, 4), (3, 4), (4, 4)],
            "progress over 2x2 tiles"
        );
        let db = psnr_u8(
            tiled.as_rgb8().unwrap().as_raw(),
            whole.as_rgb8().unwrap().as_raw(),
        );
        eprintln!(
            "{name}: tiled (32 px, pad {}) vs whole PSNR {db:.2} dB",
            model.default_tile_pad()
        );
        assert!(db >= 50.0, "{name}: tiled vs whole PSNR {db:.2} dB < 50");
    }
}

#[test]
fn unknown_model_is_a_clear_error() {
    let Some(gpu) = test_gpu() else { return };
    let dir = shared_dir().join("models");
    match upscale::load_model(&gpu, &dir, "no-such-model", DType::F32) {
        Err(e @ UpscaleError::Registry(RegistryError::Unknown { .. })) => {
            let msg = e.to_string();
            assert!(
                msg.contains("no-such-model") && msg.contains("realesrgan-x4plus"),
                "{msg}"
            );
        }
        other => panic!("expected UnknownModel, got {other:?}"),
    }
    assert!(matches!(
        upscale::load_model(&gpu, &dir, "../models/realesrgan-x4plus", DType::F32),
        Err(UpscaleError::Registry(RegistryError::InvalidName { .. }))
    ));
}

/// Writes a tiny SRVGG (nf 4, one body conv, x2) whose `bad` tensor has
/// `bad_shape`; returns the models dir.
fn tiny_srvgg(dir: &std::path::Path, bad: &str, bad_shape: &[usize]) {
    let mut tensors: Vec<(String, Vec<usize>)> = vec![
        ("body.0.weight".into(), vec![4, 3, 3, 3]),
        ("body.0.bias".into(), vec![4]),
        ("body.1.weight".into(), vec![4]),
        ("body.2.weight".into(), vec![4, 4, 3, 3]),
        ("body.2.bias".into(), vec![4]),
        ("body.3.weight".into(), vec![4]),
        ("body.4.weight".into(), vec![12, 4, 3, 3]),
        ("body.4.bias".into(), vec![12]),
    ];
    for (name, shape) in &mut tensors {
        if name == bad {
            *shape = bad_shape.to_vec();
        }
    }
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s)| {
            let bytes = vec![0u8; s.iter().product::<usize>() * 4];
            (n, s, bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("tiny.safetensors"))
        .expect("writing safetensors");
}

#[test]
fn weights_with_a_wrong_shape_are_a_clear_error() {
    let Some(gpu) = test_gpu() else { return };
    let dir = easel_tests::scratch::dir("upscale-test");
    // A sane tiny model loads and runs (x2, 3 channels).
    tiny_srvgg(&dir, "", &[]);
    let model = upscale::load_model(&gpu, &dir, "tiny", DType::F32).expect("tiny model");
    assert_eq!((model.scale(), model.in_channels()), (2, 3));
    // conv 2's weight takes 5 input channels instead of 4.
    tiny_srvgg(&dir, "body.2.weight", &[4, 5, 3, 3]);
    match upscale::load_model(&gpu, &dir, "tiny", DType::F32) {
        Err(UpscaleError::Model(ModelError::Weights(e @ WeightError::Shape { .. }))) => {
            let msg = e.to_string();
            assert!(
                msg.contains("body.2.weight")
                    && msg.contains("[4, 5, 3, 3]")
                    && msg.contains("[4, 4, 3, 3]"),
                "{msg}"
            );
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    // A bias of the wrong length.
    tiny_srvgg(&dir, "body.4.bias", &[11]);
    assert!(matches!(
        upscale::load_model(&gpu, &dir, "tiny", DType::F32),
        Err(UpscaleError::Model(ModelError::Weights(
            WeightError::Shape { .. }
        )))
    ));
    // A last conv whose outputs are not 3 * scale^2.
    tiny_srvgg(&dir, "body.4.weight", &[10, 4, 3, 3]);
    match upscale::load_model(&gpu, &dir, "tiny", DType::F32) {
        Err(e @ UpscaleError::Model(ModelError::Inconsistent { .. })) => {
            assert!(e.to_string().contains("scale"), "{e}")
        }
        other => panic!("expected an architecture error, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn grey_rgba_and_16_bit_keep_their_format() {
    let Some(gpu) = test_gpu() else { return };
    let model = load(&gpu, "realesr-animevideov3-x4", DType::F32);
    let rgb = input();
    let rgb_out = run(&gpu, &model, &rgb, Some(0));

    // RGBA: colour as the RGB image; alpha through the model as grey.
    let mut rgba = rgb.to_rgba8();
    for (i, p) in rgba.pixels_mut().enumerate() {
        p.0[3] = (i % 256) as u8;
    }
    let out = run(
        &gpu,
        &model,
        &image::DynamicImage::ImageRgba8(rgba.clone()),
        Some(0),
    );
    let out = out.as_rgba8().expect("RGBA stays RGBA");
    let colour: Vec<u8> = out
        .pixels()
        .flat_map(|p| [p.0[0], p.0[1], p.0[2]])
        .collect();
    assert_eq!(
        colour,
        rgb_out.as_rgb8().unwrap().as_raw().as_slice(),
        "RGB of RGBA"
    );
    let alpha_img = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(32, 32, |x, y| {
        image::Luma([rgba.get_pixel(x, y).0[3]])
    }));
    let alpha_out = run(&gpu, &model, &alpha_img, Some(0));
    let alpha: Vec<u8> = out.pixels().map(|p| p.0[3]).collect();
    assert_eq!(
        alpha,
        alpha_out
            .as_luma8()
            .expect("grey stays grey")
            .as_raw()
            .as_slice(),
        "alpha as grey"
    );

    // 16-bit in, 16-bit out, agreeing with the 8-bit result within 8-bit rounding.
    let out16 = run(
        &gpu,
        &model,
        &image::DynamicImage::ImageRgb16(rgb.to_rgb16()),
        Some(0),
    );
    let out16 = out16.as_rgb16().expect("16-bit stays 16-bit");
    let as8: Vec<u8> = out16
        .as_raw()
        .iter()
        .map(|&v| ((v as f32 / 257.0) + 0.5).floor() as u8)
        .collect();
    let db = psnr_u8(&as8, rgb_out.as_rgb8().unwrap().as_raw());
    assert!(db >= 50.0, "16-bit vs 8-bit output PSNR {db:.2}");

    // outscale resizes the model output.
    let opts = UpscaleOptions {
        tile: Some(0),
        outscale: Some(2.5),
        ..Default::default()
    };
    let small = upscale::upscale(&gpu, &model, &rgb, &opts, &mut |_, _| {}).unwrap();
    assert_eq!((small.width(), small.height()), (80, 80));
}
