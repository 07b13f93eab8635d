//! The GPU model tasks over real HTTP against the real binary, with the real
//! weights in `../shared/models`: `remove-background` (cutout and mask),
//! `replace-background` and `upscale`, each compared with the library call
//! the CLI makes on the same input; model errors at submit; credits; and
//! what `/v1/models`, `/readyz` and `/metrics` report about them.
//!
//! IS-Net runs at `resolution=256` (a 1024² forward takes over a minute on
//! lavapipe) and inputs are small, so each job is seconds on a CPU adapter.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use easel_host::background::{self, InputImage, Mask, MaskOptions};
use easel_host::upscale::{self, UpscaleOptions};
use image::{DynamicImage, GenericImageView, imageops::FilterType};
use serde_json::Value;

/// The model input side used for IS-Net in these tests.
const RESOLUTION: usize = 256;
const JOB_TIMEOUT: Duration = Duration::from_secs(600);

fn shared() -> PathBuf {
    easel_host::testing::shared_dir()
}

fn models_dir() -> PathBuf {
    shared().join("models")
}

fn encode_png(img: &DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The IS-Net fixture photo, downscaled to `w`x`h`.
fn photo(w: u32, h: u32) -> DynamicImage {
    let path = shared().join("fixtures/isnet/input-1024.png");
    let img = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    DynamicImage::ImageRgb8(img.resize_exact(w, h, FilterType::Triangle).to_rgb8())
}

/// A server with the GPU on and the shared models, or `None` (skip) when
/// there is no adapter outside CI.
fn gpu_server() -> Option<(Server, easel_kernels::Gpu)> {
    let gpu = easel_kernels::testing::test_gpu()?;
    let dir = models_dir();
    let s = Server::start(&[
        ("EASEL_GPU__ENABLED", "true"),
        ("EASEL_MODELS_DIR", dir.to_str().unwrap()),
    ]);
    Some((s, gpu))
}

/// Submits, waits for the end, asserts success and downloads the output.
async fn run_ok(
    s: &Server,
    key: &str,
    task: &str,
    files: &[(&str, Vec<u8>)],
    fields: &[(&str, &str)],
) -> (Value, DynamicImage) {
    let (status, job) = submit(s, key, task, files, fields).await;
    assert_eq!(status, 201, "{job}");
    let job = wait_done(s, key, job["id"].as_str().unwrap(), JOB_TIMEOUT).await;
    assert_eq!(job["status"], "succeeded", "{job}\n{}", s.log());
    let out = &job["outputs"][0];
    let r = client()
        .get(s.u(out["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    let img = image::load_from_memory(&bytes).expect("the output decodes");
    assert_eq!(
        (out["width"].as_u64(), out["height"].as_u64()),
        (Some(img.width() as u64), Some(img.height() as u64))
    );
    (job, img)
}

async fn get_json(s: &Server, key: Option<&str>, path: &str) -> Value {
    let mut r = client().get(s.u(path));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.unwrap().json().await.unwrap()
}

/// The `(event, data)` pairs of an SSE stream, read until it ends.
async fn read_sse(r: reqwest::Response, within: Duration) -> Vec<(String, Value)> {
    use futures_util::StreamExt;
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, stream.next()).await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(
        tokio::time::Instant::now() < deadline,
        "the SSE stream did not end within {within:?}:\n{buf}"
    );
    parse_sse(&buf)
}

fn parse_sse(buf: &str) -> Vec<(String, Value)> {
    buf.split("\n\n")
        .filter_map(|block| {
            let mut ev = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    ev = Some(e.trim().to_owned());
                }
                if let Some(d) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str(d.trim()).unwrap());
                }
            }
            Some((ev?, data?))
        })
        .collect()
}

