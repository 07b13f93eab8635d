//! The plugin host: tenants upload WebAssembly components (WIT package `easel:plugin`) and
//! Easel runs them in a sandbox meant for code from strangers.
//!
//! - [`PluginHost::upload`] checks size, compiles off the async runtime (cached on disk by
//!   content hash and engine), refuses imports outside the allowed set, infers the world, and
//!   keeps an `InstancePre` per version.
//! - [`PluginHost::call_preprocess`], [`call_postprocess`](PluginHost::call_postprocess),
//!   [`call_router`](PluginHost::call_router) and [`handle_http`](PluginHost::handle_http)
//!   instantiate into a fresh `Store` from the pooling allocator on the calling task, under
//!   the tenant's limits (wall time by epoch, fuel, memory, tables, instances, output, log,
//!   host calls), and return a [`CallReport`] either way.
//!
//! Guests run on the tokio workers (wasmtime's async support: each call on a fiber), with no
//! hop to another thread. At every epoch tick a guest yields its worker to the other tasks;
//! a guest that has run past a threshold, or whose tenant has been keeping a core busy, also
//! pauses at each tick, which caps the share of a core it takes. Each tenant's concurrent
//! calls are capped by its policy.

mod bindings;
mod call;
mod compile;
mod engine;
mod errors;
mod host;
mod http;
mod net;
pub use net::HostPattern;
pub mod images;
mod kv_db;
mod kv_store;
mod limits;
mod manifest;
mod model_runner;
mod processor;
mod registry;
mod state;
mod stdio;
mod store;
mod tenant_load;
pub use tenant_load::{Activity, ActivityGuard};
mod values;

pub use call::CallReport;
pub use engine::PluginHostConfig;
pub use errors::{CallError, InitError, UploadError};
pub use images::PluginImage;
pub use kv_db::DbKv;
pub use kv_store::{KvError, KvScope, KvStore, MemoryKv};
pub use limits::{LimitOverrides, Limits};
pub use manifest::{Capabilities, KvQuota, Manifest, TenantPolicy, World};
pub use model_runner::{
    ModelCall, ModelFuture, ModelRefusal, ModelResult, ModelRunError, ModelRunner, NoModels,
};
pub use processor::ImageInfo;
pub use registry::{LogRecord, PluginHost, PluginVersionInfo, PluginVersions};
pub use state::{LogLevel, LogLine};
pub use store::{PluginStore, Restored, StoreError};
pub use values::{Audio, ParamValue, Params, Plan, PlanStep, PluginOutput, PluginRequest};

/// The result of a guest call and what it cost.
#[derive(Debug)]
pub struct Called<T> {
    pub result: Result<T, CallError>,
    pub report: CallReport,
}
