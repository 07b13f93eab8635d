//! Integration tests live in tests/. This library holds their shared helpers.

pub mod plugins;
