//! ONNX import: the tiny U²-Net exported by tests/fixtures/gen/rsu_fixtures.py
//! (TorchScript exporter, BatchNorm folded into the convs by constant
//! folding, anonymous `onnx::Conv_*` initializer names) must import to the
//! PyTorch state dict's tensors under their PyTorch names — folded with the
//! state dict's own BatchNorm statistics — and the imported weights must
//! run to the PyTorch mask.

use std::collections::BTreeMap;
use std::path::PathBuf;

use easel_host::import::onnx::import_onnx;
use easel_host::models::rsu::RsuModel;
use easel_host::models::rsu::rsu::{BN_EPS, fold_batch_norm};
use easel_host::weights::Weights;
use easel_kernels::testing::test_gpu;
use easel_kernels::{DType, Tensor};
use easel_tests::npy;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/rsu")
        .join(name)
}

/// The state dict with each `*.bn_s1` folded into its `*.conv_s1`.
fn folded_state_dict() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let w = Weights::open(&fixture("u2net-tiny.safetensors")).unwrap();
    let mut out = BTreeMap::new();
    for name in w.index().keys() {
        if name.contains(".bn_s1.") {
            continue;
        }
        let (shape, mut v) = w.f32(name).unwrap();
        if let Some(prefix) = name.strip_suffix(".conv_s1.weight") {
            let bn = |p: &str| w.f32(&format!("{prefix}.bn_s1.{p}")).unwrap().1;
            let (mut b, _) = (w.f32(&format!("{prefix}.conv_s1.bias")).unwrap().1, ());
            fold_batch_norm(
                &mut v,
                &mut b,
                &bn("weight"),
                &bn("bias"),
                &bn("running_mean"),
                &bn("running_var"),
                BN_EPS,
            );
            out.insert(format!("{prefix}.conv_s1.bias"), (vec![b.len()], b));
        } else if name.ends_with(".conv_s1.bias") {
            continue;
        }
        out.insert(name.clone(), (shape, v));
    }
    out
}

#[test]
fn onnx_initializers_map_to_the_pytorch_names_and_values() {
    let imported = import_onnx(&fixture("u2net-tiny.onnx")).unwrap();
    let want = folded_state_dict();
    let got: BTreeMap<_, _> = imported.into_iter().map(|(n, s, v)| (n, (s, v))).collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    let mut worst = 0.0f32;
    for (name, (shape, v)) in &want {
        let (gs, gv) = &got[name];
        assert_eq!(gs, shape, "{name}");
        for (a, b) in gv.iter().zip(v) {
            let err = (a - b).abs() / b.abs().max(1.0);
            assert!(err <= 1e-5, "{name}: {a} vs {b}");
            worst = worst.max(err);
        }
    }
    eprintln!(
        "{} tensors, worst relative difference {worst:e}",
        want.len()
    );
}

#[test]
fn imported_onnx_weights_reproduce_the_pytorch_mask() {
    let Some(gpu) = test_gpu() else { return };
    let tensors = import_onnx(&fixture("u2net-tiny.onnx")).unwrap();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let path = easel_tests::scratch::dir("onnx-import").join("u2net-tiny.safetensors");
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    let w = Weights::open(&path).unwrap();
    let model = RsuModel::load(&gpu, &w, DType::F32).unwrap();
    std::fs::remove_file(&path).ok();
    let (xs, x) = npy::read_f32(&fixture("u2net-tiny.input.npy")).unwrap();
    let (_, want) = npy::read_f32(&fixture("u2net-tiny.output.npy")).unwrap();
    let y = model
        .forward(&Tensor::from_f32(&gpu, &xs, &x, DType::F32).unwrap())
        .unwrap();
    let got = y.to_f32_vec().unwrap();
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max <= 1e-3, "max abs error {max}");
}

#[test]
fn models_import_installs_an_onnx_file_under_pytorch_names() {
    let dir = easel_tests::scratch::dir("onnx-models");
    let opts = easel_host::import::ImportOptions {
        name: Some("u2net-tiny".into()),
        ..Default::default()
    };
    let imported = easel_host::import::import(&fixture("u2net-tiny.onnx"), &dir, &opts).unwrap();
    let installed = Weights::open(&imported.entry.weights_path).unwrap();
    let want = import_onnx(&fixture("u2net-tiny.onnx")).unwrap();
    assert_eq!(installed.index().len(), want.len());
    for (name, shape, values) in &want {
        let (got_shape, got) = installed.f32(name).unwrap();
        assert_eq!(&got_shape, shape, "{name}");
        assert_eq!(&got, values, "{name}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
