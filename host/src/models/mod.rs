//! Model families and the models directory.

pub mod detect;
pub mod manifest;
pub mod registry;
