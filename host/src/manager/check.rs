//! `plugd check`: runs plugd's probe in place of a plugin's entrypoint, in the sandbox each
//! runtime would give it, and judges what the probe saw against the declaration
//! (`plugd_core::check::rows`). docs/check.md says what each probe does and what it cannot prove.
//!
//! A check never touches the running plugin: the probe gets a spec of its own — id
//! `check-<nonce>`, runtime, state and propagated-mount directories under
//! `<exec-root>/check/<nonce>` — with the plugin's config, settings and rootfs. The host side of
//! the check (a canary file holding the nonce, a loopback listener that writes it, the
//! propagated-mount directory) lives there too and is removed afterwards, mounts first.

use super::{Manager, create_dirs, lock};
use crate::error::{Error, Result, at};
use crate::unmount;
use plugd_core::check::probe::{self, Attempt, Host, Plan, PlanMount, Report};
use plugd_core::check::rows::{self, Column, HostView, Matrix, Outcome, host_ids};
use plugd_core::runtime::{PluginSpec, Runtime, RuntimeError};
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a probe may take to start and to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Grace of the probe's stop (it exits at SIGTERM at once).
const PROBE_STOP_GRACE: Duration = Duration::from_secs(2);

/// What `plugd check` asks for.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// The plugd runtimes to probe, in column order (empty: the plugin's own runtime).
    pub runtimes: Vec<Column>,
    /// A dockerd to probe the same bundle under (`unix:///var/run/docker.sock`).
    pub docker_host: Option<String>,
}

/// The runtimes a check can probe with, by column; given by the daemon.
#[derive(Clone, Default)]
pub struct ProbeRuntimes {
    /// The native runtime, when plugd has one.
    pub native: Option<Arc<dyn Runtime>>,
    /// The wasm runtime.
    pub wasm: Option<Arc<dyn Runtime>>,
    /// `--engine-metrics-socket`.
    pub engine_metrics: Option<PathBuf>,
    /// The native probe binary, which the dockerd column puts in its bundle.
    pub probe_binary: Option<PathBuf>,
}

impl Manager {
    /// Gives the manager the runtimes `check` probes with (the daemon calls it once).
    pub fn with_probe_runtimes(mut self, probes: ProbeRuntimes) -> Self {
        self.probes = probes;
        self
    }

    /// The column of the runtime that runs `name` (`native` or `wasm`).
    pub fn own_column(&self, name: &str) -> Result<Column> {
        let record = lock(&self.store).resolve(name)?.clone();
        let runtime = (self.select)(&self.spec(&record)).map_err(Error::from)?;
        Ok(if runtime.name() == "wasm" {
            Column::Wasm
        } else {
            Column::Native
        })
    }

    /// `POST /plugins/{name}/check`: the matrix of one plugin. Mismatches are in the matrix, not
    /// an error: the caller decides (the CLI exits non-zero, `enable --check` refuses).
    pub async fn check(&self, name: &str, opts: &CheckOptions) -> Result<Matrix> {
        let record = lock(&self.store).resolve(name)?.clone();
        let spec = self.spec(&record);
        let columns = if opts.runtimes.is_empty() {
            vec![self.own_column(name)?]
        } else {
            opts.runtimes.clone()
        };
        let effective = spec.effective();
        let host = host_view(&spec, self.probes.engine_metrics.as_deref());
        let mut outcomes = Vec::new();
        for column in columns {
            let outcome = match column {
                Column::Native | Column::Wasm => self.probe_with(column, &spec).await,
                Column::Dockerd => continue,
            };
            outcomes.push((column, outcome));
        }
        if let Some(docker) = &opts.docker_host {
            let outcome = super::check_dockerd::probe(self, &spec, docker).await;
            outcomes.push((Column::Dockerd, outcome));
        }
        let ctx = rows::Context {
            config: &spec.config,
            effective: &effective,
            host: &host,
        };
        Ok(rows::matrix(&ctx, &spec.name, &spec.id, &outcomes))
    }

    /// `enable?check=1`: the plugin's own runtime is probed first and the enable refused unless
    /// the probe ran and found the sandbox equal to the declaration, and the plugin is still what
    /// was checked when it is enabled.
    pub async fn enable_checked(&self, name: &str, timeout: Duration) -> Result<()> {
        let record = lock(&self.store).resolve(name)?.clone();
        let checked = (record.plugin.config.clone(), record.plugin.settings.clone());
        self.check_before_enable(&record.plugin.id).await?;
        self.enable_as(&record.plugin.id, timeout, Some(&checked))
            .await
    }

