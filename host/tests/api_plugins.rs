//! Tenant plugins over real HTTP: `/v1/plugins` (upload, list, show, delete, logs) and
//! endpoint plugins under `/v1/x/{plugin}/...`, against the spawned `easel` binary with the
//! guest components that `scripts/build-plugins` builds into `target/plugins/`.

mod common;

use std::time::Duration;

use common::plugins::*;
use common::*;
use serde_json::{Value, json};

fn png(w: u32, h: u32) -> (image::RgbaImage, Vec<u8>) {
    let img = image::RgbaImage::from_fn(w, h, |x, y| image::Rgba([x as u8, y as u8, 99, 255]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    (img, out.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_list_show_delete_are_tenant_scoped_and_survive_a_restart() {
    let mut s = server();
    let a = s.tenant("a", 100).await;
    let b = s.tenant("b", 100).await;

    // Every example plugin uploads as a raw body; the world comes from its exports.
    for (name, world) in [
        ("watermark", "processor"),
        ("prompt-guard", "processor"),
        ("product-photo", "router"),
        ("thumbnailer", "endpoint"),
    ] {
        let (status, v) = json_of(put_raw(&s, &a.key, name, component(name)).await).await;
        assert_eq!(status, 201, "{name}: {v}");
        assert_eq!(v["name"], name);
        assert_eq!(v["version"], 1);
        assert_eq!(v["world"], world, "{name}");
        assert_eq!(v["hash"].as_str().unwrap().len(), 64);
        assert!(v["compile_ms"].as_f64().unwrap() >= 0.0);
        assert!(
            v["imports"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| !i.as_str().unwrap().starts_with("wasi:sockets")),
            "{v}"
        );
        assert!(!v["exports"].as_array().unwrap().is_empty(), "{v}");
    }
    // A second upload is a new, immutable version and becomes the active one.
    let (status, v2) = json_of(
        put_with_manifest(
            &s,
            &a.key,
            "watermark",
            component("watermark"),
            json!({"world": "processor", "config": {"text": "HI"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v2}");
    assert_eq!(v2["version"], 2);

    let (status, list) = get(&s, &a.key, "/v1/plugins").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["product-photo", "prompt-guard", "thumbnailer", "watermark"]
    );
    let (status, wm) = get(&s, &a.key, "/v1/plugins/watermark").await;
    assert_eq!(status, 200, "{wm}");
    assert_eq!(wm["active_version"], 2);
    assert_eq!(wm["versions"].as_array().unwrap().len(), 2);
    let (status, logs) = get(&s, &a.key, "/v1/plugins/watermark/logs").await;
    assert_eq!((status, logs["data"].is_array()), (200, true), "{logs}");

    // Another tenant sees none of it; no key is a 401.
    let (status, list_b) = get(&s, &b.key, "/v1/plugins").await;
    assert_eq!((status, list_b["data"].as_array().unwrap().len()), (200, 0));
    for path in [
        "/v1/plugins/watermark",
        "/v1/plugins/watermark/logs",
        "/v1/x/thumbnailer/headers",
    ] {
        let (status, e) = get(&s, &b.key, path).await;
        assert_eq!(status, 404, "{path}: {e}");
        assert_eq!(e["error"]["code"], "plugin_not_found", "{path}");
    }
    let r = client()
        .delete(s.u("/v1/plugins/watermark"))
        .bearer_auth(&b.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "B cannot delete A's plugin");
    let r = client().get(s.u("/v1/plugins")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = put_raw(&s, "", "x", component("watermark")).await;
    assert_eq!(r.status(), 401);

    // Restart: the registry, versions included, comes back from the database.
    s.terminate(Duration::from_secs(30));
    s.restart();
    let (_, wm2) = get(&s, &a.key, "/v1/plugins/watermark").await;
    assert_eq!(wm2["active_version"], 2, "{wm2}");
    assert_eq!(wm2["versions"][1]["hash"], wm["versions"][1]["hash"]);
    let r = client()
        .get(s.u("/v1/x/thumbnailer/headers"))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the endpoint answers after the restart");

    // Delete: gone now and after another restart.
    let r = client()
        .delete(s.u("/v1/plugins/watermark"))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get(&s, &a.key, "/v1/plugins/watermark").await.0, 404);
    s.terminate(Duration::from_secs(30));
    s.restart();
    assert_eq!(get(&s, &a.key, "/v1/plugins/watermark").await.0, 404);
    assert_eq!(get(&s, &a.key, "/v1/plugins/prompt-guard").await.0, 200);
    let blobs = std::fs::read_dir(s.dir.join("plugins")).unwrap().count();
    assert_eq!(blobs, 3, "the deleted plugin's component file is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_with_specific_errors() {
    let s = server();
    let a = s.tenant("a", 100).await;
    let (status, e) =
        json_of(put_raw(&s, &a.key, "net", component("test-forbidden-net")).await).await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["code"], "plugin_forbidden_imports");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("wasi:sockets/") || msg.contains("wasi:http/outgoing-handler"),
        "names the offending interface: {msg}"
    );
    let (status, e) =
        json_of(put_raw(&s, &a.key, "junk", b"\0asm not really".to_vec()).await).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (422, Some("plugin_invalid")),
        "{e}"
    );
    let (status, e) = json_of(put_raw(&s, &a.key, "UPPER", component("watermark")).await).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (422, Some("plugin_invalid_name")),
        "{e}"
    );
    let (status, e) = json_of(
        put_with_manifest(
            &s,
            &a.key,
            "wm",
            component("watermark"),
            json!({"limits": {"wall_ms": 5}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["code"], "plugin_bad_manifest");
    assert_eq!(e["error"]["param"], "manifest");
    assert!(e["error"]["message"].as_str().unwrap().contains("wall_ms"));
    let (status, e) = json_of(
        put_with_manifest(
            &s,
            &a.key,
            "wm",
            component("watermark"),
            json!({"world": "endpoint"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (422, Some("plugin_bad_manifest")),
        "{e}"
    );
    // Nothing of the refused uploads was registered.
    let (_, list) = get(&s, &a.key, "/v1/plugins").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_plugins_answer_over_http_and_failures_name_the_limit() {
    let s = server();
    let a = s.tenant("a", 100).await;
    let (status, v) =
        json_of(put_raw(&s, &a.key, "thumbnailer", component("thumbnailer")).await).await;
    assert_eq!(status, 201, "{v}");

    // The JavaScript thumbnailer: POST a PNG, get a 64x64 PNG of the same content.
    let (src, body) = png(200, 100);
    let r = client()
        .post(s.u("/v1/x/thumbnailer/thumb?size=64"))
        .bearer_auth(&a.key)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["x-source-size"], "200x100");
    assert_eq!(r.headers()["x-easel-plugin-version"], "1");
    let thumb = image::load_from_memory(&r.bytes().await.unwrap())
        .unwrap()
        .to_rgba8();
    assert_eq!(thumb.dimensions(), (64, 64));
    // Contain-fit: the 2:1 image fills rows 16..48; its left edge is dark, right edge light.
    let (l, rr) = (thumb.get_pixel(1, 32), thumb.get_pixel(62, 32));
    assert_eq!((l[2], l[3]), (99, 255), "{l:?}");
    assert!(rr[0] > 180 && l[0] < 20, "{l:?} {rr:?}");
    assert_eq!(thumb.get_pixel(32, 2)[3], 0, "transparent padding");
    let _ = src;

    // The plugin sees neither the Authorization header nor cookies.
    let r = client()
        .get(s.u("/v1/x/thumbnailer/headers"))
        .bearer_auth(&a.key)
        .header("cookie", "session=1")
        .header("x-trace", "abc")
        .send()
        .await
        .unwrap();
    let (status, seen) = json_of(r).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(names.contains(&"x-trace"), "{names:?}");
    assert!(
        !names.contains(&"authorization") && !names.contains(&"cookie"),
        "{names:?}"
    );

    // The Rust test endpoint: method, path, query and body arrive; `/spin` loops forever and
    // is ended by the wall-time limit with a JSON error naming it.
    let (status, v) = json_of(
        put_with_manifest(
            &s,
            &a.key,
            "ep",
            component("test-endpoint"),
            // Fuel at the operator's cap, so time (not fuel) ends the spinning call.
            json!({"limits": {"wall_time_ms": 300, "fuel": 50_000_000_000u64}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let r = client()
        .patch(s.u("/v1/x/ep/a/b?c=d"))
        .bearer_auth(&a.key)
        .body(vec![7u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "PATCH /a/b?c=d 1000");
    let r = client()
        .get(s.u("/v1/x/ep"))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "GET / 0");
    let t = std::time::Instant::now();
    let r = client()
        .get(s.u("/v1/x/ep/spin"))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    let (status, e) = json_of(r).await;
    assert_eq!(status, 504, "{e}");
    assert_eq!(e["error"]["code"], "plugin_timeout");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("300 ms"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // A processor is not an endpoint; no key is a 401.
    let (status, _) = json_of(put_raw(&s, &a.key, "wm", component("watermark")).await).await;
    assert_eq!(status, 201);
    let (status, e) = get(&s, &a.key, "/v1/x/wm/anything").await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("plugin_wrong_world"))
    );
    let r = client().get(s.u("/v1/x/ep/a")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermark_postprocesses_a_convert_job_and_plugin_failures_fail_the_job() {
    let s = server();
    let a = s.tenant("a", 100).await;
    let b = s.tenant("b", 100).await;
    let (status, v) = json_of(
        put_with_manifest(
            &s,
            &a.key,
            "watermark",
            component("watermark"),
            json!({"tasks": ["convert"], "config": {"text": "TEST"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (_, input) = png(256, 128);

    // Tenant A's convert runs through the watermark; tenant B's (no plugins) does not.
    let marked = convert_png(&s, &a.key, &input).await;
    assert_eq!(marked["status"], "succeeded", "{marked}");
    let plain = convert_png(&s, &b.key, &input).await;
    assert_eq!(plain["status"], "succeeded", "{plain}");
    assert_eq!(plain["plugins"].as_array().unwrap().len(), 0, "{plain}");
    let steps = marked["plugins"].as_array().unwrap();
    let stages: Vec<&str> = steps.iter().map(|p| p["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["preprocess", "postprocess"], "{marked}");
    for st in steps {
        assert_eq!(
            (st["plugin"].as_str(), st["version"].as_u64()),
            (Some("watermark"), Some(1))
        );
        assert!(st["fuel_used"].as_u64().unwrap() > 0, "{st}");
        assert!(st["wall_us"].as_u64().unwrap() > 0, "{st}");
        assert!(st["error"].is_null());
    }
    let (m, p) = (
        output_pixels(&s, &marked).await,
        output_pixels(&s, &plain).await,
    );
    assert_eq!(m.dimensions(), p.dimensions());
    // "TEST" at scale 1 (width 256) is 32x8 px, 4 px from the bottom-right corner: pixels
    // differ only inside that box, and some inside it do.
    let (w, h) = m.dimensions();
    let in_box = |x: u32, y: u32| x >= w - 32 - 4 && x < w - 4 && y >= h - 8 - 4 && y < h - 4;
    let mut changed = 0;
    for (x, y, px) in m.enumerate_pixels() {
        if px != p.get_pixel(x, y) {
            assert!(in_box(x, y), "pixel ({x},{y}) outside the mark changed");
            changed += 1;
        }
    }
    assert!(changed > 20, "the mark changed {changed} pixels");

    // A plugin that breaks a limit fails the job with the plugin's error code.
    let (status, v) = json_of(
        put_with_manifest(
            &s,
            &a.key,
            "watermark",
            component("watermark"),
            json!({"tasks": ["convert"], "limits": {"fuel": 1000}}),
        )
        .await,
    )
    .await;
    assert_eq!((status, v["version"].as_u64()), (201, Some(2)), "{v}");
    let failed = convert_png(&s, &a.key, &input).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "plugin_fuel_exhausted", "{failed}");
    let step = &failed["plugins"][0];
    assert_eq!(
        (step["version"].as_u64(), step["stage"].as_str()),
        (Some(2), Some("preprocess"))
    );
    assert!(
        step["error"]
            .as_str()
            .unwrap()
            .starts_with("plugin_fuel_exhausted"),
        "{step}"
    );
}

/// The version an endpoint call ran, from the response header.
async fn endpoint_version(s: &Server, key: &str, plugin: &str) -> String {
    let r = client()
        .get(s.u(&format!("/v1/x/{plugin}/v")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-easel-plugin-version"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_version_stays_active_across_uploads_and_restarts() {
    use reqwest::Method;
    let mut s = server();
    let a = s.tenant("a", 100).await;
    let b = s.tenant("b", 100).await;
    for want in [1, 2] {
        let (status, v) =
            json_of(put_raw(&s, &a.key, "ep", component("test-endpoint")).await).await;
        assert_eq!((status, v["version"].as_u64()), (201, Some(want)), "{v}");
    }
    let (_, d) = get(&s, &a.key, "/v1/plugins/ep").await;
    assert_eq!(
        (d["active_version"].as_u64(), &d["pinned_version"]),
        (Some(2), &Value::Null)
    );

    // Pin 1: active for the endpoint, and still after a third upload.
    let (status, d) = call_json(
        &s,
        &a.key,
        Method::PUT,
        "/v1/plugins/ep/pin",
        Some(json!({"version": 1})),
    )
    .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(
        (d["active_version"].as_u64(), d["pinned_version"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(endpoint_version(&s, &a.key, "ep").await, "1");
    let (status, v3) = json_of(put_raw(&s, &a.key, "ep", component("test-endpoint")).await).await;
    assert_eq!((status, v3["version"].as_u64()), (201, Some(3)));
    let (_, d) = get(&s, &a.key, "/v1/plugins/ep").await;
    assert_eq!(
        (d["active_version"].as_u64(), d["pinned_version"].as_u64()),
        (Some(1), Some(1)),
        "{d}"
    );
    assert_eq!(d["versions"].as_array().unwrap().len(), 3);
    assert_eq!(endpoint_version(&s, &a.key, "ep").await, "1");

    // Bad pins name the field; another tenant cannot pin A's plugin.
    let cases = [
        (
            json!({"version": 9}),
            404,
            "plugin_version_not_found",
            "version",
        ),
        (json!({"version": "1"}), 400, "invalid_parameter", "version"),
        (json!({"version": 0}), 400, "invalid_parameter", "version"),
        (json!({}), 400, "missing_parameter", "version"),
        (
            json!({"version": 1, "force": true}),
            400,
            "invalid_parameter",
            "force",
        ),
    ];
    for (body, status, code, param) in cases {
        let (st, e) = call_json(
            &s,
            &a.key,
            Method::PUT,
            "/v1/plugins/ep/pin",
            Some(body.clone()),
        )
        .await;
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
    let (st, e) = call_json(
        &s,
        &b.key,
        Method::PUT,
        "/v1/plugins/ep/pin",
        Some(json!({"version": 1})),
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (404, Some("plugin_not_found"))
    );
    let (st, _) = call_json(&s, &b.key, Method::DELETE, "/v1/plugins/ep/pin", None).await;
    assert_eq!(st, 404);
    assert_eq!(
        endpoint_version(&s, &a.key, "ep").await,
        "1",
        "the refused pins changed nothing"
    );

    // The pin survives a restart.
    s.terminate(Duration::from_secs(30));
    s.restart();
    let (_, d) = get(&s, &a.key, "/v1/plugins/ep").await;
    assert_eq!(
        (d["active_version"].as_u64(), d["pinned_version"].as_u64()),
        (Some(1), Some(1)),
        "{d}"
    );
    assert_eq!(endpoint_version(&s, &a.key, "ep").await, "1");

    // Unpinned, the latest is active again, and stays so after a restart.
    let (status, d) = call_json(&s, &a.key, Method::DELETE, "/v1/plugins/ep/pin", None).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(
        (d["active_version"].as_u64(), &d["pinned_version"]),
        (Some(3), &Value::Null)
    );
    assert_eq!(endpoint_version(&s, &a.key, "ep").await, "3");
    s.terminate(Duration::from_secs(30));
    s.restart();
    let (_, d) = get(&s, &a.key, "/v1/plugins/ep").await;
    assert_eq!(
        (d["active_version"].as_u64(), &d["pinned_version"]),
        (Some(3), &Value::Null),
        "{d}"
    );

    // Deleting the plugin drops its pin: a new upload starts at version 1, unpinned.
    call_json(
        &s,
        &a.key,
        Method::PUT,
        "/v1/plugins/ep/pin",
        Some(json!({"version": 2})),
    )
    .await;
    let r = client()
        .delete(s.u("/v1/plugins/ep"))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, v) = json_of(put_raw(&s, &a.key, "ep", component("test-endpoint")).await).await;
    assert_eq!(v["version"], 1);
    s.terminate(Duration::from_secs(30));
    s.restart();
    let (_, d) = get(&s, &a.key, "/v1/plugins/ep").await;
    assert_eq!(
        (d["active_version"].as_u64(), &d["pinned_version"]),
        (Some(1), &Value::Null),
        "{d}"
    );
}
