//! `plugd daemon`: wires the store, the runtimes, the manager and the two kinds of socket together,
//! and shuts them down in order on SIGTERM/SIGINT.

use crate::manager::{Manager, ManagerConfig, RuntimeSelector};
use anyhow::{Context, bail};
use plugd_core::runtime::{Runtime, RuntimeError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Flags of `plugd daemon`.
#[derive(clap::Args, Debug, Clone)]
pub struct DaemonArgs {
    /// Where plugins and their state live [rootless: $XDG_DATA_HOME/plugd].
    #[arg(long, default_value_os_t = crate::rootless::flag_default("data-root", "/var/lib/plugd").into())]
    pub data_root: PathBuf,
    /// Runtime state (socket markers, per-plugin runtime dirs); a tmpfs in normal use
    /// [rootless: $XDG_RUNTIME_DIR/plugd].
    #[arg(long, default_value_os_t = crate::rootless::flag_default("exec-root", "/run/plugd").into())]
    pub exec_root: PathBuf,
    /// The Engine API socket (root-equivalent: created 0660, root-owned)
    /// [rootless: unix://$XDG_RUNTIME_DIR/plugd/plugd.sock].
    #[arg(
        short = 'H',
        long = "host",
        default_value_t = crate::rootless::flag_default("host", "unix:///run/plugd/plugd.sock").to_string_lossy().into_owned()
    )]
    pub host: String,
    /// Where engine-facing plugin sockets go; dockerd looks only in /run/docker/plugins
    /// [rootless: $XDG_RUNTIME_DIR/plugd/plugins].
    #[arg(long, default_value_os_t = crate::rootless::flag_default("plugin-socket-dir", "/run/docker/plugins").into())]
    pub plugin_socket_dir: PathBuf,
    /// Compiled-component cache [default: <data-root>/wasm-cache].
    #[arg(long)]
    pub wasm_cache: Option<PathBuf>,
    /// Deadline of one wasm plugin call (dockerd gives up after 60 s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub call_timeout: Duration,
    /// Memory cap of one wasm plugin instance: all its linear memories and tables together, not
    /// each memory (e.g. 128MiB). A guest growing past it traps and gets a fresh instance.
    #[arg(long, default_value = "128MiB", value_parser = parse_size)]
    pub memory_limit: u64,
    /// How long enable waits for readiness when the API passes timeout=0, and at start.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub enable_timeout: Duration,
    /// How long a stopping plugin gets after SIGTERM before SIGKILL (dockerd: 10 s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub stop_grace: Duration,
    /// Largest plugin bundle `create` accepts (the upload, and the tar after gunzip).
    #[arg(long, default_value = "2GiB", value_parser = parse_size)]
    pub max_bundle_size: u64,
    /// A registry (`host[:port]`) that may be reached over plain HTTP when HTTPS fails, as
    /// dockerd's flag of that name; loopback registries always may. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Extra CA roots per registry, in dockerd's `certs.d` layout: `<dir>/<host[:port]>/*.crt`.
    #[arg(long, default_value = "/etc/docker/certs.d")]
    pub registry_certs_dir: PathBuf,
    /// How often running plugins are health-checked (and failed ones restarted).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub health_interval: Duration,
    /// The native runtime's sandbox init (a static binary from native-runtime/init) [default: a
    /// `plugd-init` next to this binary, or cargo's musl build of it].
    #[arg(long, env = "PLUGD_INIT")]
    pub init_binary: Option<PathBuf>,
    /// `plugd check`'s native probe (a static binary from native-runtime/probe) [default: a
    /// `plugd-probe` next to this binary, or cargo's musl build of it].
    #[arg(long, env = "PLUGD_PROBE")]
    pub probe_binary: Option<PathBuf>,
    /// `plugd check`'s wasm probe (the component from guest-examples/probe) [default: a
    /// `plugd-probe.wasm` next to this binary, or cargo's release build of it].
    #[arg(long, env = "PLUGD_PROBE_COMPONENT")]
    pub probe_component: Option<PathBuf>,
    /// TEST ONLY: weaken every sandbox on purpose (docs/check.md), to show `plugd check` finds it.
    #[arg(long, env = "PLUGD_TEST_FAULT", hide = true, value_name = "FAULTS")]
    pub test_fault: Option<String>,
    /// Build native sandboxes with MS_MOVE + chroot instead of pivot_root (for a ramfs root; the
    /// init also falls back by itself when pivot_root fails there).
    #[arg(long)]
    pub no_pivot: bool,
    /// Deadline of one call forwarded to a native plugin: under dockerd's longest (2 min), so plugd
    /// never pins a Mount dockerd has given up on.
    #[arg(long, default_value = "110s", value_parser = parse_duration)]
    pub native_call_timeout: Duration,
    /// Deadline of one AuthZ call (`AuthZPlugin.AuthZReq`/`AuthZRes`) to an authorization
    /// plugin, either runtime: past it plugd answers dockerd with a deny naming the plugin (every
    /// Engine API call waits for it; dockerd itself would wait forever).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub authz_timeout: Duration,
    /// The engine's metrics socket, which metrics collector plugins read (dockerd's is
    /// `<exec-root>/metrics.sock`: /var/run/docker/metrics.sock by default). A native collector
    /// gets it bound read-only at /run/docker/metrics.sock, a wasm one reads it through the
    /// `engine-metrics` import. No default: without it collectors get no metrics.
    #[arg(long)]
    pub engine_metrics_socket: Option<PathBuf>,
    /// Where the engine creates log plugins' FIFOs and names them from: dockerd's fixed
    /// `/run/docker/logging` (for a legacy plugin, which plugd's sockets are, the path it sends in
    /// `LogDriver.StartLogging` is the host path). A log plugin reaches only the FIFO of each
    /// StartLogging call in it (docs/protocol.md, log drivers).
    #[arg(long, default_value = plugd_core::protocol::logdriver::LOGGING_DIR)]
    pub engine_logging_dir: PathBuf,
    /// Threads that serve the plugin sockets, each a single-threaded runtime (socket/datapath.rs);
    /// 0: half the cores, 1 to 4.
    #[arg(long, default_value_t = 0)]
    pub data_threads: usize,
    /// Size at which a plugin's own log file (`plugd logs`) is rotated.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub plugin_log_size: u64,
    /// Files kept per plugin log, the current one included (bound: size × files).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub plugin_log_files: u32,
    /// Also serve `GET /metrics` (Prometheus text) over TCP here: `PORT` (on 127.0.0.1) or
    /// `HOST:PORT`. The API socket always serves it. Metrics name every plugin: give a
    /// non-loopback address only on a network you trust.
    #[arg(long, value_name = "[HOST:]PORT", value_parser = parse_metrics_addr)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "PLUGD_LOG", default_value = "info")]
    pub log_level: String,
}

