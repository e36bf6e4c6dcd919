//! plugd's end-to-end tests: the single integration-test binary of crate `plugd`.
//!
//! Every test module is declared here; each test body runs through [`harness::isolated`] in its
//! own process and private mount namespace against a real dockerd (Debian docker.io 20.10), real
//! docker CLIs and the `plugd` binary. See `tests/README.md` for how to run them.

// Shared helpers: not every helper is used by every set of tests.
#[allow(dead_code, unused_imports)]
mod harness;

mod apply;
mod authz;
mod bad_input;
mod check;
mod cli_diff;
mod faults;
mod harness_selftest;
mod hostile;
mod hostile_replies;
mod install_cli;
mod install_cli_diff;
mod ipam;
mod logdriver;
mod logdriver_native;
mod metrics;
mod native;
mod network;
mod network_ipam;
mod operate;
mod parity;
mod python_guest;
mod registry;
mod restart;
mod rootless;
mod volume;
