//! The hostile-plugin corpus: each misbehaviour ends its own call with the error naming the
//! limit, and the host (and a well-behaved tenant) carry on.

use easel_host::plugins::{
    CallError, LimitOverrides, Limits, Manifest, ParamValue, PluginHost, PluginOutput,
    PluginRequest, TenantPolicy, UploadError,
};
use easel_tests::plugins::{component, host, test_config};
use std::time::{Duration, Instant};

const HOSTILE: &str = "hostile";

fn hostile_policy() -> TenantPolicy {
    TenantPolicy {
        limits: Limits {
            wall_time_ms: 300,
            memory_bytes: 64 << 20,
            // Time, not fuel, is the binding limit of a spinning guest here.
            fuel: Limits::operator_cap_default().fuel,
            ..Limits::tenant_default()
        },
        max_concurrent_calls: 1,
        ..Default::default()
    }
}

async fn hostile_host() -> PluginHost {
    let h = host("hostile");
    h.set_policy(HOSTILE, hostile_policy());
    h.upload(HOSTILE, "h", component("test-hostile"), None)
        .await
        .expect("uploading the hostile corpus");
    h
}

/// The hostile corpus again as `name`, its manifest asking for `limits`.
async fn upload_with_limits(h: &PluginHost, name: &str, limits: LimitOverrides) {
    let manifest = Manifest {
        limits,
        ..Default::default()
    };
    h.upload(HOSTILE, name, component("test-hostile"), Some(manifest))
        .await
        .unwrap();
}

fn req(task: &str) -> PluginRequest {
    PluginRequest {
        task: task.into(),
        ..Default::default()
    }
}

async fn pre(h: &PluginHost, plugin: &str, task: &str) -> Result<PluginRequest, CallError> {
    h.call_preprocess(HOSTILE, plugin, req(task)).await.result
}

