//! A processor's `models.run` inside a job, over real HTTP (`tests/plugins/models-post`: a
//! postprocess hook that runs a configured task on the job's first output and attaches the
//! result): the job's output is the model's, the tenant pays the job's and the run's prices,
//! the plugin step records the run, a refused model fails the job with the refusal's own
//! code, and the credit ledger (`GET /v1/credits/ledger`) accounts for every change.

mod common;

use std::time::Duration;

use common::plugins::*;
use common::*;
use serde_json::{Value, json};

const PLUGIN: &str = "mp";

/// Uploads the hook (a new version each time) on `convert` jobs with `config`.
async fn install_hook(s: &Server, key: &str, config: Value) -> u64 {
    let manifest = json!({"tasks": ["convert"], "config": config});
    let r = put_with_manifest(s, key, PLUGIN, component("test-models-post"), manifest).await;
    let (status, v) = json_of(r).await;
    assert_eq!(status, 201, "{v}");
    v["version"].as_u64().unwrap()
}

/// Submits `task` with `fields` on `image` and waits for the job to end.
async fn run_job(
    s: &Server,
    key: &str,
    task: &str,
    image: Vec<u8>,
    fields: &[(&str, &str)],
) -> Value {
    let (status, job) = submit(s, key, task, &[("image", image)], fields).await;
    assert_eq!(status, 201, "{job}");
    wait_done(
        s,
        key,
        job["id"].as_str().unwrap(),
        Duration::from_secs(300),
    )
    .await
}

