//! Plugin-host benchmarks (numbers go to BENCHMARKS.md):
//!
//! 1. instantiate + call of a no-op processor: end to end through `PluginHost` (the call runs
//!    on the calling task) and inside the call (store + instantiate + call, from the report);
//! 2. a 4 MiB image through a pass-through processor, by handle and by bytes;
//! 3. the Rust test endpoint one call at a time (end to end and inside the call), back to
//!    back and after an idle gap that leaves the caches cold as between a server's requests;
//!    and the JavaScript endpoint under concurrent load against a native handler doing the
//!    same work (in process, no sockets), as requests per second.
//!
//! Run: `scripts/build-plugins && cargo run --release -p easel-benches --bin plugins`.

use anyhow::{Context, Result};
use bytes::Bytes;
use easel_host::plugins::{ParamValue, PluginHost, PluginHostConfig, PluginImage, PluginRequest};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn component(name: &str) -> Result<Vec<u8>> {
    let p = root().join("target/plugins").join(format!("{name}.wasm"));
    std::fs::read(&p).with_context(|| format!("{} (run scripts/build-plugins)", p.display()))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

async fn noop(h: &PluginHost, req: &PluginRequest) -> (f64, f64) {
    let t = Instant::now();
    let c = h.call_preprocess("bench", "pass", req.clone()).await;
    let e2e = t.elapsed().as_secs_f64() * 1e6;
    c.result.expect("no-op call");
    (e2e, c.report.wall_us as f64)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let mut cfg = PluginHostConfig::new(std::env::temp_dir().join("easel-bench-plugins"));
    cfg.cache_dir = root().join("target/plugin-test-cache");
    let h = PluginHost::new(cfg).map_err(anyhow::Error::msg)?;
    h.upload("bench", "pass", component("test-passthrough")?, None)
        .await
        .map_err(anyhow::Error::msg)?;

    // 1. no-op processor.
    let empty = PluginRequest {
        task: "noop".into(),
        ..Default::default()
    };
    for _ in 0..200 {
        noop(&h, &empty).await;
    }
    let (mut e2e, mut inside) = (Vec::new(), Vec::new());
    for _ in 0..2_000 {
        let (a, b) = noop(&h, &empty).await;
        e2e.push(a);
        inside.push(b);
    }
    println!(
        "no-op processor, end to end (PluginHost::call_preprocess): p50 {:.1} us, p99 {:.1} us",
        pct(&mut e2e, 50.0),
        pct(&mut e2e, 99.0)
    );
    println!(
        "no-op processor, store + instantiate + call (CallReport.wall_us): p50 {:.1} us, p99 {:.1} us",
        pct(&mut inside, 50.0),
        pct(&mut inside, 99.0)
    );

    // 2. 4 MiB image by handle vs by bytes.
    let img = PluginImage::filled(1024, 1024, [10, 20, 30, 255]).map_err(anyhow::Error::msg)?;
    for via in ["handle", "bytes"] {
        let req = PluginRequest {
            task: "copy".into(),
            params: vec![("via".into(), ParamValue::Text(via.into()))],
            images: vec![img.clone()],
        };
        let mut e2e = Vec::new();
        let mut inside = Vec::new();
        for i in 0..220 {
            let t = Instant::now();
            let c = h.call_preprocess("bench", "pass", req.clone()).await;
            let us = t.elapsed().as_secs_f64() * 1e6;
            let out = c.result.expect("pass-through");
            assert_eq!(out.images[0].pixels.as_raw(), img.pixels.as_raw());
            if i >= 20 {
                e2e.push(us);
                inside.push(c.report.wall_us as f64);
            }
        }
        println!(
            "4 MiB image by {via}: end to end p50 {:.1} us p99 {:.1} us; inside the call p50 {:.1} us",
            pct(&mut e2e, 50.0),
            pct(&mut e2e, 99.0),
            pct(&mut inside, 50.0)
        );
    }

    // 3a. one Rust endpoint call at a time, in process: what a request costs the server
    // beyond the HTTP connection and the API-key check.
    {
        h.upload("bench", "ep", component("test-endpoint")?, None)
            .await
            .map_err(anyhow::Error::msg)?;
        let ping = || {
            http::Request::get("/ping")
                .body(Bytes::new())
                .expect("request")
        };
        // Back to back, then with the worker thread asleep between calls: the CPU idles or
        // runs other threads, as a server's worker does between requests, and the call
        // starts with caches and TLB holding other work's lines.
        for gap_us in [0u64, 200] {
            let (mut e2e, mut inside) = (vec![], vec![]);
            for i in 0..5000 {
                if gap_us > 0 {
                    std::thread::sleep(Duration::from_micros(gap_us));
                }
                let t = Instant::now();
                let (r, report) = h.handle_http("bench", "ep", ping()).await;
                if i >= 500 {
                    e2e.push(t.elapsed().as_secs_f64() * 1e6);
                    inside.push(report.wall_us as f64);
                }
                assert_eq!(r.status(), 200);
            }
            let when = if gap_us == 0 {
                "back to back".to_owned()
            } else {
                format!("{gap_us} us idle before each")
            };
            println!(
                "Rust endpoint GET /ping, one at a time, {when}: end to end p50 {:.1} us p99 {:.1} us; inside the call p50 {:.1} us",
                pct(&mut e2e, 50.0),
                pct(&mut e2e, 99.0),
                pct(&mut inside, 50.0)
            );
        }
    }

    // 3. endpoint vs native, in process.
    match component("thumbnailer") {
        Ok(bytes) => {
            let t = Instant::now();
            let info = h
                .upload("bench", "thumbnailer", bytes, None)
                .await
                .map_err(anyhow::Error::msg)?;
            println!(
                "thumbnailer (JavaScript, {} bytes): upload {:.0} ms ({})",
                info.size_bytes,
                t.elapsed().as_secs_f64() * 1e3,
                if info.cached {
                    "cached artefact"
                } else {
                    "compiled"
                }
            );
            let plugin_rps = load(16, Duration::from_secs(3), {
                let h = h.clone();
                move || {
                    let h = h.clone();
                    async move {
                        let (r, _) = h
                            .handle_http("bench", "thumbnailer", headers_request())
                            .await;
                        assert_eq!(r.status(), 200);
                    }
                }
            })
            .await;
            let native_rps = load(16, Duration::from_secs(3), || async {
                let r = native_headers(headers_request());
                assert_eq!(r.status(), 200);
            })
            .await;
            println!(
                "endpoint GET /headers: plugin {plugin_rps:.0} req/s, native {native_rps:.0} req/s, ratio {:.3}",
                plugin_rps / native_rps
            );
        }
        Err(e) => println!("endpoint benchmark skipped: {e:#}"),
    }
    Ok(())
}

fn headers_request() -> http::Request<Bytes> {
    http::Request::builder()
        .uri("/headers")
        .header("x-trace", "1")
        .body(Bytes::new())
        .unwrap()
}

/// What the thumbnailer's `/headers` route does, natively.
fn native_headers(req: http::Request<Bytes>) -> http::Response<Bytes> {
    let mut names: Vec<&str> = req.headers().keys().map(|k| k.as_str()).collect();
    names.sort();
    let body = serde_json::json!({ "method": req.method().as_str(), "headers": names });
    http::Response::builder()
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()))
        .unwrap()
}

async fn load<F, Fut>(concurrency: usize, dur: Duration, f: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < dur {
                    f().await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}
