//! plugd's sandbox init: the small, single-threaded, static binary that turns a [`SandboxSpec`] into
//! a running plugin, the way runc's init does for dockerd — without a shim per plugin.
//!
//! The daemon never configures a child itself (it is multi-threaded). It execs this binary (from a
//! sealed memfd copy, so a plugin cannot overwrite it through `/proc/<pid>/exe`) and talks to it over
//! two pipes; see [`launch`] for the protocol.
#![deny(missing_docs)]

pub mod launch;
pub mod spec;

pub use spec::SandboxSpec;
