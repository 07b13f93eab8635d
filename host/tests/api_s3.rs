//! The S3-compatible blob store, against a local S3 server (moto, from PyPI:
//! tests/python/setup.sh installs it) on loopback.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reqwest::multipart::Form;
use serde_json::Value;

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_moto() -> (Moto, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (a local S3 server) is needed: run tests/python/setup.sh");
    let moto = Moto(child);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client().get(&url).send().await.is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (moto, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_store_inputs_and_outputs_in_an_s3_bucket() {
    let (_moto, s3) = start_moto().await;
    let c = client();
    assert!(
        c.put(format!("{s3}/easel-test"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success(),
        "create bucket"
    );
    let s = Server::start(&[
        ("EASEL_STORAGE__BACKEND", "s3"),
        ("EASEL_STORAGE__S3__BUCKET", "easel-test"),
        ("EASEL_STORAGE__S3__ENDPOINT", &s3),
        ("EASEL_STORAGE__S3__ALLOW_HTTP", "true"),
        ("EASEL_STORAGE__S3__REGION", "us-east-1"),
        ("EASEL_STORAGE__S3__ACCESS_KEY_ID", "test"),
        ("EASEL_STORAGE__S3__SECRET_ACCESS_KEY", "test"),
        ("EASEL_STORAGE__S3__PREFIX", "easel"),
    ]);
    let ready: Value = c
        .get(s.u("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (ready["storage_ok"].as_bool(), ready["storage"].as_str()),
        (Some(true), Some("s3 bucket easel-test")),
        "{ready}"
    );
    let t = s.tenant("s3", 5).await;
    let form = Form::new()
        .part("image", image_part(png(40, 20)))
        .text("width", "10");
    let job: Value = c
        .post(s.u("/v1/image/convert"))
        .bearer_auth(&t.key)
        .header("prefer", "wait")
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    let out = job["outputs"][0]["file_id"].as_str().unwrap();
    let bytes = c
        .get(s.u(job["outputs"][0]["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (10, 5));
    // The objects are in the bucket, under the prefix and tenant.
    let listing = c
        .get(format!("{s3}/easel-test?list-type=2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let input = job["inputs"][0]["file_id"].as_str().unwrap();
    assert!(
        listing.contains(&format!("easel/{}/{out}", t.id)),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("easel/{}/{input}", t.id)),
        "{listing}"
    );
    assert_eq!(
        c.delete(s.u(&format!("/v1/files/{out}")))
            .bearer_auth(&t.key)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let listing = c
        .get(format!("{s3}/easel-test?list-type=2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!listing.contains(out), "deleted from the bucket: {listing}");
    assert!(
        !s.dir.join("blobs").exists(),
        "nothing went to the local store"
    );
}
