//! plugd's sandbox init: the small, single-threaded, static binary that turns a [`SandboxSpec`] into
//! a running plugin, the way runc's init does for dockerd — without a shim per plugin.
//!
//! The daemon never configures a child itself (it is multi-threaded). It execs this binary (from a
//! sealed memfd copy, so a plugin cannot overwrite it through `/proc/<pid>/exe`) and talks to it over
//! two pipes; see [`launch`] for the protocol.
//!
//! Layout: [`spec`] and [`launch`] are the contract with the daemon (pure data). [`launcher`] is
//! plugd-init's own side (spec, cgroups, clone, reports), [`child`] the sandbox process's, which
//! runs [`steps::STEPS`] in order. Every privileged call goes through [`sys::Syscall`]; the
//! kernel is [`sys::linux`], the test double `sys::recording` (compiled for tests only). [`resolve`] keeps every path
//! inside the root. [`caps`], [`mountopt`], [`mountinfo`] and [`cgroupfs`] are pure helpers.
#![deny(missing_docs)]

pub mod launch;
pub mod spec;

pub mod caps;
pub mod cgroupfs;
pub mod child;
pub mod ctx;
pub mod error;
pub mod launcher;
pub mod mountinfo;
pub mod mountopt;
pub mod resolve;
pub mod steps;
pub mod sys;

#[cfg(test)]
mod tests;

pub use spec::SandboxSpec;
