//! plugd: a Docker-compatible plugin host.
//!
//! The daemon keeps plugin bundles in a [`store`], drives them through the [`manager`] with one of the
//! runtimes behind `plugd_core::Runtime`, installs and pushes them through registries
//! ([`distribution`]), serves the Docker Engine plugin API ([`api`]) and, for every
//! enabled plugin, an engine-facing socket speaking the plugin protocol ([`socket`]). The CLI is
//! the `plugd-cli` crate: it reaches the daemon only through the Engine API, as the docker CLI does.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod bundle;
pub mod daemon;
pub mod distribution;
pub mod error;
pub mod fsutil;
pub mod manager;
pub mod observe;
pub mod reference;
pub mod rootless;
pub mod socket;
pub mod store;
pub mod unmount;
