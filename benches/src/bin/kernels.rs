//! Kernel benchmarks side by side with a CPU peer (PyTorch or NumPy/BLAS).
//!
//! `cargo run --release -p easel-benches --bin kernels [-- --quick] [--json]`
//! runs the foundation suite on the chosen adapter, then the same cases on
//! this machine's CPU through `benches/python/cpu_peer.py`, and prints
//! GFLOP/s for both and the ratio ours/CPU.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::Context;
use easel_kernels::bench::{BenchResult, standard_suite};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json = args.iter().any(|a| a == "--json");
    let gpu = easel_kernels::Gpu::new().context("opening the GPU")?;
    eprintln!("adapter: {} ({:?})", gpu.info().name, gpu.class());
    let mut ours: Vec<BenchResult> = Vec::new();
    standard_suite(&gpu, quick, |r| {
        eprintln!(
            "  ours {:<8} {:<4} {:<22} {:>10.2} ms {:>9.1} GFLOP/s",
            r.op, r.dtype, r.shape, r.median_ms, r.gflops
        );
        ours.push(r);
    })?;

    let peer = run_peer(&ours).unwrap_or_else(|e| {
        eprintln!("CPU peer unavailable ({e:#}); printing our figures only");
        Vec::new()
    });
    println!(
        "| op | dtype | shape | ours ms | ours GFLOP/s | CPU peer | peer ms | peer GFLOP/s | ours/peer (GFLOP/s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &ours {
        let p = peer.iter().find(|p| {
            p["op"] == r.op.as_str()
                && p["dtype"] == r.dtype.name()
                && p["shape"] == r.shape.as_str()
        });
        let (impl_, pms, pg) = match p {
            Some(p) => (
                p["impl"].as_str().unwrap_or("?").to_string(),
                p["median_ms"].as_f64().unwrap_or(f64::NAN),
                p["gflops"].as_f64().unwrap_or(f64::NAN),
            ),
            None => ("-".into(), f64::NAN, f64::NAN),
        };
        println!(
            "| {} | {} | {} | {:.2} | {:.1} | {} | {:.2} | {:.1} | {:.3} |",
            r.op,
            r.dtype,
            r.shape,
            r.median_ms,
            r.gflops,
            impl_,
            pms,
            pg,
            r.gflops / pg
        );
        if json {
            let mut v = serde_json::to_value(r)?;
            v["peer"] = serde_json::json!({"impl": impl_, "median_ms": pms, "gflops": pg});
            eprintln!("{v}");
        }
    }
    Ok(())
}

fn run_peer(ours: &[BenchResult]) -> anyhow::Result<Vec<serde_json::Value>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/cpu_peer.py");
    let python = std::env::var("EASEL_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {python} {script}"))?;
    {
        let mut stdin = child.stdin.take().context("peer stdin")?;
        for r in ours {
            writeln!(
                stdin,
                "{}",
                serde_json::json!({"op": r.op, "dtype": r.dtype.name(), "shape": r.shape})
            )?;
        }
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "peer exited with {}", out.status);
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}
