//! The plugin manager: the lifecycle verbs (create, enable, disable, remove, set) over the [`Store`],
//! one runtime per plugin chosen by a [`RuntimeSelector`], and one engine-facing [`PluginSocket`] per
//! enabled plugin. It knows nothing about wasm or native processes: it only speaks
//! `plugd_core::Runtime`.
//!
//! Locking: lifecycle verbs are serialised by one async lock (`ops`), which is **never held across
//! a plugin start**: a start (enable, restore, a supervised restart) is registered under the lock
//! as [`Starting`], then runs without it, and is cancelled by a disable or rm that arrives
//! meanwhile (the runtime's start future is dropped, and the manager waits, briefly, for the
//! runtime to release what it had started: [`Runtime::settle`]). So a plugin that never becomes
//! ready or crash-loops cannot hold up any verb. Reads (`list`, `inspect`) only take short sync
//! locks.

use crate::bundle;
use crate::distribution::blobs::Blobs;
use crate::distribution::client::Registries;
use crate::error::{Error, Kind, Result, at};
use crate::fsutil;
use crate::observe::events::Action;
use crate::observe::{PluginTelemetry, Telemetry, human};
use crate::reference::Reference;
use crate::socket::{Gateway, Mounts, PathMap, PluginSocket, SocketRegistry};
use crate::store::{Record, Store, new_id};
use crate::unmount;
use plugd_core::config::{PluginConfig, PluginObject, Settings};
use plugd_core::protocol::metrics;
use plugd_core::runtime::{Health, Instance, PluginSpec, Runtime, RuntimeError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Picks the runtime for a plugin (by its entrypoint), so the manager never names a runtime.
pub type RuntimeSelector =
    Arc<dyn Fn(&PluginSpec) -> std::result::Result<Arc<dyn Runtime>, RuntimeError> + Send + Sync>;

/// Where the manager keeps things and its defaults.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// `--data-root`.
    pub data_root: PathBuf,
    /// `--exec-root`.
    pub exec_root: PathBuf,
    /// `--plugin-socket-dir`: where engine-facing sockets go (`/run/docker/plugins`).
    pub plugin_socket_dir: PathBuf,
    /// Readiness wait when `enable?timeout=0` (and at start).
    pub default_enable_timeout: Duration,
    /// Grace period of a stop before it is forced (dockerd: 10 s).
    pub stop_grace: Duration,
    /// Cap on a create upload, compressed and decompressed.
    pub max_bundle_size: u64,
    /// Deadline of one AuthZ call to an authorization plugin, after which plugd denies.
    pub authz_timeout: Duration,
    /// Which registries may be reached over plain HTTP (`--insecure-registry`).
    pub registries: Registries,
    /// The bound of each plugin's own log (`--plugin-log-size`, `--plugin-log-files`).
    pub plugin_logs: crate::observe::plugin_log::Limits,
}

struct Running {
    instance: Arc<dyn Instance>,
    socket: PluginSocket,
    socket_name: String,
    mounts: Arc<Mounts>,
    runtime: &'static str,
    /// Declares `docker.metricscollector/*`: plugd sends it `StartMetrics` and `StopMetrics`.
    collector: bool,
    /// When this instance became ready.
    since: std::time::SystemTime,
}

/// Deadline of plugd's own `StartMetrics` and `StopMetrics` calls (dockerd does not bound them; a
/// collector's stop must not hold up a disable or plugd's shutdown).
const METRICS_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `spec` is a metrics collector, which dockerd never starts itself (legacy plugin) and
/// plugd therefore starts and stops (docs/protocol.md, "Metrics collectors").
fn is_collector(spec: &PluginSpec) -> bool {
    spec.config
        .interface
        .types
        .iter()
        .flatten()
        .any(|t| plugd_core::protocol::implements_for_type(t) == Some(metrics::IMPLEMENTS))
}

/// Sends a collector `method` (`StartMetrics`/`StopMetrics`, empty body) as dockerd sends it to
/// its managed ones; a failure is logged with the plugin's name and changes nothing else, as in
/// dockerd, which only logs it.
async fn metrics_call(name: &str, instance: &dyn Instance, method: &str) {
    let call = instance.call(method, bytes::Bytes::new());
    match tokio::time::timeout(METRICS_CALL_TIMEOUT, call).await {
        Ok(reply) if reply.status == plugd_core::protocol::status::OK => {
            tracing::info!(plugin = %name, method, "metrics collector called");
        }
        Ok(reply) => {
            let body = String::from_utf8_lossy(&reply.body);
            tracing::warn!(plugin = %name, method, status = reply.status, reply = %body,
                "metrics collector call failed");
        }
        Err(_) => {
            tracing::warn!(plugin = %name, method, timeout = ?METRICS_CALL_TIMEOUT,
                "metrics collector call timed out");
        }
    }
}

/// A start under way, registered so that a disable or rm can cancel it.
struct Starting {
    socket_name: String,
    /// `true`: give up (the start future is dropped) and stop whatever was started.
    cancel: watch::Sender<bool>,
    /// Closed once the start is over, its leftovers released (its sender is dropped).
    done: watch::Receiver<()>,
}

