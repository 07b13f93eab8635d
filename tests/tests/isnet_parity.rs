//! IS-Net on the real weights against ONNX Runtime's mask of the same
//! input (`shared/fixtures/isnet`): mean absolute error <= 0.005 and IoU at
//! 0.5 >= 0.99 in f32; the f16 path's figures are printed and held to a
//! looser bound.

use easel_host::background::Segmenter;
use easel_kernels::DType;
use easel_kernels::testing::test_gpu;
use easel_tests::{npy, shared_dir};

fn compare(dtype: DType) -> (f64, f64) {
    let gpu = test_gpu().expect("checked by the caller");
    let shared = shared_dir();
    let seg = Segmenter::load(&gpu, &shared.join("models/isnet-dis.safetensors"), dtype)
        .expect("load IS-Net");
    let img = image::open(shared.join("fixtures/isnet/input-1024.png"))
        .expect("input-1024.png")
        .to_rgb8();
    let t = std::time::Instant::now();
    let mask = seg.predict(&gpu, &img).expect("predict");
    eprintln!("{dtype:?}: predicted in {:.2?}", t.elapsed());
    let (shape, want) =
        npy::read_f32(&shared.join("fixtures/isnet/mask.onnxruntime.f32.npy")).unwrap();
    assert_eq!(shape, [1024, 1024]);
    assert_eq!((mask.width, mask.height), (1024, 1024));
    let mae = mask
        .data
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs() as f64)
        .sum::<f64>()
        / want.len() as f64;
    let (mut inter, mut union) = (0u64, 0u64);
    for (a, b) in mask.data.iter().zip(&want) {
        let (x, y) = (*a >= 0.5, *b >= 0.5);
        inter += (x && y) as u64;
        union += (x || y) as u64;
    }
    let iou = inter as f64 / union.max(1) as f64;
    eprintln!("{dtype:?}: MAE {mae:.3e}, IoU@0.5 {iou:.6}");
    (mae, iou)
}

#[test]
fn isnet_f32_matches_onnxruntime() {
    if test_gpu().is_none() {
        return;
    }
    let (mae, iou) = compare(DType::F32);
    assert!(mae <= 0.005, "MAE {mae}");
    assert!(iou >= 0.99, "IoU {iou}");
}

#[test]
fn isnet_f16_stays_close_to_onnxruntime() {
    let Some(gpu) = test_gpu() else { return };
    if !gpu.caps().shader_f16 {
        eprintln!("no SHADER_F16 on this adapter: f16 path not run");
        return;
    }
    let (mae, iou) = compare(DType::F16);
    assert!(mae <= 0.02, "MAE {mae}");
    assert!(iou >= 0.97, "IoU {iou}");
}
