//! Plugin names, normalised the way dockerd does; the grammar is `plugd_core::reference`, shared
//! with the CLI. Re-exported here so the daemon's modules name it as before.

pub use plugd_core::reference::{Reference, ReferenceError};
