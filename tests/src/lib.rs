//! Integration tests live in tests/; shared helpers here.

pub mod npy;

use std::path::PathBuf;

/// `../shared` beside the workspace root (weights and reference fixtures),
/// or `EASEL_SHARED_DIR` when set (worktrees elsewhere); panics naming it
/// when missing.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("EASEL_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    assert!(
        dir.is_dir(),
        "the shared data directory {} is missing (see shared/README.md)",
        dir.display()
    );
    dir
}