    async fn check_before_enable(&self, name: &str) -> Result<()> {
        let matrix = self.check(name, &CheckOptions::default()).await?;
        let column = &matrix.columns[0];
        if column.state != rows::State::Ran {
            return Err(Error::conflict(format!(
                "plugin {}: not enabled: the {} check did not run ({}: {})",
                matrix.plugin,
                column.column.name(),
                column.state.name(),
                column.detail
            )));
        }
        if matrix.mismatches == 0 {
            return Ok(());
        }
        let rows: Vec<String> = matrix
            .rows
            .iter()
            .filter(|r| r.verdict == rows::Verdict::Mismatch)
            .filter_map(|r| {
                let cell = r.cells.get(&column.column)?;
                // Observations carry a plugin's bytes (file names, env): quoted, never raw.
                Some(format!(
                    "{} {:?}: {:?} (declared: {:?}, so {:?})",
                    r.class, r.privilege, cell.observed, r.declared, cell.expected
                ))
            })
            .collect();
        Err(Error::conflict(format!(
            "plugin {}: not enabled: its {} sandbox differs from its declaration in {} row(s): {}",
            matrix.plugin,
            column.column.name(),
            matrix.mismatches,
            rows.join("; ")
        )))
    }

    async fn probe_with(&self, column: Column, spec: &PluginSpec) -> Outcome {
        let runtime = match column {
            Column::Native => self.probes.native.clone(),
            _ => self.probes.wasm.clone(),
        };
        let Some(runtime) = runtime else {
            return Outcome::Unavailable(format!("plugd has no {} runtime", column.name()));
        };
        let scratch = match Scratch::new(&self.cfg.exec_root.join("check")) {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let outcome = scratch.run(runtime.as_ref(), spec).await;
        scratch.remove();
        outcome
    }
}

/// One probe run's host side: `<exec-root>/check/<nonce>`, removed (mounts first) when done.
pub(super) struct Scratch {
    pub(super) nonce: String,
    pub(super) dir: PathBuf,
    pub(super) canary: PathBuf,
}

impl Scratch {
    pub(super) fn new(parent: &Path) -> Result<Scratch> {
        let nonce = crate::store::new_id()[..16].to_string();
        let dir = parent.join(&nonce);
        crate::fsutil::create_dir_all(&dir, 0o700).map_err(at(&dir))?;
        let canary = dir.join("canary");
        std::fs::write(&canary, &nonce).map_err(at(&canary))?;
        Ok(Scratch { nonce, dir, canary })
    }

    /// The probe's spec: the plugin's declaration, settings and rootfs, everything else its own.
    fn spec(&self, plugin: &PluginSpec) -> PluginSpec {
        let mut config = plugin.config.clone();
        config.interface.socket = probe::PROBE_SOCKET.to_string();
        PluginSpec {
            id: format!("check-{}", self.nonce),
            name: format!("{} (check)", plugin.name),
            config,
            settings: plugin.settings.clone(),
            rootfs: plugin.rootfs.clone(),
            propagated_mount: plugin
                .propagated_mount
                .as_ref()
                .map(|_| self.dir.join("propagated-mount")),
            runtime_dir: self.dir.join("run"),
            state_dir: self.dir.join("state"),
            observer: Default::default(),
        }
    }

    async fn run(&self, runtime: &dyn Runtime, plugin: &PluginSpec) -> Outcome {
        let spec = self.spec(plugin);
        if let Err(e) = create_dirs(&spec) {
            return Outcome::Failed(e.to_string());
        }
        let listener = match Loopback::start(&self.nonce).await {
            Ok(l) => l,
            Err(e) => return Outcome::Failed(format!("the host's loopback listener: {e}")),
        };
        let plan = plan(&spec, &self.nonce, &self.canary, listener.port);
        let started = tokio::time::timeout(PROBE_TIMEOUT, runtime.start_probe(&spec)).await;
        let instance = match started {
            Err(_) => {
                return Outcome::Failed(format!(
                    "the probe was not ready within {PROBE_TIMEOUT:?}"
                ));
            }
            Ok(Err(e @ RuntimeError::Unsupported { .. })) => {
                return Outcome::Refused(e.to_string());
            }
            Ok(Err(e)) => return Outcome::Failed(e.to_string()),
            Ok(Ok(i)) => i,
        };
        let body = serde_json::to_vec(&plan).expect("a plan serializes");
        let reply = tokio::time::timeout(
            PROBE_TIMEOUT,
            instance.call(probe::CHECK_METHOD, body.into()),
        )
        .await;
        let outcome = match reply {
            Err(_) => Outcome::Failed(format!("the probe did not answer within {PROBE_TIMEOUT:?}")),
            Ok(reply) if reply.status != 200 => Outcome::Failed(format!(
                "the probe answered {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body[..reply.body.len().min(512)])
            )),
            Ok(reply) => match read_report(&reply.body) {
                Ok(mut report) => {
                    // Looked at before the stop, which unmounts the propagated mount.
                    report
                        .attempts
                        .extend(host_attempts(&self.nonce, spec.propagated_mount.as_deref()));
                    Outcome::Ran(report)
                }
                Err(e) => Outcome::Failed(e),
            },
        };
        instance.stop(PROBE_STOP_GRACE).await;
        runtime.settle(&spec).await;
        drop(listener);
        remove_leak_dirs(plugin, &self.nonce);
        outcome
    }

