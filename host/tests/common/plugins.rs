//! Helpers for the plugin tests: the guest components `scripts/build-plugins` builds into
//! `target/plugins/`, a server sharing the compile cache, and upload / JSON shortcuts.

use std::path::{Path, PathBuf};
use std::sync::Once;

use reqwest::multipart::{Form, Part};
use serde_json::Value;

use super::{Server, client};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

static BUILD: Once = Once::new();

/// The bytes of guest component `name`, building the guests the first time one is missing.
pub fn component(name: &str) -> Vec<u8> {
    let root = workspace_root();
    let path = root.join("target/plugins").join(format!("{name}.wasm"));
    if !path.exists() {
        BUILD.call_once(|| {
            let status = std::process::Command::new(root.join("scripts/build-plugins"))
                .status()
                .expect("running scripts/build-plugins");
            assert!(status.success(), "scripts/build-plugins failed");
        });
    }
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "guest component {} is missing ({e}); run scripts/build-plugins",
            path.display()
        )
    })
}

/// A server whose compile cache is shared across test runs: the JavaScript component takes
/// tens of seconds to compile, and compiling itself is proven by the plugin-host tests.
pub fn server() -> Server {
    server_with(&[])
}

/// [`server`] with more settings.
pub fn server_with(env: &[(&str, &str)]) -> Server {
    let cache = workspace_root().join("target/plugin-test-cache");
    let mut all = vec![("EASEL_PLUGINS__CACHE_DIR", cache.to_str().unwrap())];
    all.extend_from_slice(env);
    Server::start(&all)
}

pub async fn put_raw(s: &Server, key: &str, name: &str, bytes: Vec<u8>) -> reqwest::Response {
    client()
        .put(s.u(&format!("/v1/plugins/{name}")))
        .bearer_auth(key)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

pub async fn put_with_manifest(
    s: &Server,
    key: &str,
    name: &str,
    bytes: Vec<u8>,
    manifest: Value,
) -> reqwest::Response {
    let form = Form::new()
        .part("component", Part::bytes(bytes).file_name("c.wasm"))
        .text("manifest", manifest.to_string());
    client()
        .put(s.u(&format!("/v1/plugins/{name}")))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

pub async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, v)
}

pub async fn get(s: &Server, key: &str, path: &str) -> (u16, Value) {
    json_of(
        client()
            .get(s.u(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Runs a `convert` job to PNG (waiting for it) and returns the job.
pub async fn convert_png(s: &Server, key: &str, input: &[u8]) -> Value {
    let form = Form::new()
        .part("image", Part::bytes(input.to_vec()).file_name("in.png"))
        .text("format", "png");
    let r = client()
        .post(s.u("/v1/image/convert"))
        .bearer_auth(key)
        .header("prefer", "wait=30")
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, job) = json_of(r).await;
    assert_eq!(status, 201, "{job}");
    job
}

/// The job's first output, decoded.
pub async fn output_pixels(s: &Server, job: &Value) -> image::RgbaImage {
    output_pixels_at(s, job, 0).await
}

/// The job's output `k`, decoded.
pub async fn output_pixels_at(s: &Server, job: &Value, k: usize) -> image::RgbaImage {
    let url = job["outputs"][k]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("no output {k}: {job}"));
    let r = client().get(s.u(url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    image::load_from_memory(&r.bytes().await.unwrap())
        .unwrap()
        .to_rgba8()
}

/// Sends `method path` with a JSON body (or none) and returns the status and JSON answer
/// (`null` for an empty one).
pub async fn call_json(
    s: &Server,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = client().request(method, s.u(path)).bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    if text.is_empty() {
        return (status, Value::Null);
    }
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, v)
}

/// `PUT /v1/pipelines/{task}` with `body`: the status and JSON answer.
pub async fn put_pipeline(s: &Server, key: &str, task: &str, body: Value) -> (u16, Value) {
    call_json(
        s,
        key,
        reqwest::Method::PUT,
        &format!("/v1/pipelines/{task}"),
        Some(body),
    )
    .await
}

/// The tenant's balance (`GET /v1/account`).
pub async fn balance(s: &Server, key: &str) -> i64 {
    get(s, key, "/v1/account").await.1["credits"]
        .as_i64()
        .unwrap()
}