/// The job's postprocess step (a hooked processor also passes the request through its
/// `preprocess`, which runs no model).
fn postprocess_step(job: &Value) -> &Value {
    let steps = job["plugins"].as_array().unwrap();
    let stages: Vec<&str> = steps.iter().map(|p| p["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["preprocess", "postprocess"], "{job}");
    assert!(steps[0]["model_runs"].is_null(), "{job}");
    &steps[1]
}

fn png_of(img: &image::RgbaImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postprocess_hook_runs_a_gpu_model_inside_a_job() {
    let Some(_gpu) = easel_kernels::testing::test_gpu() else {
        return;
    };
    // The committed tiny x2 upscaler (SRVGGNetCompact, 8 features): fast on lavapipe.
    let models = tempfile::tempdir().unwrap();
    let fixture = workspace_root().join("tests/fixtures/tiny_srvgg.safetensors");
    std::fs::copy(&fixture, models.path().join("tiny.safetensors"))
        .unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
    let s = server_with(&[
        ("EASEL_GPU__ENABLED", "true"),
        ("EASEL_MODELS_DIR", models.path().to_str().unwrap()),
        // Plugins may run the upscaler with this model only.
        ("EASEL_PLUGINS__ALLOWED_MODELS", r#"["upscale/tiny"]"#),
    ]);
    let t = s.tenant("shop", 100).await;
    install_hook(&s, &t.key, json!({"task": "upscale", "model": "tiny"})).await;

    // A CPU job (convert, 1 credit) whose hook runs a GPU task (upscale, 20 credits).
    let job = run_job(
        &s,
        &t.key,
        "convert",
        gradient_png(24, 16),
        &[("format", "png")],
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}\n{}", s.log());
    assert_eq!(job["outputs"].as_array().unwrap().len(), 2, "{job}");
    assert_eq!(
        (job["credits"].as_i64(), job["credits_state"].as_str()),
        (Some(1), Some("charged")),
        "{job}"
    );
    assert_eq!(
        balance(&s, &t.key).await,
        100 - 1 - 20,
        "both prices are paid"
    );
    let step = postprocess_step(&job);
    assert_eq!(
        (
            step["stage"].as_str(),
            step["plugin"].as_str(),
            step["version"].as_u64()
        ),
        (Some("postprocess"), Some(PLUGIN), Some(1)),
        "{step}"
    );
    assert!(step["error"].is_null(), "{step}");
    assert_eq!(step["model_credits"], 20, "{step}");
    assert_eq!(
        step["model_runs"],
        json!([{"task": "upscale", "model": "tiny", "credits": 20}]),
        "{step}"
    );

    // The attached image is the model's: the same task run directly on the job's own
    // output gives the same pixels. Same adapter, weights and input (PNG round trips are
    // lossless), so they should be identical; 1 level per channel allows for float
    // reductions that are not bit-reproducible on every adapter.
    let first = output_pixels_at(&s, &job, 0).await;
    let attached = output_pixels_at(&s, &job, 1).await;
    assert_eq!(first.dimensions(), (24, 16));
    assert_eq!(attached.dimensions(), (48, 32), "the tiny model is x2");
    let reference = run_job(
        &s,
        &t.key,
        "upscale",
        png_of(&first),
        &[("model", "tiny"), ("format", "png")],
    )
    .await;
    assert_eq!(reference["status"], "succeeded", "{reference}");
    let reference = output_pixels(&s, &reference).await;
    assert_eq!(reference.dimensions(), attached.dimensions());
    let max_diff = attached
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(
        max_diff <= 1,
        "the hook's run differs from the task's by {max_diff}"
    );
    assert_eq!(balance(&s, &t.key).await, 79 - 20);

    // A model outside the allowed list: the hook gets `permission_denied`, relays it, and
    // the job fails with that code (and is refunded); nothing is charged for the run.
    let v = install_hook(
        &s,
        &t.key,
        json!({"task": "upscale", "model": "realesrgan-x4plus"}),
    )
    .await;
    let job = run_job(
        &s,
        &t.key,
        "convert",
        gradient_png(24, 16),
        &[("format", "png")],
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "permission_denied", "{job}");
    let msg = job["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("postprocess plugin `mp`") && msg.contains("upscale/realesrgan-x4plus"),
        "{msg}"
    );
    let step = postprocess_step(&job);
    assert_eq!(step["version"].as_u64(), Some(v), "{step}");
    assert!(
        step["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("plugin_error: permission_denied")),
        "{step}"
    );
    let run = &step["model_runs"][0];
    assert_eq!(
        (
            run["task"].as_str(),
            run["model"].as_str(),
            run["credits"].as_i64()
        ),
        (Some("upscale"), Some("realesrgan-x4plus"), Some(0)),
        "{step}"
    );
    assert!(
        run["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("permission_denied: ")),
        "{step}"
    );
    assert_eq!(job["credits_state"], "refunded", "{job}");
    assert_eq!(
        balance(&s, &t.key).await,
        59,
        "nothing kept for the failed job"
    );
}

/// Every entry of the tenant's ledger, oldest first, read `page` at a time.
async fn ledger(s: &Server, key: &str, page: u32) -> Vec<Value> {
    let mut all = Vec::new();
    let mut path = format!("/v1/credits/ledger?limit={page}");
    loop {
        let (status, v) = get(s, key, &path).await;
        assert_eq!(status, 200, "{v}");
        let data = v["data"].as_array().unwrap();
        assert!(data.len() <= page as usize, "{v}");
        all.extend(data.iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(v["has_more"], true);
                path = format!("/v1/credits/ledger?limit={page}&after={c}");
            }
            None => {
                assert_eq!(v["has_more"], false);
                break;
            }
        }
    }
    all.reverse();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credit_ledger_sums_to_the_balance_across_plugin_runs_and_refunds() {
    let s = server_with(&[("EASEL_CREDITS__CONVERT", "3")]);
    let t = s.tenant("acme", 50).await;
    let other = s.tenant("other", 7).await;
    let r = client()
        .post(s.u(&format!("/v1/admin/tenants/{}/credits", t.id)))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"delta": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let start = balance(&s, &t.key).await;
    assert_eq!(start, 60);

    // A job (3) whose hook runs convert (3) on its output.
    install_hook(
        &s,
        &t.key,
        json!({"task": "convert", "params": "width=8&height=4&fit=fill"}),
    )
    .await;
    let ok = run_job(
        &s,
        &t.key,
        "convert",
        gradient_png(16, 8),
        &[("format", "png")],
    )
    .await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
    assert_eq!(output_pixels_at(&s, &ok, 1).await.dimensions(), (8, 4));
    assert_eq!(postprocess_step(&ok)["model_credits"], 3, "{ok}");

    // A run that fails in its task (a crop outside the image) is charged and refunded; the
    // hook relays the error, so the job fails with the task's code and is refunded too.
    install_hook(
        &s,
        &t.key,
        json!({"task": "convert", "params": "crop_x=100&crop_y=0&crop_width=4&crop_height=4"}),
    )
    .await;
    let failed = run_job(
        &s,
        &t.key,
        "convert",
        gradient_png(16, 8),
        &[("format", "png")],
    )
    .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let run_error = postprocess_step(&failed)["model_runs"][0]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{failed}"));
    let code = failed["error"]["code"].as_str().unwrap();
    assert!(
        code != "plugin_error" && run_error.starts_with(&format!("{code}: ")),
        "the job's code is the run's: {failed}"
    );
    let end = balance(&s, &t.key).await;
    assert_eq!(
        end,
        start - 3 - 3,
        "only the successful job and its run are kept"
    );

    let entries = ledger(&s, &t.key, 2).await;
    /// (reason, amount, job, plugin, task)
    type Row<'a> = (
        &'a str,
        i64,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );
    let got: Vec<Row> = entries
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap(),
                e["amount"].as_i64().unwrap(),
                e["job_id"].as_str(),
                e["plugin"].as_str(),
                e["task"].as_str(),
            )
        })
        .collect();
    let (j1, j2) = (ok["id"].as_str(), failed["id"].as_str());
    let conv = Some("convert");
    assert_eq!(
        got,
        [
            ("grant", 50, None, None, None),
            ("admin_adjustment", 10, None, None, None),
            ("job_charge", -3, j1, None, conv),
            ("plugin_model_charge", -3, j1, Some(PLUGIN), conv),
            ("job_charge", -3, j2, None, conv),
            ("plugin_model_charge", -3, j2, Some(PLUGIN), conv),
            ("plugin_model_refund", 3, j2, Some(PLUGIN), conv),
            ("job_refund", 3, j2, None, conv),
        ]
    );
    // Each entry carries the balance after it, and the entries sum to the balance; those
    // after the top-up sum to the change across the two jobs.
    let mut running = 0;
    for e in &entries {
        running += e["amount"].as_i64().unwrap();
        assert_eq!(e["balance"].as_i64(), Some(running), "{e}");
    }
    assert_eq!(running, end);
    let change: i64 = entries[2..]
        .iter()
        .map(|e| e["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(change, end - start);

    // Tenant-scoped: the other tenant sees its own grant only, and not a's cursors.
    let theirs = ledger(&s, &other.key, 20).await;
    assert_eq!(theirs.len(), 1);
    assert_eq!(
        (theirs[0]["reason"].as_str(), theirs[0]["amount"].as_i64()),
        (Some("grant"), Some(7))
    );
    let cursor = entries[3]["id"].as_str().unwrap();
    for (path, param) in [
        (format!("/v1/credits/ledger?after={cursor}"), "after"),
        ("/v1/credits/ledger?limit=0".to_owned(), "limit"),
    ] {
        let (status, v) = get(&s, &other.key, &path).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
}