    /// Unmounts what is left below the scratch dir and removes it; a failure is logged.
    pub(super) fn remove(&self) {
        if let Err(e) = unmount::release(&self.dir, &unmount::lazy_unmount)
            .and_then(|()| unmount::remove_dir_all(&self.dir))
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove a check's scratch directory");
        }
    }
}

/// Removes what a probe's `leak:` attempts left on the host: a mount bearing the nonce that did
/// reach the host (the finding is already in the report) and the empty directories in the
/// writable bind sources and the rootfs. `rmdir` only: it follows no symlink and deletes nothing
/// the plugin put there.
pub(super) fn remove_leak_dirs(plugin: &PluginSpec, nonce: &str) {
    let name = probe::leak_name(nonce);
    for m in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(plugd_init::mountinfo::mount_point_of)
        .filter(|m| m.file_name().is_some_and(|f| f.to_string_lossy() == name))
    {
        let _ = unmount::lazy_unmount(&m);
    }
    let effective = plugin.effective();
    let dirs = effective
        .mounts
        .iter()
        .filter(|m| m.is_bind() && !m.read_only())
        .filter_map(|m| m.source.as_deref().map(PathBuf::from))
        .chain(std::iter::once(plugin.rootfs.clone()));
    for dir in dirs {
        let _ = std::fs::remove_dir(dir.join(&name));
    }
}

/// A probe's report, read as any reply from a sandbox: capped, strict.
pub(super) fn read_report(body: &[u8]) -> std::result::Result<Report, String> {
    if body.len() > probe::MAX_REPORT {
        return Err(format!(
            "the probe's report is over {} bytes",
            probe::MAX_REPORT
        ));
    }
    serde_json::from_slice(body).map_err(|e| format!("the probe's report is not one: {e}"))
}

/// The plan for `spec` (the probe's spec: its propagated mount is the scratch one).
pub(super) fn plan(spec: &PluginSpec, nonce: &str, canary: &Path, port: u16) -> Plan {
    let effective = spec.effective();
    Plan {
        nonce: nonce.to_string(),
        host: Host {
            loopback_port: port,
            canary: canary.to_string_lossy().into_owned(),
            pid: std::process::id(),
            comm: std::fs::read_to_string("/proc/self/comm")
                .map(|s| s.trim_end().to_string())
                .unwrap_or_default(),
        },
        mounts: effective
            .mounts
            .iter()
            .map(|m| PlanMount {
                destination: m.destination.clone(),
                directory: !m.is_bind()
                    || m.source
                        .as_deref()
                        .is_none_or(|s| std::fs::metadata(s).is_ok_and(|md| md.is_dir())),
                writable: !m.read_only(),
            })
            .collect(),
        propagated_mount: (!spec.config.propagated_mount.is_empty())
            .then(|| spec.config.propagated_mount.clone()),
        devices: effective
            .devices
            .iter()
            .filter_map(|d| d.path.clone())
            .filter(|p| !p.is_empty())
            .collect(),
        capabilities: plugd_core::config::CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect(),
    }
}

/// What plugd sees on the host after the probe ran: its file and mount in the propagated
/// mount, and any mount bearing the nonce anywhere else.
pub(super) fn host_attempts(nonce: &str, propagated: Option<&Path>) -> Vec<Attempt> {
    let name = probe::propagated_name(nonce);
    let mounts: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(plugd_init::mountinfo::mount_point_of)
        .filter(|m| m.to_string_lossy().contains(nonce))
        .collect();
    let mut out = Vec::new();
    if let Some(pm) = propagated {
        let file = pm.join(&name);
        let seen = read_small(&file).is_some_and(|c| c == nonce);
        out.push(attempt(host_ids::PROPAGATED_WRITE, seen, &file));
        let mnt = pm.join(format!("{name}.mnt"));
        let mounted = mounts.iter().any(|m| m == &mnt);
        out.push(attempt(host_ids::PROPAGATED_MOUNT, mounted, &mnt));
    }
    let leaked: Vec<String> = mounts
        .iter()
        .filter(|m| propagated.is_none_or(|pm| !m.starts_with(pm)))
        .map(|m| m.display().to_string())
        .collect();
    out.push(Attempt {
        id: host_ids::LEAKED_MOUNT.to_string(),
        ok: !leaked.is_empty(),
        detail: leaked.join(","),
    });
    out
}

