//! BiRefNet on a tiny random configuration against the upstream PyTorch
//! model (fixtures from tests/fixtures/gen/birefnet_fixture.py): the Swin
//! backbone outputs and the final mask, max abs error <= 1e-3 in f32; the
//! f16 figures are reported and held to a looser bound. The 128x96 input with
//! window 7 pads windows at every stage, shifts them in every stage's second
//! block, and gives an odd width at patch merging in the half-size pass; the
//! checkpoint carries separate BatchNorm tensors with random statistics and
//! random deformable offsets of about a pixel.

use std::collections::BTreeMap;
use std::path::PathBuf;

use easel_host::models::birefnet::{BiRefNet, BiRefNetConfig, BiRefNetError, is_birefnet};
use easel_host::weights::Weights;
use easel_kernels::testing::test_gpu;
use easel_kernels::{DType, Gpu, Tensor};
use easel_tests::npy;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/birefnet")
        .join(name)
}

fn max_abs(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
}

fn load(gpu: &Gpu, dtype: DType) -> (BiRefNet, Tensor) {
    let w = Weights::open(&fixture("birefnet-tiny.safetensors")).unwrap();
    assert!(is_birefnet(&w));
    let cfg = BiRefNetConfig::from_weights(&w).unwrap();
    assert_eq!(cfg.swin.window, 7);
    assert_eq!(cfg.swin.dims(), [8, 16, 32, 64]);
    assert_eq!(cfg.cxt_num, 3);
    let model = BiRefNet::load(gpu, &w, cfg, dtype).unwrap();
    let (xs, x) = npy::read_f32(&fixture("birefnet-tiny.input.npy")).unwrap();
    (model, Tensor::from_f32(gpu, &xs, &x, dtype).unwrap())
}

/// Max abs errors of the four backbone outputs and of the mask.
fn errors(dtype: DType) -> Option<([f32; 4], f32)> {
    let gpu = test_gpu()?;
    let (model, x) = load(&gpu, dtype);
    let feats = model.backbone().forward(&x).unwrap();
    let mut bb = [0.0; 4];
    for (i, f) in feats.iter().enumerate() {
        let (shape, want) =
            npy::read_f32(&fixture(&format!("birefnet-tiny.bb{}.npy", i + 1))).unwrap();
        assert_eq!(f.shape(), shape.as_slice(), "backbone stage {}", i + 1);
        bb[i] = max_abs(&f.to_f32_vec().unwrap(), &want);
    }
    let y = model.forward(&x).unwrap();
    let (ys, want) = npy::read_f32(&fixture("birefnet-tiny.output.npy")).unwrap();
    assert_eq!(y.shape(), ys.as_slice());
    let mask = max_abs(&y.to_f32_vec().unwrap(), &want);
    eprintln!(
        "birefnet-tiny {dtype:?}: backbone max abs error {bb:?}, mask max abs error {mask:e}"
    );
    Some((bb, mask))
}

#[test]
fn birefnet_tiny_matches_pytorch_f32() {
    let Some((bb, mask)) = errors(DType::F32) else {
        return;
    };
    for (i, e) in bb.iter().enumerate() {
        assert!(*e <= 1e-3, "backbone stage {}: max abs error {e}", i + 1);
    }
    assert!(mask <= 1e-3, "mask max abs error {mask}");
}

#[test]
fn birefnet_tiny_f16_figures() {
    let Some((_, mask)) = errors(DType::F16) else {
        return;
    };
    // Half precision through ~60 layers: report, and catch gross errors.
    assert!(mask <= 3e-2, "f16 mask max abs error {mask}");
}

