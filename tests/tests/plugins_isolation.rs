//! Isolation between tenants: a well-behaved tenant's latency while another tenant's hostile
//! plugins run. In its own test binary so that no other test loads the machine meanwhile.

use easel_host::plugins::{CallError, Limits, PluginHost, PluginRequest, TenantPolicy};
use easel_tests::plugins::{component, host, percentile};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const HOSTILE: &str = "hostile";

async fn hostile_host() -> PluginHost {
    let h = host("isolation");
    h.set_policy(
        HOSTILE,
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
        },
    );
    h.upload(HOSTILE, "h", component("test-hostile"), None)
        .await
        .expect("uploading the hostile corpus");
    h
}

async fn pre(h: &PluginHost, plugin: &str, task: &str) -> Result<PluginRequest, CallError> {
    let req = PluginRequest {
        task: task.into(),
        ..Default::default()
    };
    h.call_preprocess(HOSTILE, plugin, req).await.result
}

/// Per-call latencies (us) of the good tenant and the codes that ended the hostile calls.
struct Measurement {
    idle_p50: u64,
    loaded_p50: u64,
    idle_p99_median: u64,
    loaded_p99_median: u64,
    summary: String,
    outcomes: Vec<&'static str>,
}

/// Idle and attacked windows alternate so that load from outside the test (other processes
/// on a shared machine) falls on both sides alike, and the p99s compared are the medians of
/// the per-window p99s, so one window hit by an outside burst does not decide the result.
async fn measure(h: &PluginHost) -> Measurement {
    let image = easel_host::plugins::PluginImage::filled(64, 64, [9, 9, 9, 255]).unwrap();
    let good_calls = |h: PluginHost, image: easel_host::plugins::PluginImage, n: usize| async move {
        let mut us = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let r = h
                .call_preprocess(
                    "good",
                    "pass",
                    PluginRequest {
                        task: "t".into(),
                        params: vec![],
                        images: vec![image.clone()],
                    },
                )
                .await;
            r.result.expect("the good tenant's call succeeds");
            us.push(t.elapsed().as_micros() as u64);
        }
        us
    };
    good_calls(h.clone(), image.clone(), 50).await; // warm-up
    const ROUNDS: usize = 8;
    const PER_ROUND: usize = 400;
    let attacks = [
        "infinite-loop",
        "memory-bomb",
        "log-flood",
        "host-call-storm",
        "deep-recursion",
    ];
    let (mut idle, mut loaded, mut outcomes) = (Vec::new(), Vec::new(), Vec::new());
    let (mut idle_p99s, mut loaded_p99s) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let mut window = good_calls(h.clone(), image.clone(), PER_ROUND).await;
        idle_p99s.push(percentile(&mut window, 99.0));
        idle.extend(window);
        let stop = Arc::new(AtomicBool::new(false));
        let attackers: Vec<_> = attacks
            .iter()
            .map(|&task| {
                let (h, stop) = (h.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut codes = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        codes.push(pre(&h, "h", task).await.unwrap_err().code());
                    }
                    codes
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut window = good_calls(h.clone(), image.clone(), PER_ROUND).await;
        loaded_p99s.push(percentile(&mut window, 99.0));
        loaded.extend(window);
        stop.store(true, Ordering::Relaxed);
        for a in attackers {
            outcomes.extend(a.await.unwrap());
        }
    }
    let idle_p99_median = percentile(&mut idle_p99s, 50.0);
    let loaded_p99_median = percentile(&mut loaded_p99s, 50.0);
    let idle_p50 = percentile(&mut idle, 50.0);
    let loaded_p50 = percentile(&mut loaded, 50.0);
    let summary = format!(
        "idle p50 {idle_p50} us p99 {} us (median window p99 {idle_p99_median} us); under attack \
         p50 {loaded_p50} us p99 {} us (median window p99 {loaded_p99_median} us); {} hostile \
         calls contained",
        percentile(&mut idle, 99.0),
        percentile(&mut loaded, 99.0),
        outcomes.len()
    );
    Measurement {
        idle_p50,
        loaded_p50,
        idle_p99_median,
        loaded_p99_median,
        summary,
        outcomes,
    }
}

/// A well-behaved tenant's calls while the hostile corpus runs: every hostile call is
/// contained, and the good tenant's median latency and p99 (the median of the windows' p99s)
/// stay within 2x of idle, the goal. The latency comparison is a measurement on a
/// possibly shared machine, so it gets up to three attempts; containment must hold in every
/// one. (With guests on the async workers, yielding at every epoch tick and runaway ones
/// pausing, the p99 measured 1.1-1.3x idle here at load average 4.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_behaved_tenant_is_not_slowed_by_a_hostile_one() {
    let h = hostile_host().await;
    h.upload("good", "pass", component("test-passthrough"), None)
        .await
        .unwrap();
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let m = measure(&h).await;
        eprintln!("good tenant: {}", m.summary);
        for code in [
            "plugin_timeout",
            "plugin_memory_limit",
            "plugin_log_limit",
            "plugin_host_call_limit",
            "plugin_stack_overflow",
        ] {
            assert!(m.outcomes.contains(&code), "{code} among {:?}", m.outcomes);
        }
        assert!(
            m.outcomes.iter().all(|c| c.starts_with("plugin_")),
            "every hostile call was contained: {:?}",
            m.outcomes
        );
        let ok = m.loaded_p50 <= 2 * m.idle_p50 && m.loaded_p99_median <= 2 * m.idle_p99_median;
        attempts.push(m.summary);
        if ok {
            return;
        }
    }
    panic!("p50 or p99 under attack > 2 x idle in every attempt: {attempts:#?}");
}
