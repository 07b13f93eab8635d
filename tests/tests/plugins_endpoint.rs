//! Endpoint plugins: the JavaScript `thumbnailer` answering HTTP through the host.

use bytes::Bytes;
use easel_host::plugins::images::{Fit, Format};
use easel_host::plugins::{LimitOverrides, Manifest, PluginHost, PluginImage, World};
use easel_tests::plugins::{component, host_with_shared_cache};

async fn thumbnailer(manifest: Option<Manifest>) -> PluginHost {
    let h = host_with_shared_cache("thumb");
    let info = h
        .upload("t", "thumbnailer", component("thumbnailer"), manifest)
        .await
        .expect("uploading the JavaScript thumbnailer");
    assert_eq!(info.world, World::Endpoint);
    assert!(
        !info
            .imports
            .iter()
            .any(|i| i.starts_with("wasi:http/outgoing-handler")),
        "built without fetch(): {:?}",
        info.imports
    );
    h
}

fn request(method: &str, uri: &str, body: Vec<u8>) -> http::Request<Bytes> {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", "Bearer secret-key")
        .header("cookie", "session=secret")
        .header("x-trace", "abc")
        .body(Bytes::from(body))
        .unwrap()
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnailer_resizes_in_the_host_and_returns_png() {
    let h = thumbnailer(None).await;
    let src = PluginImage::new(image::RgbaImage::from_fn(200, 100, |x, y| {
        image::Rgba([x as u8, y as u8, 128, 255])
    }));
    let png = src.encode(Format::Png).unwrap();
    let (resp, report) = h
        .handle_http("t", "thumbnailer", request("POST", "/thumb?size=64", png))
        .await;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.headers()["x-source-size"], "200x100");
    let got = PluginImage::decode(resp.body(), 1 << 24).unwrap();
    let want = src.resize(64, 64, Fit::Contain, None).unwrap();
    assert_eq!(
        got.pixels.as_raw(),
        want.pixels.as_raw(),
        "same pixels as the host's resize"
    );
    assert!(
        report
            .logs
            .iter()
            .any(|l| l.message.contains("200x100 -> 64x64")),
        "{:?}",
        report.logs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnailer_errors_and_secret_headers() {
    let h = thumbnailer(None).await;
    let call = |m: &str, uri: &str, body: Vec<u8>| {
        let h = h.clone();
        let req = request(m, uri, body);
        async move { h.handle_http("t", "thumbnailer", req).await.0 }
    };
    let r = call("GET", "/thumb", vec![]).await;
    assert_eq!(r.status(), 405);
    let r = call("POST", "/thumb?size=5", vec![1, 2, 3]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r.body())["error"]["code"], "invalid_argument");
    let r = call("POST", "/thumb", b"not an image".to_vec()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r.body())["error"]["code"], "decode_error");
    let r = call("GET", "/headers", vec![]).await;
    assert_eq!(r.status(), 200);
    let seen = json(r.body());
    let names: Vec<&str> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(names.contains(&"x-trace"), "{names:?}");
    assert!(
        !names.contains(&"authorization") && !names.contains(&"cookie"),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_limit_violations_answer_with_json_naming_the_limit() {
    for (limits, code, status) in [
        (
            LimitOverrides {
                fuel: Some(10_000),
                ..Default::default()
            },
            "plugin_fuel_exhausted",
            502,
        ),
        (
            LimitOverrides {
                memory_bytes: Some(4 << 20),
                ..Default::default()
            },
            "plugin_memory_limit",
            502,
        ),
    ] {
        let h = thumbnailer(Some(Manifest {
            limits,
            ..Default::default()
        }))
        .await;
        let (resp, _) = h
            .handle_http("t", "thumbnailer", request("GET", "/headers", vec![]))
            .await;
        assert_eq!(resp.status(), status, "{code}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(json(resp.body())["error"]["code"], code);
    }
}
