//! Shared helpers for Easel's integration tests: where the `easel` binary and
//! `../shared` live, and a server process that is killed on drop.

pub mod npy;
pub mod plugins;
pub mod scratch;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod reference;
pub use reference::{psnr_u8, shared_file};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `../shared` beside the workspace (real weights and reference outputs);
/// `EASEL_SHARED_DIR` overrides it for checkouts elsewhere (worktrees).
/// Panics with a clear message when it is missing: the tests that need it
/// must not silently pass.
pub fn shared_dir() -> PathBuf {
    // EASEL_SHARED_DIR serves checkouts that are not beside shared/ (worktrees).
    let dir = std::env::var_os("EASEL_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("..").join("shared"));
    assert!(
        dir.join("README.md").exists(),
        "the shared data folder is missing at {} (it holds the real weights and fixtures these tests compare against)",
        dir.display()
    );
    dir
}

/// Path of the `easel` binary of this build, building it once if needed.
pub fn easel_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<test-exe> -> target/<profile>/easel
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target profile dir")
            .to_path_buf();
        let bin = profile_dir.join(format!("easel{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "-p", "easel-host", "--bin", "easel"])
                .current_dir(workspace_root());
            if release {
                cmd.arg("--release");
            }
            let status = cmd
                .status()
                .expect("running cargo build for the easel binary");
            assert!(status.success(), "building the easel binary failed");
        }
        bin
    })
    .clone()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running `easel serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts `easel serve` on a free port with `data_dir` and extra args,
    /// waiting until `/healthz` answers.
    pub fn start(data_dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Server {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(easel_bin());
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--listen", &addr])
            .args(extra);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn easel serve");
        let server = Server {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
        };
        server.wait_healthy(Duration::from_secs(60));
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn wait_healthy(&self, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok((200, _)) = http_get(&self.addr, "/healthz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "easel serve on {} did not become healthy within {timeout:?}",
            self.addr
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET over a raw socket (status, body), so smoke tests
/// need no client crate.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
