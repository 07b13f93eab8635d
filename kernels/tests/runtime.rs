//! Runtime behaviour: pooling, batching, pipeline caching, profiling, limits.

use easel_kernels::ops::unary::{relu, scale_shift};
use easel_kernels::testing::{rand_vec, test_gpu};
use easel_kernels::{DType, Gpu, GpuOptions, KernelError, Tensor};

#[test]
fn upload_download_round_trips_f32_and_f16() {
    let Some(gpu) = test_gpu() else { return };
    let data = rand_vec(1001, 7, -3.0, 3.0);
    let t = Tensor::from_f32(&gpu, &[7, 11, 13], &data, DType::F32).unwrap();
    assert_eq!(t.to_f32_vec().unwrap(), data);
    if gpu.caps().shader_f16 {
        let h = Tensor::from_f32(&gpu, &[1001], &data, DType::F16).unwrap();
        let want: Vec<f32> = data
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect();
        assert_eq!(h.to_f32_vec().unwrap(), want);
    }
    let z = Tensor::zeros(&gpu, &[3, 5], DType::F32).unwrap();
    assert_eq!(z.to_f32_vec().unwrap(), vec![0.0; 15]);
    assert!(matches!(
        Tensor::from_f32(&gpu, &[2, 2], &[1.0; 3], DType::F32),
        Err(KernelError::DataLength { .. })
    ));
    assert!(t.reshape(&[1001]).is_ok());
    assert!(matches!(t.reshape(&[1000]), Err(KernelError::Shape { .. })));
}

#[test]
fn pool_reuses_buffers_across_calls() {
    let Some(gpu) = test_gpu() else { return };
    let x = Tensor::from_f32(
        &gpu,
        &[1, 8, 33, 35],
        &rand_vec(8 * 33 * 35, 1, -1.0, 1.0),
        DType::F32,
    )
    .unwrap();
    // Warm up: the first call may allocate.
    drop(relu(&scale_shift(&x, 2.0, 0.5).unwrap()).unwrap());
    gpu.sync().unwrap();
    let before = gpu.memory_stats();
    for _ in 0..20 {
        let y = relu(&scale_shift(&x, 2.0, 0.5).unwrap()).unwrap();
        drop(y);
    }
    gpu.sync().unwrap();
    let after = gpu.memory_stats();
    // Other tests share the device and may allocate concurrently, but 20
    // iterations of 2 ops must be served (almost) entirely from the pool.
    assert!(
        after.reuses >= before.reuses + 35,
        "reuses {} -> {}",
        before.reuses,
        after.reuses
    );
    assert!(after.peak_bytes >= after.bytes_live, "{after:?}");
}

#[test]
fn long_chains_batch_without_polls_and_stay_correct() {
    let Some(gpu) = test_gpu() else { return };
    // 1200 dependent ops: more than one batch (512 passes) and uniform arena,
    // so automatic mid-chain submission and arena reuse are exercised.
    let data = rand_vec(4099, 3, -1.0, 1.0);
    let mut t = Tensor::from_f32(&gpu, &[4099], &data, DType::F32).unwrap();
    let mut want = data.clone();
    for i in 0..1200 {
        let (s, b) = if i % 2 == 0 {
            (1.001f32, 0.01f32)
        } else {
            (0.999f32, -0.01f32)
        };
        t = scale_shift(&t, s, b).unwrap();
        want.iter_mut().for_each(|v| *v = *v * s + b);
    }
    let got = t.to_f32_vec().unwrap();
    easel_kernels::testing::assert_close("1200-op chain", &got, &want, 1e-4);
}

#[test]
fn pipelines_are_cached_per_variant() {
    let Some(gpu) = test_gpu() else { return };
    let x = Tensor::from_f32(&gpu, &[5], &[1.0; 5], DType::F32).unwrap();
    relu(&x).unwrap();
    let n = gpu.pipeline_count();
    for _ in 0..5 {
        relu(&x).unwrap();
    }
    assert!(
        gpu.pipeline_count() <= n + 1,
        "pipeline cache grew: {n} -> {}",
        gpu.pipeline_count()
    );
}

#[test]
fn tensors_beyond_the_binding_limit_are_rejected_clearly() {
    let Some(gpu) = test_gpu() else { return };
    let limit = gpu.max_binding_bytes() as usize;
    let n = limit / 4 + 1024;
    match Tensor::empty(&gpu, &[n], DType::F32) {
        Err(KernelError::TooLarge {
            bytes, limit: l, ..
        }) => {
            assert!(bytes > l);
            let msg = KernelError::TooLarge {
                op: "alloc",
                bytes,
                limit: l,
            }
            .to_string();
            assert!(msg.contains("max storage binding"), "{msg}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn profiler_records_per_op_timings() {
    let Some(shared) = test_gpu() else { return };
    if !shared.caps().timestamp_query {
        eprintln!("adapter has no timestamp queries; profiler off by design");
        return;
    }
    let gpu = Gpu::with_options(GpuOptions {
        profile: Some(true),
    })
    .unwrap();
    assert!(gpu.profiling());
    let x = Tensor::from_f32(
        &gpu,
        &[1, 4, 64, 64],
        &rand_vec(4 * 64 * 64, 9, -1.0, 1.0),
        DType::F32,
    )
    .unwrap();
    for _ in 0..3 {
        relu(&x).unwrap();
    }
    gpu.sync().unwrap();
    let table = gpu.profile().unwrap();
    let unary = table.get("unary").expect("unary row");
    assert_eq!(unary.calls, 3);
    assert!(unary.total_ns > 0.0 && unary.bytes > 0.0, "{unary:?}");
    let report = gpu.profile_report().unwrap();
    assert!(
        report.contains("unary") && report.contains("GB/s"),
        "{report}"
    );
}
