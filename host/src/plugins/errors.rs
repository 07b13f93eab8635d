//! Errors of the plugin host: upload rejections, call failures, and the limit violations
//! that end a guest's call.

use std::fmt;

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("plugin_too_large: the component is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("plugin_invalid_name: {0}")]
    InvalidName(String),
    #[error("plugin_invalid: not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error("plugin_compile_timeout: compiling took longer than {limit_ms} ms")]
    CompileTimeout { limit_ms: u64 },
    #[error("plugin_forbidden_imports: the component imports interfaces plugins may not use: {}", .0.join(", "))]
    ForbiddenImports(Vec<String>),
    #[error("plugin_unknown_world: {0}")]
    UnknownWorld(String),
    #[error("plugin_link_error: {0}")]
    Link(String),
    #[error("plugin_bad_manifest: {0}")]
    Manifest(String),
    #[error("plugin_limit_exceeds_cap: {0}")]
    LimitExceedsCap(String),
    #[error("plugin_storage_error: {0}")]
    Storage(#[from] std::io::Error),
}

impl UploadError {
    /// The machine-readable code (the text before the colon).
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "plugin_too_large",
            Self::InvalidName(_) => "plugin_invalid_name",
            Self::Invalid(_) => "plugin_invalid",
            Self::CompileTimeout { .. } => "plugin_compile_timeout",
            Self::ForbiddenImports(_) => "plugin_forbidden_imports",
            Self::UnknownWorld(_) => "plugin_unknown_world",
            Self::Link(_) => "plugin_link_error",
            Self::Manifest(_) => "plugin_bad_manifest",
            Self::LimitExceedsCap(_) => "plugin_limit_exceeds_cap",
            Self::Storage(_) => "plugin_storage_error",
        }
    }

    /// The HTTP status an API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 413,
            Self::Storage(_) => 500,
            _ => 422,
        }
    }
}

/// Why a plugin call failed. Limit violations name the limit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("plugin_not_found: no plugin `{0}` for this tenant")]
    NotFound(String),
    #[error("plugin_version_not_found: plugin `{plugin}` has no version {version}")]
    VersionNotFound { plugin: String, version: u32 },
    #[error("plugin_wrong_world: `{plugin}` is a {actual} plugin, not a {expected}")]
    WrongWorld {
        plugin: String,
        expected: &'static str,
        actual: &'static str,
    },
    #[error("plugin_timeout: the guest ran longer than {limit_ms} ms")]
    Timeout { limit_ms: u64 },
    #[error("plugin_fuel_exhausted: the guest used its {limit} units of fuel")]
    FuelExhausted { limit: u64 },
    #[error("plugin_memory_limit: {0}")]
    MemoryLimit(String),
    #[error("plugin_table_limit: {0}")]
    TableLimit(String),
    #[error("plugin_instance_limit: more than {limit} instances")]
    InstanceLimit { limit: u32 },
    #[error("plugin_stack_overflow: the guest exhausted its stack")]
    StackOverflow,
    #[error("plugin_output_too_large: {size} bytes of output; the limit is {limit}")]
    OutputTooLarge { size: u64, limit: u64 },
    #[error("plugin_log_limit: the guest wrote more than {limit} bytes of log")]
    LogLimit { limit: u64 },
    #[error("plugin_host_call_limit: the guest made more than {limit} host calls")]
    HostCallLimit { limit: u64 },
    #[error("plugin_bad_output: {0}")]
    BadOutput(String),
    #[error("plugin_trap: {0}")]
    Trap(String),
    #[error("plugin_busy: {0}")]
    Busy(String),
    /// The guest returned an error of its own.
    #[error("plugin_error: {code}: {message}")]
    Guest { code: String, message: String },
    #[error("plugin_internal: {0}")]
    Internal(String),
}

impl CallError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "plugin_not_found",
            Self::VersionNotFound { .. } => "plugin_version_not_found",
            Self::WrongWorld { .. } => "plugin_wrong_world",
            Self::Timeout { .. } => "plugin_timeout",
            Self::FuelExhausted { .. } => "plugin_fuel_exhausted",
            Self::MemoryLimit(_) => "plugin_memory_limit",
            Self::TableLimit(_) => "plugin_table_limit",
            Self::InstanceLimit { .. } => "plugin_instance_limit",
            Self::StackOverflow => "plugin_stack_overflow",
            Self::OutputTooLarge { .. } => "plugin_output_too_large",
            Self::LogLimit { .. } => "plugin_log_limit",
            Self::HostCallLimit { .. } => "plugin_host_call_limit",
            Self::BadOutput(_) => "plugin_bad_output",
            Self::Trap(_) => "plugin_trap",
            Self::Busy(_) => "plugin_busy",
            Self::Guest { .. } => "plugin_error",
            Self::Internal(_) => "plugin_internal",
        }
    }

    /// The HTTP status an endpoint or job API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotFound(_) | Self::VersionNotFound { .. } => 404,
            Self::WrongWorld { .. } => 409,
            Self::Guest { .. } => 422,
            Self::Busy(_) => 503,
            Self::Timeout { .. } => 504,
            Self::Internal(_) => 500,
            // The guest broke a limit or misbehaved: the server is fine, the plugin is not.
            _ => 502,
        }
    }

    /// The JSON error body `{error:{code,message}}` the API uses.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "code": self.code(), "message": self.to_string() } })
    }
}

/// A limit the guest broke, raised inside the store (limiter, host call, epoch callback) as
/// the error that ends the call, and recorded in the store so it survives error wrapping.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Violation {
    Timeout,
    Memory(String),
    Table(String),
    LogBytes,
    HostCalls,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => write!(f, "wall-time limit"),
            Self::Memory(m) => write!(f, "memory limit: {m}"),
            Self::Table(m) => write!(f, "table limit: {m}"),
            Self::LogBytes => write!(f, "log-byte limit"),
            Self::HostCalls => write!(f, "host-call limit"),
        }
    }
}

impl std::error::Error for Violation {}

/// The plugin host could not start (engine or linker setup).
#[derive(Debug, thiserror::Error)]
#[error("plugin host setup failed: {0}")]
pub struct InitError(pub String);
