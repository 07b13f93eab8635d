//! The example plugins in plugins/, run through the host.

use easel_host::plugins::{
    ImageInfo, KvScope, KvStore, Manifest, MemoryKv, NoModels, ParamValue, PlanStep, PluginHost,
    PluginImage, PluginOutput, PluginRequest,
};
use easel_tests::plugins::{component, host, test_config};
use std::collections::BTreeMap;
use std::sync::Arc;

fn manifest(config: &[(&str, &str)]) -> Manifest {
    Manifest {
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermark_stamps_exactly_the_text_box() {
    let h = host("wm");
    h.upload(
        "t",
        "watermark",
        component("watermark"),
        Some(manifest(&[("text", "TEST")])),
    )
    .await
    .unwrap();
    let img = PluginImage::filled(512, 256, [40, 80, 120, 255]).unwrap();
    let mut meta = serde_json::Map::new();
    meta.insert("seed".into(), 7.into());
    let out = h
        .call_postprocess(
            "t",
            "watermark",
            "upscale",
            vec![],
            PluginOutput {
                images: vec![img.clone()],
                metadata: meta,
                ..Default::default()
            },
        )
        .await;
    let logs = out.report.logs.clone();
    let out = out.result.unwrap();
    // Scale = 512/256 = 2; "TEST" is 4*8*2 = 64 px wide, 16 high, 8 px from the corner.
    let expected = img
        .draw_text("TEST", 512 - 64 - 8, 256 - 16 - 8, 2, [255, 255, 255, 160])
        .unwrap();
    assert_eq!(out.images.len(), 1);
    assert_eq!(out.images[0].pixels.as_raw(), expected.pixels.as_raw());
    assert_ne!(
        out.images[0].pixels.as_raw(),
        img.pixels.as_raw(),
        "something was drawn"
    );
    assert_eq!(out.metadata["watermark"], "TEST");
    assert_eq!(out.metadata["seed"], 7, "existing metadata is kept");
    assert!(
        logs.iter().any(|l| l.message.contains("stamped 1 image")),
        "{logs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermark_reports_bad_config() {
    let h = host("wm-bad");
    h.upload(
        "t",
        "watermark",
        component("watermark"),
        Some(manifest(&[("opacity", "999")])),
    )
    .await
    .unwrap();
    let out = h
        .call_postprocess("t", "watermark", "x", vec![], PluginOutput::default())
        .await;
    let e = out.result.unwrap_err();
    assert_eq!(e.code(), "plugin_error");
    assert!(e.to_string().contains("bad_config"), "{e}");
}

fn step(task: &str, params: &[(&str, ParamValue)]) -> PlanStep {
    PlanStep {
        task: task.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_photo_plans_cutout_background_upscale_and_canvas() {
    let h = host("pp");
    h.upload("t", "product-photo", component("product-photo"), None)
        .await
        .unwrap();
    let route = |w: u32, params: Vec<(String, ParamValue)>| {
        let h = h.clone();
        async move {
            h.call_router(
                "t",
                "product-photo",
                "product-photo",
                params,
                vec![ImageInfo {
                    width: w,
                    height: w / 2,
                    has_alpha: false,
                }],
            )
            .await
            .result
        }
    };
    let white = || ParamValue::Text("#ffffff".into());
    let canvas = |size: i64| {
        step(
            "convert",
            &[
                ("width", ParamValue::Int(size)),
                ("height", ParamValue::Int(size)),
                ("fit", ParamValue::Text("pad".into())),
                ("background", white()),
            ],
        )
    };
    let plan = route(800, vec![]).await.unwrap();
    assert_eq!(
        plan.steps,
        vec![
            step("replace-background", &[("color", white())]),
            step("upscale", &[("scale", ParamValue::Int(4))]),
            canvas(2000),
        ]
    );
    let plan = route(1200, vec![]).await.unwrap();
    assert_eq!(
        plan.steps[1],
        step("upscale", &[("scale", ParamValue::Int(2))])
    );
    let plan = route(2400, vec![]).await.unwrap();
    assert_eq!(plan.steps.len(), 2, "large inputs are not upscaled");
    let plan = route(2400, vec![("size".into(), ParamValue::Int(3000))])
        .await
        .unwrap();
    assert_eq!(plan.steps[2], canvas(3000));
    let e = route(
        800,
        vec![("background".into(), ParamValue::Text("white".into()))],
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("invalid_argument"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_guard_blocks_and_templates() {
    let kv = Arc::new(MemoryKv::new());
    let h = PluginHost::with_parts(test_config("pg"), kv.clone(), Arc::new(NoModels)).unwrap();
    let m = manifest(&[
        ("blocklist", "spider, wasp"),
        ("template", "{prompt}, studio lighting"),
    ]);
    h.upload("t", "prompt-guard", component("prompt-guard"), Some(m))
        .await
        .unwrap();
    let call = |prompt: &str| {
        let h = h.clone();
        let req = PluginRequest {
            task: "text-to-image".into(),
            params: vec![("prompt".into(), ParamValue::Text(prompt.into()))],
            images: vec![],
        };
        async move { h.call_preprocess("t", "prompt-guard", req).await.result }
    };
    let ok = call("a red chair").await.unwrap();
    assert_eq!(
        ok.params,
        vec![(
            "prompt".into(),
            ParamValue::Text("a red chair, studio lighting".into())
        )]
    );
    // Whole words, any case; built-in and configured words.
    assert!(
        call("spiderman poster").await.is_ok(),
        "not a whole-word match"
    );
    for bad in ["A SPIDER on a wall", "nsfw art"] {
        let e = call(bad).await.unwrap_err();
        assert!(e.to_string().contains("prompt_blocked"), "{bad}: {e}");
    }
    let scope = KvScope {
        tenant: "t".into(),
        plugin: "prompt-guard".into(),
    };
    assert_eq!(
        kv.get(&scope, "blocked").unwrap(),
        Some(b"2".to_vec()),
        "refusals counted"
    );
}