/// Largest absolute difference of two equally long byte slices.
fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn background_tasks_match_the_library_and_charge_credits() {
    let Some((s, gpu)) = gpu_server() else { return };
    let t = s.tenant("bg", 10).await;
    let input = photo(96, 80);
    let png = encode_png(&input);
    let res = RESOLUTION.to_string();

    // The reference: the library path `easel run remove-background` takes.
    let dtype = background::default_dtype(&gpu);
    let seg = background::load_segmenter(&gpu, &models_dir(), "isnet-dis", dtype).unwrap();
    let image = InputImage::from_image(&input);
    let alpha = background::predict_alpha(
        &gpu,
        &seg,
        &image,
        &MaskOptions::default(),
        Some(RESOLUTION),
    )
    .unwrap();
    let want_mask = Mask::new(96, 80, alpha.clone()).to_gray();
    let fg = want_mask.as_raw().iter().filter(|v| **v > 200).count();
    let bg = want_mask.as_raw().iter().filter(|v| **v < 10).count();
    assert!(
        fg > 500 && bg > 500,
        "the fixture must have both subject and background (fg {fg}, bg {bg} px)"
    );

    // Cutout: RGBA at the input's size, alpha = the library's mask.
    let (job, cut) = run_ok(
        &s,
        &t.key,
        "remove-background",
        &[("image", png.clone())],
        &[("resolution", &res)],
    )
    .await;
    assert_eq!(job["credits"], 2);
    assert_eq!(job["credits_state"], "charged");
    assert_eq!(
        job["params"]["model"], "isnet-dis",
        "the default is recorded"
    );
    assert_eq!(job["outputs"][0]["content_type"], "image/png");
    assert!(cut.color().has_alpha(), "{:?}", cut.color());
    assert_eq!(cut.dimensions(), (96, 80));
    let got_alpha: Vec<u8> = cut.to_rgba8().pixels().map(|p| p[3]).collect();
    let d = max_diff(&got_alpha, want_mask.as_raw());
    assert!(
        d <= 1,
        "cutout alpha vs library mask: max abs diff {d} (tolerance 1/255)"
    );

    // Mask only.
    let (_, mask) = run_ok(
        &s,
        &t.key,
        "remove-background",
        &[("image", png.clone())],
        &[("resolution", &res), ("output", "mask")],
    )
    .await;
    assert_eq!(mask.dimensions(), (96, 80));
    let d = max_diff(mask.to_luma8().as_raw(), want_mask.as_raw());
    assert!(
        d <= 1,
        "mask vs library mask: max abs diff {d} (tolerance 1/255)"
    );

    // Replace with a colour: pixels whose whole 9x9 neighbourhood is
    // background (alpha < 0.01) are the colour.
    let (job, replaced) = run_ok(
        &s,
        &t.key,
        "replace-background",
        &[("image", png.clone())],
        &[("resolution", &res), ("color", "#10e040")],
    )
    .await;
    assert_eq!(job["credits"], 3);
    let replaced = replaced.to_rgb8();
    assert_eq!(replaced.dimensions(), (96, 80));
    let (w, h) = (96i64, 80i64);
    let mut checked = 0;
    for y in 0..h {
        for x in 0..w {
            let far = (-4..=4).all(|dy| {
                (-4..=4).all(|dx| {
                    let (xx, yy) = ((x + dx).clamp(0, w - 1), (y + dy).clamp(0, h - 1));
                    alpha[(yy * w + xx) as usize] < 0.01
                })
            });
            if far {
                let p = replaced.get_pixel(x as u32, y as u32).0;
                let d = max_diff(&p, &[0x10, 0xe0, 0x40]);
                assert!(d <= 1, "background pixel ({x},{y}) is {p:?}, not #10e040");
                checked += 1;
            }
        }
    }
    assert!(
        checked > 300,
        "only {checked} pixels lie far inside the background"
    );

    // Credits: 10 - 2 - 2 - 3 charged so far.
    let acct = get_json(&s, Some(&t.key), "/v1/account").await;
    assert_eq!(acct["credits"], 3, "{acct}");

    // A job that fails after submit (the body does not decode) is refunded.
    let mut broken = png.clone();
    broken.truncate(broken.len() / 2);
    let (status, job) = submit(
        &s,
        &t.key,
        "remove-background",
        &[("image", broken)],
        &[("resolution", &res)],
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let job = wait_done(&s, &t.key, job["id"].as_str().unwrap(), JOB_TIMEOUT).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "invalid_image", "{job}");
    assert_eq!(job["credits_state"], "refunded");
    let acct = get_json(&s, Some(&t.key), "/v1/account").await;
    assert_eq!(acct["credits"], 3, "{acct}");

    // Bad requests are 400s naming the parameter, before any job exists.
    for (task, fields, param) in [
        (
            "remove-background",
            vec![("model", "no-such-model")],
            "model",
        ),
        (
            "remove-background",
            vec![("model", "../isnet-dis")],
            "model",
        ),
        (
            "remove-background",
            vec![("resolution", "100")],
            "resolution",
        ),
        (
            "remove-background",
            vec![("model", "realesr-animevideov3-x4")],
            "model",
        ),
        ("replace-background", vec![], "color"),
        (
            "replace-background",
            vec![("color", "#fff"), ("blur", "3")],
            "color",
        ),
        ("replace-background", vec![("color", "red")], "color"),
    ] {
        let (status, body) = submit(&s, &t.key, task, &[("image", png.clone())], &fields).await;
        assert_eq!(status, 400, "{task} {fields:?}: {body}");
        assert_eq!(body["error"]["param"], param, "{task} {fields:?}: {body}");
    }
    let (_, body) = submit(
        &s,
        &t.key,
        "remove-background",
        &[("image", png.clone())],
        &[("model", "no-such-model")],
    )
    .await;
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("unknown model 'no-such-model'") && msg.contains("isnet-dis"),
        "{msg}"
    );

    // What the server reports about it.
    let models = get_json(&s, Some(&t.key), "/v1/models").await;
    let task = |n: &str| {
        models["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .unwrap_or_else(|| panic!("task {n} in {models}"))
            .clone()
    };
    for n in ["remove-background", "replace-background"] {
        assert_eq!(task(n)["models"], serde_json::json!(["isnet-dis"]), "{n}");
        assert_eq!(task(n)["available"], true);
    }
    assert_eq!(task("remove-background")["credits"], 2);
    let isnet = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "isnet-dis")
        .expect("isnet-dis is listed")
        .clone();
    assert_eq!(isnet["loaded"], true, "{models}");
    let ready = get_json(&s, None, "/readyz").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["database_writable"], true);
    assert_eq!(ready["gpu"]["available"], true);
    assert_eq!(ready["gpu"]["adapter"], gpu.info().name.as_str());
    let metrics = client()
        .get(s.u("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(value("easel_gpu_memory_bytes{kind=\"models\"}") > 1e6);
    assert!(value("easel_gpu_memory_bytes{kind=\"peak\"}") > 1e6);
    let durations = metrics
        .lines()
        .find(|l| {
            l.starts_with("easel_job_duration_seconds_count")
                && l.contains("task=\"remove-background\"")
                && l.contains("status=\"succeeded\"")
        })
        .unwrap_or_else(|| panic!("no remove-background durations in:\n{metrics}"));
    assert!(durations.ends_with(" 2"), "{durations}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upscale_matches_the_library() {
    let Some((s, gpu)) = gpu_server() else { return };
    let t = s.tenant("up", 100).await;
    let input = photo(24, 17);
    let png = encode_png(&input);
    let name = "realesr-animevideov3-x4";

    let (job, got) = run_ok(
        &s,
        &t.key,
        "upscale",
        &[("image", png.clone())],
        &[("model", name)],
    )
    .await;
    assert_eq!(job["credits"], 20);
    assert_eq!(got.dimensions(), (96, 68));

    // The library call `easel run upscale` makes.
    let dtype = upscale::default_dtype(&gpu, false);
    let model = upscale::load_model(&gpu, &models_dir(), name, dtype).unwrap();
    let want = upscale::upscale(
        &gpu,
        &model,
        &input,
        &UpscaleOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let (g, w) = (got.to_rgb8(), want.to_rgb8());
    let d = max_diff(g.as_raw(), w.as_raw());
    assert!(
        d <= 1,
        "server vs library upscale: max abs diff {d} (tolerance 1)"
    );

    // Tiles report progress per tile (watched over SSE from the queue,
    // behind a blocker on the GPU lane); a scale other than the model's
    // resizes.
    let blocker: Value = client()
        .post(s.u("/v1/image/noop-gpu"))
        .bearer_auth(&t.key)
        .json(&serde_json::json!({"sleep_ms": 1500}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(blocker["id"].is_string(), "{blocker}");
    let (status, job) = submit(
        &s,
        &t.key,
        "upscale",
        &[("image", png.clone())],
        &[
            ("model", name),
            ("tile", "8"),
            ("scale", "2"),
            ("format", "webp"),
        ],
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap();
    let r = client()
        .get(s.u(&format!("/v1/jobs/{id}/events")))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap();
    let events = read_sse(r, Duration::from_secs(120)).await;
    let tiles: Vec<(u64, u64)> = events
        .iter()
        .filter(|(e, _)| e == "progress")
        .map(|(_, d)| {
            (
                d["tile"].as_u64().unwrap(),
                d["total_tiles"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(u64, u64)> = (1..=9).map(|i| (i, 9)).collect();
    assert_eq!(tiles, want, "3x3 tiles of 8 px, one event each: {events:?}");
    let job = wait_done(&s, &t.key, id, JOB_TIMEOUT).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["outputs"][0]["content_type"], "image/webp");
    assert_eq!(
        (
            job["outputs"][0]["width"].as_u64(),
            job["outputs"][0]["height"].as_u64()
        ),
        (Some(48), Some(34))
    );

    // Cancel between tiles: the heavier x4plus model, cancelled on the first
    // tile's progress event, stops before the last tile and is refunded.
    let (status, job) = submit(
        &s,
        &t.key,
        "upscale",
        &[("image", png.clone())],
        &[("model", "realesrgan-x4plus"), ("tile", "8")],
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap();
    let r = client()
        .get(s.u(&format!("/v1/jobs/{id}/events")))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap();
    let mut stream = futures_util::StreamExt::fuse(r.bytes_stream());
    let mut buf = String::new();
    while !buf.contains("event: progress") && !buf.contains("event:progress") {
        let chunk = tokio::time::timeout(JOB_TIMEOUT, futures_util::StreamExt::next(&mut stream))
            .await
            .expect("a progress event")
            .expect("the stream stays open until the first tile")
            .unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let r = client()
        .post(s.u(&format!("/v1/jobs/{id}/cancel")))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // The rest of the stream, to its end.
    while let Ok(Some(chunk)) =
        tokio::time::timeout(JOB_TIMEOUT, futures_util::StreamExt::next(&mut stream)).await
    {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let job = wait_done(&s, &t.key, id, JOB_TIMEOUT).await;
    assert_eq!(job["status"], "canceled", "{job}");
    assert_eq!(job["credits_state"], "refunded", "{job}");
    let progress_events = parse_sse(&buf)
        .into_iter()
        .filter(|(e, _)| e == "progress")
        .count();
    assert!(
        (1..9).contains(&progress_events),
        "canceled after tile 1 of 9, yet {progress_events} tiles ran:\n{buf}"
    );

    for (fields, param) in [
        (vec![("model", "no-such-model")], "model"),
        (vec![("model", "isnet-dis")], "model"),
        (vec![("model", name), ("scale", "9")], "scale"),
    ] {
        let (status, body) =
            submit(&s, &t.key, "upscale", &[("image", png.clone())], &fields).await;
        assert_eq!(status, 400, "{fields:?}: {body}");
        assert_eq!(body["error"]["param"], param, "{fields:?}: {body}");
    }
    let models = get_json(&s, Some(&t.key), "/v1/models").await;
    let up = models["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "upscale")
        .unwrap()
        .clone();
    assert_eq!(
        up["models"],
        serde_json::json!(["realesr-animevideov3-x4", "realesrgan-x4plus"])
    );
    let acct = get_json(&s, Some(&t.key), "/v1/account").await;
    assert_eq!(acct["credits"], 60, "two upscales charged: {acct}");
    // The upscale lands in the per-task duration histogram.
    let metrics = client()
        .get(s.u("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("easel_job_duration_seconds_count")
                && l.contains("task=\"upscale\"")
                && l.ends_with(" 2")),
        "{metrics}"
    );
}