/// Parses `500ms`, `2s`, `1m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => return Err(format!("invalid duration unit in {s:?} (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("duration {s:?} is out of range"))
}

/// Parses `--metrics-addr`: a bare port binds loopback.
pub fn parse_metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse()
        .map_err(|_| format!("invalid address {s:?}: want PORT or HOST:PORT (an IP address)"))
}

/// Parses `64MiB`, `1GiB`, `512KiB`, `100M`, or a bare number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        _ => return Err(format!("invalid size unit in {s:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

fn unix_path(host: &str) -> anyhow::Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => bail!("unsupported -H {host:?}: plugd listens on a unix socket only (unix:///path)"),
    }
}

/// Binds the API socket, replacing a stale one but never a live daemon's.
fn bind_api(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(parent) = path.parent() {
        crate::fsutil::create_dir_all(parent, 0o755)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!("{} exists and is not a socket", path.display());
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another daemon is already listening on {}", path.display());
        }
        std::fs::remove_file(path)?;
    }
    crate::fsutil::bind_unix(path, 0o660).with_context(|| format!("binding {}", path.display()))
}

/// Where a helper binary (`plugd-init`, `plugd-probe`) is when no flag names it: beside this
/// binary (an installed layout), else where cargo puts its musl build next to this binary's
/// profile dir. With `static_only` (the probe, which runs inside a plugin's rootfs) a dynamically
/// linked candidate — cargo's host build of the same crate beside plugd — is passed over.
fn default_static_binary(name: &str, static_only: bool) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let profile = dir.file_name()?;
    [
        dir.join(name),
        dir.join("../x86_64-unknown-linux-musl")
            .join(profile)
            .join(name),
    ]
    .into_iter()
    .find(|p| {
        p.is_file()
            && (!static_only
                || std::fs::read(p)
                    .ok()
                    .and_then(|b| plugd_native::is_static_elf(&b))
                    == Some(true))
    })
}

/// What a `plugd check` interrupted by plugd's death left: the probe's processes and cgroups
/// (native), the mounts and files of its scratch dir `<exec-root>/check/<nonce>`.
fn sweep_checks(dir: &Path, native: Option<&Arc<plugd_native::NativeRuntime>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let nonce = entry.file_name().to_string_lossy().into_owned();
        if let Some(native) = native {
            native.release_probe(&format!("check-{nonce}"));
        }
        let path = entry.path();
        if let Err(e) = crate::unmount::release(&path, &crate::unmount::lazy_unmount)
            .and_then(|()| crate::unmount::remove_dir_all(&path))
        {
            tracing::warn!(dir = %path.display(), error = %e, "cannot remove a check left by an earlier plugd");
        } else {
            tracing::info!(dir = %path.display(), "removed a check left by an earlier plugd");
        }
    }
}

