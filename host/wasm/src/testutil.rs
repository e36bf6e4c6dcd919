//! Helpers for this crate's unit tests.

use std::path::Path;

/// A directory under the system temp dir, removed (recursively) on drop (`tempfile`'s, named
/// for the test that made it).
pub(crate) struct TempDir(tempfile::TempDir);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        TempDir(
            tempfile::Builder::new()
                .prefix(&format!("plugd-wasm-{tag}-"))
                .tempdir()
                .expect("a temp dir"),
        )
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}