/// A 32 KiB cap on any backbone intermediate forces chunking everywhere:
/// stage 1 (5x4 windows of 49 tokens, one head) runs one window row per
/// chunk (a row's shift mask is 4x49x49 f32 = 38 KB), 5 chunks, and its MLP
/// (hidden 32, 768 tokens) in 3 token chunks. Chunking only regroups
/// independent windows and tokens, so the result must match the unchunked
/// run to rounding, and the upstream mask like the unchunked one.
#[test]
fn birefnet_tiny_chunked_matches_unchunked() {
    let Some(gpu) = test_gpu() else { return };
    let (mut model, x) = load(&gpu, DType::F32);
    let whole = model.forward(&x).unwrap().to_f32_vec().unwrap();
    let whole_bb: Vec<Vec<f32>> = model
        .backbone()
        .forward(&x)
        .unwrap()
        .iter()
        .map(|f| f.to_f32_vec().unwrap())
        .collect();
    model.set_chunk_bytes(Some(32 * 1024));
    for (i, f) in model.backbone().forward(&x).unwrap().iter().enumerate() {
        let e = max_abs(&f.to_f32_vec().unwrap(), &whole_bb[i]);
        assert!(e <= 1e-5, "backbone stage {}: chunked vs whole {e}", i + 1);
    }
    let chunked = model.forward(&x).unwrap().to_f32_vec().unwrap();
    let (_, want) = npy::read_f32(&fixture("birefnet-tiny.output.npy")).unwrap();
    let vs_whole = max_abs(&chunked, &whole);
    let vs_ref = max_abs(&chunked, &want);
    eprintln!("chunked mask: vs whole {vs_whole:e}, vs PyTorch {vs_ref:e}");
    assert!(vs_whole <= 1e-5, "chunked vs whole mask {vs_whole}");
    assert!(vs_ref <= 1e-3, "chunked mask vs PyTorch {vs_ref}");
}

/// Writes the fixture checkpoint with `edit` applied to its tensor table.
fn edited_checkpoint(
    dir: &std::path::Path,
    edit: impl FnOnce(&mut BTreeMap<String, (Vec<usize>, Vec<f32>)>),
) -> PathBuf {
    let w = Weights::open(&fixture("birefnet-tiny.safetensors")).unwrap();
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = w
        .index()
        .iter()
        .filter(|(_, info)| info.dtype != "I64")
        .map(|(name, _)| (name.clone(), w.f32(name).unwrap()))
        .collect();
    edit(&mut tensors);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, (s, v))| (n, s, v.iter().flat_map(|f| f.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let path = dir.join("edited.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();
    path
}

fn load_err(path: &std::path::Path, gpu: &Gpu) -> String {
    let w = Weights::open(path).unwrap();
    let res =
        BiRefNetConfig::from_weights(&w).and_then(|cfg| BiRefNet::load(gpu, &w, cfg, DType::F32));
    match res {
        Err(e @ (BiRefNetError::Weights(_) | BiRefNetError::Config(_))) => e.to_string(),
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("an edited checkpoint loaded"),
    }
}

#[test]
fn load_rejects_missing_and_misshaped_tensors() {
    let Some(gpu) = test_gpu() else { return };
    let dir = easel_tests::scratch::dir("birefnet");
    let missing = "decoder.decoder_block2.dec_att.aspp_deforms.0.atrous_conv.offset_conv.weight";
    let p = edited_checkpoint(&dir, |t| {
        t.remove(missing);
    });
    let err = load_err(&p, &gpu);
    assert!(
        err.contains("missing tensor") && err.contains(missing),
        "{err}"
    );

    let bad = "bb.layers.2.blocks.1.mlp.fc2.weight";
    let p = edited_checkpoint(&dir, |t| {
        let (s, v) = t.get_mut(bad).unwrap();
        s[1] -= 1;
        v.truncate(s.iter().product());
    });
    let err = load_err(&p, &gpu);
    assert!(err.contains(bad) && err.contains("shape"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The layout enumeration (used to write random checkpoints of the
/// published sizes) names exactly the tensors of an upstream checkpoint,
/// less the training-only heads and the constant index buffers.
#[test]
fn tensor_layout_matches_the_upstream_checkpoint() {
    let w = Weights::open(&fixture("birefnet-tiny.safetensors")).unwrap();
    let cfg = BiRefNetConfig::from_weights(&w).unwrap();
    let upstream: BTreeMap<String, Vec<usize>> = w
        .index()
        .iter()
        .filter(|(n, _)| {
            !n.contains("conv_ms_spvn")
                && !n.contains("gdt_convs_pred")
                && !n.ends_with("relative_position_index")
        })
        .map(|(n, i)| (n.clone(), i.shape.clone()))
        .collect();
    assert_eq!(cfg.tensor_shapes(), upstream);
}
