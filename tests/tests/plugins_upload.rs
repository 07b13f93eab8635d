//! Upload, versions, the compile cache and the manifest checks.

use easel_host::plugins::{
    CallError, LimitOverrides, Manifest, PluginHost, PluginRequest, UploadError, World,
};
use easel_tests::plugins::{component, host, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_reports_world_imports_exports_and_hash() {
    let h = host("up");
    let info = h
        .upload("t", "pass", component("test-passthrough"), None)
        .await
        .unwrap();
    assert_eq!(info.version, 1);
    assert_eq!(info.world, World::Processor);
    assert_eq!(info.hash.len(), 64);
    assert!(
        info.exports.contains(&"preprocess".to_string()),
        "{:?}",
        info.exports
    );
    assert!(
        info.imports
            .iter()
            .any(|i| i.starts_with("easel:plugin/images")),
        "{:?}",
        info.imports
    );
    assert!(!info.cached);
    let router = h
        .upload("t", "pp", component("product-photo"), None)
        .await
        .unwrap();
    assert_eq!(router.world, World::Router);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_artefacts_are_cached_on_disk() {
    let cfg = test_config("cache");
    let first = PluginHost::new(cfg.clone()).unwrap();
    let a = first
        .upload("t", "p", component("watermark"), None)
        .await
        .unwrap();
    assert!(!a.cached);
    let files: Vec<_> = std::fs::read_dir(&cfg.cache_dir).unwrap().collect();
    assert_eq!(files.len(), 1, "one artefact per content hash");
    // A new host (a restarted server) on the same cache loads instead of compiling.
    let second = PluginHost::new(cfg).unwrap();
    let b = second
        .upload("t", "p", component("watermark"), None)
        .await
        .unwrap();
    assert!(b.cached);
    assert_eq!(a.hash, b.hash);
    assert!(
        b.compile_ms < a.compile_ms,
        "cache load {} ms vs compile {} ms",
        b.compile_ms,
        a.compile_ms
    );
    let r = second
        .call_postprocess("t", "p", "x", vec![], Default::default())
        .await;
    assert!(r.result.is_ok(), "the cached artefact runs: {:?}", r.result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_immutable_pinnable_and_deletable() {
    let h = host("ver");
    let v1 = h
        .upload("t", "p", component("test-passthrough"), None)
        .await
        .unwrap();
    let v2 = h
        .upload("t", "p", component("test-hostile"), None)
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    let v = h.versions("t", "p").unwrap();
    assert_eq!(
        (v.versions.len(), v.active, v.pinned),
        (2, 2, None),
        "the latest is active"
    );
    h.pin("t", "p", Some(1)).unwrap();
    let v = h.versions("t", "p").unwrap();
    assert_eq!((v.active, v.pinned), (1, Some(1)));
    let called = h
        .call_preprocess(
            "t",
            "p",
            PluginRequest {
                task: "panic".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(
        called.result.is_ok(),
        "v1 (passthrough) answers, not v2 (hostile)"
    );
    assert_eq!(called.report.version, 1);
    assert!(h.pin("t", "p", Some(9)).is_err());
    assert!(
        h.list("other").is_empty(),
        "tenants do not see each other's plugins"
    );
    assert!(h.delete("t", "p"));
    assert!(!h.delete("t", "p"));
    let e = h
        .call_preprocess("t", "p", PluginRequest::default())
        .await
        .result
        .unwrap_err();
    assert_eq!(e, CallError::NotFound("p".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_and_name_are_checked() {
    let h = host("manifest");
    let e = h
        .upload("t", "Bad Name", component("test-passthrough"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "plugin_invalid_name");
    let m = Manifest {
        world: Some(World::Router),
        ..Default::default()
    };
    let e = h
        .upload("t", "p", component("test-passthrough"), Some(m))
        .await
        .unwrap_err();
    assert!(
        matches!(e, UploadError::Manifest(ref s) if s.contains("world")),
        "{e}"
    );
    let m = Manifest {
        limits: LimitOverrides {
            wall_time_ms: Some(10_000_000),
            ..Default::default()
        },
        ..Default::default()
    };
    let e = h
        .upload("t", "p", component("test-passthrough"), Some(m))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "plugin_limit_exceeds_cap");
    assert!(e.to_string().contains("wall_time_ms"), "{e}");
    // Calling a router as a processor names both worlds.
    h.upload("t", "pp", component("product-photo"), None)
        .await
        .unwrap();
    let e = h
        .call_preprocess("t", "pp", PluginRequest::default())
        .await
        .result
        .unwrap_err();
    assert_eq!(e.code(), "plugin_wrong_world");
}
