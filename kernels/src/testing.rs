//! Helpers for op tests: a shared device, seeded random data and tolerances.
//!
//! GPU tests skip only when no adapter exists *and* `CI` is unset; under CI a
//! missing adapter fails the test.

use crate::{DType, Gpu, Tensor};

/// The shared test GPU, or `None` (test should return early) when there is no
/// adapter outside CI.
pub fn test_gpu() -> Option<Gpu> {
    match Gpu::shared() {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("CI is set but no GPU adapter is available: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}

/// The dtypes to test on this GPU: f32 always, f16 when granted.
pub fn test_dtypes(gpu: &Gpu) -> Vec<DType> {
    if gpu.caps().shader_f16 {
        vec![DType::F32, DType::F16]
    } else {
        vec![DType::F32]
    }
}

/// Deterministic pseudo-random values in `[lo, hi)` (xorshift; no rand dep
/// needed by downstream crates).
pub fn rand_vec(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            lo + (hi - lo) * u
        })
        .collect()
}

/// Rounds through f16, as the GPU does when a value is stored as f16.
pub fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

/// Uploads `data` as `dtype`, returning the tensor and the values the GPU
/// actually sees (rounded through f16 for f16 tensors), for the reference.
pub fn upload(gpu: &Gpu, shape: &[usize], data: &[f32], dtype: DType) -> (Tensor, Vec<f32>) {
    let t = Tensor::from_f32(gpu, shape, data, dtype).expect("upload");
    let seen = if dtype == DType::F16 {
        round_f16(data)
    } else {
        data.to_vec()
    };
    (t, seen)
}

/// Default tolerance for a dtype: relative error against the magnitude.
pub fn tol(dtype: DType) -> f32 {
    match dtype {
        DType::F32 => 1e-4,
        DType::F16 => 1e-2,
    }
}

/// Asserts `|got - want| <= tol * max(1, |want|)` element-wise, with a clear
/// message naming the first failing index.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} vs {}",
        got.len(),
        want.len()
    );
    let mut worst = (0usize, 0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(1.0);
        if err.is_nan() || g.is_nan() != w.is_nan() {
            panic!("{what}: NaN mismatch at {i}: got {g}, want {w}");
        }
        if err > worst.1 {
            worst = (i, err);
        }
    }
    let (i, err) = worst;
    assert!(
        err <= tol,
        "{what}: max rel error {err:.3e} > {tol:.1e} at index {i}: got {}, want {}",
        got[i],
        want[i]
    );
}

/// User + system CPU seconds this process has used so far (Linux; `None`
/// elsewhere). On a CPU adapter (lavapipe) kernels run on the process's own
/// threads, so CPU seconds per run stay comparable when other work shares
/// the machine, where wall time does not.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of them, in clock ticks (USER_HZ, 100 on Linux).
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}
