//! `plugd check`: proof, per plugin, that what its sandbox enforces is what its `config.json`
//! declares. [`probe`] is the contract with the probes that run inside a sandbox; `rows` turns a
//! declaration and the probes' reports into the matrix the user reads (docs/check.md).

pub mod fault;
pub mod probe;
