//! The server's `models` and `kv` host interfaces over real HTTP, through an endpoint plugin
//! (`tests/plugins/models-kv`): `models.run` runs a registry task, charged the task's credits
//! (refunded on failure), within the tenant's allowed models; `kv` lives in the database,
//! survives a restart, is tenant-scoped and quota-bound.

mod common;

use std::time::Duration;

use common::plugins::*;
use common::*;
use reqwest::multipart::Form;
use serde_json::Value;

const PLUGIN: &str = "mk";

async fn install(s: &Server, key: &str) {
    let (status, v) = json_of(put_raw(s, key, PLUGIN, component("test-models-kv")).await).await;
    assert_eq!(status, 201, "{v}");
}

/// `method /v1/x/mk{path}` with `body`: (status, headers, body).
async fn call(
    s: &Server,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Vec<u8>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = client()
        .request(method, s.u(&format!("/v1/x/{PLUGIN}{path}")))
        .bearer_auth(key)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn models_run_charges_the_tasks_price_within_the_allowed_models() {
    let s = server_with(&[
        ("EASEL_CREDITS__CONVERT", "3"),
        ("EASEL_PLUGINS__ALLOWED_MODELS", r#"["convert", "upscale"]"#),
    ]);
    let a = s.tenant("a", 10).await;
    install(&s, &a.key).await;
    let input = png(16, 8);

    // A real `convert` through the plugin: the output is the task's own, and it cost 3.
    let (status, headers, body) = call(
        &s,
        &a.key,
        reqwest::Method::POST,
        "/run/convert?width=8&height=4&fit=fill",
        input.clone(),
    )
    .await;
    assert_eq!(status, 200, "{}", text(&body));
    let meta: Value =
        serde_json::from_str(headers["x-metadata"].to_str().unwrap()).expect("metadata JSON");
    assert_eq!(meta["task"], "convert", "{meta}");
    assert_eq!(meta["credits"], 3, "{meta}");
    assert_eq!(meta["outputs"][0]["width"], 8, "{meta}");
    assert_eq!(balance(&s, &a.key).await, 7, "the run cost convert's price");
    let via_plugin = image::load_from_memory(&body).unwrap().to_rgba8();

    // The same parameters as a job give the same pixels (the reference is the task itself).
    let form = Form::new()
        .part("image", image_part(input.clone()))
        .text("width", "8")
        .text("height", "4")
        .text("fit", "fill")
        .text("format", "png");
    let r = client()
        .post(s.u("/v1/image/convert"))
        .bearer_auth(&a.key)
        .header("prefer", "wait=30")
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (st, job) = json_of(r).await;
    assert_eq!(st, 201, "{job}");
    let job = wait_done(
        &s,
        &a.key,
        job["id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let via_job = output_pixels(&s, &job).await;
    assert_eq!(via_plugin.dimensions(), (8, 4));
    assert_eq!(via_plugin, via_job, "the plugin's run is the task's");
    assert_eq!(balance(&s, &a.key).await, 4);

    // A run that fails in the task (crop outside the image) is refunded.
    let (status, _, body) = call(
        &s,
        &a.key,
        reqwest::Method::POST,
        "/run/convert?crop_x=100&crop_y=0&crop_width=4&crop_height=4",
        input.clone(),
    )
    .await;
    assert_eq!(status, 409);
    assert!(!text(&body).starts_with("insufficient"), "{}", text(&body));
    assert_eq!(balance(&s, &a.key).await, 4, "refunded: {}", text(&body));

    // Bad parameters and a model choice the task does not have are refused before charging.
    for (path, code) in [
        ("/run/convert?width=0", "invalid_argument"),
        ("/run/convert?model=x4", "invalid_argument"),
        ("/run/no-such-task", "permission_denied"),
        // Not in the tenant's allowed models (debug tasks exist on test servers).
        ("/run/noop", "permission_denied"),
    ] {
        let (status, _, body) = call(&s, &a.key, reqwest::Method::POST, path, input.clone()).await;
        assert_eq!(status, 409, "{path}");
        assert!(text(&body).starts_with(code), "{path}: {}", text(&body));
    }
    // Allowed, but its model is not installed here: refused before charging.
    let (_, _, body) = call(
        &s,
        &a.key,
        reqwest::Method::POST,
        "/run/upscale",
        input.clone(),
    )
    .await;
    assert!(
        text(&body).starts_with("model_unavailable"),
        "{}",
        text(&body)
    );
    assert_eq!(balance(&s, &a.key).await, 4, "nothing charged for refusals");

    // A tenant who cannot pay: insufficient_credits, balance untouched.
    let b = s.tenant("b", 2).await;
    install(&s, &b.key).await;
    let (status, _, body) = call(
        &s,
        &b.key,
        reqwest::Method::POST,
        "/run/convert?width=8",
        input.clone(),
    )
    .await;
    assert_eq!(status, 409);
    let msg = text(&body);
    assert!(msg.starts_with("insufficient_credits"), "{msg}");
    assert!(
        msg.contains("costs 3") && msg.contains("balance is 2"),
        "{msg}"
    );
    assert_eq!(balance(&s, &b.key).await, 2);
}

#[tokio::test]
async fn kv_persists_across_restarts_per_tenant_within_quotas() {
    let mut s = server();
    let a = s.tenant("a", 10).await;
    let b = s.tenant("b", 10).await;
    install(&s, &a.key).await;
    install(&s, &b.key).await;
    use reqwest::Method;

    let (st, _, body) = call(&s, &a.key, Method::PUT, "/kv/greeting", b"hello".to_vec()).await;
    assert_eq!(st, 204, "{}", text(&body));
    call(&s, &a.key, Method::PUT, "/kv/gone", b"x".to_vec()).await;
    let (st, _, body) = call(&s, &a.key, Method::DELETE, "/kv/gone", vec![]).await;
    assert_eq!((st, text(&body).as_str()), (200, "deleted"));
    let (st, _, _) = call(&s, &b.key, Method::GET, "/kv/greeting", vec![]).await;
    assert_eq!(st, 404, "tenant b does not see a's keys");
    call(&s, &b.key, Method::PUT, "/kv/greeting", b"b's".to_vec()).await;

    // Quotas (the defaults: keys of at most 256 bytes, values of at most 64 KiB).
    let long_key = format!("/kv/{}", "k".repeat(257));
    let (st, _, body) = call(&s, &a.key, Method::PUT, &long_key, b"v".to_vec()).await;
    assert_eq!(st, 409);
    assert!(text(&body).starts_with("quota_exceeded"), "{}", text(&body));
    let (st, _, body) = call(&s, &a.key, Method::PUT, "/kv/big", vec![7; (64 << 10) + 1]).await;
    assert_eq!(st, 409);
    assert!(text(&body).starts_with("quota_exceeded"), "{}", text(&body));
    let (st, _, _) = call(&s, &a.key, Method::PUT, "/kv/big", vec![7; 64 << 10]).await;
    assert_eq!(st, 204, "a value at the limit fits");

    s.terminate(Duration::from_secs(20));
    s.restart();

    let (st, _, body) = call(&s, &a.key, Method::GET, "/kv/greeting", vec![]).await;
    assert_eq!(
        (st, text(&body).as_str()),
        (200, "hello"),
        "survived the restart"
    );
    let (_, _, body) = call(&s, &b.key, Method::GET, "/kv/greeting", vec![]).await;
    assert_eq!(text(&body), "b's");
    let (_, _, body) = call(&s, &a.key, Method::GET, "/kv?prefix=g", vec![]).await;
    assert_eq!(text(&body), "greeting", "`gone` was deleted");
    let (_, _, body) = call(&s, &a.key, Method::GET, "/kv/big", vec![]).await;
    assert_eq!(body, vec![7; 64 << 10]);
}

#[tokio::test]
async fn deleting_a_plugin_removes_only_its_own_kv_rows() {
    use reqwest::Method;
    let s = server();
    let a = s.tenant("a", 10).await;
    let b = s.tenant("b", 10).await;
    install(&s, &a.key).await;
    install(&s, &b.key).await;
    // The same component under another name: a different scope of tenant a.
    let (status, v) =
        json_of(put_raw(&s, &a.key, "mk-other", component("test-models-kv")).await).await;
    assert_eq!(status, 201, "{v}");
    for (key, path) in [
        (&a.key, format!("/v1/x/{PLUGIN}/kv/k")),
        (&b.key, format!("/v1/x/{PLUGIN}/kv/k")),
        (&a.key, "/v1/x/mk-other/kv/k".to_owned()),
    ] {
        let r = client()
            .put(s.u(&path))
            .bearer_auth(key)
            .body(path.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{path}");
    }

    let (status, _) = call_json(
        &s,
        &a.key,
        Method::DELETE,
        &format!("/v1/plugins/{PLUGIN}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    // Uploaded again under the same name, it starts with no data.
    install(&s, &a.key).await;
    let (st, _, body) = call(&s, &a.key, Method::GET, "/kv/k", vec![]).await;
    assert_eq!((st, text(&body).as_str()), (404, "absent"));
    let (_, _, body) = call(&s, &a.key, Method::GET, "/kv?prefix=", vec![]).await;
    assert_eq!(text(&body), "", "no key of the deleted plugin is left");
    // Tenant b's plugin of the same name and tenant a's other plugin keep theirs.
    let (st, _, body) = call(&s, &b.key, Method::GET, "/kv/k", vec![]).await;
    assert_eq!((st, text(&body)), (200, format!("/v1/x/{PLUGIN}/kv/k")));
    let r = client()
        .get(s.u("/v1/x/mk-other/kv/k"))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "/v1/x/mk-other/kv/k");
}

#[tokio::test]
async fn kv_quotas_come_from_the_config() {
    use reqwest::Method;
    let s = server_with(&[
        ("EASEL_PLUGINS__KV__MAX_VALUE_BYTES", "8"),
        ("EASEL_PLUGINS__KV__MAX_KEYS", "2"),
    ]);
    let a = s.tenant("a", 10).await;
    install(&s, &a.key).await;
    let (st, _, body) = call(&s, &a.key, Method::PUT, "/kv/k1", b"123456789".to_vec()).await;
    assert_eq!(st, 409);
    let msg = text(&body);
    assert!(
        msg.starts_with("quota_exceeded") && msg.contains("a value of 9 bytes exceeds 8"),
        "{msg}"
    );
    let (st, _, body) = call(&s, &a.key, Method::PUT, "/kv/k1", b"12345678".to_vec()).await;
    assert_eq!(
        st,
        204,
        "a value at the lowered limit fits: {}",
        text(&body)
    );
    let (st, _, _) = call(&s, &a.key, Method::PUT, "/kv/k2", b"x".to_vec()).await;
    assert_eq!(st, 204);
    let (st, _, body) = call(&s, &a.key, Method::PUT, "/kv/k3", b"x".to_vec()).await;
    assert_eq!(st, 409);
    let msg = text(&body);
    assert!(
        msg.starts_with("quota_exceeded") && msg.contains("more than 2 keys"),
        "{msg}"
    );
    // Replacing an existing key is not a new key.
    let (st, _, _) = call(&s, &a.key, Method::PUT, "/kv/k2", b"y".to_vec()).await;
    assert_eq!(st, 204);
}

#[test]
fn a_bad_kv_quota_stops_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_easel"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("EASEL_")) {
        cmd.env_remove(k);
    }
    let out = cmd
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("EASEL_GPU__ENABLED", "false")
        .env("EASEL_PLUGINS__KV__MAX_KEYS", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugins.kv.max_keys must be at least 1"),
        "{err}"
    );
}