/// The test-only sandbox weakenings `PLUGD_TEST_FAULT` names (docs/check.md), each logged.
fn test_faults(value: Option<&str>) -> anyhow::Result<Vec<plugd_core::check::fault::TestFault>> {
    use plugd_core::check::fault::{ENV, TestFault};
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let faults = TestFault::parse_list(value).map_err(anyhow::Error::msg)?;
    for f in &faults {
        tracing::warn!(
            fault = f.name(),
            "{ENV}: this plugd WEAKENS sandboxes on purpose (a test of plugd check)"
        );
    }
    Ok(faults)
}

/// Chooses the runtime by the entrypoint's bytes: a wasm component runs under wasm, anything else
/// under the native sandbox (when plugd has one: without `plugd-init` native bundles are refused).
fn selector(
    wasm: Arc<plugd_wasm::WasmRuntime>,
    native: std::result::Result<Arc<plugd_native::NativeRuntime>, String>,
) -> RuntimeSelector {
    Arc::new(move |spec| {
        let entry = spec
            .config
            .entrypoint
            .as_ref()
            .and_then(|e| e.first())
            .cloned()
            .unwrap_or_default();
        match plugd_wasm::entrypoint_kind(spec)? {
            plugd_wasm::EntrypointKind::Component => Ok(wasm.clone() as Arc<dyn Runtime>),
            plugd_wasm::EntrypointKind::CoreModule => Err(RuntimeError::Bundle(format!(
                "entrypoint {entry:?} is a core wasm module; plugd runs wasm components (build for wasm32-wasip2)"
            ))),
            plugd_wasm::EntrypointKind::NotWasm => match &native {
                Ok(native) => Ok(native.clone() as Arc<dyn Runtime>),
                Err(why) => Err(RuntimeError::Bundle(format!(
                    "entrypoint {entry:?} is not a wasm component, and the native runtime is unavailable: {why}"
                ))),
            },
        }
    })
}

