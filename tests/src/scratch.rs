//! Scratch directories for tests: `<temp>/easel-<kind>-<pid>-<n>`. A test process cannot
//! remove its directories when it exits (the hosts and servers using them live until then),
//! so each new one first removes those left by test processes that are no longer running.

use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh, empty directory named after `kind` (letters, digits and `-`).
pub fn dir(kind: &str) -> PathBuf {
    static SWEEP: Once = Once::new();
    static N: AtomicU32 = AtomicU32::new(0);
    SWEEP.call_once(remove_stale);
    let d = std::env::temp_dir().join(format!(
        "easel-{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("creating a scratch dir");
    d
}

/// Removes `easel-*-<pid>-<n>` directories whose process is gone (Linux: no `/proc/<pid>`;
/// elsewhere nothing is removed).
fn remove_stale() {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("easel-") else {
            continue;
        };
        let mut parts = rest.rsplit('-');
        let (Some(n), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if numeric(n)
            && numeric(pid)
            && parts.next().is_some()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stale_dirs_of_dead_processes_are_removed_and_live_ones_kept() {
        // A pid above the kernel's maximum (4194304) never runs.
        let stale = std::env::temp_dir().join("easel-scratchtest-4294967-0");
        std::fs::create_dir_all(&stale).unwrap();
        let mine = super::dir("scratchtest");
        super::remove_stale();
        assert!(!stale.exists(), "{} was left", stale.display());
        assert!(mine.exists(), "this process's own dir was removed");
        std::fs::remove_dir_all(mine).unwrap();
    }
}
