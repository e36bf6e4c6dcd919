//! What one plugin holds on the host outside its process: the stdout/stderr FIFOs and their
//! logging tasks, its cgroup, the rshared propagated-mount directory and `state.json`.
//!
//! The FIFOs and `state.json` live in the plugin's **state dir** (`PluginSpec::state_dir`, 0700,
//! never bound into the sandbox), not in its runtime dir: the runtime dir is the plugin's own
//! `/run/docker/plugins`, where it can write anything, and what a restarted plugd reads there
//! would decide what it kills and opens. Even so, recorded cgroups are only accepted where
//! `PluginCgroup::create` would put them, and the FIFOs are opened only if they are FIFOs.
//!
//! [`HostSide::setup`] creates them before a launch (and builds the sandbox spec that names them);
//! [`HostSide::adopt`] reattaches to those of a plugin a previous plugd launched;
//! [`HostSide::teardown`] releases all of them and can run any number of times, after a stop, a
//! failed launch, or on a previous plugd's leftovers. The plugin's runtime dir itself is the
//! manager's.

use crate::cgroup::PluginCgroup;
use crate::logs::{Fifos, Logs};
use crate::propagation;
use crate::spec::{METRICS_TYPE, SandboxPaths, build};
use crate::state::State;
use plugd_core::{PluginSpec, RuntimeError};
use plugd_init::spec::PlugdExt;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};

/// The runtime's switches for one launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaunchKind<'a> {
    /// See [`SandboxPaths::no_pivot`].
    pub no_pivot: bool,
    /// A `plugd check` probe rather than the plugin's entrypoint.
    pub probe: bool,
    /// See [`SandboxPaths::faults`].
    pub faults: &'a [plugd_core::check::fault::TestFault],
}

/// The host-side resources of one plugin (see the module docs).
#[derive(Debug)]
pub(crate) struct HostSide {
    id: String,
    name: String,
    state_dir: PathBuf,
    propagated: Option<PathBuf>,
    cgroup: Option<PluginCgroup>,
    logs: Option<Logs>,
    /// Where the plugin's output goes.
    observer: plugd_core::Observer,
}

impl HostSide {
    /// Nothing acquired yet.
    pub(crate) fn new(spec: &PluginSpec) -> Self {
        HostSide {
            id: spec.id.clone(),
            name: spec.name.clone(),
            state_dir: spec.state_dir.clone(),
            propagated: spec.propagated_mount.clone(),
            cgroup: None,
            logs: None,
            observer: spec.observer.clone(),
        }
    }

    fn fifos(&self) -> Fifos {
        Fifos::in_dir(&self.state_dir)
    }

    /// The engine's metrics socket to bind for a metrics collector, if there is one to bind: a
    /// collector started without it sees no socket (and gets a warning in plugd's log), rather than
    /// failing to start, since plugd's `StartMetrics` failing is not fatal either.
    fn metrics_socket(&self, spec: &PluginSpec, engine_metrics: Option<&Path>) -> Option<PathBuf> {
        let collector = spec
            .config
            .interface
            .types
            .iter()
            .flatten()
            .any(|t| t == METRICS_TYPE);
        if !collector {
            return None;
        }
        let Some(socket) = engine_metrics else {
            tracing::warn!(plugin = %self.name,
                "metrics collector started without an engine metrics socket (plugd daemon --engine-metrics-socket): it sees no /run/docker/metrics.sock");
            return None;
        };
        match std::fs::metadata(socket) {
            Ok(m) if m.file_type().is_socket() => Some(socket.to_path_buf()),
            Ok(_) | Err(_) => {
                tracing::warn!(plugin = %self.name, socket = %socket.display(),
                    "the engine metrics socket is missing or not a socket (is dockerd running?): the collector sees no /run/docker/metrics.sock");
                None
            }
        }
    }

    fn start_error(&self, what: &str, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Start(format!("plugin {}: {what}: {e}", self.name))
    }

    /// Creates everything a launch needs and returns the sandbox spec (JSON) naming it.
    /// `launch` says what differs between launches: a probe, test faults, ...
    pub(crate) async fn setup(
        &mut self,
        spec: &PluginSpec,
        launch: &LaunchKind<'_>,
        engine_metrics: Option<&Path>,
        log_fifos: Option<PathBuf>,
    ) -> Result<Vec<u8>, RuntimeError> {
        let fifos = self.fifos();
        let paths = SandboxPaths {
            stdout: fifos.stdout.clone(),
            stderr: fifos.stderr.clone(),
            cgroups: Vec::new(),
            no_pivot: launch.no_pivot,
            metrics_socket: self.metrics_socket(spec, engine_metrics),
            log_fifos,
            probe: launch.probe,
            faults: launch.faults.to_vec(),
        };
        // First what can be refused without side effects.
        let mut sandbox = build(spec, &paths)
            .map_err(|e| RuntimeError::Bundle(format!("plugin {}: {e}", self.name)))?;

        fifos
            .create()
            .map_err(|e| self.start_error("creating its output FIFOs", e))?;
        self.logs = Some(
            fifos
                .attach(&self.observer)
                .map_err(|e| self.start_error("opening its output FIFOs", e))?,
        );

        let (id, rules) = (self.id.clone(), sandbox.linux.resources.devices.clone());
        let cgroup = tokio::task::spawn_blocking(move || PluginCgroup::create(&id, &rules))
            .await
            .map_err(|e| self.start_error("creating its cgroup", e))?
            .map_err(|e| self.start_error("creating its cgroup", e))?;
        sandbox.plugd.get_or_insert_with(PlugdExt::default).cgroups = cgroup.join_paths().to_vec();
        self.cgroup = Some(cgroup);

        if let Some(dir) = &self.propagated {
            propagation::make_rshared(dir)
                .map_err(|e| self.start_error("preparing its propagated mount", e))?;
        }
        serde_json::to_vec(&sandbox).map_err(|e| self.start_error("encoding its sandbox spec", e))
    }

