//! Test harness: runs the real `easel` binary on a free loopback port with a
//! temporary data directory, and small helpers around reqwest.
#![allow(dead_code)]

pub mod plugins;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const ADMIN_KEY: &str = "test-admin-key";

pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    log: Arc<Mutex<String>>,
    env: Vec<(String, String)>,
}

/// Settings every test server gets: admin key, diagnostic tasks, no GPU (so
/// tests behave the same on every machine), loopback webhooks allowed, and
/// a rate limit high enough not to interfere unless a test lowers it.
fn base_env() -> Vec<(String, String)> {
    [
        ("EASEL_ADMIN_KEY", ADMIN_KEY),
        ("EASEL_DEBUG_TASKS", "true"),
        ("EASEL_GPU__ENABLED", "false"),
        ("EASEL_WEBHOOKS__ALLOW_PRIVATE", "true"),
        ("EASEL_RATE_LIMIT__PER_SECOND", "10000"),
        ("EASEL_RATE_LIMIT__BURST", "10000"),
        ("EASEL_JOBS__SHUTDOWN_GRACE_SECS", "10"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

impl Server {
    pub fn start(env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_owned();
        let mut s = Server::start_in(&dir, env);
        s._tmp = Some(tmp);
        s
    }

    /// Starts on an existing data directory (restarts).
    pub fn start_in(dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut all = base_env();
        for (k, v) in env {
            all.retain(|(a, _)| a != k);
            all.push((k.to_string(), v.to_string()));
        }
        let mut s = Server {
            child: None,
            url: String::new(),
            dir: dir.to_owned(),
            _tmp: None,
            log: Default::default(),
            env: all,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_easel"));
        cmd.arg("--data-dir")
            .arg(&self.dir)
            .args(["serve", "--listen", "127.0.0.1:0"]);
        cmd.current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("EASEL_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning easel");
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("easel listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
                log.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => self.url = url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "easel did not start within 60 s; its stderr:\n{}",
                    self.log.lock().unwrap()
                );
            }
        }
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reap");
        }
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill -TERM")
            .success();
        assert!(ok, "kill -TERM failed");
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = c.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "easel did not exit within {within:?} of SIGTERM; stderr:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts again on the same data directory and settings.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn();
    }

    pub fn u(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// A tenant via the admin API: (id, api key, webhook secret).
    pub async fn tenant(&self, name: &str, credits: i64) -> Tenant {
        let r = client()
            .post(self.u("/v1/admin/tenants"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"name": name, "credits": credits}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        Tenant {
            id: v["tenant"]["id"].as_str().unwrap().to_owned(),
            key: v["api_key"].as_str().unwrap().to_owned(),
            webhook_secret: v["tenant"]["webhook_secret"].as_str().unwrap().to_owned(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: String,
    pub key: String,
    pub webhook_secret: String,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A PNG with a gradient (so resizes are checkable).
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w.max(2)) as u8, (y * 255 / h.max(2)) as u8, 77])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// An opaque RGBA PNG whose pixels encode their coordinates (red = x, green = y).
pub fn gradient_png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| image::Rgba([x as u8, y as u8, 99, 255]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

pub fn image_part(bytes: Vec<u8>) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes)
        .file_name("in.png")
        .mime_str("image/png")
        .unwrap()
}

/// Submits `task` as multipart with `files` and text `fields`; returns the
/// HTTP status and body.
pub async fn submit(
    s: &Server,
    key: &str,
    task: &str,
    files: &[(&str, Vec<u8>)],
    fields: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new();
    for (name, bytes) in files {
        form = form.part(name.to_string(), image_part(bytes.clone()));
    }
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    let r = client()
        .post(s.u(&format!("/v1/image/{task}")))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Polls a job until it ends (bounded).
pub async fn wait_done(s: &Server, key: &str, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let v: Value = client()
            .get(s.u(&format!("/v1/jobs/{id}")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if matches!(
            v["status"].as_str(),
            Some("succeeded" | "failed" | "canceled")
        ) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not end within {within:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Submits a `noop` job (JSON) and returns the response body.
pub async fn noop(s: &Server, key: &str, params: Value) -> reqwest::Response {
    client()
        .post(s.u("/v1/image/noop"))
        .bearer_auth(key)
        .json(&params)
        .send()
        .await
        .unwrap()
}

pub async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["code"].is_string() && v["error"]["message"].is_string(),
        "not the error shape: {v}"
    );
    (status, v["error"].clone())
}
