//! Webhooks over real HTTP: signatures checked with the independent
//! `standardwebhooks` crate, retries against a failing receiver with every
//! attempt recorded, and the SSRF guard.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use common::*;
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, bytes::Bytes, Instant)>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<Mutex<usize>>,
}

/// A webhook receiver on a free loopback port.
async fn receiver(fail_first: usize) -> (String, Receiver) {
    let rx = Receiver {
        fail_first: Arc::new(Mutex::new(fail_first)),
        ..Default::default()
    };
    let r2 = rx.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
            let r = r2.clone();
            async move {
                r.got.lock().unwrap().push((headers, body, Instant::now()));
                let mut f = r.fail_first.lock().unwrap();
                if *f > 0 {
                    *f -= 1;
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, rx)
}

async fn wait_for(
    rx: &Receiver,
    n: usize,
    within: Duration,
) -> Vec<(HeaderMap, bytes::Bytes, Instant)> {
    let deadline = Instant::now() + within;
    loop {
        let got = rx.got.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} webhook requests within {within:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_verify_with_a_standard_webhooks_library() {
    let s = Server::start(&[]);
    let t = s.tenant("hooks", 0).await;
    let (url, rx) = receiver(0).await;
    let c = client();
    let j: Value = c
        .post(s.u("/v1/image/noop"))
        .bearer_auth(&t.key)
        .json(&json!({"webhook": url, "webhook_events_filter": ["start", "progress", "completed"], "steps": 2, "sleep_ms": 1200}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = j["id"].as_str().unwrap();
    wait_done(&s, &t.key, id, Duration::from_secs(20)).await;
    let got = wait_for(&rx, 3, Duration::from_secs(20)).await;
    let verifier = standardwebhooks::Webhook::new(&t.webhook_secret).unwrap();
    let mut types = vec![];
    for (headers, body, _) in &got {
        verifier
            .verify(body, headers)
            .expect("the signature verifies with the tenant's secret");
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["data"]["id"], id);
        types.push(v["type"].as_str().unwrap().to_owned());
        // Tampering breaks it.
        let mut bad = body.to_vec();
        bad[0] = b' ';
        assert!(verifier.verify(&bad, headers).is_err());
        assert!(
            standardwebhooks::Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .unwrap()
                .verify(body, headers)
                .is_err()
        );
    }
    assert_eq!(
        types.first().map(String::as_str),
        Some("job.started"),
        "{types:?}"
    );
    assert!(types.contains(&"job.progress".to_owned()), "{types:?}");
    // The completed message is sent once the job is done (possibly after a late progress one).
    let completed = wait_for(&rx, types.len(), Duration::from_secs(1)).await;
    let last: Value = completed
        .iter()
        .map(|(_, b, _)| serde_json::from_slice::<Value>(b).unwrap())
        .find(|v| v["type"] == "job.completed")
        .expect("a job.completed webhook");
    assert_eq!(last["data"]["status"], "succeeded");
    assert!(
        last["data"]["outputs"][0]["url"]
            .as_str()
            .unwrap()
            .contains("sig=")
    );
    let deliveries: Value = c
        .get(s.u(&format!("/v1/jobs/{id}/webhooks")))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for d in deliveries.as_array().unwrap() {
        assert_eq!(d["state"], "delivered", "{d}");
        assert_eq!(d["attempts"][0]["status_code"], 204);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_receiver_gets_retries_with_backoff_all_recorded() {
    let s = Server::start(&[("EASEL_WEBHOOKS__INITIAL_BACKOFF_MS", "300")]);
    let t = s.tenant("retry", 0).await;
    let (url, rx) = receiver(2).await;
    let c = client();
    let j: Value = c
        .post(s.u("/v1/image/noop"))
        .bearer_auth(&t.key)
        .json(&json!({"webhook": url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = j["id"].as_str().unwrap();
    let got = wait_for(&rx, 3, Duration::from_secs(20)).await;
    // Same message id each time; backoff doubles (300 ms, then 600 ms).
    let ids: Vec<&str> = got
        .iter()
        .map(|(h, _, _)| h["webhook-id"].to_str().unwrap())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let gap1 = got[1].2 - got[0].2;
    let gap2 = got[2].2 - got[1].2;
    assert!(
        gap1 >= Duration::from_millis(280),
        "first retry after {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(580),
        "second retry after {gap2:?}"
    );
    let verifier = standardwebhooks::Webhook::new(&t.webhook_secret).unwrap();
    for (h, b, _) in &got {
        verifier.verify(b, h).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let d: Value = c
            .get(s.u(&format!("/v1/jobs/{id}/webhooks")))
            .bearer_auth(&t.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let m = &d[0];
        if m["state"] == "delivered" {
            let codes: Vec<u64> = m["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["status_code"].as_u64().unwrap())
                .collect();
            assert_eq!(codes, [500, 500, 204]);
            assert!(m["attempts"][0]["error"].as_str().unwrap().contains("500"));
            break;
        }
        assert!(Instant::now() < deadline, "not recorded as delivered: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gives_up_after_max_attempts() {
    let s = Server::start(&[
        ("EASEL_WEBHOOKS__INITIAL_BACKOFF_MS", "100"),
        ("EASEL_WEBHOOKS__MAX_ATTEMPTS", "3"),
    ]);
    let t = s.tenant("dead", 0).await;
    let (url, rx) = receiver(100).await;
    let c = client();
    let j: Value = c
        .post(s.u("/v1/image/noop"))
        .bearer_auth(&t.key)
        .json(&json!({"webhook": url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = j["id"].as_str().unwrap();
    wait_for(&rx, 3, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        rx.got.lock().unwrap().len(),
        3,
        "no attempts beyond max_attempts"
    );
    let d: Value = c
        .get(s.u(&format!("/v1/jobs/{id}/webhooks")))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d[0]["state"], "failed");
    assert_eq!(d[0]["attempts"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn private_targets_are_refused_unless_allowed() {
    let s = Server::start(&[("EASEL_WEBHOOKS__ALLOW_PRIVATE", "false")]);
    let t = s.tenant("ssrf", 0).await;
    let c = client();
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://[::1]:9/x",
        "http://169.254.169.254/latest",
        "http://10.0.0.1/x",
        "ftp://example.com/x",
    ] {
        let (st, e) = error_of(
            c.post(s.u("/v1/image/noop"))
                .bearer_auth(&t.key)
                .json(&json!({"webhook": url}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (st, e["param"].as_str()),
            (400, Some("webhook")),
            "{url}: {e}"
        );
    }
}