/// Runs the hostile guest in `mode`, which must end in `plugin_timeout` at its 300 ms wall
/// limit (not much later), and checks that the same plugin runs again afterwards.
async fn times_out_at_the_wall_limit(mode: &str) {
    let h = hostile_host().await;
    let t = Instant::now();
    let e = pre(&h, "h", mode).await.unwrap_err();
    let took = t.elapsed();
    assert_eq!(e, CallError::Timeout { limit_ms: 300 }, "{mode}: {e}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1_500),
        "{mode}: stopped after {took:?}"
    );
    // The host is fine afterwards: the next call of the same plugin runs.
    assert!(pre(&h, "h", "noop").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_times_out_at_the_wall_limit() {
    times_out_at_the_wall_limit("infinite-loop").await;
}

/// A guest blocked in the host (here a one-hour sleep on a clock pollable) runs no wasm, so
/// epoch ticks never reach it: the call's watchdog must end it at the same limit, and free
/// its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_blocked_in_the_host_times_out_at_the_wall_limit() {
    times_out_at_the_wall_limit("sleep").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_exhausts_fuel_when_fuel_is_the_tighter_limit() {
    let h = hostile_host().await;
    upload_with_limits(
        &h,
        "h-fuel",
        LimitOverrides {
            fuel: Some(5_000_000),
            wall_time_ms: Some(10_000),
            ..Default::default()
        },
    )
    .await;
    let called = h
        .call_preprocess(HOSTILE, "h-fuel", req("infinite-loop"))
        .await;
    assert_eq!(
        called.result.unwrap_err(),
        CallError::FuelExhausted { limit: 5_000_000 }
    );
    assert_eq!(
        called.report.fuel_used, 5_000_000,
        "the report records fuel used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_growth_bomb_hits_the_memory_limit() {
    let h = hostile_host().await;
    // Filling 64 MiB under fuel metering takes a good part of the tenant's 300 ms on a busy
    // 2-core CI machine: give this plugin time enough that memory is the binding limit.
    upload_with_limits(
        &h,
        "h-mem",
        LimitOverrides {
            wall_time_ms: Some(10_000),
            ..Default::default()
        },
    )
    .await;
    let e = pre(&h, "h-mem", "memory-bomb").await.unwrap_err();
    assert_eq!(e.code(), "plugin_memory_limit", "{e}");
    assert!(e.to_string().contains(&(64u64 << 20).to_string()), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_image_bomb_counts_against_the_memory_limit() {
    let h = hostile_host().await;
    let e = pre(&h, "h", "host-image-bomb").await.unwrap_err();
    assert_eq!(e.code(), "plugin_memory_limit", "{e}");
    assert!(e.to_string().contains("host image"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_overflows_the_stack() {
    let h = hostile_host().await;
    assert_eq!(
        pre(&h, "h", "deep-recursion").await.unwrap_err(),
        CallError::StackOverflow
    );
    // Exhausting the guest's in-memory (shadow) stack faults instead: still contained.
    let e = pre(&h, "h", "deep-recursion-shadow").await.unwrap_err();
    assert_eq!(e.code(), "plugin_trap", "{e}");
    assert!(e.to_string().contains("out of bounds"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giant_output_is_refused() {
    let h = hostile_host().await;
    let manifest = Manifest {
        limits: LimitOverrides {
            output_bytes: Some(1 << 20),
            ..Default::default()
        },
        ..Default::default()
    };
    h.upload(
        HOSTILE,
        "h-small-out",
        component("test-hostile"),
        Some(manifest),
    )
    .await
    .unwrap();
    let mut r = req("giant-output");
    r.params.push(("count".into(), ParamValue::Int(1)));
    let e = h
        .call_preprocess(HOSTILE, "h-small-out", r)
        .await
        .result
        .unwrap_err();
    assert!(
        matches!(e, CallError::OutputTooLarge { size, limit: 1_048_576 } if size >= 16 << 20),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_floods_hit_the_log_limit() {
    let h = hostile_host().await;
    let limit = Limits::tenant_default().log_bytes;
    for task in ["log-flood", "stdout-flood"] {
        let called = h.call_preprocess(HOSTILE, "h", req(task)).await;
        assert_eq!(
            called.result.unwrap_err(),
            CallError::LogLimit { limit },
            "{task}"
        );
        let logged: u64 = called
            .report
            .logs
            .iter()
            .map(|l| l.message.len() as u64)
            .sum();
        assert!(logged <= limit, "{task}: kept {logged} bytes");
        assert!(
            logged > limit / 2,
            "{task}: the lines before the limit are kept"
        );
    }
    // The plugin's log is readable afterwards (and bounded).
    let kept = h.logs(HOSTILE, "h").unwrap();
    assert!(!kept.is_empty() && kept.len() <= 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_call_storm_hits_the_host_call_budget() {
    let h = hostile_host().await;
    let called = h
        .call_preprocess(HOSTILE, "h", req("host-call-storm"))
        .await;
    let limit = Limits::tenant_default().host_calls;
    assert_eq!(
        called.result.unwrap_err(),
        CallError::HostCallLimit { limit }
    );
    assert_eq!(called.report.host_calls, limit + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_the_tenant_may_not_use_is_refused() {
    let h = hostile_host().await;
    let e = pre(&h, "h", "forbidden-model").await.unwrap_err();
    match e {
        CallError::Guest { code, message } => {
            assert_eq!(code, "permission_denied");
            assert!(message.contains("upscale"), "{message}");
        }
        other => panic!("expected the guest's permission_denied, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_panic_is_a_trap_with_the_panic_message() {
    let h = hostile_host().await;
    let e = pre(&h, "h", "panic").await.unwrap_err();
    assert_eq!(e.code(), "plugin_trap");
    assert!(e.to_string().contains("hostile guest gave up"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_return_values_are_refused() {
    let h = hostile_host().await;
    let e = pre(&h, "h", "bad-json").await.unwrap_err();
    assert_eq!(e.code(), "plugin_bad_output", "{e}");
    assert!(
        e.to_string().contains("payload"),
        "names the parameter: {e}"
    );
    let e = h
        .call_postprocess(
            HOSTILE,
            "h",
            "bad-metadata",
            vec![],
            PluginOutput::default(),
        )
        .await
        .result
        .unwrap_err();
    assert_eq!(e.code(), "plugin_bad_output", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_imports_are_rejected_at_upload_with_their_names() {
    let h = hostile_host().await;
    let e = h
        .upload(HOSTILE, "net", component("test-forbidden-net"), None)
        .await
        .unwrap_err();
    let UploadError::ForbiddenImports(names) = &e else {
        panic!("expected forbidden imports, got {e}");
    };
    assert!(
        names.iter().all(|n| n.starts_with("wasi:sockets/")) && !names.is_empty(),
        "{names:?}"
    );
    assert_eq!(e.http_status(), 422);
    assert!(
        h.list(HOSTILE).iter().all(|p| p.name != "net"),
        "nothing registered"
    );
    // With network allowed for the tenant, the same component is accepted.
    h.set_policy(
        "netco",
        TenantPolicy {
            allow_hosts: vec!["example.com".parse().unwrap()],
            ..Default::default()
        },
    );
    h.upload("netco", "net", component("test-forbidden-net"), None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_invalid_components_are_rejected() {
    let mut cfg = test_config("huge");
    cfg.max_component_bytes = 1 << 20;
    let h = PluginHost::new(cfg).unwrap();
    let e = h
        .upload("t", "huge", vec![0u8; (1 << 20) + 1], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "plugin_too_large");
    assert_eq!(e.http_status(), 413);
    for (what, bytes) in [
        ("garbage", b"definitely not wasm".to_vec()),
        ("truncated", component("test-passthrough")[..1000].to_vec()),
        // A valid core module (magic + version 1) is not a component.
        ("core module", b"\0asm\x01\0\0\0".to_vec()),
    ] {
        let e = h.upload("t", "bad", bytes, None).await.unwrap_err();
        assert_eq!(e.code(), "plugin_invalid", "{what}: {e}");
    }
}

/// `max_concurrent_calls` caps calls that run longer than 2 ms, not short ones: with one
/// long-call slot, two spinning calls run one after the other (each gets its full wall time,
/// the wait is not counted), while the tenant's short calls keep completing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_call_slots_serialize_spinners_but_not_short_calls() {
    let h = hostile_host().await;
    let t = Instant::now();
    let spin = |h: PluginHost| {
        tokio::spawn(async move {
            let e = pre(&h, "h", "infinite-loop").await.unwrap_err();
            (e, t.elapsed())
        })
    };
    let (a, b) = (spin(h.clone()), spin(h.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut short = vec![];
    while t.elapsed() < Duration::from_millis(250) {
        let s = Instant::now();
        pre(&h, "h", "noop")
            .await
            .expect("a short call beside two spinners");
        short.push(s.elapsed());
    }
    let (ea, ta) = a.await.unwrap();
    let (eb, tb) = b.await.unwrap();
    for e in [&ea, &eb] {
        assert_eq!(*e, CallError::Timeout { limit_ms: 300 }, "{e}");
    }
    let (first, second) = (ta.min(tb), ta.max(tb));
    assert!(
        second >= first + Duration::from_millis(250),
        "the second spinner waited for the slot: ended at {first:?} and {second:?}"
    );
    short.sort();
    assert!(
        short.len() >= 10,
        "only {} short calls completed",
        short.len()
    );
    let median = short[short.len() / 2];
    assert!(
        median < Duration::from_millis(20),
        "short calls waited behind the spinners: median {median:?}"
    );
}
