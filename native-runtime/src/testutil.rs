//! Helpers for this crate's unit tests.

use plugd_core::config::Settings;
use plugd_core::{PluginConfig, PluginSpec};
use std::path::Path;

/// A directory under the system temp dir, removed (recursively) on drop (`tempfile`'s, named
/// for the test that made it).
pub(crate) struct TempDir(tempfile::TempDir);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        TempDir(
            tempfile::Builder::new()
                .prefix(&format!("plugd-native-{tag}-"))
                .tempdir()
                .expect("a temp dir"),
        )
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

/// A minimal valid plugin (volume driver on `p.sock`, entrypoint `/plugin`) with these dirs.
pub(crate) fn plugin_spec(rootfs: &Path, runtime_dir: &Path) -> PluginSpec {
    let json = br#"{
        "Description": "test", "Documentation": "-",
        "Interface": {"Socket": "p.sock", "Types": ["docker.volumedriver/1.0"]},
        "Entrypoint": ["/plugin"], "Network": {"Type": ""}
    }"#;
    let (config, _) = PluginConfig::parse(json).expect("test config parses");
    let settings = Settings::initial(&config);
    PluginSpec {
        id: "0123456789abcdef".repeat(4),
        name: "test/p:latest".to_string(),
        config,
        settings,
        rootfs: rootfs.to_path_buf(),
        propagated_mount: None,
        runtime_dir: runtime_dir.to_path_buf(),
        state_dir: runtime_dir.with_file_name("state"),
        observer: Default::default(),
    }
}
