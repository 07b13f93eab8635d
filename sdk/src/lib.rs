//! `easel-sdk`: write Easel plugins in Rust.
//!
//! A plugin is a WebAssembly component (target `wasm32-wasip2`, crate type `cdylib`) that
//! implements one world of the WIT package `easel:plugin@0.1.0` (`wit/` in the Easel repo):
//!
//! - a **processor** ([`Processor`], [`export_processor!`]) rewrites a job's request before
//!   its task runs (`preprocess`) and its output after (`postprocess`);
//! - a **router** ([`Router`], [`export_router!`]) turns a request into a plan of steps;
//! - an **endpoint** ([`http::Endpoint`], [`export_endpoint!`]) answers HTTP under
//!   `/v1/x/{plugin}/`; [`http::send`] calls out where the operator allows it.
//!
//! Images are host-owned handles ([`Image`]): resizing, cropping, compositing, drawing text
//! and encoding run natively in the host, and pixels enter guest memory only through
//! [`Image::to_rgba`] or [`Image::encode`].
//!
//! ```no_run
//! use easel_sdk::{Context, Output, ParamsExt, Processor, Request, Result, export_processor};
//!
//! struct Stamp;
//!
//! impl Processor for Stamp {
//!     fn postprocess(_ctx: Context, mut out: Output) -> Result<Output> {
//!         let mut stamped = Vec::new();
//!         for img in out.images.drain(..) {
//!             stamped.push(img.draw_text("easel", 8, 8, 2, easel_sdk::rgba(255, 255, 255, 200))?);
//!         }
//!         out.images = stamped;
//!         Ok(out)
//!     }
//! }
//!
//! export_processor!(Stamp);
//! # fn main() {}
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component to upload (`PUT /v1/plugins/{name}`).
//! `template/` next to this crate is a starting point.

extern crate self as easel_sdk;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub mod bindings;
pub mod http;
mod params;
pub mod prelude;

pub use bindings::processor::easel::plugin::config;
pub use bindings::processor::easel::plugin::images::{Fit, Format, Image, Info, Rgba};
pub use bindings::processor::easel::plugin::kv;
pub use bindings::processor::easel::plugin::log::Level;
pub use bindings::processor::easel::plugin::models::{self, ModelOutput};
pub use bindings::processor::easel::plugin::pipeline::{
    Audio, Context, Output, Plan, Request, RouteRequest, Step,
};
pub use bindings::processor::easel::plugin::types::{Param, PluginError, Value};
pub use params::ParamsExt;

/// Results carrying a [`PluginError`].
pub type Result<T, E = PluginError> = core::result::Result<T, E>;

impl PluginError {
    /// An error with a machine-readable `code` and a message for people.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

// wit-bindgen already implements `Display` and `Error` for `PluginError`.

/// A colour.
pub const fn rgba(r: u8, g: u8, b: u8, a: u8) -> Rgba {
    Rgba { r, g, b, a }
}

/// Pre- and post-processing hooks. Both default to passing their input through unchanged.
pub trait Processor {
    /// Rewrites a request before the task runs; an error refuses the job.
    fn preprocess(req: Request) -> Result<Request> {
        Ok(req)
    }

    /// Rewrites a task's output before it is stored.
    fn postprocess(ctx: Context, out: Output) -> Result<Output> {
        let _ = ctx;
        Ok(out)
    }
}

/// Chooses the steps a request runs.
///
/// ```no_run
/// use easel_sdk::{Plan, Result, RouteRequest, Router, Step, export_router};
///
/// struct Upscaler;
///
/// impl Router for Upscaler {
///     fn route(req: RouteRequest) -> Result<Plan> {
///         let small = req.images.iter().any(|i| i.width < 1024);
///         let mut steps = vec![];
///         if small {
///             steps.push(Step::new("upscale").with("scale", 4));
///         }
///         Ok(Plan { steps })
///     }
/// }
///
/// export_router!(Upscaler);
/// # fn main() {}
/// ```
pub trait Router {
    fn route(req: RouteRequest) -> Result<Plan>;
}

impl Step {
    /// A step running `task` with no parameters.
    pub fn new(task: impl Into<String>) -> Self {
        Self {
            task: task.into(),
            params: Vec::new(),
        }
    }

    /// This step with parameter `name` set to `value`.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.params.set(name, value);
        self
    }
}

/// Writes a line to the plugin's log (visible to the tenant). Errors (no `log` capability)
/// are ignored; going past the log-byte limit ends the call.
pub fn log(level: Level, message: &str) {
    let _ = bindings::processor::easel::plugin::log::write(level, message);
}

/// Runs a task through the server's models (needs the `models` capability for that task).
pub fn run_model(
    task: &str,
    model: Option<&str>,
    params: &[Param],
    inputs: &[&Image],
) -> Result<ModelOutput> {
    models::run(task, model, params, inputs)
}

/// Exports a [`Processor`] implementation as the component's `preprocess`/`postprocess`.
#[macro_export]
macro_rules! export_processor {
    ($ty:ty) => {
        const _: () = {
            struct __EaselProcessor;
            impl $crate::bindings::processor::Guest for __EaselProcessor {
                fn preprocess(req: $crate::Request) -> $crate::Result<$crate::Request> {
                    <$ty as $crate::Processor>::preprocess(req)
                }
                fn postprocess(
                    ctx: $crate::Context,
                    out: $crate::Output,
                ) -> $crate::Result<$crate::Output> {
                    <$ty as $crate::Processor>::postprocess(ctx, out)
                }
            }
            $crate::bindings::processor::export_processor_world!(
                __EaselProcessor with_types_in $crate::bindings::processor
            );
        };
    };
}

/// Exports a [`Router`] implementation as the component's `route`.
#[macro_export]
macro_rules! export_router {
    ($ty:ty) => {
        const _: () = {
            struct __EaselRouter;
            impl $crate::bindings::router::Guest for __EaselRouter {
                fn route(req: $crate::RouteRequest) -> $crate::Result<$crate::Plan> {
                    <$ty as $crate::Router>::route(req)
                }
            }
            $crate::bindings::router::export_router_world!(
                __EaselRouter with_types_in $crate::bindings::router
            );
        };
    };
}

/// Exports an [`http::Endpoint`] implementation as the component's
/// `wasi:http/incoming-handler`.
#[macro_export]
macro_rules! export_endpoint {
    ($ty:ty) => {
        const _: () = {
            struct __EaselEndpoint;
            impl $crate::bindings::endpoint::exports::wasi::http::incoming_handler::Guest
                for __EaselEndpoint
            {
                fn handle(
                    request: $crate::bindings::endpoint::wasi::http::types::IncomingRequest,
                    out: $crate::bindings::endpoint::wasi::http::types::ResponseOutparam,
                ) {
                    $crate::http::serve::<$ty>(request, out)
                }
            }
            $crate::bindings::endpoint::export_endpoint_world!(
                __EaselEndpoint with_types_in $crate::bindings::endpoint
            );
        };
    };
}
