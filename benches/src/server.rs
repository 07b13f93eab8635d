//! The real `easel` binary started on loopback for the HTTP benchmarks, with a fresh data
//! folder, an admin key (`bench`) and rate limits out of the way; killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `EASEL_BIN`, else `target/release/easel` (what a deployment runs), else
/// `target/debug/easel`.
pub fn easel_bin() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("EASEL_BIN") {
        return Ok(p.into());
    }
    for profile in ["release", "debug"] {
        let p = root().join("target").join(profile).join("easel");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("no easel binary: run `cargo build --release -p easel-host` or set EASEL_BIN")
}

/// The number after command-line flag `name`, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A running server.
pub struct BenchServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl BenchServer {
    /// Starts `easel serve` with the GPU off, rate limits lifted and `env` on top.
    pub fn start(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let bin = easel_bin()?;
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(&bin)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("EASEL_ADMIN_KEY", "bench")
            .env("EASEL_GPU__ENABLED", "false")
            .env("EASEL_RATE_LIMIT__PER_SECOND", "1000000")
            .env("EASEL_RATE_LIMIT__BURST", "1000000")
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps draining stderr after the address line so the server never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("easel listening on ") {
                    let _ = tx.send(a.trim().to_owned());
                }
            }
        });
        let mut server = BenchServer {
            child,
            base: String::new(),
            bin,
            _dir: dir,
        };
        server.base = rx
            .recv_timeout(Duration::from_secs(60))
            .context("server did not start")?;
        Ok(server)
    }

    /// CPU seconds (user + system) the server process has used so far, from
    /// `/proc/<pid>/stat`; `None` where that is unavailable (not Linux).
    #[cfg(target_os = "linux")]
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (hz > 0).then(|| ticks / hz as f64)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn cpu_seconds(&self) -> Option<f64> {
        None
    }
}

impl Drop for BenchServer {
    /// Asks the server to shut down as a deployment would (SIGTERM, which drains it and lets
    /// an instrumented build write its profile), and kills it if it has not exited in 10 s.
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        {
            if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: `kill` has no memory preconditions; the pid is our own child, not
                // yet reaped, so it cannot name another process.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while std::time::Instant::now() < deadline {
                    if matches!(self.child.try_wait(), Ok(Some(_))) {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
