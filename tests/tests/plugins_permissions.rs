//! Every host interface refuses a plugin without the capability (`permission_denied`, which
//! the guest can handle), and serves one with it.

use easel_host::plugins::{
    Capabilities, KvQuota, MemoryKv, ModelCall, ModelFuture, ModelResult, ModelRunError,
    ModelRunner, ParamValue, PluginHost, PluginImage, PluginRequest, TenantPolicy,
};
use easel_tests::plugins::{component, test_config};
use std::sync::Arc;

/// Inverts the colours of its inputs; stands in for the GPU scheduler.
struct Invert;

impl ModelRunner for Invert {
    fn run<'a>(&'a self, call: ModelCall<'a>) -> ModelFuture<'a> {
        Box::pin(async move {
            // Like the scheduler, suspend the guest's call before answering.
            tokio::task::yield_now().await;
            invert(call)
        })
    }
}

fn invert(call: ModelCall<'_>) -> Result<ModelResult, ModelRunError> {
    if call.task != "invert" {
        return Err(ModelRunError::new("model_unavailable", call.task));
    }
    let images = call
        .inputs
        .iter()
        .map(|i| {
            let mut px = (*i.pixels).clone();
            for p in px.pixels_mut() {
                for c in 0..3 {
                    p.0[c] = 255 - p.0[c];
                }
            }
            PluginImage::new(px)
        })
        .collect();
    Ok(ModelResult {
        images,
        metadata: serde_json::json!({"model": "invert"}),
    })
}

fn host() -> PluginHost {
    PluginHost::with_parts(
        test_config("perm"),
        Arc::new(MemoryKv::new()),
        Arc::new(Invert),
    )
    .unwrap()
}

fn allow_all() -> TenantPolicy {
    TenantPolicy {
        allowed_models: vec!["invert".into()],
        kv: Some(KvQuota::default()),
        ..Default::default()
    }
}

async fn probe(h: &PluginHost, tenant: &str, interface: &str) -> String {
    let out = h
        .call_preprocess(
            tenant,
            "h",
            PluginRequest {
                task: format!("probe-{interface}"),
                ..Default::default()
            },
        )
        .await
        .result
        .unwrap_or_else(|e| panic!("probe-{interface} failed: {e}"));
    match out.params.iter().find(|(n, _)| n == "result") {
        Some((_, ParamValue::Text(s))) => s.clone(),
        other => panic!("probe-{interface} returned {other:?}"),
    }
}

const INTERFACES: [&str; 5] = ["images", "models", "log", "config", "kv"];

/// Denies `interface` through the tenant policy.
fn policy_without(interface: &str) -> TenantPolicy {
    let mut p = allow_all();
    match interface {
        "images" => p.images = false,
        "models" => p.allowed_models.clear(),
        "log" => p.log = false,
        "config" => p.config = false,
        "kv" => p.kv = None,
        _ => unreachable!(),
    }
    p
}

/// Denies `interface` through the plugin's own manifest.
fn caps_without(interface: &str) -> Capabilities {
    let mut c = Capabilities::default();
    match interface {
        "images" => c.images = false,
        "models" => c.models.clear(),
        "log" => c.log = false,
        "config" => c.config = false,
        "kv" => c.kv = false,
        _ => unreachable!(),
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_interface_works_with_its_capability() {
    let h = host();
    h.set_policy("t", allow_all());
    h.upload("t", "h", component("test-hostile"), None)
        .await
        .unwrap();
    for i in INTERFACES {
        assert_eq!(probe(&h, "t", i).await, "ok", "{i} with permission");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_interface_is_denied_without_tenant_permission() {
    let h = host();
    for i in INTERFACES {
        let tenant = format!("no-{i}");
        h.set_policy(&tenant, policy_without(i));
        h.upload(&tenant, "h", component("test-hostile"), None)
            .await
            .unwrap();
        assert_eq!(probe(&h, &tenant, i).await, "permission_denied", "{i}");
        // The other interfaces still work for that tenant.
        for other in INTERFACES.iter().filter(|o| **o != i) {
            assert_eq!(
                probe(&h, &tenant, other).await,
                "ok",
                "{other} while {i} denied"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_interface_is_denied_when_the_manifest_does_not_ask_for_it() {
    let h = host();
    h.set_policy("t", allow_all());
    for i in INTERFACES {
        let manifest = easel_host::plugins::Manifest {
            capabilities: caps_without(i),
            ..Default::default()
        };
        h.upload("t", "h", component("test-hostile"), Some(manifest))
            .await
            .unwrap();
        assert_eq!(probe(&h, "t", i).await, "permission_denied", "{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_is_scoped_per_tenant() {
    let kv = Arc::new(MemoryKv::new());
    let h = PluginHost::with_parts(test_config("kv"), kv.clone(), Arc::new(Invert)).unwrap();
    for t in ["a", "b"] {
        h.set_policy(t, allow_all());
        h.upload(t, "h", component("test-hostile"), None)
            .await
            .unwrap();
    }
    assert_eq!(probe(&h, "a", "kv").await, "ok");
    use easel_host::plugins::{KvScope, KvStore};
    let scope = |t: &str| KvScope {
        tenant: t.into(),
        plugin: "h".into(),
    };
    assert_eq!(kv.get(&scope("a"), "k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(
        kv.get(&scope("b"), "k").unwrap(),
        None,
        "tenant b's plugin never wrote"
    );
}
