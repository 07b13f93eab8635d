//! The foundation's CLI surface: `easel devices` and `easel serve` + `/healthz`.

use std::process::Command;

use easel_tests::{Server, easel_bin, http_get};

#[test]
fn devices_lists_the_adapter_easel_would_use() {
    let out = Command::new(easel_bin())
        .args(["devices", "--json"])
        .output()
        .expect("run easel devices");
    assert!(
        out.status.success(),
        "easel devices failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("devices --json is JSON");
    let list = list.as_array().expect("array");
    if list.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but easel devices found no adapter"
        );
        return;
    }
    assert_eq!(
        list.iter().filter(|a| a["selected"] == true).count(),
        1,
        "exactly one adapter selected: {list:?}"
    );
    for a in list {
        for key in [
            "name",
            "backend",
            "device_type",
            "driver",
            "shader_f16",
            "subgroup",
            "timestamp_query",
            "cooperative_matrix",
            "max_storage_buffer_binding_size",
        ] {
            assert!(a.get(key).is_some(), "adapter entry lacks {key}: {a}");
        }
    }
    let text = Command::new(easel_bin())
        .arg("devices")
        .output()
        .expect("run easel devices");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(list[0]["name"].as_str().unwrap()), "{text}");
    assert!(
        text.contains("f16=") && text.contains("cooperative_matrix="),
        "{text}"
    );
}

#[test]
fn serve_answers_healthz() {
    let dir = tempdir();
    let server = Server::start(&dir, &[], &[]);
    let (status, body) = http_get(&server.addr, "/healthz").expect("GET /healthz");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(v["status"], "ok");
}

fn tempdir() -> std::path::PathBuf {
    easel_tests::scratch::dir("smoke")
}

/// Issue 3's interface: a bare `<name>.safetensors` in the models directory
/// is a model, and `easel run upscale` writes the 4x image.
#[test]
fn run_upscale_with_a_bare_safetensors_model() {
    if easel_kernels::testing::test_gpu().is_none() {
        return;
    }
    let shared = easel_tests::shared_dir();
    let out = tempdir().join("up.png");
    let status = Command::new(easel_bin())
        .args(["run", "upscale", "--models-dir"])
        .arg(shared.join("models"))
        .args([
            "--model",
            "realesrgan-x4plus",
            "--precision",
            "f32",
            "--tile",
            "0",
            "-i",
        ])
        .arg(shared.join("fixtures/upscale/input-32x32.png"))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run easel run upscale");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let img = image::open(&out).expect("output is an image");
    assert_eq!((img.width(), img.height()), (128, 128));
}
