//! Isolation over HTTP: while tenant A hammers an endpoint plugin that spins until its
//! wall-time limit, tenant B's requests (its own well-behaved endpoint plugin, and a
//! `convert` job with `Prefer: wait`) keep their latency. In its own test binary so that no
//! other test of this crate loads the machine meanwhile.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use reqwest::multipart::{Form, Part};
use serde_json::json;

fn component(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "guest component {} is missing ({e}); run scripts/build-plugins",
            path.display()
        )
    })
}

async fn upload(s: &Server, key: &str, name: &str, manifest: serde_json::Value) {
    let form = Form::new()
        .part("component", Part::bytes(component("test-endpoint")))
        .text("manifest", manifest.to_string());
    let r = client()
        .put(s.u(&format!("/v1/plugins/{name}")))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

fn small_png() -> Vec<u8> {
    let img = image::RgbaImage::from_fn(64, 64, |x, y| image::Rgba([x as u8, y as u8, 7, 255]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn p99(us: &mut [u64]) -> u64 {
    us.sort_unstable();
    us[((us.len() - 1) as f64 * 0.99).round() as usize]
}

/// B's latencies (µs) over `n` requests of each kind: (endpoint p99, convert p99).
async fn tenant_b_window(s: &Server, key: &str, png: &[u8], n: usize) -> (u64, u64) {
    let c = client();
    let (mut ep, mut conv) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let t = Instant::now();
        let r = c
            .get(s.u(&format!("/v1/x/ok/ping?i={i}")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), format!("GET /ping?i={i} 0"));
        ep.push(t.elapsed().as_micros() as u64);

        let t = Instant::now();
        let form = Form::new()
            .part("image", Part::bytes(png.to_vec()).file_name("in.png"))
            .text("format", "png");
        let r = c
            .post(s.u("/v1/image/convert"))
            .bearer_auth(key)
            .header("prefer", "wait=30")
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let job: serde_json::Value = r.json().await.unwrap();
        assert_eq!(job["status"], "succeeded", "{job}");
        conv.push(t.elapsed().as_micros() as u64);
    }
    let (pe, pc) = (p99(&mut ep), p99(&mut conv));
    eprintln!(
        "window p50/p99 µs: endpoint {}/{pe}, convert {}/{pc}",
        ep[n / 2],
        conv[n / 2]
    );
    (pe, pc)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spinning_tenant_does_not_slow_another_tenants_requests() {
    let s = Server::start(&[("EASEL_JOBS__MAX_QUEUED_PER_TENANT", "1000")]);
    let a = s.tenant("a", 0).await;
    let b = s.tenant("b", 100_000).await;
    // A's plugin spins until its 300 ms wall-time limit (fuel at the operator's cap, so
    // time is what ends it); B's answers at once.
    upload(
        &s,
        &a.key,
        "spin",
        json!({"limits": {"wall_time_ms": 300, "fuel": 50_000_000_000u64}}),
    )
    .await;
    upload(&s, &b.key, "ok", json!({})).await;
    let png = small_png();
    // Warm up connections, caches and the pooling allocator.
    tenant_b_window(&s, &b.key, &png, 20).await;

    let stop = Arc::new(AtomicBool::new(false));
    let spun = Arc::new(AtomicU64::new(0));
    let attack = |s_url: String, key: String, stop: Arc<AtomicBool>, spun: Arc<AtomicU64>| async move {
        let c = client();
        while !stop.load(Ordering::Relaxed) {
            let r = c
                .get(format!("{s_url}/v1/x/spin/spin"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            // 504 plugin_timeout, or 503 when A's concurrent-call slots are all busy.
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            assert!(
                matches!(status, 503 | 504),
                "the spinning call must fail on a limit: {status} {body}"
            );
            spun.fetch_add(1, Ordering::Relaxed);
        }
    };

    // Idle and attacked windows alternate so that load from outside the test (other
    // processes on a shared machine) falls on both alike; the medians of the per-window p99s
    // are compared, so a single window hit by an outside burst does not decide.
    const WINDOWS: usize = 5;
    const N: usize = 60;
    let (mut idle_ep, mut idle_conv, mut busy_ep, mut busy_conv) = (vec![], vec![], vec![], vec![]);
    for _ in 0..WINDOWS {
        let (e, c) = tenant_b_window(&s, &b.key, &png, N).await;
        idle_ep.push(e);
        idle_conv.push(c);
        stop.store(false, Ordering::Relaxed);
        let attackers: Vec<_> = (0..4)
            .map(|_| {
                tokio::spawn(attack(
                    s.url.clone(),
                    a.key.clone(),
                    stop.clone(),
                    spun.clone(),
                ))
            })
            .collect();
        // Let the spinning calls start before measuring.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (e, c) = tenant_b_window(&s, &b.key, &png, N).await;
        busy_ep.push(e);
        busy_conv.push(c);
        stop.store(true, Ordering::Relaxed);
        for t in attackers {
            t.await.unwrap();
        }
    }
    assert!(spun.load(Ordering::Relaxed) >= 6, "the attack ran");
    let (ie, ic, be, bc) = (
        median(idle_ep),
        median(idle_conv),
        median(busy_ep),
        median(busy_conv),
    );
    eprintln!(
        "tenant B p99 (median of {WINDOWS} windows x {N}): endpoint idle {ie} µs, attacked {be} µs; \
         convert idle {ic} µs, attacked {bc} µs; {} spinning calls",
        spun.load(Ordering::Relaxed)
    );
    // Within 2x of idle, with an absolute floor: on a loaded 2-core machine (the one this
    // was written on ran at load average 5 from other work) idle p99s of 1-15 ms are
    // dominated by scheduling noise from outside the test — one idle window alone measured a
    // 123 ms p99 — and twice them would fail on noise alone. A spinning guest that held an
    // async worker, the job worker or B's call slot would add its full 300 ms per call.
    // Guests run on the async workers and yield at every epoch tick; a runaway one pauses
    // at each tick (a quarter of a worker at most). Measured on this machine (load average
    // 4, 2026-11-21): endpoint idle 0.8-1.4 ms, attacked 2.7-3.8 ms; convert idle 11-15 ms,
    // attacked 17-23 ms (before, with guests on blocking threads demoted to SCHED_IDLE:
    // endpoint attacked 2.3-4.4 ms, convert 38-64 ms). The floors are about 2.5x the worst
    // attacked p99 seen.
    const ENDPOINT_FLOOR_US: u64 = 10_000;
    const CONVERT_FLOOR_US: u64 = 60_000;
    assert!(
        be <= (2 * ie).max(ENDPOINT_FLOOR_US),
        "endpoint p99 attacked {be} µs vs idle {ie} µs"
    );
    assert!(
        bc <= (2 * ic).max(CONVERT_FLOOR_US),
        "convert p99 attacked {bc} µs vs idle {ic} µs"
    );
}
