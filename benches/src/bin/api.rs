//! HTTP API benchmarks against the real `easel` binary on loopback:
//!
//! 1. submit → complete overhead of a no-op job (`Prefer: wait`, sequential): p50/p99;
//! 2. sustained submissions per second (concurrent clients, SQLite-backed queue);
//! 3. `/healthz` throughput with a built-in keep-alive load generator (and
//!    `wrk`, when installed, for comparison).
//!
//! Build the server first (`cargo build --release -p easel-host`), then
//! `cargo run --release -p easel-benches --bin api [-- --seconds 5 --concurrency 32]`.
//! `EASEL_BIN` points at another binary.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use easel_benches::server::{BenchServer, arg};
use serde_json::{Value, json};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs = arg("--seconds", 5);
    let conc = arg("--concurrency", 32) as usize;
    let n_wait = arg("--wait-jobs", 300) as usize;
    let server = BenchServer::start(&[
        ("EASEL_DEBUG_TASKS", "true"),
        ("EASEL_JOBS__MAX_QUEUED", "1000000"),
        ("EASEL_JOBS__MAX_QUEUED_PER_TENANT", "1000000"),
    ])?;
    let base = server.base.clone();
    println!(
        "easel API benchmarks: {} ({}), {} logical CPUs",
        server.bin.display(),
        base,
        std::thread::available_parallelism()?.get()
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(conc * 2)
        .build()?;
    let created: Value = client
        .post(format!("{base}/v1/admin/tenants"))
        .bearer_auth("bench")
        .json(&json!({"name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let key = created["api_key"]
        .as_str()
        .context("tenant key")?
        .to_owned();

    // 1. Submit → complete, one at a time, held open with Prefer: wait.
    let mut lat = Vec::with_capacity(n_wait);
    for i in 0..n_wait + 20 {
        let t = Instant::now();
        let v: Value = client
            .post(format!("{base}/v1/image/noop"))
            .bearer_auth(&key)
            .header("prefer", "wait=10")
            .json(&json!({}))
            .send()
            .await?
            .json()
            .await?;
        if v["status"] != "succeeded" {
            bail!("no-op job did not succeed: {v}");
        }
        if i >= 20 {
            lat.push(t.elapsed()); // the first 20 warm up
        }
    }
    lat.sort();
    println!(
        "submit->complete (noop, Prefer: wait, sequential, n={n_wait}): p50 {}  p99 {}  max {}",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(*lat.last().unwrap())
    );

    // 2. Sustained submissions: `conc` clients submitting as fast as answered.
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = vec![];
    for _ in 0..conc {
        let (client, key, base, count, stop) = (
            client.clone(),
            key.clone(),
            base.clone(),
            count.clone(),
            stop.clone(),
        );
        handles.push(tokio::spawn(async move {
            let mut lat = vec![];
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/v1/image/noop"))
                    .bearer_auth(&key)
                    .json(&json!({}))
                    .send()
                    .await;
                if matches!(r, Ok(ref r) if r.status() == 201) {
                    count.fetch_add(1, Ordering::Relaxed);
                    lat.push(t.elapsed());
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = vec![];
    for h in handles {
        lat.extend(h.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "sustained submissions ({conc} clients, {secs} s, SQLite WAL): {:.0} jobs/s  (submit latency p50 {}  p99 {})",
        count.load(Ordering::Relaxed) as f64 / elapsed,
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    // Let the backlog drain so it does not disturb the next measurement.
    let drain_start = Instant::now();
    loop {
        let m = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let queued: f64 = m
            .lines()
            .filter(|l| l.starts_with("easel_queue_depth"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if queued == 0.0 || drain_start.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "  (backlog of queued no-op jobs drained in {:.1} s)",
        drain_start.elapsed().as_secs_f64()
    );

    // 3. /healthz throughput, built-in generator.
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = vec![];
    for _ in 0..conc {
        let (client, base, count, stop) =
            (client.clone(), base.clone(), count.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = vec![];
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if let Ok(r) = client.get(format!("{base}/healthz")).send().await
                    && r.status() == 200
                    && r.bytes().await.is_ok()
                {
                    count.fetch_add(1, Ordering::Relaxed);
                    lat.push(t.elapsed());
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = vec![];
    for h in handles {
        lat.extend(h.await?);
    }
    lat.sort();
    println!(
        "/healthz (built-in keep-alive generator, {conc} connections, {secs} s): {:.0} req/s  p50 {}  p99 {}",
        count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    if Command::new("wrk").arg("--version").output().is_ok() {
        let out = Command::new("wrk")
            .args([
                "-t2",
                &format!("-c{conc}"),
                &format!("-d{secs}s"),
                "--latency",
                &format!("{base}/healthz"),
            ])
            .output()?;
        println!(
            "/healthz with wrk:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    } else {
        println!(
            "(wrk not installed: apt-get install wrk for an independent /healthz measurement)"
        );
    }
    Ok(())
}
