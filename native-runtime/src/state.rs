//! `<state_dir>/state.json`: what a restarted plugd needs to find a plugin it launched. It lives
//! in the plugin's state dir (`PluginSpec::state_dir`), never in its runtime dir, which the
//! plugin sees (and can write) as `/run/docker/plugins`.
//!
//! Written atomically (temporary file, fsync, rename) once the plugin's entrypoint is exec'd, and
//! removed by a complete stop. At the next start the recorded pid is adopted only when its
//! `/proc/<pid>/stat` start time and the plugin id still match (a pid alone may have been reused);
//! otherwise whatever is left is killed through the recorded cgroups.

use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// File name inside the state dir.
pub(crate) const STATE_FILE: &str = "state.json";
/// Format version; a file with another version is treated as stale.
const VERSION: u32 = 1;

/// One launched plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct State {
    /// [`VERSION`].
    pub(crate) version: u32,
    /// 64-hex plugin id.
    pub(crate) id: String,
    /// `name:tag`, for messages only.
    pub(crate) name: String,
    /// The plugin's pid in plugd's pid namespace.
    pub(crate) pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot).
    pub(crate) start_time: u64,
    /// The cgroup directories the plugin was placed in.
    pub(crate) cgroups: Vec<PathBuf>,
}

impl State {
    /// A state record of the current format.
    pub(crate) fn new(
        id: &str,
        name: &str,
        pid: i32,
        start_time: u64,
        cgroups: Vec<PathBuf>,
    ) -> Self {
        State {
            version: VERSION,
            id: id.to_string(),
            name: name.to_string(),
            pid,
            start_time,
            cgroups,
        }
    }

    /// Reads `dir/state.json`: `Ok(None)` when absent; an unreadable or foreign-version file is an
    /// error the caller treats as stale.
    pub(crate) fn load(dir: &Path) -> std::io::Result<Option<State>> {
        let bytes = match std::fs::read(dir.join(STATE_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let state: State = serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if state.version != VERSION {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("state version {} (expected {VERSION})", state.version),
            ));
        }
        Ok(Some(state))
    }

    /// Replaces `dir/state.json` atomically (mode 0600).
    pub(crate) fn save(&self, dir: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, dir.join(STATE_FILE))
    }

    /// Removes `dir/state.json` (absent is fine).
    pub(crate) fn remove(dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(dir.join(STATE_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn round_trip() {
        let dir = TempDir::new("state");
        assert_eq!(State::load(dir.path()).unwrap(), None);
        let state = State::new(
            &"ab".repeat(32),
            "vol:latest",
            4242,
            123_456_789,
            vec![PathBuf::from("/sys/fs/cgroup/plugd/x")],
        );
        state.save(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), Some(state.clone()));
        // Saving again replaces it; no temporary file is left behind.
        let mut newer = state;
        newer.pid = 7;
        newer.save(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()).unwrap().unwrap().pid, 7);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [STATE_FILE]);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(STATE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        State::remove(dir.path()).unwrap();
        State::remove(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), None);
    }

    #[test]
    fn garbage_and_other_versions_are_errors() {
        let dir = TempDir::new("state-bad");
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        assert!(State::load(dir.path()).is_err());
        let mut state = State::new("x", "n", 1, 2, vec![]);
        state.version = 99;
        std::fs::write(
            dir.path().join(STATE_FILE),
            serde_json::to_vec(&state).unwrap(),
        )
        .unwrap();
        let err = State::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("version 99"), "{err}");
    }
}
