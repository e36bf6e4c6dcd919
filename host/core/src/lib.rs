//! The facts every part of plugd shares, written once: the plugin `config.json` model, the privileges
//! it implies, the engine↔plugin protocol types, and the interface each runtime implements.
//!
//! Neither runtime owns this crate, so the manager can drive the wasm and the native runtime through
//! the same [`runtime::Runtime`] trait without knowing which one it holds.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod check;
pub mod config;
pub mod effective;
pub mod gojson;
pub mod gotext;
#[cfg(target_os = "linux")]
pub mod links;
pub mod observe;
pub mod privileges;
pub mod protocol;
pub mod reference;
pub mod runtime;
pub mod settable;

pub use config::{ConfigError, PluginConfig, Warning};
pub use effective::Effective;
pub use observe::Observer;
pub use runtime::{Health, Instance, LogStream, PluginSpec, Reply, Runtime, RuntimeError, Usage};