/// One plugin as `plugd ps` shows it (`GET /plugd/status`).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginStatus {
    /// `name:tag`.
    pub name: String,
    /// The plugin id.
    pub id: String,
    /// Stored as enabled (it is kept running, and restarted when it fails).
    pub enabled: bool,
    /// `running`, `starting`, `restarting` (enabled, not running: supervision retries with
    /// backoff) or `disabled`.
    pub state: &'static str,
    /// `native` or `wasm`, while it runs.
    pub runtime: Option<&'static str>,
    /// The main process (native).
    pub pid: Option<u32>,
    /// Live instances (wasm).
    pub instances: Option<u32>,
    /// Resident memory ([`plugd_core::Usage::memory_bytes`]).
    pub memory_bytes: Option<u64>,
    /// When the running instance became ready (RFC 3339).
    pub started_at: Option<String>,
    /// Seconds since then.
    pub uptime_seconds: Option<u64>,
    /// Restarts after failures since plugd started.
    pub restarts: u64,
    /// The last failure (a crash, a trap, a timeout, a failed restart).
    pub last_error: Option<String>,
    /// When it happened (RFC 3339).
    pub last_error_at: Option<String>,
}

fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The plugin manager.
pub struct Manager {
    cfg: ManagerConfig,
    select: RuntimeSelector,
    registry: SocketRegistry,
    ops: tokio::sync::Mutex<()>,
    store: Mutex<Store>,
    /// Lock order: `starting` before `running` before `parked`.
    starting: Mutex<HashMap<String, Starting>>,
    running: Mutex<HashMap<String, Running>>,
    /// Engine-facing sockets of authorization plugins being restarted after a failure: kept
    /// bound, answering every AuthZ call with a deny, until the plugin runs again (its next start
    /// takes the socket over) or is disabled, removed or the daemon stops.
    parked: Mutex<HashMap<String, PluginSocket>>,
    backoff: Mutex<HashMap<String, (std::time::Instant, Duration)>>,
    /// Image blobs of every stored plugin (create packages one, pull keeps what it fetched).
    blobs: Blobs,
    /// Held (read) by every verb that reads or adds blobs for its whole run; blob collection
    /// runs only when it can take it exclusively, so it never deletes a blob one of them is about
    /// to use or reference (dockerd's `muGC`).
    blob_users: tokio::sync::RwLock<()>,
    /// The runtimes `plugd check` probes with ([`Manager::with_probe_runtimes`]).
    probes: ProbeRuntimes,
    /// Each plugin's log and counters, and the event bus.
    telemetry: Arc<Telemetry>,
}

mod check;
mod check_dockerd;
mod remote;
pub use check::{CheckOptions, ProbeRuntimes};
pub use remote::pulled_name;

/// First and longest wait between restarts of a failing plugin.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// Longest readiness wait `enable?timeout=` gets; larger values are capped. dockerd has no cap,
/// but here a start no longer holds the lifecycle lock, so this only bounds how long an API
/// request (and the plugin's start slot) stays open.
pub const MAX_ENABLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a disable or rm waits for a cancelled start to release what it started before going
/// on (it normally takes milliseconds: the plugin is SIGKILLed).
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// The readiness wait of `enable?timeout=`: zero means the daemon's default, and anything above
/// [`MAX_ENABLE_TIMEOUT`] is capped.
pub fn enable_timeout(requested: Duration, default: Duration) -> Duration {
    if requested.is_zero() {
        default
    } else {
        requested.min(MAX_ENABLE_TIMEOUT)
    }
}

/// How a start ended.
enum Started {
    Yes,
    /// A disable or rm cancelled it; everything it started is stopped.
    Cancelled,
    No(Error),
}

/// A start's registration in [`Manager::starting`]; dropping it (the start finished, failed, or its
/// caller went away) unregisters it and wakes whoever waits for it.
struct Slot<'a> {
    manager: &'a Manager,
    id: String,
    socket_name: String,
    cancel: watch::Receiver<bool>,
    _done: watch::Sender<()>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        lock(&self.manager.starting).remove(&self.id);
    }
}

/// Filters of `GET /plugins`, already validated.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// `enabled=true|false`.
    pub enabled: Option<bool>,
    /// `capability=<regex>`: every type's capability must match each given pattern.
    pub capability: Vec<regex_lite::Regex>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The directories a start needs: the propagated mount's host side (0755), the runtime and the
/// state dir (0700).
fn create_dirs(spec: &PluginSpec) -> Result<()> {
    if let Some(pm) = &spec.propagated_mount {
        fsutil::create_dir_all(pm, 0o755).map_err(at(pm))?;
    }
    fsutil::create_dir_all(&spec.runtime_dir, 0o700).map_err(at(&spec.runtime_dir))?;
    fsutil::create_dir_all(&spec.state_dir, 0o700).map_err(at(&spec.state_dir))
}

impl Manager {
    /// Opens the store and the socket registry (removing plugd's own stale sockets).
    pub fn new(cfg: ManagerConfig, select: RuntimeSelector) -> Result<Manager> {
        let store = Store::open(&cfg.data_root)?;
        let blobs = Blobs::open(&cfg.data_root).map_err(at(&cfg.data_root))?;
        let registry = SocketRegistry::new(&cfg.exec_root.join("sockets"))?;
        registry.remove_stale()?;
        fsutil::create_dir_all(&cfg.plugin_socket_dir, 0o755)
            .map_err(at(&cfg.plugin_socket_dir))?;
        Ok(Manager {
            select,
            registry,
            ops: tokio::sync::Mutex::new(()),
            store: Mutex::new(store),
            starting: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            parked: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            blobs,
            blob_users: tokio::sync::RwLock::new(()),
            probes: ProbeRuntimes::default(),
            telemetry: Arc::new(Telemetry::new(cfg.data_root.join("logs"), cfg.plugin_logs)),
            cfg,
        })
    }

    fn view(&self, record: &Record) -> PluginObject {
        let mut p = record.plugin.clone();
        p.enabled = lock(&self.running).contains_key(&p.id);
        p
    }

