//! `use easel_sdk::prelude::*;` for the common names.

pub use crate::{
    Context, Fit, Format, Image, Level, Output, ParamsExt, Plan, PluginError, Processor, Request,
    Result, RouteRequest, Router, Step, Value, export_processor, export_router, log, rgba,
};
