//! A third-party client (Python `requests`) does upload → poll → download.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn python_requests_upload_poll_download() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/python/test_upload_poll_download.py");
    let has_requests = std::process::Command::new("python3")
        .args(["-c", "import requests"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_requests,
        "python3 with `requests` is needed: run tests/python/setup.sh"
    );
    let s = Server::start(&[]);
    let t = s.tenant("py", 5).await;
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .env("EASEL_URL", &s.url)
        .env("EASEL_KEY", &t.key)
        .env("NO_PROXY", "*")
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("python finished in 60 s")
        .unwrap();
    assert!(
        out.status.success(),
        "python test failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("upload -> poll -> download OK"));
}
