//! Durability: kill -9 with jobs queued and running, then restart; and
//! graceful SIGTERM, which lets running jobs finish.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_no_job() {
    let mut s = Server::start(&[
        ("EASEL_JOBS__CPU_CONCURRENCY", "1"),
        ("EASEL_JOBS__MAX_ATTEMPTS", "2"),
    ]);
    let t = s.tenant("k9", 100).await;
    let c = client();
    let mut ids = vec![];
    for i in 0..5 {
        let j: Value = noop(
            &s,
            &t.key,
            json!({"sleep_ms": if i == 0 { 3000 } else { 200 }, "steps": 3}),
        )
        .await
        .json()
        .await
        .unwrap();
        ids.push(j["id"].as_str().unwrap().to_owned());
    }
    // Wait until the first runs and has reported progress.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let j: Value = c
            .get(s.u(&format!("/v1/jobs/{}", ids[0])))
            .bearer_auth(&t.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if j["status"] == "running" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first job never started: {j}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill9();
    s.restart();
    for (i, id) in ids.iter().enumerate() {
        let j = wait_done(&s, &t.key, id, Duration::from_secs(30)).await;
        assert_eq!(j["status"], "succeeded", "job {i} after the crash: {j}");
        if i == 0 {
            assert_eq!(j["attempts"], 2, "the interrupted run is on record: {j}");
            assert!(
                j["logs"]
                    .as_str()
                    .unwrap()
                    .contains("the server stopped during attempt 1"),
                "{j}"
            );
        } else {
            assert_eq!(j["attempts"], 1, "queued jobs ran once: {j}");
        }
    }
    let list: Value = c
        .get(s.u("/v1/jobs?limit=100"))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        ids.len(),
        "no job vanished or appeared"
    );
    let acct: Value = c
        .get(s.u("/v1/account"))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        acct["credits"], 100,
        "noop costs nothing; reservations balanced"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_without_attempts_left_fails_with_a_reason_and_refunds() {
    let mut s = Server::start(&[
        ("EASEL_JOBS__CPU_CONCURRENCY", "1"),
        ("EASEL_JOBS__MAX_ATTEMPTS", "1"),
        ("EASEL_CREDITS__NOOP", "2"),
    ]);
    let t = s.tenant("k9b", 10).await;
    let c = client();
    let running: Value = noop(&s, &t.key, json!({"sleep_ms": 5000}))
        .await
        .json()
        .await
        .unwrap();
    let queued: Value = noop(&s, &t.key, json!({})).await.json().await.unwrap();
    let rid = running["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c
        .get(s.u(&format!("/v1/jobs/{rid}")))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["status"]
        != "running"
    {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill9();
    s.restart();
    let j = wait_done(&s, &t.key, rid, Duration::from_secs(10)).await;
    assert_eq!(
        (j["status"].as_str(), j["error"]["code"].as_str()),
        (Some("failed"), Some("interrupted")),
        "{j}"
    );
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("attempt 1 of 1")
    );
    assert_eq!(j["credits_state"], "refunded");
    let q = wait_done(
        &s,
        &t.key,
        queued["id"].as_str().unwrap(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(q["status"], "succeeded");
    let acct: Value = c
        .get(s.u("/v1/account"))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        acct["credits"], 8,
        "the interrupted job was refunded, the other charged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_running_jobs_and_keeps_the_queue() {
    let mut s = Server::start(&[("EASEL_JOBS__CPU_CONCURRENCY", "1")]);
    let t = s.tenant("term", 0).await;
    let c = client();
    let running: Value = noop(&s, &t.key, json!({"sleep_ms": 1500}))
        .await
        .json()
        .await
        .unwrap();
    let queued: Value = noop(&s, &t.key, json!({"sleep_ms": 10}))
        .await
        .json()
        .await
        .unwrap();
    let rid = running["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c
        .get(s.u(&format!("/v1/jobs/{rid}")))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["status"]
        != "running"
    {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = s.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}: {}", s.log());
    s.restart();
    let r = wait_done(&s, &t.key, rid, Duration::from_secs(5)).await;
    assert_eq!(
        (r["status"].as_str(), r["attempts"].as_u64()),
        (Some("succeeded"), Some(1)),
        "finished during the drain: {r}"
    );
    let q = wait_done(
        &s,
        &t.key,
        queued["id"].as_str().unwrap(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        (q["status"].as_str(), q["attempts"].as_u64()),
        (Some("succeeded"), Some(1))
    );
}
