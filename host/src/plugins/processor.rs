//! Processor and router calls: moving requests, outputs and plans across the boundary.

use super::Called;
use super::bindings::easel::plugin::{images, pipeline};
use super::call::{Fault, guest};
use super::errors::CallError;
use super::images::PluginImage;
use super::manifest::World;
use super::registry::{PluginHost, Pre};
use super::state::CallState;
use super::values::{
    Audio, Params, Plan, PluginOutput, PluginRequest, metadata_from_wit, params_from_wit,
    params_to_wit, plan_from_wit,
};
use wasmtime::Store;
use wasmtime::component::Resource;

/// The shape of an input image, as a router sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
}

fn push_all(
    store: &mut Store<CallState>,
    imgs: Vec<PluginImage>,
) -> Result<Vec<Resource<PluginImage>>, Fault> {
    imgs.into_iter()
        .map(|i| {
            Ok(store
                .data_mut()
                .table
                .push(i)
                .map_err(wasmtime::Error::from)?)
        })
        .collect()
}

fn take_all(
    store: &mut Store<CallState>,
    handles: Vec<Resource<PluginImage>>,
) -> Result<Vec<PluginImage>, Fault> {
    handles
        .into_iter()
        .map(|h| {
            store.data_mut().table.delete(h).map_err(|e| {
                Fault::Call(CallError::BadOutput(format!("an output image handle: {e}")))
            })
        })
        .collect()
}

fn guest_error(e: super::bindings::easel::plugin::types::PluginError) -> Fault {
    Fault::Call(CallError::Guest {
        code: e.code,
        message: e.message,
    })
}

fn output_from_wit(
    store: &mut Store<CallState>,
    out: pipeline::Output,
) -> Result<PluginOutput, Fault> {
    let output = PluginOutput {
        images: take_all(store, out.images)?,
        masks: take_all(store, out.masks)?,
        audio: out
            .audio
            .into_iter()
            .map(|a| Audio {
                media_type: a.media_type,
                bytes: a.bytes,
            })
            .collect(),
        metadata: metadata_from_wit(&out.metadata)?,
    };
    let limit = store.data().env.limits.output_bytes;
    let size = output.size_bytes();
    if size > limit {
        return Err(CallError::OutputTooLarge { size, limit }.into());
    }
    Ok(output)
}

fn request_size(req: &PluginRequest) -> u64 {
    req.images.iter().map(PluginImage::size_bytes).sum::<u64>()
        + serde_json::to_string(&req.params).map_or(0, |s| s.len() as u64)
}

impl PluginHost {
    /// Runs a processor's `preprocess` on a request.
    pub async fn call_preprocess(
        &self,
        tenant: &str,
        plugin: &str,
        req: PluginRequest,
    ) -> Called<PluginRequest> {
        self.run(tenant, plugin, World::Processor, move |store, pre| {
            guest(async move {
                let Pre::Processor(pre) = pre else {
                    return Err(CallError::Internal("world mismatch".into()).into());
                };
                let inst = pre.instantiate_async(&mut *store).await?;
                let images = push_all(store, req.images)?;
                let wreq = pipeline::Request {
                    task: req.task,
                    params: params_to_wit(&req.params),
                    images,
                };
                let out = inst
                    .call_preprocess(&mut *store, &wreq)
                    .await?
                    .map_err(guest_error)?;
                let req = PluginRequest {
                    task: out.task,
                    params: params_from_wit(out.params)?,
                    images: take_all(store, out.images)?,
                };
                let limit = store.data().env.limits.output_bytes;
                let size = request_size(&req);
                if size > limit {
                    return Err(CallError::OutputTooLarge { size, limit }.into());
                }
                Ok(req)
            })
        })
        .await
    }

    /// Runs a processor's `postprocess` on a task's output.
    pub async fn call_postprocess(
        &self,
        tenant: &str,
        plugin: &str,
        task: &str,
        params: Params,
        output: PluginOutput,
    ) -> Called<PluginOutput> {
        let task = task.to_owned();
        self.run(tenant, plugin, World::Processor, move |store, pre| {
            guest(async move {
                let Pre::Processor(pre) = pre else {
                    return Err(CallError::Internal("world mismatch".into()).into());
                };
                let inst = pre.instantiate_async(&mut *store).await?;
                let ctx = pipeline::Context {
                    task,
                    params: params_to_wit(&params),
                };
                let out = pipeline::Output {
                    images: push_all(store, output.images)?,
                    masks: push_all(store, output.masks)?,
                    audio: output
                        .audio
                        .into_iter()
                        .map(|a| pipeline::Audio {
                            media_type: a.media_type,
                            bytes: a.bytes,
                        })
                        .collect(),
                    metadata: serde_json::Value::Object(output.metadata).to_string(),
                };
                let out = inst
                    .call_postprocess(&mut *store, &ctx, &out)
                    .await?
                    .map_err(guest_error)?;
                output_from_wit(store, out)
            })
        })
        .await
    }

    /// Asks a router for the plan of a request.
    pub async fn call_router(
        &self,
        tenant: &str,
        plugin: &str,
        task: &str,
        params: Params,
        images: Vec<ImageInfo>,
    ) -> Called<Plan> {
        let task = task.to_owned();
        self.run(tenant, plugin, World::Router, move |store, pre| {
            guest(async move {
                let Pre::Router(pre) = pre else {
                    return Err(CallError::Internal("world mismatch".into()).into());
                };
                let inst = pre.instantiate_async(&mut *store).await?;
                let req = pipeline::RouteRequest {
                    task,
                    params: params_to_wit(&params),
                    images: images
                        .iter()
                        .map(|i| images::Info {
                            width: i.width,
                            height: i.height,
                            has_alpha: i.has_alpha,
                        })
                        .collect(),
                };
                let plan = inst
                    .call_route(&mut *store, &req)
                    .await?
                    .map_err(guest_error)?;
                Ok(plan_from_wit(plan)?)
            })
        })
        .await
    }
}
