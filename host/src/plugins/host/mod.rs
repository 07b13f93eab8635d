//! Host implementations of the `easel:plugin` interfaces, one module per interface.
//!
//! Every function first charges the call's host-call budget (going over ends the call with
//! `plugin_host_call_limit`), then checks the capability (a denied capability is a
//! `permission_denied` error the guest can handle, not a trap).

mod config;
mod images;
mod kv;
mod log;
mod models;

use super::bindings::easel::plugin::{pipeline, types};
use super::state::CallState;

pub(crate) type HostResult<T> = Result<T, types::PluginError>;

pub(crate) fn error(code: &str, message: impl Into<String>) -> types::PluginError {
    types::PluginError {
        code: code.to_owned(),
        message: message.into(),
    }
}

pub(crate) fn denied(interface: &str) -> types::PluginError {
    error(
        "permission_denied",
        format!("this plugin has no `{interface}` capability for this tenant"),
    )
}

impl types::Host for CallState {}
impl pipeline::Host for CallState {}