    /// `GET /plugins`, sorted by name.
    pub fn list(&self, filter: &ListFilter) -> Vec<PluginObject> {
        let store = lock(&self.store);
        let mut out: Vec<_> = store
            .list()
            .map(|r| self.view(r))
            .filter(|p| filter.enabled.is_none_or(|e| p.enabled == e))
            .filter(|p| {
                filter.capability.iter().all(|re| {
                    p.config.interface.types.iter().flatten().all(|t| {
                        let cap = t.split_once('/').map_or(t.as_str(), |(c, _)| c);
                        let cap = cap.rsplit_once('.').map_or(cap, |(_, c)| c);
                        re.is_match(cap)
                    })
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// `GET /plugd/status` (`plugd ps`): every plugin's state as supervision sees it, sorted by
    /// name.
    pub fn status(&self) -> Vec<PluginStatus> {
        let records: Vec<Record> = lock(&self.store).list().cloned().collect();
        let mut out: Vec<PluginStatus> = records
            .iter()
            .map(|r| {
                let p = &r.plugin;
                let t = self.plugin_telemetry(r);
                let running = lock(&self.running)
                    .get(&p.id)
                    .map(|run| (run.instance.clone(), run.runtime, run.since));
                let starting = lock(&self.starting).contains_key(&p.id);
                let usage = running
                    .as_ref()
                    .map(|(i, _, _)| i.usage())
                    .unwrap_or_default();
                let state = match (&running, starting, p.enabled) {
                    (Some(_), _, _) => "running",
                    (None, true, _) => "starting",
                    (None, false, true) => "restarting",
                    (None, false, false) => "disabled",
                };
                let last = t.last_error();
                PluginStatus {
                    name: p.name.clone(),
                    id: p.id.clone(),
                    enabled: p.enabled,
                    state,
                    runtime: running.as_ref().map(|(_, rt, _)| *rt),
                    pid: usage.pid,
                    instances: usage.instances,
                    memory_bytes: usage.memory_bytes,
                    started_at: running.as_ref().map(|(_, _, since)| rfc3339(*since)),
                    uptime_seconds: running
                        .as_ref()
                        .map(|(_, _, since)| since.elapsed().map_or(0, |d| d.as_secs())),
                    restarts: t.stats.restarts(),
                    last_error: last.as_ref().map(|(_, e)| e.clone()),
                    last_error_at: last.as_ref().map(|(at, _)| rfc3339(*at)),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// `GET /metrics`: every plugin's series in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let records: Vec<Record> = lock(&self.store).list().cloned().collect();
        type Row = (Record, Arc<PluginTelemetry>, Option<Arc<dyn Instance>>);
        let rows: Vec<Row> = records
            .into_iter()
            .map(|r| {
                let t = self.plugin_telemetry(&r);
                let i = lock(&self.running)
                    .get(&r.plugin.id)
                    .map(|run| run.instance.clone());
                (r, t, i)
            })
            .collect();
        let views: Vec<crate::observe::metrics::PluginView<'_>> = rows
            .iter()
            .map(|(r, t, i)| crate::observe::metrics::PluginView {
                name: &r.plugin.name,
                stats: &t.stats,
                enabled: r.plugin.enabled,
                running: i.is_some(),
                usage: i.as_ref().map(|i| i.usage()).unwrap_or_default(),
                log_bytes: t.log.disk_bytes(),
            })
            .collect();
        crate::observe::metrics::render(&views)
    }

    /// The log of plugin `name` (`plugd logs`).
    pub fn plugin_log(&self, name: &str) -> Result<Arc<PluginTelemetry>> {
        let record = lock(&self.store).resolve(name)?.clone();
        Ok(self.plugin_telemetry(&record))
    }

    /// `GET /plugins/{name}/json`, with the warnings found at create.
    pub fn inspect(&self, name: &str) -> Result<(PluginObject, Vec<String>)> {
        let store = lock(&self.store);
        let r = store.resolve(name)?;
        Ok((self.view(r), r.warnings.clone()))
    }

    /// `GET /plugins/{name}/logstreams`: a log driver's streams and their counters (empty when
    /// the plugin is disabled or not a log driver).
    pub fn log_streams(&self, name: &str) -> Result<Vec<plugd_core::LogStream>> {
        let id = lock(&self.store).resolve(name)?.plugin.id.clone();
        // The instance is asked with the running map unlocked: a runtime's counters may sit
        // behind locks of its own.
        let instance = lock(&self.running).get(&id).map(|r| r.instance.clone());
        Ok(instance.map(|i| i.log_streams()).unwrap_or_default())
    }

    fn spec(&self, record: &Record) -> PluginSpec {
        let dir = lock(&self.store).plugin_dir(&record.plugin.id);
        let p = &record.plugin;
        PluginSpec {
            id: p.id.clone(),
            name: p.name.clone(),
            config: p.config.clone(),
            settings: p.settings.clone(),
            rootfs: dir.join("rootfs"),
            propagated_mount: (!p.config.propagated_mount.is_empty())
                .then(|| dir.join("propagated-mount")),
            runtime_dir: self.cfg.exec_root.join("plugins").join(&p.id),
            state_dir: self.cfg.exec_root.join("state").join(&p.id),
            observer: self.plugin_telemetry(record).observer(),
        }
    }

    fn plugin_telemetry(&self, record: &Record) -> Arc<PluginTelemetry> {
        self.telemetry
            .plugin(&record.plugin.id, &record.plugin.name)
    }

    /// The event bus, logs and counters (`GET /events`, `/metrics`, `plugd logs`).
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// `POST /plugins/create`: unpacks, validates, compiles (through the runtime's `prepare`) and stores
    /// the plugin, disabled. Nothing is visible unless everything succeeded. Returns the warnings.
    pub async fn create(
        &self,
        name: &str,
        body: impl std::io::Read + Send + 'static,
    ) -> Result<Vec<String>> {
        let reference = Reference::parse(name)?;
        let name = reference.to_string();
        let exists = || -> Result<()> {
            match lock(&self.store).by_name(&name) {
                Some(_) => Err(Error::conflict(format!("plugin {name} already exists"))),
                None => Ok(()),
            }
        };
        exists()?;
        let _blobs = self.blob_users.read().await;
        // The upload, unpacking and compiling run without the lifecycle lock: a slow or stalled
        // client must not hold up every other verb. The name is checked again under the lock.
        let staging = lock(&self.store).staging_path();
        let staged_blobs = staging.with_extension("blobs");
        let result = match self.stage(&name, &staging, &staged_blobs, body).await {
            Ok(record) => {
                let _ops = self.ops.lock().await;
                let warnings = record.warnings.clone();
                let image = record.image.clone();
                exists()
                    .and_then(|()| lock(&self.store).commit_new(&staging, record))
                    .map(|()| {
                        self.commit_blobs(image.as_ref(), &staged_blobs);
                        warnings
                    })
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&staged_blobs);
        match result {
            Ok(warnings) => {
                tracing::info!(plugin = %name, "created");
                if let Some(r) = lock(&self.store).by_name(&name) {
                    self.telemetry
                        .event(Action::Create, &r.plugin.id, &name, &[]);
                }
                Ok(warnings)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                Err(e)
            }
        }
    }

    async fn stage(
        &self,
        name: &str,
        staging: &Path,
        staged_blobs: &Path,
        body: impl std::io::Read + Send + 'static,
    ) -> Result<Record> {
        let dest = staging.to_path_buf();
        let limits = bundle::Limits {
            max_body_bytes: self.cfg.max_bundle_size,
            ..bundle::Limits::default()
        };
        let unpacked = tokio::task::spawn_blocking(move || bundle::unpack(body, &dest, &limits))
            .await
            .map_err(|e| Error::system(format!("unpacking bundle: {e}")))??;
        let (mut config, warnings) = PluginConfig::parse(&unpacked.config_json)?;
        let mut warnings: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
        if config.docker_version.take().is_some() {
            warnings.push(
                "`DockerVersion` is set by the engine, not by the plugin; ignored".to_string(),
            );
        }
        // Packaged now, as dockerd does at create: a later push sends the rootfs as created, not
        // as the plugin may have changed it since. Sets `rootfs.diff_ids`.
        let (rootfs, blobs_dir) = (unpacked.rootfs.clone(), staged_blobs.to_path_buf());
        let (config, image) = tokio::task::spawn_blocking(move || {
            crate::distribution::package(&rootfs, &mut config, &blobs_dir).map(|i| (config, i))
        })
        .await
        .map_err(|e| Error::system(format!("packaging the plugin: {e}")))??;
        let settings = Settings::initial(&config);
        let mut record = Record {
            plugin: PluginObject {
                config,
                enabled: false,
                id: new_id(),
                name: name.to_string(),
                plugin_reference: name.to_string(),
                settings,
            },
            warnings,
            image: Some(image),
        };
        // Compile now, so enable is fast.
        self.compile(&mut record, &unpacked.rootfs).await?;
        Ok(record)
    }

    /// `POST /plugins/{name}/enable?timeout=N`: ready within `timeout` (zero: the default; capped at
    /// [`MAX_ENABLE_TIMEOUT`]) or refused, with everything started so far undone. A disable or rm
    /// meanwhile cancels it.
    pub async fn enable(&self, name: &str, timeout: Duration) -> Result<()> {
        self.enable_as(name, timeout, None).await
    }

    /// [`Manager::enable`], refused unless the plugin's config and settings are still `expect`
    /// (what `enable?check=1` checked): a `set` or `upgrade` between the check and the enable
    /// must not be enabled unchecked.
    async fn enable_as(
        &self,
        name: &str,
        timeout: Duration,
        expect: Option<&(PluginConfig, Settings)>,
    ) -> Result<()> {
        let timeout = enable_timeout(timeout, self.cfg.default_enable_timeout);
        let (record, slot) = {
            let _ops = self.ops.lock().await;
            let record = lock(&self.store).resolve(name)?.clone();
            if let Some((config, settings)) = expect
                && (&record.plugin.config != config || &record.plugin.settings != settings)
            {
                return Err(Error::conflict(format!(
                    "plugin {}: not enabled: it changed while it was being checked; check it again",
                    record.plugin.name
                )));
            }
            let slot = self.reserve(&record)?;
            (record, slot)
        };
        let p = &record.plugin;
        match self.start(&record, slot, timeout).await {
            Started::Yes => {}
            Started::Cancelled => {
                return Err(Error::conflict(format!(
                    "plugin {} was disabled or removed while it was being enabled",
                    p.name
                )));
            }
            Started::No(e) => return Err(e),
        }
        let _ops = self.ops.lock().await;
        if !lock(&self.running).contains_key(&p.id) {
            return Err(Error::conflict(format!(
                "plugin {} was disabled or removed while it was being enabled",
                p.name
            )));
        }
        // Read again: an upgrade may have replaced the record while this start ran.
        let saved = lock(&self.store).resolve(&p.id).map(|r| {
            let mut r = r.clone();
            r.plugin.enabled = true;
            r
        });
        let saved = saved.and_then(|r| lock(&self.store).save(r));
        if let Err(e) = saved {
            self.stop(&p.id).await;
            return Err(e);
        }
        tracing::info!(plugin = %p.name, "enabled");
        self.telemetry.event(Action::Enable, &p.id, &p.name, &[]);
        Ok(())
    }

    /// Registers a start of `record` (under the `ops` lock): refused while the plugin runs or
    /// starts, or while another plugin serves (or is starting on) the same socket name.
    fn reserve(&self, record: &Record) -> Result<Slot<'_>> {
        let p = &record.plugin;
        let socket_name = Reference::parse(&p.name)
            .map_err(|e| Error::system(e.to_string()))?
            .socket_name()
            .to_string();
        let mut starting = lock(&self.starting);
        let running = lock(&self.running);
        if running.contains_key(&p.id) || starting.contains_key(&p.id) {
            return Err(Error::conflict(format!("plugin {} is enabled", p.name))
                .wrap("plugin already enabled"));
        }
        let taken = running
            .iter()
            .find(|(_, r)| r.socket_name == socket_name)
            .map(|(_, r)| r.runtime)
            .or_else(|| {
                starting
                    .values()
                    .any(|s| s.socket_name == socket_name)
                    .then_some("a starting")
            })
            .or_else(|| {
                let path = self
                    .cfg
                    .plugin_socket_dir
                    .join(format!("{socket_name}.sock"));
                lock(&self.parked)
                    .iter()
                    .any(|(id, s)| *id != p.id && s.path() == path)
                    .then_some("a restarting")
            });
        if let Some(runtime) = taken {
            return Err(Error::conflict(format!(
                "plugin {} cannot be enabled: its socket name {socket_name:?} is already served by another enabled plugin ({runtime} runtime)",
                p.name
            )));
        }
        let (cancel_tx, cancel) = watch::channel(false);
        let (done_tx, done) = watch::channel(());
        starting.insert(
            p.id.clone(),
            Starting {
                socket_name: socket_name.clone(),
                cancel: cancel_tx,
                done,
            },
        );
        Ok(Slot {
            manager: self,
            id: p.id.clone(),
            socket_name,
            cancel,
            _done: done_tx,
        })
    }

    /// Runs a registered start without the `ops` lock: the runtime's start within `timeout` (or
    /// until cancelled), then the engine-facing socket. Whatever fails or is cancelled after the
    /// runtime started the plugin stops it again.
    async fn start(&self, record: &Record, slot: Slot<'_>, timeout: Duration) -> Started {
        let p = &record.plugin;
        let spec = self.spec(record);
        if let Err(e) = create_dirs(&spec) {
            return Started::No(e);
        }
        let runtime = match (self.select)(&spec) {
            Ok(r) => r,
            Err(e) => return Started::No(e.into()),
        };
        let mut cancel = slot.cancel.clone();
        let started = tokio::select! {
            r = tokio::time::timeout(timeout, async {
                runtime.prepare(&spec).await?;
                runtime.start(&spec).await
            }) => Some(r),
            _ = cancel.wait_for(|c| *c) => None,
        };
        let instance = match started {
            Some(Ok(Ok(instance))) => instance,
            Some(Ok(Err(e))) => return Started::No(e.into()),
            Some(Err(_)) => {
                self.settle(runtime.as_ref(), &spec).await;
                return Started::No(Error::system(format!(
                    "plugin {} did not become ready within {}s",
                    p.name,
                    timeout.as_secs_f64()
                )));
            }
            None => {
                self.settle(runtime.as_ref(), &spec).await;
                tracing::info!(plugin = %p.name, "start cancelled");
                return Started::Cancelled;
            }
        };
        let may_block = runtime.plugin_can_mount(&spec);
        let served = self.serve(
            record,
            &spec,
            &slot.socket_name,
            instance.clone(),
            may_block,
        );
        let (socket, mounts) = match served {
            Ok(s) => s,
            Err(e) => {
                instance.stop(self.cfg.stop_grace).await;
                return Started::No(e);
            }
        };
        // The cancel flag is set under `starting`, so either the disable sees the plugin running
        // (and stops it) or this start sees the flag.
        let cancelled = {
            let _starting = lock(&self.starting);
            let cancelled = *slot.cancel.borrow();
            if !cancelled {
                lock(&self.running).insert(
                    p.id.clone(),
                    Running {
                        instance: instance.clone(),
                        socket,
                        socket_name: slot.socket_name.clone(),
                        mounts,
                        runtime: runtime.name(),
                        collector: is_collector(&spec),
                        since: std::time::SystemTime::now(),
                    },
                );
                None
            } else {
                Some(socket)
            }
        };
        match cancelled {
            None => {
                if is_collector(&spec) {
                    metrics_call(&p.name, instance.as_ref(), metrics::START).await;
                }
                Started::Yes
            }
            Some(socket) => {
                socket.close(&self.registry).await;
                instance.stop(Duration::ZERO).await;
                tracing::info!(plugin = %p.name, "start cancelled as it became ready");
                Started::Cancelled
            }
        }
    }

    /// The engine-facing socket for a started instance.
    fn serve(
        &self,
        record: &Record,
        spec: &PluginSpec,
        socket_name: &str,
        instance: Arc<dyn Instance>,
        paths_may_block: bool,
    ) -> Result<(PluginSocket, Arc<Mounts>)> {
        let p = &record.plugin;
        let mounts = Arc::new(Mounts::persisted(&spec.state_dir));
        let gateway = self.gateway(record, spec, instance, mounts.clone(), paths_may_block)?;
        let path = self
            .cfg
            .plugin_socket_dir
            .join(format!("{socket_name}.sock"));
        // An authorization plugin restarted after a failure: its socket never went away.
        let parked = {
            let mut parked = lock(&self.parked);
            match parked.get(&p.id) {
                Some(s) if s.path() == path => parked.remove(&p.id),
                _ => None,
            }
        };
        if let Some(socket) = parked {
            socket.replace(gateway);
            return Ok((socket, mounts));
        }
        let socket = PluginSocket::bind(&path, &self.registry, gateway)
            .map_err(|e| Error::new(Kind::Conflict, format!("plugin {}: {e}", p.name)))?;
        Ok((socket, mounts))
    }

    /// The gateway of a started instance: what the engine-facing socket serves.
    fn gateway(
        &self,
        record: &Record,
        spec: &PluginSpec,
        instance: Arc<dyn Instance>,
        mounts: Arc<Mounts>,
        // `Runtime::plugin_can_mount` of the runtime that started it.
        paths_may_block: bool,
    ) -> Result<Arc<Gateway>> {
        let p = &record.plugin;
        let paths = PathMap::new(
            &spec.rootfs,
            spec.propagated_mount
                .as_deref()
                .map(|h| (p.config.propagated_mount.as_str(), h)),
        )
        .map_err(at(&spec.rootfs))?;
        let types = p.config.interface.types.clone().unwrap_or_default();
        Ok(Arc::new(
            Gateway::new(&p.name, &types, instance, paths, mounts)
                .counted_in(self.plugin_telemetry(record))
                .authz_deadline(self.cfg.authz_timeout)
                .may_hand_over_links(may_hand_over_links(spec))
                .paths_may_block(paths_may_block),
        ))
    }

    /// Waits (briefly) for the runtime to release what a cancelled start left.
    async fn settle(&self, runtime: &dyn Runtime, spec: &PluginSpec) {
        if tokio::time::timeout(CANCEL_WAIT, runtime.settle(spec))
            .await
            .is_err()
        {
            tracing::warn!(plugin = %spec.name, "a cancelled start is still being cleaned up");
        }
    }

    /// Cancels the start of plugin `id` if one is under way and waits (at most [`CANCEL_WAIT`])
    /// until it is over. Returns whether there was one.
    async fn cancel_start(&self, id: &str) -> bool {
        let done = lock(&self.starting).get(id).map(|s| {
            s.cancel.send_replace(true);
            s.done.clone()
        });
        let Some(mut done) = done else {
            return false;
        };
        // `changed` fails once the start's slot is dropped: the start is over.
        if tokio::time::timeout(CANCEL_WAIT, done.changed())
            .await
            .is_err()
        {
            tracing::warn!(plugin = %id, "a cancelled start did not finish within {CANCEL_WAIT:?}");
        }
        true
    }

    /// Stops a plugin the user disabled or removed: its mount table goes too (a daemon shutdown or a
    /// crash restart keeps it, since containers still hold those volumes).
    async fn stop_and_forget(&self, id: &str) {
        let mounts = lock(&self.running).get(id).map(|r| r.mounts.clone());
        mounts
            .unwrap_or_else(|| Arc::new(self.mount_table(id)))
            .clear();
        self.stop(id).await;
    }

    /// The recorded mount table of a plugin that is not running (a crash, a failed restore).
    fn mount_table(&self, id: &str) -> Mounts {
        Mounts::persisted(&self.cfg.exec_root.join("state").join(id))
    }

    async fn stop(&self, id: &str) {
        self.stop_telling(id, true).await
    }

    /// [`Self::stop`]; `tell` is false for a plugin that failed its health check, which gets no
    /// `StopMetrics` (it could only hold the lifecycle lock up to the call's deadline).
    async fn stop_telling(&self, id: &str, tell: bool) {
        let running = lock(&self.running).remove(id);
        if let Some(r) = running {
            if r.collector && tell {
                let name = lock(&self.store)
                    .list()
                    .find(|rec| rec.plugin.id == id)
                    .map_or_else(|| id.to_string(), |rec| rec.plugin.name.clone());
                metrics_call(&name, r.instance.as_ref(), metrics::STOP).await;
            }
            r.socket.close(&self.registry).await;
            r.instance.stop(self.cfg.stop_grace).await;
        }
        let parked = lock(&self.parked).remove(id);
        if let Some(socket) = parked {
            socket.close(&self.registry).await;
        }
    }

    /// Stops a failed plugin for a supervised restart. An authorization plugin keeps its socket,
    /// answering every AuthZ call with a deny naming it (`why`) until it runs again: dockerd
    /// would otherwise retry each API call for ≈15 s against the missing socket, then fail it.
    async fn stop_failed(&self, id: &str, why: &str) {
        let running = {
            let mut running = lock(&self.running);
            match running.get(id) {
                Some(r) if r.socket.gateway().fails_closed() => running.remove(id),
                _ => None,
            }
        };
        let Some(r) = running else {
            return self.stop_telling(id, false).await;
        };
        r.socket.park(why);
        lock(&self.parked).insert(id.to_string(), r.socket);
        r.instance.stop(self.cfg.stop_grace).await;
    }

    /// What keeps the plugin in use: mounted volumes, and containers logging to it (a log
    /// driver stopped under a running container leaves dockerd's FIFO unread, and the
    /// container blocks once the pipe is full).
    fn in_use(&self, id: &str) -> Vec<String> {
        let running = lock(&self.running)
            .get(id)
            .map(|r| (r.mounts.clone(), r.instance.clone()));
        match running {
            Some((mounts, instance)) => {
                let mut busy = mounts.in_use();
                busy.extend(
                    instance
                        .log_streams()
                        .into_iter()
                        .filter(|s| s.open)
                        .map(|s| format!("log stream of container {}", s.container_id)),
                );
                busy
            }
            None => self.mount_table(id).in_use(),
        }
    }

    /// `POST /plugins/{name}/disable?force=`: refused while volumes are mounted through it, unless forced.
    /// A start under way (enable, supervised restart) is cancelled, so this answers at once even
    /// for a plugin that never becomes ready.
    pub async fn disable(&self, name: &str, force: bool) -> Result<()> {
        let _ops = self.ops.lock().await;
        let mut record = lock(&self.store).resolve(name)?.clone();
        let id = record.plugin.id.clone();
        let starting = lock(&self.starting).contains_key(&id);
        if !starting && !lock(&self.running).contains_key(&id) && !record.plugin.enabled {
            return Err(Error::conflict(format!(
                "plugin {} found but disabled",
                record.plugin.name
            ))
            .wrap("plugin is already disabled"));
        }
        let busy = self.in_use(&id);
        if !busy.is_empty() && !force {
            tracing::info!(plugin = %record.plugin.name, in_use = ?busy, "disable refused: in use");
            return Err(Error::conflict(format!(
                "plugin {} is in use",
                record.plugin.name
            )));
        }
        // Stored as enabled but not running (it crashed and supervision is retrying, or it
        // could not be restored): disabling stops the retries, and cancels one under way.
        lock(&self.backoff).remove(&id);
        self.cancel_start(&id).await;
        self.stop_and_forget(&id).await;
        record.plugin.enabled = false;
        let (id, stored_name) = (record.plugin.id.clone(), record.plugin.name.clone());
        lock(&self.store).save(record)?;
        tracing::info!(plugin = %name, "disabled");
        self.telemetry
            .event(Action::Disable, &id, &stored_name, &[]);
        Ok(())
    }

    /// `DELETE /plugins/{name}?force=`. Forced, it cancels a start under way. The plugin's
    /// directories are deleted only when nothing is mounted in them any more.
    pub async fn remove(&self, name: &str, force: bool) -> Result<()> {
        let _ops = self.ops.lock().await;
        let record = lock(&self.store).resolve(name)?.clone();
        let id = record.plugin.id.clone();
        let enabled =
            lock(&self.running).contains_key(&id) || lock(&self.starting).contains_key(&id);
        if !force {
            if !self.in_use(&id).is_empty() {
                return Err(Error::conflict(format!(
                    "plugin {} is in use",
                    record.plugin.name
                )));
            }
            if enabled {
                return Err(Error::conflict(format!(
                    "plugin {} is enabled",
                    record.plugin.name
                )));
            }
        }
        lock(&self.backoff).remove(&id);
        self.cancel_start(&id).await;
        self.stop_and_forget(&id).await;
        let plugin_dir = lock(&self.store).plugin_dir(&id);
        let dirs = [
            plugin_dir,
            self.cfg.exec_root.join("plugins").join(&id),
            self.cfg.exec_root.join("state").join(&id),
        ];
        for dir in &dirs {
            if let Err(e) = unmount::release(dir, &unmount::lazy_unmount) {
                return Err(self.keep_stopped(record, &e.to_string()));
            }
        }
        lock(&self.store).remove(&id)?;
        self.collect_blobs();
        for dir in &dirs[1..] {
            if let Err(e) = unmount::remove_dir_all(dir) {
                tracing::warn!(plugin = %record.plugin.name, error = %e, "removing the plugin's runtime directories");
            }
        }
        tracing::info!(plugin = %record.plugin.name, "removed");
        self.telemetry.forget(&id);
        self.telemetry
            .event(Action::Remove, &id, &record.plugin.name, &[]);
        Ok(())
    }

    /// A stopped plugin that could not be removed stays, disabled (nothing restarts it), and the
    /// error says what is in the way.
    fn keep_stopped(&self, mut record: Record, why: &str) -> Error {
        let name = record.plugin.name.clone();
        tracing::error!(plugin = %name, reason = %why, "not removed: a mount under its directories could not be unmounted");
        record.plugin.enabled = false;
        if let Err(e) = lock(&self.store).save(record) {
            tracing::warn!(plugin = %name, error = %e, "recording the plugin as disabled");
        }
        Error::system(format!(
            "plugin {name} was stopped but not removed: {why}; unmount it and remove the plugin again"
        ))
    }

    /// `POST /plugins/{name}/set`: all arguments apply or none; the result is re-validated.
    pub async fn set(&self, name: &str, args: &[String]) -> Result<()> {
        let _ops = self.ops.lock().await;
        let mut record = lock(&self.store).resolve(name)?.clone();
        let id = &record.plugin.id;
        if lock(&self.running).contains_key(id) || lock(&self.starting).contains_key(id) {
            return Err(Error::system(
                "cannot set on an active plugin, disable plugin before setting",
            ));
        }
        let p = &mut record.plugin;
        plugd_core::settable::apply(&mut p.config, &mut p.settings, args)?;
        p.config.validate()?;
        lock(&self.store).save(record)
    }

    /// At daemon start: enables every plugin stored as enabled. A failure leaves it shown as disabled
    /// (but still marked enabled on disk, so supervision and the next start try again), as dockerd
    /// does.
    pub async fn restore(&self) {
        let ids: Vec<String> = lock(&self.store)
            .list()
            .filter(|r| r.plugin.enabled)
            .map(|r| r.plugin.id.clone())
            .collect();
        for id in ids {
            let Some((record, slot)) = self.reserve_wanted(&id).await else {
                continue;
            };
            match self
                .start(&record, slot, self.cfg.default_enable_timeout)
                .await
            {
                Started::Yes => tracing::info!(plugin = %record.plugin.name, "restored"),
                Started::Cancelled => {}
                Started::No(e) => {
                    tracing::error!(plugin = %record.plugin.name, error = %e, "could not restore plugin")
                }
            }
        }
    }

    /// Registers a start of plugin `id` if it is still stored as enabled and neither runs nor
    /// starts (under the `ops` lock, so a disable or rm in between is seen).
    async fn reserve_wanted(&self, id: &str) -> Option<(Record, Slot<'_>)> {
        let _ops = self.ops.lock().await;
        let record = lock(&self.store)
            .list()
            .find(|r| r.plugin.id == id && r.plugin.enabled)
            .cloned()?;
        match self.reserve(&record) {
            Ok(slot) => Some((record, slot)),
            Err(e) => {
                tracing::debug!(plugin = %record.plugin.name, error = %e, "not starting");
                None
            }
        }
    }

    /// One supervision pass. An instance that reports [`Health::Failed`] is stopped; every plugin
    /// stored as enabled but not running (failed, or not restorable at start) is started again with
    /// exponential backoff (1 s doubling to 30 s, reset once it runs). Its engine-facing socket is
    /// recreated and the plugin stays enabled throughout. The restarts run without the lifecycle
    /// lock, so a disable or rm cancels one under way. Returns the plugins (re)started.
    pub async fn supervise(&self) -> Vec<String> {
        {
            let _ops = self.ops.lock().await;
            let failed: Vec<(String, String)> = lock(&self.running)
                .iter()
                .filter_map(|(id, r)| match r.instance.health() {
                    Health::Ready => None,
                    Health::Failed(why) => Some((id.clone(), why)),
                })
                .collect();
            for (id, why) in failed {
                tracing::warn!(plugin = %id, reason = %why, "plugin failed its health check; restarting");
                let record = lock(&self.store)
                    .list()
                    .find(|r| r.plugin.id == id)
                    .cloned();
                if let Some(record) = record {
                    let t = self.plugin_telemetry(&record);
                    t.stats.crashed();
                    t.failed(Action::Crash, &why, &[("reason", &why)]);
                }
                self.stop_failed(&id, &why).await;
            }
        }
        let wanted: Vec<String> = {
            let store = lock(&self.store);
            let running = lock(&self.running);
            store
                .list()
                .filter(|r| r.plugin.enabled && !running.contains_key(&r.plugin.id))
                .map(|r| r.plugin.id.clone())
                .collect()
        };
        let now = std::time::Instant::now();
        let mut started = Vec::new();
        for id in wanted {
            let due = lock(&self.backoff).get(&id).map(|(at, _)| *at);
            if due.is_some_and(|at| at > now) {
                continue;
            }
            let Some((record, slot)) = self.reserve_wanted(&id).await else {
                continue;
            };
            let waited = lock(&self.backoff)
                .get(&id)
                .map_or(Duration::ZERO, |(_, d)| *d);
            let t = self.plugin_telemetry(&record);
            match self
                .start(&record, slot, self.cfg.default_enable_timeout)
                .await
            {
                Started::Yes => {
                    lock(&self.backoff).remove(&id);
                    tracing::info!(plugin = %record.plugin.name, "plugin restarted");
                    t.stats.restarted();
                    let (delay, restarts) = (human(waited), t.stats.restarts().to_string());
                    t.note(&format!("restarted (after a backoff of {delay})"));
                    t.event(
                        Action::Restart,
                        &[("delay", &delay), ("restarts", &restarts)],
                    );
                    started.push(record.plugin.name.clone());
                }
                Started::Cancelled => {}
                Started::No(e) => {
                    let delay = {
                        let mut backoff = lock(&self.backoff);
                        let delay = backoff
                            .get(&id)
                            .map_or(BACKOFF.0, |(_, d)| (*d * 2).min(BACKOFF.1));
                        backoff.insert(id, (now + delay, delay));
                        delay
                    };
                    tracing::error!(plugin = %record.plugin.name, error = %e, retry_in = ?delay, "restart failed");
                    let why = e.to_string();
                    t.failed(
                        Action::RestartFailed,
                        &why,
                        &[("error", &why), ("retryIn", &human(delay))],
                    );
                }
            }
        }
        started
    }

    /// At daemon shutdown: stops every instance and removes every engine-facing socket; the enabled
    /// set on disk is kept so the next start restores it.
    pub async fn shutdown(&self) {
        let _ops = self.ops.lock().await;
        let starting: Vec<String> = lock(&self.starting).keys().cloned().collect();
        for id in starting {
            self.cancel_start(&id).await;
        }
        let mut ids: Vec<String> = lock(&self.running).keys().cloned().collect();
        ids.extend(lock(&self.parked).keys().cloned());
        for id in ids {
            self.stop(&id).await;
        }
    }
}

/// Whether a network plugin may name a host interface in Join: only one that can make links in
/// dockerd's network namespace (`Network.Type` `host` and `CAP_NET_ADMIN`, which both runtimes
/// need for that). Any other plugin's links are where dockerd cannot see them, so a name it gives
/// can only be a host interface that is not its own (docs/protocol.md, network).
fn may_hand_over_links(spec: &PluginSpec) -> bool {
    let e = spec.effective();
    e.host_network() && e.capabilities.iter().any(|c| c == "CAP_NET_ADMIN")
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