fn native_runtime(
    args: &DaemonArgs,
    probe: Option<&Path>,
    faults: &[plugd_core::check::fault::TestFault],
) -> std::result::Result<Arc<plugd_native::NativeRuntime>, String> {
    let init = args
        .init_binary
        .clone()
        .or_else(|| default_static_binary("plugd-init", false))
        .ok_or("plugd-init not found (build native-runtime/init for x86_64-unknown-linux-musl, or pass --init-binary)")?;
    let mut builder = plugd_native::NativeRuntime::builder();
    if let Some(probe) = probe {
        builder = builder.probe_binary(probe);
    }
    builder
        .init_binary(&init)
        .call_timeout(args.native_call_timeout)
        .no_pivot(args.no_pivot)
        .engine_metrics_socket(args.engine_metrics_socket.clone())
        .engine_logging_dir(&args.engine_logging_dir)
        .test_faults(faults.to_vec())
        .build()
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(args: DaemonArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log_level).context("--log-level")?,
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    if crate::rootless::active() {
        // Before any thread exists: a multi-threaded process cannot enter a user namespace.
        crate::rootless::check_flags(&[
            args.data_root.as_os_str(),
            args.exec_root.as_os_str(),
            args.host.as_ref(),
            args.plugin_socket_dir.as_os_str(),
        ])
        .map_err(anyhow::Error::msg)?;
        crate::rootless::enter_user_namespace().map_err(anyhow::Error::msg)?;
        tracing::info!("rootless: serving wasm plugins only (docs/privileges.md, Rootless)");
    }
    let data_threads = match args.data_threads {
        0 => crate::socket::datapath::default_threads(),
        n => n,
    };
    crate::socket::datapath::install(data_threads).context("starting the data-path threads")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

async fn serve(args: DaemonArgs) -> anyhow::Result<()> {
    let api_path = unix_path(&args.host)?;
    crate::fsutil::create_dir_all(&args.data_root, 0o700)
        .with_context(|| format!("creating --data-root {}", args.data_root.display()))?;
    crate::fsutil::create_dir_all(&args.exec_root, 0o700)
        .with_context(|| format!("creating --exec-root {}", args.exec_root.display()))?;
    let cache = args
        .wasm_cache
        .clone()
        .unwrap_or_else(|| args.data_root.join("wasm-cache"));
    let faults = test_faults(args.test_fault.as_deref())?;
    let probe_binary = args
        .probe_binary
        .clone()
        .or_else(|| default_static_binary("plugd-probe", true));
    let probe_component = args
        .probe_component
        .clone()
        .or_else(plugd_wasm::default_probe_component);
    if probe_binary.is_none() || probe_component.is_none() {
        tracing::warn!(
            native = ?probe_binary,
            wasm = ?probe_component,
            "a plugd check probe was not found: that runtime's column will say unavailable"
        );
    }
    let wasm = plugd_wasm::WasmRuntime::builder()
        .cache_dir(&cache)
        .call_timeout(args.call_timeout)
        .memory_limit(usize::try_from(args.memory_limit).unwrap_or(usize::MAX))
        .engine_metrics_socket(args.engine_metrics_socket.clone())
        .engine_logging_dir(&args.engine_logging_dir)
        .probe_component(probe_component.clone())
        .test_faults(faults.clone())
        .build()
        .context("starting the wasm runtime")?;
    if args.call_timeout > args.authz_timeout {
        // A wasm instance serves one call at a time: a guest stuck past the AuthZ deadline keeps
        // every later AuthZ call of its plugin waiting (and denied) until the call deadline.
        tracing::warn!(
            call_timeout = ?args.call_timeout,
            authz_timeout = ?args.authz_timeout,
            "--call-timeout is longer than --authz-timeout: a stuck wasm authz plugin denies every \
             API call at the AuthZ deadline until the wasm call deadline ends it (docs/protocol.md §5)"
        );
    }
    let native = if crate::rootless::active() {
        Err(crate::rootless::NATIVE_REFUSED.to_string())
    } else {
        native_runtime(&args, probe_binary.as_deref(), &faults)
    };
    let wasm = Arc::new(wasm);
    let probes = crate::manager::ProbeRuntimes {
        native: native.as_ref().ok().map(|n| n.clone() as Arc<dyn Runtime>),
        wasm: Some(wasm.clone() as Arc<dyn Runtime>),
        engine_metrics: args.engine_metrics_socket.clone(),
        probe_binary: probe_binary.clone(),
    };
    if let Err(why) = &native {
        tracing::warn!("native runtime unavailable: {why}");
    }
    let manager = Arc::new(
        Manager::new(
            ManagerConfig {
                data_root: args.data_root.clone(),
                exec_root: args.exec_root.clone(),
                plugin_socket_dir: args.plugin_socket_dir.clone(),
                default_enable_timeout: args.enable_timeout,
                stop_grace: args.stop_grace,
                max_bundle_size: args.max_bundle_size,
                authz_timeout: args.authz_timeout,
                registries: crate::distribution::client::Registries {
                    insecure: args.insecure_registries.clone(),
                    certs_dir: Some(args.registry_certs_dir.clone()),
                },
                plugin_logs: crate::observe::plugin_log::Limits {
                    size: args.plugin_log_size,
                    files: args.plugin_log_files,
                },
            },
            match crate::rootless::active() {
                true => crate::rootless::selector(selector(wasm, native.clone())),
                false => selector(wasm, native.clone()),
            },
        )
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", args.data_root.display()))?
        .with_probe_runtimes(probes),
    );
    let listener = bind_api(&api_path)?;
    let metrics = match args.metrics_addr {
        Some(addr) => Some(serve_metrics(addr, manager.clone()).await?),
        None => None,
    };
    sweep_checks(&args.exec_root.join("check"), native.as_ref().ok());
    manager.restore().await;
    let supervisor = {
        let manager = manager.clone();
        let every = args.health_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                manager.supervise().await;
            }
        })
    };
    tracing::info!(api = %api_path.display(), sockets = %args.plugin_socket_dir.display(), "plugd daemon ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let manager = manager.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| crate::api::handle(manager.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    tracing::info!("shutting down");
    supervisor.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    drop(listener);
    let _ = std::fs::remove_file(&api_path);
    conns.abort_all();
    manager.shutdown().await;
    Ok(())
}

/// Serves `GET /metrics` (and nothing else) on `addr` until aborted.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    manager: Arc<Manager>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --metrics-addr {addr}"))?;
    tracing::info!(%addr, "serving metrics");
    Ok(tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let manager = manager.clone();
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let manager = manager.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(if req.uri().path() == "/metrics"
                                    && req.method() == hyper::Method::GET
                                {
                                    crate::api::metrics_response(&manager)
                                } else {
                                    let mut r = hyper::Response::new(crate::api::text_body("404 page not found\n"));
                                    *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                    r
                                })
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("2h").is_err());
        assert_eq!(parse_size("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert!(parse_size("12parsecs").is_err());
        assert_eq!(
            parse_metrics_addr("9323").unwrap().to_string(),
            "127.0.0.1:9323"
        );
        assert_eq!(
            parse_metrics_addr("[::1]:9323").unwrap().to_string(),
            "[::1]:9323"
        );
        assert!(parse_metrics_addr("localhost:9323").is_err());
    }
}