    /// Reattaches to the FIFOs and cgroup of a plugin launched by a previous plugd, which
    /// recorded the cgroup directories `recorded`.
    pub(crate) async fn adopt(&mut self, recorded: Vec<PathBuf>) {
        match self.fifos().attach(&self.observer) {
            Ok(logs) => self.logs = Some(logs),
            Err(e) => {
                tracing::warn!(plugin = %self.name, error = %e, "cannot reattach the plugin's output; it is not logged")
            }
        }
        self.cgroup = self.existing_cgroup(recorded).await;
    }

    /// The plugin's cgroup directories that still exist: those named after the plugin under
    /// plugd's own cgroup (a crash may have come before the state was written) and those
    /// `recorded` in `state.json`, which are accepted only where `PluginCgroup::create` would
    /// have made them.
    async fn existing_cgroup(&self, recorded: Vec<PathBuf>) -> Option<PluginCgroup> {
        let (id, name) = (self.id.clone(), self.name.clone());
        let found = tokio::task::spawn_blocking(move || {
            let mut dirs = recorded;
            match PluginCgroup::open_existing(&id) {
                Ok(Some(cgroup)) => dirs.extend(cgroup.join_paths().iter().cloned()),
                Ok(None) => {}
                Err(e) => tracing::warn!(plugin = %name, error = %e, "cannot look for the plugin's cgroup"),
            }
            PluginCgroup::from_recorded(&id, dirs)
        })
        .await;
        match found {
            Ok(Ok(cgroup)) => cgroup,
            Ok(Err(e)) => {
                tracing::warn!(plugin = %self.name, error = %e, "cannot look for the plugin's cgroup");
                None
            }
            Err(e) => {
                tracing::warn!(plugin = %self.name, error = %e, "cannot look for the plugin's cgroup");
                None
            }
        }
    }

    /// The cgroup directories, for `state.json`.
    pub(crate) fn cgroup_paths(&self) -> Vec<PathBuf> {
        self.cgroup
            .as_ref()
            .map(|c| c.join_paths().to_vec())
            .unwrap_or_default()
    }

    /// The last stderr lines of the plugin read so far.
    pub(crate) fn stderr_tail(&self) -> String {
        self.logs
            .as_ref()
            .map(Logs::stderr_tail)
            .unwrap_or_default()
    }

    /// Cleans up what a previous plugd left behind for this plugin (nothing is adopted): every
    /// process in its cgroup (`recorded` in `state.json`, or found by name), the cgroup, mounts
    /// under the propagated-mount dir, FIFOs, state.
    pub(crate) async fn clean_leftovers(&mut self, recorded: Vec<PathBuf>) {
        self.cgroup = self.existing_cgroup(recorded).await;
        self.teardown().await;
    }

    /// Releases everything (see the module docs). Failures are logged: a stop cannot fail.
    pub(crate) async fn teardown(&mut self) {
        if let Some(mut logs) = self.logs.take() {
            logs.drain_and_close().await;
        }
        if let Some(cgroup) = self.cgroup.take() {
            let name = self.name.clone();
            let removed = tokio::task::spawn_blocking(move || {
                if let Err(e) = cgroup.kill_all() {
                    tracing::warn!(plugin = %name, error = %e, "killing what is left in the plugin's cgroup");
                }
                cgroup.remove()
            })
            .await;
            match removed {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(plugin = %self.name, error = %e, "removing the plugin's cgroup")
                }
                Err(e) => {
                    tracing::warn!(plugin = %self.name, error = %e, "removing the plugin's cgroup")
                }
            }
        }
        if let Some(dir) = self.propagated.clone() {
            let unmounted =
                tokio::task::spawn_blocking(move || propagation::unmount_all(&dir)).await;
            match unmounted {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    tracing::debug!(plugin = %self.name, unmounted = n, "propagated mounts released")
                }
                Ok(Err(e)) => {
                    tracing::warn!(plugin = %self.name, error = %e, "unmounting the propagated mount")
                }
                Err(e) => {
                    tracing::warn!(plugin = %self.name, error = %e, "unmounting the propagated mount")
                }
            }
        }
        if let Err(e) = self.fifos().remove() {
            tracing::warn!(plugin = %self.name, error = %e, "removing the output FIFOs");
        }
        if let Err(e) = State::remove(&self.state_dir) {
            tracing::warn!(plugin = %self.name, error = %e, "removing state.json");
        }
    }
}
