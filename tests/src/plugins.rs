//! Helpers for the plugin-host tests: the guest components (built by
//! `scripts/build-plugins` into `target/plugins/`) and hosts in fresh temporary directories.

use easel_host::plugins::{PluginHost, PluginHostConfig};
use std::path::{Path, PathBuf};
use std::sync::Once;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

static BUILD: Once = Once::new();

/// The bytes of guest component `name` (e.g. `watermark`, `test-hostile`). Builds the guests
/// with `scripts/build-plugins` the first time one is missing.
pub fn component(name: &str) -> Vec<u8> {
    let root = workspace_root();
    let path = root.join("target/plugins").join(format!("{name}.wasm"));
    if !path.exists() {
        BUILD.call_once(|| {
            let status = std::process::Command::new(root.join("scripts/build-plugins"))
                .status()
                .expect("running scripts/build-plugins");
            assert!(status.success(), "scripts/build-plugins failed");
        });
    }
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "guest component {} is missing ({e}); run scripts/build-plugins",
            path.display()
        )
    })
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    crate::scratch::dir(&format!("test-{tag}"))
}

/// Operator settings for tests: the cache in a fresh temp dir.
pub fn test_config(tag: &str) -> PluginHostConfig {
    PluginHostConfig::new(temp_dir(tag))
}

/// A host with default settings and no model runner.
pub fn host(tag: &str) -> PluginHost {
    PluginHost::new(test_config(tag)).expect("starting the plugin host")
}

/// Percentile (0..=100) of durations in microseconds.
pub fn percentile(samples: &mut [u64], p: f64) -> u64 {
    assert!(!samples.is_empty());
    samples.sort_unstable();
    let idx = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[idx]
}

/// A host whose compile cache is shared by every test run (`target/plugin-test-cache`), for
/// tests of large components (the JavaScript one) that need not prove compilation itself.
pub fn host_with_shared_cache(tag: &str) -> PluginHost {
    let mut cfg = test_config(tag);
    cfg.cache_dir = workspace_root().join("target/plugin-test-cache");
    PluginHost::new(cfg).expect("starting the plugin host")
}
