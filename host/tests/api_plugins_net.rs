//! Outgoing HTTP from plugins over the real server: denied by default (a component that
//! imports `wasi:http/outgoing-handler` is refused at upload), allowed only to the hosts the
//! operator lists for the tenant in `[plugins.tenants.<id>] allow_hosts`, redirects not
//! followed, and a request that outlives the call's wall time ends the call with
//! `plugin_timeout`.

mod common;

use std::time::{Duration, Instant};

use common::plugins::*;
use common::*;

/// An upstream on loopback: `/hello` answers text, `POST /sum` the length and byte sum of
/// what it was sent, `/redirect` points at `/hello` on another address, `/slow` answers
/// after 5 s.
async fn upstream() -> u16 {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route("/hello", get(|| async { "hi from upstream" }))
        .route(
            "/sum",
            post(|body: axum::body::Bytes| async move {
                let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
                format!("{} bytes, sum {sum}", body.len())
            }),
        )
        .route(
            "/redirect",
            get(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [("location", "http://127.0.0.2:1/hello")],
                    "",
                )
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

async fn fetch(s: &Server, key: &str, url: &str) -> (u16, String) {
    let r = client()
        .get(s.u(&format!("/v1/x/fetch/fetch?url={url}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_http_reaches_only_allow_listed_hosts() {
    let port = upstream().await;
    let mut s = server();
    let a = s.tenant("net-a", 100).await;
    let b = s.tenant("net-b", 100).await;

    // Default: no network for anyone, so the component is refused at upload, naming the
    // interface (the no-permission test of outgoing HTTP).
    let (status, v) = json_of(put_raw(&s, &a.key, "fetch", component("test-fetch")).await).await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wasi:http/outgoing-handler"),
        "{v}"
    );

    // The operator allow-lists the upstream for tenant a only, with a short wall time.
    s.terminate(Duration::from_secs(20));
    std::fs::write(
        s.dir.join("easel.toml"),
        format!(
            "[plugins.tenants.{}]\nallow_hosts = [\"127.0.0.1:{port}\"]\nlimits = {{ wall_time_ms = 1000 }}\n",
            a.id
        ),
    )
    .unwrap();
    s.restart();

    let (status, v) = json_of(put_raw(&s, &a.key, "fetch", component("test-fetch")).await).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = json_of(put_raw(&s, &b.key, "fetch", component("test-fetch")).await).await;
    assert_eq!(status, 422, "tenant b still has no network: {v}");

    let (status, body) = fetch(&s, &a.key, &format!("http://127.0.0.1:{port}/hello")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "upstream 200: hi from upstream")
    );

    // A request body larger than one stream write (4 KiB) and than the pipe's buffer goes
    // through whole: the SDK's `send` streams it after handing the request to the host.
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let want_sum: u64 = payload.iter().map(|&b| u64::from(b)).sum();
    let r = client()
        .post(s.u(&format!(
            "/v1/x/fetch/fetch?url=http://127.0.0.1:{port}/sum"
        )))
        .bearer_auth(&a.key)
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        format!("upstream 200: 300000 bytes, sum {want_sum}")
    );

    // The same upstream by another name or port is not on the list.
    for url in [
        format!("http://localhost:{port}/hello"),
        format!("http://127.0.0.1:{}/hello", port.wrapping_add(1).max(1)),
    ] {
        let (status, body) = fetch(&s, &a.key, &url).await;
        assert_eq!(
            (status, body.as_str()),
            (502, "error: ErrorCode::HttpRequestDenied"),
            "{url}"
        );
    }

    // Redirects reach the guest as they are: following one could leave the allow-list.
    let (status, body) = fetch(&s, &a.key, &format!("http://127.0.0.1:{port}/redirect")).await;
    assert_eq!((status, body.as_str()), (200, "upstream 302: "));

    // A request slower than the call's wall time ends the call, not the server.
    let t = Instant::now();
    let (status, body) = fetch(&s, &a.key, &format!("http://127.0.0.1:{port}/slow")).await;
    let took = t.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("plugin_timeout"), "{body}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let (status, _) = fetch(&s, &a.key, &format!("http://127.0.0.1:{port}/hello")).await;
    assert_eq!(status, 200, "the tenant's next call runs");
}
