//! Test helpers shared by unit and integration tests.

use std::path::PathBuf;

/// `../shared` beside the workspace (real weights and reference fixtures),
/// or `EASEL_SHARED_DIR` when set (e.g. for a git worktree elsewhere).
/// Panics with instructions when it is missing: tests that need it must not
/// silently pass.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("EASEL_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    assert!(
        dir.join("models").is_dir(),
        "shared test data not found at {} (expected ../shared beside the workspace or EASEL_SHARED_DIR; see shared/README.md)",
        dir.display()
    );
    dir
}

/// `tests/fixtures` of this repository (small committed fixtures).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}
