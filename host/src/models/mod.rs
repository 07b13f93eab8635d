//! Model families and the models directory.

pub mod birefnet;
pub mod detect;
pub mod esrgan;
pub mod manifest;
pub mod registry;
pub mod rsu;
