//! U²-Net, U²-Netp and IS-Net on tiny random configurations against the
//! PyTorch reference (fixtures from tests/fixtures/gen/rsu_fixtures.py):
//! max abs error of the final mask <= 1e-3 in f32. The checkpoints carry
//! separate BatchNorm tensors with random statistics, so this also checks
//! the fold on load; the input sizes are odd so ceil-mode pooling and
//! non-integer upsampling are exercised.

use std::path::PathBuf;

use easel_host::models::rsu::{RsuArch, RsuModel};
use easel_host::weights::Weights;
use easel_kernels::testing::test_gpu;
use easel_kernels::{DType, Tensor};
use easel_tests::npy;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/rsu")
        .join(name)
}

fn check(name: &str, arch: RsuArch) {
    let Some(gpu) = test_gpu() else { return };
    let w = Weights::open(&fixture(&format!("{name}.safetensors"))).unwrap();
    assert_eq!(RsuArch::detect(&w), Some(arch));
    let model = RsuModel::load(&gpu, &w, DType::F32).unwrap();
    let (xs, x) = npy::read_f32(&fixture(&format!("{name}.input.npy"))).unwrap();
    let (ys, want) = npy::read_f32(&fixture(&format!("{name}.output.npy"))).unwrap();
    let x = Tensor::from_f32(&gpu, &xs, &x, DType::F32).unwrap();
    let y = model.forward(&x).unwrap();
    assert_eq!(y.shape(), ys.as_slice());
    let got = y.to_f32_vec().unwrap();
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("{name}: max abs error {max:e} over {} values", want.len());
    assert!(max <= 1e-3, "{name}: max abs error {max}");
}

#[test]
fn u2net_tiny_matches_pytorch() {
    check("u2net-tiny", RsuArch::U2Net);
}

#[test]
fn u2netp_tiny_matches_pytorch() {
    check("u2netp-tiny", RsuArch::U2Net);
}

#[test]
fn isnet_tiny_matches_pytorch() {
    check("isnet-tiny", RsuArch::IsNet);
}
