//! Helpers for this crate's unit tests.

use plugd_core::config::Settings;
use plugd_core::{PluginConfig, PluginSpec};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A directory under the system temp dir, removed (recursively) on drop.
pub(crate) struct TempDir(PathBuf);

static SEQ: AtomicU64 = AtomicU64::new(0);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("plugd-native-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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
    }
}
