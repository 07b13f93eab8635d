//! The hostile-plugin corpus: one processor whose `preprocess` misbehaves in the way the
//! request's task names (one guest per behaviour would cost a build each; the host sees the
//! same thing either way). `probe-*` tasks instead report, in the `result` parameter, what a
//! host interface answered, for the no-permission tests.

use easel_sdk::prelude::*;
use std::hint::black_box;

struct Hostile;

/// Recursion with scalar locals only: it exhausts the native (wasm) stack.
fn recurse(n: u64) -> u64 {
    if black_box(n) == u64::MAX {
        return 0;
    }
    // Not a tail call, so every level keeps a frame.
    recurse(n + 1).wrapping_add(black_box(n))
}

/// Recursion with an array per frame: it exhausts the guest's own stack in linear memory
/// (Rust's shadow stack) first, which faults as an out-of-bounds access.
fn recurse_shadow(n: u64) -> u64 {
    let buf = black_box([n; 64]);
    if black_box(n) == u64::MAX {
        return 0;
    }
    recurse_shadow(n + 1).wrapping_add(buf[(n % 64) as usize])
}

fn outcome<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.code,
    }
}

impl Processor for Hostile {
    fn preprocess(mut req: Request) -> Result<Request> {
        match req.task.as_str() {
            "infinite-loop" => {
                let mut i = 0u64;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            // Blocks in the host (a monotonic-clock pollable), where epoch ticks never
            // reach it: only the call's watchdog can end it.
            "sleep" => std::thread::sleep(std::time::Duration::from_secs(3600)),
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "deep-recursion" => {
                black_box(recurse(0));
            }
            "deep-recursion-shadow" => {
                black_box(recurse_shadow(0));
            }
            "giant-output" => {
                // Each 2048x2048 image is 16 MiB of host pixels; return many.
                let n = req.params.integer("count").unwrap_or(8);
                for _ in 0..n {
                    req.images
                        .push(Image::filled(2048, 2048, rgba(1, 2, 3, 255))?);
                }
            }
            "log-flood" => loop {
                log(Level::Info, &"x".repeat(1000));
            },
            "stdout-flood" => loop {
                println!("{}", "y".repeat(1000));
            },
            "host-call-storm" => loop {
                black_box(easel_sdk::config::get("k").ok());
            },
            "forbidden-model" => {
                let out = easel_sdk::run_model("upscale", None, &[], &[])?;
                black_box(out);
            }
            "panic" => panic!("hostile guest gave up"),
            "bad-json" => req.params.set("payload", Value::Json("{not json".into())),
            "host-image-bomb" => {
                // Host-side allocations count against the memory limit too.
                let mut keep = Vec::new();
                loop {
                    keep.push(Image::filled(4096, 4096, rgba(0, 0, 0, 0))?);
                }
            }
            "probe-images" => {
                let r = outcome(Image::filled(2, 2, rgba(0, 0, 0, 255)));
                req.params.set("result", r);
            }
            "probe-models" => {
                let r = outcome(easel_sdk::run_model("invert", None, &[], &[]));
                req.params.set("result", r);
            }
            "probe-log" => {
                let r = outcome(easel_sdk::bindings::processor::easel::plugin::log::write(
                    Level::Info,
                    "probe",
                ));
                req.params.set("result", r);
            }
            "probe-config" => {
                let r = outcome(easel_sdk::config::get("k"));
                req.params.set("result", r);
            }
            "probe-kv" => {
                let r = outcome(easel_sdk::kv::set("k", b"v"));
                req.params.set("result", r);
            }
            _ => {}
        }
        Ok(req)
    }

    fn postprocess(ctx: Context, mut out: Output) -> Result<Output> {
        if ctx.task == "bad-metadata" {
            out.metadata = "[1, 2".into();
        }
        Ok(out)
    }
}

export_processor!(Hostile);
