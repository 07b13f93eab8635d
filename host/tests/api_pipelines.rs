//! Tenants' plugin pipelines over real HTTP: `/v1/pipelines/{task}` (a router and ordered
//! pre/post processors per task), the credits a router's plan costs, and the `product-photo`
//! router end to end on the GPU (lavapipe) with the shared models.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::plugins::*;
use common::*;
use image::{DynamicImage, imageops::FilterType};
use reqwest::Method;
use reqwest::multipart::Form;
use serde_json::{Value, json};

/// (stage, plugin, version) of each plugin step of a job.
fn steps(job: &Value) -> Vec<(String, String, u64)> {
    job["plugins"]
        .as_array()
        .unwrap_or_else(|| panic!("no plugin steps: {job}"))
        .iter()
        .map(|p| {
            (
                p["stage"].as_str().unwrap().to_owned(),
                p["plugin"].as_str().unwrap().to_owned(),
                p["version"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn step(stage: &str, plugin: &str, version: u64) -> (String, String, u64) {
    (stage.to_owned(), plugin.to_owned(), version)
}

/// Pixels that differ between two images of the same size.
fn changed(a: &image::RgbaImage, b: &image::RgbaImage) -> Vec<(u32, u32)> {
    assert_eq!(a.dimensions(), b.dimensions());
    a.enumerate_pixels()
        .filter(|(x, y, p)| *p != b.get_pixel(*x, *y))
        .map(|(x, y, _)| (x, y))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_pipeline_orders_processors_and_replaces_the_manifest_default() {
    let mut s = server();
    let a = s.tenant("a", 100).await;
    let b = s.tenant("b", 100).await;
    // Two watermarks in opposite corners and a pass-through; `wm-a` hooks convert by its
    // manifest (the default wiring), the others hook nothing.
    let uploads = [
        (
            "wm-a",
            "watermark",
            json!({"tasks": ["convert"], "config": {"text": "AAAA"}}),
        ),
        (
            "wm-b",
            "watermark",
            json!({"config": {"text": "BB", "position": "top-left"}}),
        ),
        ("pass", "test-passthrough", json!({})),
        ("pp", "product-photo", json!({})),
        ("ep", "test-endpoint", json!({})),
    ];
    for (name, comp, manifest) in uploads {
        let (status, v) =
            json_of(put_with_manifest(&s, &a.key, name, component(comp), manifest).await).await;
        assert_eq!(status, 201, "{name}: {v}");
    }
    let input = gradient_png(256, 128);
    let plain = convert_png(&s, &b.key, &input).await;
    assert_eq!(plain["status"], "succeeded", "{plain}");
    let plain = output_pixels(&s, &plain).await;

    // No pipeline: the manifest default (wm-a before and after the task).
    let job = convert_png(&s, &a.key, &input).await;
    assert_eq!(
        steps(&job),
        [
            step("preprocess", "wm-a", 1),
            step("postprocess", "wm-a", 1)
        ]
    );

    // A pipeline decides instead: wm-a is not in it, so it does not run.
    let (status, p) = put_pipeline(
        &s,
        &a.key,
        "convert",
        json!({"preprocess": ["pass"], "postprocess": ["wm-b", "pass"]}),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        (
            &p["task"],
            &p["router"],
            &p["preprocess"],
            &p["postprocess"]
        ),
        (
            &json!("convert"),
            &Value::Null,
            &json!(["pass"]),
            &json!(["wm-b", "pass"])
        )
    );
    let job = convert_png(&s, &a.key, &input).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        steps(&job),
        [
            step("preprocess", "pass", 1),
            step("postprocess", "wm-b", 1),
            step("postprocess", "pass", 1)
        ]
    );
    // Only the top-left mark (wm-b's "BB": 16x8 px at 4,4) is on the output.
    let out = output_pixels(&s, &job).await;
    let diff = changed(&out, &plain);
    assert!(diff.len() > 10, "wm-b marked {} pixels", diff.len());
    assert!(
        diff.iter()
            .all(|&(x, y)| (4..20).contains(&x) && (4..12).contains(&y)),
        "only wm-b's box changed"
    );

    // Both marks, in the order given, and the reverse order runs reversed.
    for order in [["wm-a", "wm-b"], ["wm-b", "wm-a"]] {
        let (status, p) = put_pipeline(&s, &a.key, "convert", json!({"postprocess": order})).await;
        assert_eq!(status, 200, "{p}");
        let job = convert_png(&s, &a.key, &input).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(
            steps(&job),
            [
                step("postprocess", order[0], 1),
                step("postprocess", order[1], 1)
            ]
        );
        let out = output_pixels(&s, &job).await;
        let diff = changed(&out, &plain);
        let (w, h) = out.dimensions();
        let top_left = diff.iter().filter(|&&(x, y)| x < 20 && y < 12).count();
        let bottom_right = diff
            .iter()
            .filter(|&&(x, y)| x >= w - 36 && y >= h - 12)
            .count();
        assert!(
            top_left > 10 && bottom_right > 10,
            "{top_left} {bottom_right}"
        );
        assert_eq!(top_left + bottom_right, diff.len(), "nothing else changed");
    }

    // A pinned version is what the pipeline runs: v2 of wm-b runs out of fuel, v1 does not.
    let (status, v) = json_of(
        put_with_manifest(
            &s,
            &a.key,
            "wm-b",
            component("watermark"),
            json!({"limits": {"fuel": 1000}}),
        )
        .await,
    )
    .await;
    assert_eq!((status, v["version"].as_u64()), (201, Some(2)), "{v}");
    let job = convert_png(&s, &a.key, &input).await;
    assert_eq!(job["error"]["code"], "plugin_fuel_exhausted", "{job}");
    let (status, _) = call_json(
        &s,
        &a.key,
        Method::PUT,
        "/v1/plugins/wm-b/pin",
        Some(json!({"version": 1})),
    )
    .await;
    assert_eq!(status, 200);
    let job = convert_png(&s, &a.key, &input).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        steps(&job),
        [
            step("postprocess", "wm-b", 1),
            step("postprocess", "wm-a", 1)
        ]
    );

    // Invalid pipelines are refused, naming the field; the stored one is unchanged.
    let cases = [
        ("nope", json!({}), 404, "task_not_found", "task"),
        (
            "convert",
            json!({"router": "wm-a"}),
            422,
            "plugin_wrong_world",
            "router",
        ),
        (
            "convert",
            json!({"router": "ghost"}),
            422,
            "plugin_not_found",
            "router",
        ),
        (
            "convert",
            json!({"preprocess": ["pass", "ghost"]}),
            422,
            "plugin_not_found",
            "preprocess[1]",
        ),
        (
            "convert",
            json!({"postprocess": ["ep"]}),
            422,
            "plugin_wrong_world",
            "postprocess[0]",
        ),
        (
            "convert",
            json!({"postprocess": ["pp"]}),
            422,
            "plugin_wrong_world",
            "postprocess[0]",
        ),
        (
            "convert",
            json!({"postprocess": ["wm-a", "wm-a"]}),
            422,
            "duplicate_plugin",
            "postprocess[1]",
        ),
        (
            "convert",
            json!({"processors": ["wm-a"]}),
            400,
            "invalid_parameter",
            "processors",
        ),
        (
            "convert",
            json!({"router": 5}),
            400,
            "invalid_parameter",
            "router",
        ),
        (
            "convert",
            json!({"preprocess": "pass"}),
            400,
            "invalid_parameter",
            "preprocess",
        ),
    ];
    for (task, body, status, code, param) in cases {
        let (st, e) = put_pipeline(&s, &a.key, task, body.clone()).await;
        assert_eq!(
            (
                st,
                e["error"]["code"].as_str(),
                e["error"]["param"].as_str()
            ),
            (status, Some(code), Some(param)),
            "{body}: {e}"
        );
    }
    let (_, e) = put_pipeline(&s, &b.key, "convert", json!({"postprocess": ["wm-a"]})).await;
    assert_eq!(
        e["error"]["code"], "plugin_not_found",
        "B cannot use A's plugins"
    );

    // Listed, tenant-scoped and persisted across a restart.
    let (_, list) = get(&s, &a.key, "/v1/pipelines").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["data"][0]["postprocess"], json!(["wm-b", "wm-a"]));
    let (_, list_b) = get(&s, &b.key, "/v1/pipelines").await;
    assert_eq!(list_b["data"], json!([]));
    assert_eq!(get(&s, &b.key, "/v1/pipelines/convert").await.0, 404);
    s.terminate(Duration::from_secs(30));
    s.restart();
    let (status, p) = get(&s, &a.key, "/v1/pipelines/convert").await;
    assert_eq!(
        (status, &p["postprocess"]),
        (200, &json!(["wm-b", "wm-a"])),
        "{p}"
    );

    // Deleted: the manifest default applies again.
    let (status, _) = call_json(&s, &a.key, Method::DELETE, "/v1/pipelines/convert", None).await;
    assert_eq!(status, 204);
    let (status, e) = call_json(&s, &a.key, Method::DELETE, "/v1/pipelines/convert", None).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("pipeline_not_found"))
    );
    let job = convert_png(&s, &a.key, &input).await;
    assert_eq!(
        steps(&job),
        [
            step("preprocess", "wm-a", 1),
            step("postprocess", "wm-a", 1)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_plan_costs_its_tasks_credits() {
    // The models are installed but the GPU is off: the planned model steps pass their
    // checks and fail when run, after the plan's credits were reserved.
    let models = shared().join("models");
    let s = server_with(&[("EASEL_MODELS_DIR", models.to_str().unwrap())]);
    let rich = s.tenant("rich", 100).await;
    let poor = s.tenant("poor", 10).await;
    for t in [&rich, &poor] {
        let (status, v) =
            json_of(put_raw(&s, &t.key, "pp", component("product-photo")).await).await;
        assert_eq!(status, 201, "{v}");
        let (status, p) = put_pipeline(&s, &t.key, "convert", json!({"router": "pp"})).await;
        assert_eq!(status, 200, "{p}");
    }
    // A 64x48 input: cut-out onto white 3 + upscale 20 + convert 1 (default prices) = 24
    // credits, where convert alone reserves 1 at submit.
    let input = gradient_png(64, 48);
    let want_plan = json!([
        {"task": "replace-background", "credits": 3},
        {"task": "upscale", "credits": 20},
        {"task": "convert", "credits": 1},
    ]);

    let job = convert_png(&s, &poor.key, &input).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "insufficient_credits", "{job}");
    let msg = job["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("costs 24 credits") && msg.contains("balance of 9"),
        "{msg}"
    );
    assert_eq!(job["plugins"][0]["stage"], "route");
    assert_eq!(job["plugins"][0]["plan"], want_plan, "{job}");
    assert_eq!(
        (job["credits"].as_i64(), job["credits_state"].as_str()),
        (Some(1), Some("refunded")),
        "{job}"
    );
    assert_eq!(balance(&s, &poor.key).await, 10, "nothing kept");

    // Paid for: the job's reservation becomes the plan's 24; the first model step fails
    // (no GPU) and all of it is refunded.
    let job = convert_png(&s, &rich.key, &input).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "gpu_unavailable", "{job}");
    assert_eq!(job["plugins"][0]["plan"], want_plan, "{job}");
    assert_eq!(
        (job["credits"].as_i64(), job["credits_state"].as_str()),
        (Some(24), Some("refunded")),
        "{job}"
    );
    assert_eq!(balance(&s, &rich.key).await, 100);
}

fn shared() -> PathBuf {
    easel_host::testing::shared_dir()
}

/// The IS-Net fixture photo (a yellow sphere on a plinth over dark blue), at `w`x`h`.
fn photo(w: u32, h: u32) -> image::RgbImage {
    let path = shared().join("fixtures/isnet/input-1024.png");
    let img = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    img.resize_exact(w, h, FilterType::Triangle).to_rgb8()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_photo_puts_the_subject_on_a_white_2000_square() {
    let Some(_gpu) = easel_kernels::testing::test_gpu() else {
        return;
    };
    let models = shared().join("models");
    assert!(
        models.join("isnet-dis.safetensors").exists(),
        "the shared models are missing under {}",
        models.display()
    );
    let s = server_with(&[
        ("EASEL_GPU__ENABLED", "true"),
        ("EASEL_MODELS_DIR", models.to_str().unwrap()),
    ]);
    let t = s.tenant("shop", 100).await;
    // Small and fast on a CPU adapter: IS-Net at 256, the small x4 upscaler.
    let manifest =
        json!({"config": {"resolution": "256", "upscale_model": "realesr-animevideov3-x4"}});
    let (status, v) = json_of(
        put_with_manifest(
            &s,
            &t.key,
            "product-photo",
            component("product-photo"),
            manifest,
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (status, p) = put_pipeline(
        &s,
        &t.key,
        "remove-background",
        json!({"router": "product-photo"}),
    )
    .await;
    assert_eq!(status, 200, "{p}");

    // 96x64 in: the product fills a 2000x1333 band of the square, white above and below.
    let (w, h) = (96u32, 64u32);
    let mut png = std::io::Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(photo(w, h))
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    let form = Form::new()
        .part("image", image_part(png.into_inner()))
        .text("resolution", "256");
    let r = client()
        .post(s.u("/v1/image/remove-background"))
        .bearer_auth(&t.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, job) = json_of(r).await;
    assert_eq!(status, 201, "{job}");
    let job = wait_done(
        &s,
        &t.key,
        job["id"].as_str().unwrap(),
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}\n{}", s.log());
    let planned: Vec<&str> = job["plugins"][0]["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["task"].as_str().unwrap())
        .collect();
    assert_eq!(planned, ["replace-background", "upscale", "convert"]);
    // Charged for the plan (3 + 20 + 1), not for the remove-background submitted (2).
    assert_eq!(
        (job["credits"].as_i64(), job["credits_state"].as_str()),
        (Some(24), Some("charged"))
    );
    assert_eq!(balance(&s, &t.key).await, 76);

    let out = output_pixels(&s, &job).await;
    assert_eq!(out.dimensions(), (2000, 2000));
    let white = |p: &image::Rgba<u8>| p[0] > 240 && p[1] > 240 && p[2] > 240 && p[3] == 255;
    let band = (2000 - 2000 * h / w) / 2; // 333 px above and below the product
    for y in (0..band - 2).chain(2000 - band + 2..2000).step_by(7) {
        for x in (0..2000).step_by(7) {
            assert!(
                white(out.get_pixel(x, y)),
                "({x},{y}) {:?}",
                out.get_pixel(x, y)
            );
        }
    }
    // Inside the band: the dark blue background is gone (white now); the sphere is kept.
    let to_out = |fx: f64, fy: f64| {
        (
            (fx * 2000.0) as u32,
            band + (fy * (2000 - 2 * band) as f64) as u32,
        )
    };
    for (fx, fy) in [(0.05, 0.05), (0.95, 0.1), (0.1, 0.9), (0.9, 0.95)] {
        let (x, y) = to_out(fx, fy);
        assert!(
            white(out.get_pixel(x, y)),
            "background at ({x},{y}): {:?}",
            out.get_pixel(x, y)
        );
    }
    let (x, y) = to_out(0.5, 0.42); // the sphere's centre
    let p = out.get_pixel(x, y);
    assert!(
        p[0] > 80 && p[1] > 80 && p[2] < 90,
        "sphere at ({x},{y}): {p:?}"
    );
    let (x, y) = to_out(0.5, 0.73); // the plinth: cream, not white
    let p = out.get_pixel(x, y);
    assert!(
        p[0] > 180 && p[2] < 230 && p[0] as i32 - p[2] as i32 > 15,
        "plinth at ({x},{y}): {p:?}"
    );
    // Almost no dark blue survives anywhere.
    let blue = out
        .pixels()
        .filter(|p| p[2] as i32 > p[0] as i32 + 30 && p[2] < 150)
        .count();
    assert!(blue < 2000 * 2000 / 100, "{blue} dark-blue pixels remain");
}

/// A router's planned GPU step inside a CPU job takes a GPU lane slot: with
/// `gpu_concurrency = 1` and a GPU job holding the slot, the CPU job's planned `noop-gpu`
/// step waits for that job to finish instead of running beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_gpu_step_waits_for_a_gpu_slot() {
    let s = server_with(&[
        ("EASEL_GPU__ENABLED", "true"),
        ("EASEL_JOBS__GPU_CONCURRENCY", "1"),
    ]);
    let t = s.tenant("t", 1000).await;
    let (status, v) = json_of(
        put_with_manifest(
            &s,
            &t.key,
            "plan",
            component("test-router-plan"),
            json!({"config": {"plan": "noop-gpu?sleep_ms=0"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (status, p) = put_pipeline(&s, &t.key, "noop", json!({"router": "plan"})).await;
    assert_eq!(status, 200, "{p}");

    let submit = |task: &'static str, params: Value| {
        let (s, key) = (&s, t.key.clone());
        async move {
            let (status, job) = json_of(
                client()
                    .post(s.u(&format!("/v1/image/{task}")))
                    .bearer_auth(&key)
                    .json(&params)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, 201, "{job}");
            job["id"].as_str().unwrap().to_owned()
        }
    };
    let gpu_job = submit("noop-gpu", json!({"sleep_ms": 1500})).await;
    // Wait until it runs (holds the only GPU slot).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = call_json(
            &s,
            &t.key,
            Method::GET,
            &format!("/v1/jobs/{gpu_job}"),
            None,
        )
        .await;
        if v["status"] == "running" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ran: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_job = submit("noop", json!({})).await;
    let cpu = wait_done(&s, &t.key, &cpu_job, Duration::from_secs(30)).await;
    let gpu = wait_done(&s, &t.key, &gpu_job, Duration::from_secs(30)).await;
    assert_eq!(cpu["status"], "succeeded", "{cpu}");
    assert_eq!(gpu["status"], "succeeded", "{gpu}");
    let done = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["completed_at"].as_str().unwrap()).unwrap()
    };
    assert!(
        done(&cpu) >= done(&gpu),
        "the planned GPU step ran beside the GPU job: cpu job done {}, gpu job done {}",
        done(&cpu),
        done(&gpu)
    );
}
