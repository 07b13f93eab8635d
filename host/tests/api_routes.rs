//! The HTTP API over real HTTP against the real binary: every route, auth,
//! tenant isolation, credits, rate limits, idempotency, waits, SSE, limits.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::multipart::Form;
use serde_json::{Value, json};

fn decode(bytes: &[u8]) -> image::DynamicImage {
    image::load_from_memory(bytes).expect("output decodes as an image")
}

#[tokio::test(flavor = "multi_thread")]
async fn health_ready_metrics_openapi_cover_every_route() {
    let s = Server::start(&[]);
    let c = client();
    let h: Value = c
        .get(s.u("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    let r = c.get(s.u("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ready: Value = r.json().await.unwrap();
    assert_eq!(ready["database_writable"], true);
    assert_eq!(ready["storage_ok"], true);
    assert_eq!(ready["gpu"]["available"], false);
    assert!(
        ready["gpu"]["error"].as_str().unwrap().contains("disabled"),
        "{ready}"
    );

    // Run one job so the job metrics have samples.
    let t = s.tenant("m", 0).await;
    let r = c
        .post(s.u("/v1/image/noop"))
        .bearer_auth(&t.key)
        .header("prefer", "wait")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let m = c
        .get(s.u("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "easel_http_requests_total{method=\"POST\",route=\"/v1/image/{task}\",status=\"201\"} 1",
        "easel_http_request_duration_seconds_bucket",
        "easel_queue_depth{lane=\"cpu\"} 0",
        "easel_jobs_running{lane=\"gpu\"} 0",
        &format!(
            "easel_job_duration_seconds_count{{status=\"succeeded\",task=\"noop\",tenant=\"{}\"}} 1",
            t.id
        ),
        "easel_gpu_memory_bytes{kind=\"models\"} 0",
    ] {
        assert!(m.contains(needle), "metrics lack {needle}:\n{m}");
    }

    let doc: Value = c
        .get(s.u("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let routes = [
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
        ("get", "/v1/models"),
        ("post", "/v1/image/{task}"),
        ("post", "/v1/image/convert"),
        ("post", "/v1/image/noop"),
        ("post", "/v1/image/noop-gpu"),
        ("post", "/v1/image/upscale"),
        ("post", "/v1/image/remove-background"),
        ("post", "/v1/image/replace-background"),
        ("get", "/v1/jobs"),
        ("get", "/v1/jobs/{id}"),
        ("post", "/v1/jobs/{id}/cancel"),
        ("get", "/v1/jobs/{id}/events"),
        ("get", "/v1/jobs/{id}/webhooks"),
        ("post", "/v1/files"),
        ("get", "/v1/files/{id}"),
        ("delete", "/v1/files/{id}"),
        ("get", "/v1/account"),
        ("get", "/v1/credits/ledger"),
        ("post", "/v1/admin/tenants"),
        ("get", "/v1/admin/tenants"),
        ("get", "/v1/admin/tenants/{id}"),
        ("patch", "/v1/admin/tenants/{id}"),
        ("post", "/v1/admin/tenants/{id}/credits"),
        ("post", "/v1/admin/tenants/{id}/rotate-key"),
        ("get", "/v1/plugins"),
        ("put", "/v1/plugins/{name}"),
        ("get", "/v1/plugins/{name}"),
        ("delete", "/v1/plugins/{name}"),
        ("get", "/v1/plugins/{name}/logs"),
        ("put", "/v1/plugins/{name}/pin"),
        ("delete", "/v1/plugins/{name}/pin"),
        ("get", "/v1/pipelines"),
        ("get", "/v1/pipelines/{task}"),
        ("put", "/v1/pipelines/{task}"),
        ("delete", "/v1/pipelines/{task}"),
        ("post", "/v1/x/{plugin}/{path}"),
    ];
    for (method, path) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "openapi.json lacks {method} {path}"
        );
    }
    let n: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        n,
        routes.len(),
        "openapi.json documents routes this test does not know"
    );
    let convert = &doc["paths"]["/v1/image/convert"]["post"]["requestBody"]["content"]["multipart/form-data"]
        ["schema"]["properties"];
    assert_eq!(
        convert["fit"]["enum"],
        json!(["contain", "cover", "fill", "inside", "pad"])
    );
    assert_eq!(convert["width"]["maximum"], 65535);
    let replace = &doc["paths"]["/v1/image/replace-background"]["post"]["requestBody"]["content"]["multipart/form-data"]
        ["schema"]["properties"];
    assert_eq!(replace["model"]["default"], "isnet-dis", "{replace}");
    assert!(
        replace["background"].is_object(),
        "the second image input: {replace}"
    );
    assert!(doc["components"]["schemas"]["JobView"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());

    // Unknown routes and methods answer in the error shape too.
    let (st, e) = error_of(c.get(s.u("/nope")).send().await.unwrap()).await;
    assert_eq!((st, e["code"].as_str().unwrap()), (404, "not_found"));
    let (st, e) = error_of(c.delete(s.u("/healthz")).send().await.unwrap()).await;
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (405, "method_not_allowed")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn convert_multipart_wait_download_matches_reference() {
    let s = Server::start(&[]);
    let t = s.tenant("acme", 10).await;
    let c = client();
    let input = png(200, 100);
    let form = Form::new()
        .part("image", image_part(input.clone()))
        .text("width", "50")
        .text("format", "jpeg")
        .text("quality", "95");
    let r = c
        .post(s.u("/v1/image/convert"))
        .bearer_auth(&t.key)
        .header("prefer", "wait=30")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["preference-applied"], "wait=30");
    assert!(r.headers()["x-ratelimit-limit"].to_str().is_ok());
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["credits"], 1);
    assert_eq!(job["credits_state"], "charged");
    assert_eq!(job["params"]["fit"], "contain", "defaults are recorded");
    assert_eq!(job["progress"]["fraction"], 1.0);
    let out = &job["outputs"][0];
    assert_eq!(out["content_type"], "image/jpeg");
    assert_eq!(
        (out["width"].as_u64(), out["height"].as_u64()),
        (Some(50), Some(25))
    );
    let url = out["url"].as_str().unwrap();
    assert!(
        url.starts_with("/v1/files/file_") && url.contains("sig="),
        "{url}"
    );

    // The signed URL needs no key.
    let r = c.get(s.u(url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let got = decode(&r.bytes().await.unwrap()).to_rgb8();
    // Reference: the same resize done directly with the image crate (Lanczos3).
    let want = decode(&input)
        .resize_exact(50, 25, image::imageops::FilterType::Lanczos3)
        .to_rgb8();
    let diffs: Vec<f64> = got
        .as_raw()
        .iter()
        .zip(want.as_raw())
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .collect();
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    assert!(
        mean < 2.0,
        "mean abs difference from the reference resize is {mean:.2} (JPEG q95 tolerance 2.0)"
    );

    // The job's output also downloads with the owner's key.
    let file_id = out["file_id"].as_str().unwrap();
    let r = c
        .get(s.u(&format!("/v1/files/{file_id}")))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let acct: Value = c
        .get(s.u("/v1/account"))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(acct["credits"], 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn convert_json_base64_and_uploaded_file() {
    let s = Server::start(&[]);
    let t = s.tenant("acme", 10).await;
    let c = client();
    let form = Form::new().part("file", image_part(png(64, 32)));
    let r = c
        .post(s.u("/v1/files"))
        .bearer_auth(&t.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let f: Value = r.json().await.unwrap();
    assert_eq!(
        (
            f["width"].as_u64(),
            f["height"].as_u64(),
            f["content_type"].as_str()
        ),
        (Some(64), Some(32), Some("image/png"))
    );
    let r = c
        .post(s.u("/v1/image/convert"))
        .bearer_auth(&t.key)
        .header("prefer", "wait")
        .json(&json!({"image_file_id": f["id"], "width": 16, "height": 16, "fit": "cover", "format": "webp"}))
        .send()
        .await
        .unwrap();
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["inputs"][0]["file_id"], f["id"]);
    let bytes = c
        .get(s.u(job["outputs"][0]["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        image::ImageFormat::WebP
    );
    assert_eq!((decode(&bytes).width(), decode(&bytes).height()), (16, 16));

    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(30, 30));
    let r = c
        .post(s.u("/v1/image/convert"))
        .bearer_auth(&t.key)
        .header("prefer", "wait")
        .json(&json!({"image": format!("data:image/png;base64,{b64}"), "height": 10}))
        .send()
        .await
        .unwrap();
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        job["outputs"][0]["content_type"], "image/png",
        "format follows the input by default"
    );
    assert_eq!(job["outputs"][0]["width"], 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_failures_are_401() {
    let s = Server::start(&[]);
    let c = client();
    for (m, p) in [
        ("GET", "/v1/jobs"),
        ("GET", "/v1/models"),
        ("POST", "/v1/image/convert"),
        ("POST", "/v1/files"),
        ("GET", "/v1/account"),
        ("GET", "/v1/jobs/job_00000000000000000000000000"),
        ("GET", "/v1/files/file_00000000000000000000000000"),
        ("DELETE", "/v1/files/file_00000000000000000000000000"),
    ] {
        let m = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        let (st, e) = error_of(c.request(m.clone(), s.u(p)).send().await.unwrap()).await;
        assert_eq!(
            (st, e["code"].as_str().unwrap()),
            (401, "missing_api_key"),
            "{m} {p}"
        );
        let (st, e) = error_of(
            c.request(m.clone(), s.u(p))
                .bearer_auth("esk_wrong")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (st, e["code"].as_str().unwrap()),
            (401, "invalid_api_key"),
            "{m} {p}"
        );
    }
    let (st, _) = error_of(
        c.get(s.u("/v1/jobs"))
            .header("authorization", "Basic abc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 401);
    let t = s.tenant("a", 0).await;
    let (st, e) = error_of(
        c.get(s.u("/v1/admin/tenants"))
            .bearer_auth(&t.key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (401, "invalid_admin_key")
    );
    let (st, _) = error_of(c.get(s.u("/v1/admin/tenants")).send().await.unwrap()).await;
    assert_eq!(st, 401);

    // Without an admin key configured the admin API is off.
    let s2 = Server::start(&[("EASEL_ADMIN_KEY", "")]);
    let (st, e) = error_of(
        c.get(s2.u("/v1/admin/tenants"))
            .bearer_auth("")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, e["code"].as_str().unwrap()), (403, "admin_disabled"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_are_isolated() {
    let s = Server::start(&[]);
    let (a, b) = (s.tenant("a", 10).await, s.tenant("b", 10).await);
    let c = client();
    let up: Value = c
        .post(s.u("/v1/files"))
        .bearer_auth(&b.key)
        .multipart(Form::new().part("file", image_part(png(8, 8))))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job: Value = c
        .post(s.u("/v1/image/convert"))
        .bearer_auth(&b.key)
        .header("prefer", "wait")
        .json(&json!({"image_file_id": up["id"], "width": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "succeeded");
    let (jid, out) = (
        job["id"].as_str().unwrap(),
        job["outputs"][0]["file_id"].as_str().unwrap(),
    );
    let up_id = up["id"].as_str().unwrap();

    for (m, p) in [
        ("GET", format!("/v1/jobs/{jid}")),
        ("POST", format!("/v1/jobs/{jid}/cancel")),
        ("GET", format!("/v1/jobs/{jid}/events")),
        ("GET", format!("/v1/jobs/{jid}/webhooks")),
        ("GET", format!("/v1/files/{out}")),
        ("GET", format!("/v1/files/{up_id}")),
        ("DELETE", format!("/v1/files/{up_id}")),
    ] {
        let m = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        let (st, _) = error_of(
            c.request(m.clone(), s.u(&p))
                .bearer_auth(&a.key)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, 404, "A reached B's {m} {p}");
    }
    let r = c
        .post(s.u("/v1/image/convert"))
        .bearer_auth(&a.key)
        .json(&json!({"image_file_id": up_id}))
        .send()
        .await
        .unwrap();
    let (st, e) = error_of(r).await;
    assert_eq!(
        (
            st,
            e["code"].as_str().unwrap(),
            e["param"].as_str().unwrap()
        ),
        (404, "file_not_found", "image_file_id")
    );
    let list: Value = c
        .get(s.u("/v1/jobs"))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    // A signature for one file does not open another.
    let url = job["outputs"][0]["url"].as_str().unwrap();
    let forged = url.replace(out, up_id);
    let (st, e) = error_of(c.get(s.u(&forged)).send().await.unwrap()).await;
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (403, "invalid_signature")
    );
    // B still sees everything.
    assert_eq!(
        c.get(s.u(&format!("/v1/jobs/{jid}")))
            .bearer_auth(&b.key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credits_reserve_charge_refund_and_402() {
    let s = Server::start(&[
        ("EASEL_CREDITS__NOOP", "3"),
        ("EASEL_JOBS__CPU_CONCURRENCY", "1"),
    ]);
    let t = s.tenant("c", 5).await;
    let c = client();
    let balance = || async {
        let v: Value = c
            .get(s.u("/v1/account"))
            .bearer_auth(&t.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["credits"].as_i64().unwrap()
    };
    let job: Value = c
        .post(s.u("/v1/image/noop"))
        .bearer_auth(&t.key)
        .header("prefer", "wait")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (job["status"].as_str(), job["credits_state"].as_str()),
        (Some("succeeded"), Some("charged"))
    );
    assert_eq!(balance().await, 2);
    let (st, e) = error_of(noop(&s, &t.key, json!({})).await).await;
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (402, "insufficient_credits")
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("costs 3 credits; the balance is 2"),
        "{e}"
    );

    let r = c
        .post(s.u(&format!("/v1/admin/tenants/{}/credits", t.id)))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"delta": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(balance().await, 6);
    // Failure refunds.
    let job: Value = c
        .post(s.u("/v1/image/noop"))
        .bearer_auth(&t.key)
        .header("prefer", "wait")
        .json(&json!({"fail": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"]["code"], "task_failed");
    assert_eq!(job["credits_state"], "refunded");
    assert_eq!(balance().await, 6);
    // Reserved while queued; canceling a queued job refunds at once.
    let blocker: Value = noop(&s, &t.key, json!({"sleep_ms": 2000}))
        .await
        .json()
        .await
        .unwrap();
    let queued: Value = noop(&s, &t.key, json!({})).await.json().await.unwrap();
    assert_eq!(queued["status"], "queued");
    assert_eq!(balance().await, 0);
    let (st, _) = error_of(noop(&s, &t.key, json!({})).await).await;
    assert_eq!(st, 402);
    let canceled: Value = c
        .post(s.u(&format!(
            "/v1/jobs/{}/cancel",
            queued["id"].as_str().unwrap()
        )))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            canceled["status"].as_str(),
            canceled["credits_state"].as_str()
        ),
        (Some("canceled"), Some("refunded"))
    );
    assert_eq!(balance().await, 3);
    let done = wait_done(
        &s,
        &t.key,
        blocker["id"].as_str().unwrap(),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(done["credits_state"], "charged");
    assert_eq!(balance().await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_429_with_retry_after() {
    let s = Server::start(&[
        ("EASEL_RATE_LIMIT__PER_SECOND", "0.5"),
        ("EASEL_RATE_LIMIT__BURST", "3"),
    ]);
    let (a, b) = (s.tenant("a", 0).await, s.tenant("b", 0).await);
    let c = client();
    for left in ["2", "1", "0"] {
        let r = c
            .get(s.u("/v1/account"))
            .bearer_auth(&a.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit"], "3");
        assert_eq!(r.headers()["x-ratelimit-remaining"], left);
        assert!(
            r.headers()["x-ratelimit-reset"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1
        );
    }
    let r = c
        .get(s.u("/v1/account"))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let (st, e) = error_of(r).await;
    assert_eq!((st, e["code"].as_str().unwrap()), (429, "rate_limited"));
    // Per key: B is unaffected.
    assert_eq!(
        c.get(s.u("/v1/account"))
            .bearer_auth(&b.key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // After Retry-After, A may go again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(
        c.get(s.u("/v1/account"))
            .bearer_auth(&a.key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_key_returns_the_same_job() {
    let s = Server::start(&[]);
    let t = s.tenant("i", 10).await;
    let c = client();
    let send = |key: &'static str, width: &'static str| {
        // A new multipart body (and random boundary) every time.
        let form = Form::new()
            .part("image", image_part(png(20, 20)))
            .text("width", width);
        c.post(s.u("/v1/image/convert"))
            .bearer_auth(&t.key)
            .header("idempotency-key", key)
            .multipart(form)
            .send()
    };
    let r1 = send("k1", "10").await.unwrap();
    assert_eq!(r1.status(), 201);
    let j1: Value = r1.json().await.unwrap();
    let r2 = send("k1", "10").await.unwrap();
    assert_eq!(r2.status(), 200);
    assert_eq!(r2.headers()["idempotent-replayed"], "true");
    let j2: Value = r2.json().await.unwrap();
    assert_eq!(j1["id"], j2["id"]);
    let (st, e) = error_of(send("k1", "11").await.unwrap()).await;
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (422, "idempotency_key_reused")
    );
    let j3: Value = send("k2", "10").await.unwrap().json().await.unwrap();
    assert_ne!(j3["id"], j1["id"]);
    let list: Value = c
        .get(s.u("/v1/jobs"))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "one job per key");
    wait_done(
        &s,
        &t.key,
        j1["id"].as_str().unwrap(),
        Duration::from_secs(20),
    )
    .await;
    let acct: Value = c
        .get(s.u("/v1/account"))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        acct["credits"].as_i64().unwrap() >= 8,
        "a replay is not charged twice: {acct}"
    );
    // Another tenant's identical key is its own.
    let u = s.tenant("u", 10).await;
    let form = Form::new()
        .part("image", image_part(png(20, 20)))
        .text("width", "10");
    let r = c
        .post(s.u("/v1/image/convert"))
        .bearer_auth(&u.key)
        .header("idempotency-key", "k1")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn prefer_wait_holds_until_done_or_the_cap() {
    let s = Server::start(&[("EASEL_LIMITS__MAX_WAIT_SECS", "2")]);
    let t = s.tenant("w", 0).await;
    let c = client();
    let j: Value = c
        .post(s.u("/v1/image/noop"))
        .bearer_auth(&t.key)
        .header("prefer", "wait=10")
        .json(&json!({"sleep_ms": 300}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(j["status"], "succeeded");
    let start = Instant::now();
    let r = c
        .post(s.u("/v1/image/noop"))
        .bearer_auth(&t.key)
        .header("prefer", "wait=30")
        .json(&json!({"sleep_ms": 20000}))
        .send()
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(
        r.headers()["preference-applied"],
        "wait=2",
        "capped by limits.max_wait_secs"
    );
    let j: Value = r.json().await.unwrap();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(
        matches!(j["status"].as_str(), Some("running" | "queued")),
        "{j}"
    );
    // Without Prefer the job comes back at once, queued.
    let start = Instant::now();
    let j2: Value = noop(&s, &t.key, json!({})).await.json().await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(j2["status"].is_string());
    // Cancel the long one while it runs.
    let id = j["id"].as_str().unwrap();
    let start = Instant::now();
    let cj: Value = c
        .post(s.u(&format!("/v1/jobs/{id}/cancel")))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cj["status"], "canceled", "{cj}");
    assert_eq!(cj["error"]["code"], "canceled");
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// Reads an SSE stream to its end (bounded), as (event, data) pairs.
async fn read_sse(r: reqwest::Response, within: Duration) -> Vec<(String, Value)> {
    use futures_util::StreamExt;
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

#[tokio::test(flavor = "multi_thread")]
async fn sse_streams_position_progress_logs_and_completion() {
    let s = Server::start(&[("EASEL_JOBS__CPU_CONCURRENCY", "1")]);
    let t = s.tenant("e", 0).await;
    let c = client();
    let blocker: Value = noop(&s, &t.key, json!({"sleep_ms": 700}))
        .await
        .json()
        .await
        .unwrap();
    let job: Value = noop(&s, &t.key, json!({"sleep_ms": 800, "steps": 4}))
        .await
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap();
    let r = c
        .get(s.u(&format!("/v1/jobs/{id}/events")))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = read_sse(r, Duration::from_secs(20)).await;
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"status"), "{names:?}");
    assert_eq!(names.last(), Some(&"completed"), "{names:?}");
    let queued = events
        .iter()
        .find(|(e, _)| e == "queued")
        .expect("a queued event while the blocker runs");
    assert_eq!(queued.1["position"], 0);
    assert!(names.contains(&"started"));
    let progress: Vec<&Value> = events
        .iter()
        .filter(|(e, _)| e == "progress")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(progress.len(), 4, "{events:?}");
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(p["step"], i as u64 + 1);
        assert_eq!(p["total_steps"], 4);
        assert!((p["fraction"].as_f64().unwrap() - (i + 1) as f64 / 4.0).abs() < 1e-6);
    }
    assert_eq!(events.iter().filter(|(e, _)| e == "log").count(), 4);
    let done = &events.last().unwrap().1;
    assert_eq!(
        (done["id"].as_str(), done["status"].as_str()),
        (Some(id), Some("succeeded"))
    );
    // An ended job's stream is its status then completed.
    let r = c
        .get(s.u(&format!(
            "/v1/jobs/{}/events",
            blocker["id"].as_str().unwrap()
        )))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap();
    let names: Vec<String> = read_sse(r, Duration::from_secs(5))
        .await
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    assert_eq!(names, ["status", "completed"]);
    // The job record keeps the logs.
    let j: Value = c
        .get(s.u(&format!("/v1/jobs/{id}")))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        j["logs"].as_str().unwrap().contains("noop: step 4/4"),
        "{j}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_pages_and_filters_and_tenants_take_turns() {
    let s = Server::start(&[("EASEL_JOBS__CPU_CONCURRENCY", "1")]);
    let (a, b) = (s.tenant("a", 0).await, s.tenant("b", 0).await);
    let c = client();
    // A queues four jobs, then B one: B's runs second, not fifth.
    let mut a_ids = vec![];
    for _ in 0..4 {
        let j: Value = noop(&s, &a.key, json!({"sleep_ms": 150}))
            .await
            .json()
            .await
            .unwrap();
        a_ids.push(j["id"].as_str().unwrap().to_owned());
    }
    let bj: Value = noop(&s, &b.key, json!({"sleep_ms": 150}))
        .await
        .json()
        .await
        .unwrap();
    let b_done = wait_done(
        &s,
        &b.key,
        bj["id"].as_str().unwrap(),
        Duration::from_secs(20),
    )
    .await;
    let mut a_started = vec![];
    for id in &a_ids {
        let j = wait_done(&s, &a.key, id, Duration::from_secs(20)).await;
        a_started.push(j["started_at"].as_str().unwrap().to_owned());
    }
    let b_started = b_done["started_at"].as_str().unwrap();
    let before_b = a_started.iter().filter(|t| t.as_str() < b_started).count();
    assert!(
        before_b <= 2,
        "B waited behind {before_b} of A's jobs (fair share allows at most 2)"
    );

    let mut seen = vec![];
    let mut after: Option<String> = None;
    loop {
        let mut url = s.u("/v1/jobs?limit=3");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page: Value = c
            .get(url)
            .bearer_auth(&a.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["object"], "list");
        for j in page["data"].as_array().unwrap() {
            seen.push(j["id"].as_str().unwrap().to_owned());
        }
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        after = Some(page["next_cursor"].as_str().unwrap().to_owned());
    }
    a_ids.reverse();
    assert_eq!(seen, a_ids, "newest first, each job once");
    let page: Value = c
        .get(s.u("/v1/jobs?status=failed"))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 0);
    for bad in [
        "/v1/jobs?limit=0",
        "/v1/jobs?limit=101",
        "/v1/jobs?status=done",
        "/v1/jobs?after=job_x",
    ] {
        let (st, e) = error_of(c.get(s.u(bad)).bearer_auth(&a.key).send().await.unwrap()).await;
        assert_eq!(st, 400, "{bad}: {e}");
        assert!(e["param"].is_string(), "{bad}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_limits_and_bad_input_are_specific_4xx() {
    let s = Server::start(&[
        ("EASEL_LIMITS__MAX_BODY_BYTES", "200000"),
        ("EASEL_LIMITS__MAX_DIMENSION", "300"),
    ]);
    let t = s.tenant("l", 100).await;
    let c = client();
    let convert = |form: Form| {
        c.post(s.u("/v1/image/convert"))
            .bearer_auth(&t.key)
            .multipart(form)
            .send()
    };
    let check = |r: reqwest::Response,
                 status: u16,
                 code: &'static str,
                 param: Option<&'static str>| async move {
        let (st, e) = error_of(r).await;
        assert_eq!((st, e["code"].as_str().unwrap()), (status, code), "{e}");
        assert_eq!(e["param"].as_str(), param, "{e}");
    };
    check(
        convert(Form::new().part("image", image_part(vec![7u8; 300_000])))
            .await
            .unwrap(),
        413,
        "payload_too_large",
        None,
    )
    .await;
    check(
        convert(Form::new().part("image", image_part(png(400, 10))))
            .await
            .unwrap(),
        413,
        "image_too_large",
        Some("image"),
    )
    .await;
    check(
        convert(Form::new().part("image", image_part(b"plain text".to_vec())))
            .await
            .unwrap(),
        400,
        "unsupported_image_format",
        Some("image"),
    )
    .await;
    // Each bad multipart parameter is refused by name.
    for (name, value) in [
        ("bogus", "1"),
        ("width", "0"),
        ("fit", "squash"),
        ("priority", "12"),
    ] {
        let form = Form::new()
            .part("image", image_part(png(8, 8)))
            .text(name, value);
        check(
            convert(form).await.unwrap(),
            400,
            "invalid_parameter",
            Some(name),
        )
        .await;
    }
    check(
        convert(Form::new().text("width", "5")).await.unwrap(),
        400,
        "missing_input",
        Some("image"),
    )
    .await;
    check(
        c.post(s.u("/v1/image/nope"))
            .bearer_auth(&t.key)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        404,
        "unknown_task",
        Some("task"),
    )
    .await;
    check(
        c.post(s.u("/v1/image/convert"))
            .bearer_auth(&t.key)
            .body("x")
            .send()
            .await
            .unwrap(),
        415,
        "unsupported_media_type",
        None,
    )
    .await;
    check(
        c.post(s.u("/v1/image/convert"))
            .bearer_auth(&t.key)
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap(),
        400,
        "invalid_json",
        None,
    )
    .await;
    check(
        c.post(s.u("/v1/image/convert"))
            .bearer_auth(&t.key)
            .json(&json!({"image": "!!"}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_base64",
        Some("image"),
    )
    .await;
    check(
        c.post(s.u("/v1/image/noop"))
            .bearer_auth(&t.key)
            .json(&json!({"webhook_events_filter": ["completed"]}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_parameter",
        Some("webhook_events_filter"),
    )
    .await;
    // Problems only the work reveals fail the job with a reason.
    let j: Value = convert(
        Form::new()
            .part("image", image_part(png(8, 8)))
            .text("width", "5000"),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let j = wait_done(
        &s,
        &t.key,
        j["id"].as_str().unwrap(),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        (j["status"].as_str(), j["error"]["code"].as_str()),
        (Some("failed"), Some("output_too_large")),
        "{j}"
    );
    assert_eq!(j["credits_state"], "refunded");
    let mut bad = png(8, 8);
    bad.truncate(bad.len() - 20);
    let j: Value = convert(Form::new().part("image", image_part(bad)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let j = wait_done(
        &s,
        &t.key,
        j["id"].as_str().unwrap(),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        (j["status"].as_str(), j["error"]["code"].as_str()),
        (Some("failed"), Some("invalid_image")),
        "{j}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_gpu_gpu_tasks_fail_clearly_and_cpu_tasks_run() {
    let models = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/tiny_srvgg.safetensors");
    std::fs::copy(&fixture, models.path().join("tiny.safetensors"))
        .expect("the committed tiny_srvgg fixture");
    let s = Server::start(&[("EASEL_MODELS_DIR", models.path().to_str().unwrap())]);
    let t = s.tenant("g", 0).await;
    let c = client();
    let models: Value = c
        .get(s.u("/v1/models"))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = |n: &str| {
        models["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(models["models"][0]["name"], "tiny", "{models}");
    assert_eq!(
        models["models"][0]["bytes"],
        std::fs::metadata(&fixture).unwrap().len()
    );
    assert_eq!(models["models"][0]["loaded"], false);
    assert_eq!(task("noop-gpu")["available"], false);
    assert_eq!(task("convert")["available"], true);
    assert_eq!(task("convert")["credits"], 1);
    assert_eq!(task("convert")["params"]["quality"]["default"], 90);
    let j: Value = c
        .post(s.u("/v1/image/noop-gpu"))
        .bearer_auth(&t.key)
        .header("prefer", "wait")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (j["status"].as_str(), j["error"]["code"].as_str()),
        (Some("failed"), Some("gpu_unavailable")),
        "{j}"
    );
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs a GPU")
    );
    let j: Value = c
        .post(s.u("/v1/image/noop"))
        .bearer_auth(&t.key)
        .header("prefer", "wait")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(j["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_manages_tenants() {
    let s = Server::start(&[]);
    let c = client();
    let t = s.tenant("adm", 5).await;
    let all: Value = c
        .get(s.u("/v1/admin/tenants"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == t.id.as_str())
    );
    let one: Value = c
        .get(s.u(&format!("/v1/admin/tenants/{}", t.id)))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (one["name"].as_str(), one["credits"].as_i64()),
        (Some("adm"), Some(5))
    );
    let upd: Value = c
        .patch(s.u(&format!("/v1/admin/tenants/{}", t.id)))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"priority": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(upd["priority"], 3);
    let (st, e) = error_of(
        c.post(s.u(&format!("/v1/admin/tenants/{}/credits", t.id)))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"delta": -6}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, e["param"].as_str()), (400, Some("credits")));
    let rot: Value = c
        .post(s.u(&format!("/v1/admin/tenants/{}/rotate-key", t.id)))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_key = rot["api_key"].as_str().unwrap();
    assert_eq!(
        c.get(s.u("/v1/account"))
            .bearer_auth(&t.key)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        c.get(s.u("/v1/account"))
            .bearer_auth(new_key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    c.patch(s.u(&format!("/v1/admin/tenants/{}", t.id)))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.get(s.u("/v1/account"))
            .bearer_auth(new_key)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let (st, _) = error_of(
        c.get(s.u("/v1/admin/tenants/tnt_nope"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 404);
    let (st, e) = error_of(
        c.post(s.u("/v1/admin/tenants"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"name": "x", "bogus": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, e["code"].as_str().unwrap()), (400, "invalid_json"));
    let (st, e) = error_of(
        c.post(s.u("/v1/admin/tenants"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"name": " "}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, e["param"].as_str()), (400, Some("name")));
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_creates_a_tenant_whose_key_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["tenants", "create", "cli-co", "--credits", "7"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let key = text
        .lines()
        .find_map(|l| l.split("store it): ").nth(1))
        .expect("the key is printed")
        .trim()
        .to_owned();
    assert!(key.starts_with("esk_"));
    let s = Server::start_in(dir.path(), &[]);
    let acct: Value = client()
        .get(s.u("/v1/account"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (acct["name"].as_str(), acct["credits"].as_i64()),
        (Some("cli-co"), Some(7))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn files_delete_expire_and_signed_urls_expire() {
    let s = Server::start(&[
        ("EASEL_STORAGE__RETENTION_SECS", "2"),
        ("EASEL_STORAGE__SWEEP_INTERVAL_SECS", "1"),
        ("EASEL_STORAGE__URL_TTL_SECS", "1"),
    ]);
    let t = s.tenant("f", 0).await;
    let c = client();
    let upload = || async {
        let v: Value = c
            .post(s.u("/v1/files"))
            .bearer_auth(&t.key)
            .multipart(Form::new().part("file", image_part(png(4, 4))))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v
    };
    let f = upload().await;
    let id = f["id"].as_str().unwrap();
    assert_eq!(
        c.delete(s.u(&format!("/v1/files/{id}")))
            .bearer_auth(&t.key)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.get(s.u(&format!("/v1/files/{id}")))
            .bearer_auth(&t.key)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let f = upload().await;
    let id = f["id"].as_str().unwrap().to_owned();
    let url = f["url"].as_str().unwrap().to_owned();
    assert_eq!(c.get(s.u(&url)).send().await.unwrap().status(), 200);
    let blob = s.dir.join("blobs").join(&t.id).join(&id);
    assert!(blob.exists());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (st, e) = error_of(c.get(s.u(&url)).send().await.unwrap()).await;
    assert_eq!(
        (st, e["code"].as_str().unwrap()),
        (403, "invalid_signature"),
        "signed URLs expire"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while blob.exists() {
        assert!(
            Instant::now() < deadline,
            "retention did not delete the blob"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        c.get(s.u(&format!("/v1/files/{id}")))
            .bearer_auth(&t.key)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn config_file_then_env_override() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custom.toml");
    std::fs::write(
        &file,
        "[limits]\nmax_page_size = 2\n\n[credits]\nconvert = 4\n",
    )
    .unwrap();
    let s = Server::start(&[
        ("EASEL_CONFIG", file.to_str().unwrap()),
        ("EASEL_CREDITS__CONVERT", "6"),
    ]);
    let t = s.tenant("cfg", 0).await;
    let c = client();
    let (st, e) = error_of(
        c.get(s.u("/v1/jobs?limit=3"))
            .bearer_auth(&t.key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, e["message"].as_str()),
        (400, Some("must be between 1 and 2")),
        "the file's limit applies"
    );
    let models: Value = c
        .get(s.u("/v1/models"))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let convert = models["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "convert")
        .unwrap()
        .clone();
    assert_eq!(convert["credits"], 6, "the environment overrides the file");
}
