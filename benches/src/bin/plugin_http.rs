//! A plugin endpoint under load vs a native route, through the real `easel` binary on
//! loopback: requests/s of `GET /v1/x/ep/ping` (the Rust `test-endpoint` component: a fresh
//! store and instance per request, run on the async worker serving the request) against `GET /v1/plugins` (a native
//! authenticated route answering from memory) and `/healthz` (no authentication). Both
//! authenticated routes pay the same API-key lookup.
//!
//! `scripts/build-plugins && cargo build --release -p easel-host` (what a deployment runs; the
//! bench takes `target/release/easel` before `target/debug/easel`), then
//! `cargo run -p easel-benches --bin plugin_http [-- --seconds 3 --rounds 3 --concurrency 16]`.
//! `EASEL_BIN` points at another binary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use easel_benches::median;
use easel_benches::server::{BenchServer, arg, root};
use serde_json::{Value, json};

/// What [`load`] measured: requests/s, client latency p50 and p99, and the p50 of the
/// plugin's own `x-easel-plugin-wall-us` (instantiation plus the call) where answered.
struct Load {
    rps: f64,
    p50: Duration,
    p99: Duration,
    inside_p50_us: Option<u64>,
}

/// Requests/s and latencies of `conc` keep-alive clients hitting `url` for `secs`.
async fn load(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    conc: usize,
    secs: u64,
) -> anyhow::Result<Load> {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = vec![];
    for _ in 0..conc {
        let (client, url, key, count, stop) = (
            client.clone(),
            url.to_owned(),
            key.map(str::to_owned),
            count.clone(),
            stop.clone(),
        );
        handles.push(tokio::spawn(async move {
            let (mut lat, mut inside) = (vec![], vec![]);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let mut req = client.get(&url);
                if let Some(k) = &key {
                    req = req.bearer_auth(k);
                }
                match req.send().await {
                    Ok(r) if r.status() == 200 => {
                        let wall = r
                            .headers()
                            .get("x-easel-plugin-wall-us")
                            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                        inside.extend(wall);
                        if r.bytes().await.is_ok() {
                            count.fetch_add(1, Ordering::Relaxed);
                            lat.push(t.elapsed());
                        }
                    }
                    Ok(r) => panic!("{url}: {}", r.status()),
                    Err(e) => panic!("{url}: {e}"),
                }
            }
            (lat, inside)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut lat, mut inside) = (vec![], vec![]);
    for h in handles {
        let (l, i) = h.await?;
        lat.extend(l);
        inside.extend(i);
    }
    lat.sort();
    inside.sort();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    Ok(Load {
        rps: count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
        p50: pct(0.5),
        p99: pct(0.99),
        inside_p50_us: inside.get(inside.len() / 2).copied(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs = arg("--seconds", 3);
    let rounds = arg("--rounds", 3).max(1);
    let conc = arg("--concurrency", 16) as usize;
    let component = std::fs::read(root().join("target/plugins/test-endpoint.wasm"))
        .context("target/plugins/test-endpoint.wasm: run scripts/build-plugins")?;
    let server = BenchServer::start(&[])?;
    let base = server.base.clone();
    println!(
        "plugin endpoint vs native route: {} ({base}), {} logical CPUs, {conc} keep-alive connections, {secs} s each",
        server.bin.display(),
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
    // Default limits and policy: the tenant runs 2 guest calls at once (one per core on the
    // 2-core machine this was written on); further requests wait for a slot.
    let r = client
        .put(format!("{base}/v1/plugins/ep"))
        .bearer_auth(&key)
        .body(component)
        .send()
        .await?;
    if r.status() != 201 {
        bail!("upload: {} {}", r.status(), r.text().await?);
    }
    // Warm-up.
    load(
        &client,
        &format!("{base}/v1/x/ep/ping"),
        Some(&key),
        conc,
        1,
    )
    .await?;

    let fmt = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let routes = [
        ("GET /v1/x/ep/ping (endpoint plugin)", "/v1/x/ep/ping", true),
        (
            "GET /v1/plugins (native, authenticated)",
            "/v1/plugins",
            true,
        ),
        ("GET /healthz (native, no auth)", "/healthz", false),
    ];
    // Routes alternate, `rounds` times: on a shared machine a single pass mostly measures
    // whatever else ran meanwhile. The server's own CPU time per request (from /proc) is
    // printed too: the client shares the machine, and the slower route also pays more
    // wake-ups per request.
    let mut ratios = vec![];
    let mut per_route: Vec<Vec<(f64, Option<f64>)>> = vec![vec![]; routes.len()];
    for round in 1..=rounds {
        println!("round {round}/{rounds}");
        let mut rps = vec![];
        for (i, (name, path, auth)) in routes.iter().enumerate() {
            let url = format!("{base}{path}");
            let cpu0 = server.cpu_seconds();
            let l = load(&client, &url, auth.then_some(key.as_str()), conc, secs).await?;
            let cpu_us = cpu0
                .zip(server.cpu_seconds())
                .map(|(a, b)| (b - a) * 1e6 / (l.rps * secs as f64));
            let inside = l
                .inside_p50_us
                .map(|us| format!("  (inside the call p50 {us} us)"))
                .unwrap_or_default();
            let cpu = cpu_us
                .map(|us| format!("  server CPU {us:.0} us/request"))
                .unwrap_or_default();
            println!(
                "  {name}: {:.0} req/s  p50 {}  p99 {}{cpu}{inside}",
                l.rps,
                fmt(l.p50),
                fmt(l.p99)
            );
            per_route[i].push((l.rps, cpu_us));
            rps.push(l.rps);
        }
        ratios.push(rps[0] / rps[1]);
        println!(
            "  endpoint / native authenticated route = {:.2}; endpoint / healthz = {:.2}",
            rps[0] / rps[1],
            rps[0] / rps[2]
        );
    }
    println!("medians over {rounds} rounds:");
    for ((name, _, _), runs) in routes.iter().zip(&per_route) {
        let cpu: Vec<f64> = runs.iter().filter_map(|r| r.1).collect();
        let cpu = if cpu.is_empty() {
            String::new()
        } else {
            format!(", server CPU {:.0} us/request", median(cpu))
        };
        println!(
            "  {name}: {:.0} req/s{cpu}",
            median(runs.iter().map(|r| r.0).collect())
        );
    }
    let text: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "endpoint / native authenticated route = {:.2} (median; rounds {}) (goal >= 0.50)",
        median(ratios),
        text.join(", ")
    );
    Ok(())
}