fn attempt(id: &str, ok: bool, path: &Path) -> Attempt {
    Attempt {
        id: id.to_string(),
        ok,
        detail: if ok {
            path.display().to_string()
        } else {
            format!("not on the host at {}", path.display())
        },
    }
}

/// A small file's content, read without following a symlink (the probe made it).
fn read_small(path: &Path) -> Option<String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut s = String::new();
    f.take(256).read_to_string(&mut s).ok()?;
    Some(s)
}

/// The host facts the judgement needs, read by plugd itself.
pub(super) fn host_view(spec: &PluginSpec, engine_metrics: Option<&Path>) -> HostView {
    let effective = spec.effective();
    let ns = ["net", "pid", "ipc"]
        .iter()
        .filter_map(|n| {
            let md = std::fs::metadata(format!("/proc/self/ns/{n}")).ok()?;
            Some((n.to_string(), md.ino().to_string()))
        })
        .collect();
    let interfaces = std::fs::read_to_string("/proc/self/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
        .filter(|n| !n.is_empty() && n != "lo")
        .collect();
    let mut identities = BTreeMap::new();
    for m in effective.mounts.iter().filter(|m| m.is_bind()) {
        let Some(source) = m.source.as_deref() else {
            continue;
        };
        let identity = match std::fs::metadata(source) {
            Ok(md) if md.is_dir() => std::fs::read_dir(source).ok().map(|rd| {
                probe::listing(
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned()),
                )
            }),
            Ok(md) => Some(format!("file {}", md.len())),
            Err(_) => None,
        };
        if let Some(i) = identity {
            identities.insert(m.destination.clone(), i);
        }
    }
    let mut device_nodes = Vec::new();
    let mut device_by_path = BTreeMap::new();
    for path in effective.devices.iter().filter_map(|d| d.path.as_deref()) {
        let Ok(md) = std::fs::metadata(path) else {
            continue;
        };
        let kind = if md.file_type().is_char_device() {
            'c'
        } else if md.file_type().is_block_device() {
            'b'
        } else {
            continue;
        };
        let rdev = md.rdev();
        let (major, minor) = (
            nix::sys::stat::major(rdev) as u32,
            nix::sys::stat::minor(rdev) as u32,
        );
        device_nodes.push((kind, major, minor));
        device_by_path.insert(path.to_string(), format!("{kind} {major}:{minor}"));
    }
    let inodes = effective
        .mounts
        .iter()
        .filter(|m| m.is_bind())
        .filter_map(|m| {
            let md = std::fs::metadata(m.source.as_deref()?).ok()?;
            let dev = md.dev();
            Some((
                m.destination.clone(),
                format!(
                    "{}:{}:{}",
                    nix::sys::stat::major(dev),
                    nix::sys::stat::minor(dev),
                    md.ino()
                ),
            ))
        })
        .collect();
    let resolver = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|ns| ns.trim().to_string())
        .next();
    let resolver_on_loopback = resolver
        .as_deref()
        .is_some_and(|ns| ns.starts_with("127.") || ns == "::1");
    // The probe's own attempt, made from the host: a UDP socket connected to the resolver.
    let resolver_reachable = resolver.as_deref().map(|ns| {
        ns.parse::<std::net::IpAddr>().is_ok_and(|ip| {
            let any: std::net::SocketAddr = if ip.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            std::net::UdpSocket::bind(any)
                .and_then(|s| s.connect((ip, 53)))
                .is_ok()
        })
    });
    HostView {
        ns,
        interfaces,
        identities,
        device_nodes,
        device_by_path,
        inodes,
        engine_metrics: engine_metrics.is_some(),
        engine_metrics_socket: engine_metrics
            .and_then(|p| std::fs::metadata(p).ok())
            .is_some_and(|m| m.file_type().is_socket()),
        resolver_on_loopback,
        resolver_reachable,
    }
}

/// A TCP listener on the host's `127.0.0.1` that writes the nonce to whoever connects, for as
/// long as it lives.
pub(super) struct Loopback {
    pub(super) port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Loopback {
    pub(super) async fn start(nonce: &str) -> std::io::Result<Loopback> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let nonce = nonce.to_string();
        let task = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            while let Ok((mut conn, _)) = listener.accept().await {
                let nonce = nonce.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        conn.write_all(nonce.as_bytes()),
                    )
                    .await;
                });
            }
        });
        Ok(Loopback { port, task })
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.task.abort();
    }
}
