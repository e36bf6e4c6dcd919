//! Long-running processes of a test: dockerd, plugd, and anything else started in the background.
//! Each is tracked by pid in the test's registry, logs to a file in the test dir, and is stopped
//! (SIGTERM, bounded wait, SIGKILL) on `stop()`, on drop, and by the final cleanup.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::Shared;
use super::cmd::Cmd;
use super::procs::{self, ProcId};
use super::util::{ping, tail};

/// How long a daemon may take to answer `/_ping` after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Something that serves the Docker Engine API on a unix socket (dockerd, plugd).
pub trait Endpoint {
    /// The API socket.
    fn socket(&self) -> &Path;
    /// `unix://<socket>`, for `-H` / `DOCKER_HOST`.
    fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }
}

/// Stop order in the final cleanup: plugd first (it may hold plugins dockerd talks to), dockerd last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum StopOrder {
    Plugd = 0,
    Other = 1,
    Dockerd = 2,
}

/// A process registered with the test's [`Shared`] registry.
#[derive(Clone, Debug)]
pub(crate) struct Tracked {
    pub id: ProcId,
    pub label: String,
    pub order: StopOrder,
    pub grace: Duration,
}

/// The shared machinery behind [`Dockerd`], [`Plugd`] and [`Proc`].
struct BgProcess {
    shared: Arc<Shared>,
    label: String,
    cmd: Cmd,
    log: PathBuf,
    order: StopOrder,
    grace: Duration,
    child: Option<Child>,
    id: Option<ProcId>,
    starts: u32,
}

impl BgProcess {
    fn new(
        shared: Arc<Shared>,
        label: &str,
        cmd: Cmd,
        order: StopOrder,
        grace: Duration,
    ) -> BgProcess {
        let log = shared.dir.join(format!("{label}.log"));
        BgProcess {
            shared,
            label: label.to_owned(),
            cmd,
            log,
            order,
            grace,
            child: None,
            id: None,
            starts: 0,
        }
    }

    fn start(&mut self) {
        assert!(
            self.id.is_none_or(|id| !id.is_alive()),
            "{} is already running",
            self.label
        );
        // Reap an earlier instance that died on its own: its zombie would keep its pid in use.
        if let Some(mut old) = self.child.take() {
            let _ = old.try_wait();
        }
        if let Some(old) = self.id.take() {
            self.unregister(old);
        }
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log.display()));
        let _ = writeln!(
            log,
            "==== harness: start #{} of {}: {}",
            self.starts,
            self.label,
            self.cmd.display()
        );
        let err = log.try_clone().expect("dup log fd");
        let mut c = self.cmd.to_command();
        c.stdin(Stdio::null()).stdout(log).stderr(err);
        // Register under the lock so a concurrent cleanup (watchdog) cannot miss this process.
        let mut reg = self.shared.procs.lock().unwrap_or_else(|p| p.into_inner());
        let child = c.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} (`{}`): {e}",
                self.label,
                self.cmd.display()
            )
        });
        let id = ProcId::of(child.id() as i32).expect("just-spawned child has a /proc entry");
        reg.push(Tracked {
            id,
            label: self.label.clone(),
            order: self.order,
            grace: self.grace,
        });
        drop(reg);
        self.child = Some(child);
        self.id = Some(id);
    }

    fn unregister(&self, id: ProcId) {
        self.shared
            .procs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|t| t.id != id);
    }

    /// Exit status if the process has exited (reaps it).
    fn try_exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Panics with the log tail if the process has already exited.
    #[track_caller]
    fn assert_running(&mut self, while_doing: &str) {
        if let Some(status) = self.try_exited() {
            panic!(
                "{} exited ({status}) while {while_doing}\n--- {} (tail) ---\n{}",
                self.label,
                self.log.display(),
                tail(&self.log, 60)
            );
        }
    }

    /// Waits until `ready()` or panics (process died, or timeout) with the log tail.
    #[track_caller]
    fn wait_ready(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ready() {
                return;
            }
            self.assert_running(&format!("waiting for {what}"));
            if Instant::now() >= deadline {
                panic!(
                    "{} did not get ready ({what}) within {START_TIMEOUT:?}\n--- {} (tail) ---\n{}",
                    self.label,
                    self.log.display(),
                    tail(&self.log, 60)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, bounded wait, SIGKILL. Idempotent; never panics (it runs from Drop).
    fn stop(&mut self) -> bool {
        let Some(id) = self.id.take() else {
            return true;
        };
        let gone = procs::terminate(id, self.grace);
        if let Some(mut c) = self.child.take() {
            let _ = c.try_wait();
        }
        self.unregister(id);
        if !gone {
            eprintln!("harness: could not stop {} ({id})", self.label);
        }
        gone
    }

    /// SIGKILL (a crash, as far as the process is concerned).
    fn kill(&mut self) {
        let Some(id) = self.id.take() else { return };
        procs::kill_and_wait(&[id], Duration::from_secs(10));
        if let Some(mut c) = self.child.take() {
            let _ = c.try_wait();
        }
        self.unregister(id);
    }

    fn pid(&self) -> Option<ProcId> {
        self.id.filter(ProcId::is_alive)
    }
}

impl Drop for BgProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real dockerd (Debian docker.io 20.10) with per-test paths.
pub struct Dockerd {
    proc: BgProcess,
    name: String,
    socket: PathBuf,
    data_root: PathBuf,
    exec_root: PathBuf,
}

impl Dockerd {
    pub(crate) fn launch(shared: Arc<Shared>, name: &str, extra: &[&str]) -> Dockerd {
        let base = shared.dir.join(name);
        std::fs::create_dir_all(&base).expect("mkdir dockerd dir");
        let config = base.join("daemon.json");
        // An explicit (empty) config file: never pick up the machine's /etc/docker/daemon.json.
        std::fs::write(&config, "{}\n").expect("write daemon.json");
        let socket = shared.dir.join(format!("{name}.sock"));
        let data_root = base.join("root");
        let exec_root = base.join("exec");
        let cmd = Cmd::new("/usr/sbin/dockerd")
            .arg("--config-file")
            .arg(&config)
            .args(["--iptables=false", "--bridge=none", "--storage-driver=vfs"])
            .arg("--data-root")
            .arg(&data_root)
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--pidfile")
            .arg(base.join("dockerd.pid"))
            .args(extra)
            // Debian's containerd, runc and shim, nothing from /usr/local.
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env_remove("DOCKER_HOST");
        shared
            .exec_roots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(exec_root.clone());
        // dockerd's own shutdown waits up to 10 s (+10 s) per stuck plugin.
        let proc = BgProcess::new(
            shared,
            name,
            cmd,
            StopOrder::Dockerd,
            Duration::from_secs(30),
        );
        let mut d = Dockerd {
            proc,
            name: name.to_owned(),
            socket,
            data_root,
            exec_root,
        };
        d.start();
        d
    }

    /// (Re)starts this dockerd with the same paths and waits until `/_ping` answers.
    #[track_caller]
    pub fn start(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let started = Instant::now();
        self.proc.start();
        let socket = self.socket.clone();
        self.proc.wait_ready("GET /_ping", || ping(&socket));
        eprintln!(
            "harness: {} answered /_ping after {:?}",
            self.name,
            started.elapsed()
        );
    }

    /// Stops dockerd (SIGTERM, it then stops its plugins and containerd) and, if still alive,
    /// the containerd it started.
    pub fn stop(&mut self) {
        let containerd = self.containerd_pid();
        self.proc.stop();
        if let Some(c) = containerd
            && c.is_alive()
        {
            procs::terminate(c, Duration::from_secs(10));
        }
    }

    /// SIGKILLs dockerd, like a crash. Its containerd dies with it (dockerd starts it with
    /// PDEATHSIG) and is reaped here, so [`Dockerd::start`] can follow at once; shims, plugins
    /// and containers keep running.
    pub fn kill(&mut self) {
        let containerd = self.containerd_pid();
        self.proc.kill();
        if let Some(c) = containerd {
            procs::wait_gone(&[c], Duration::from_secs(10));
        }
    }

    /// [`Dockerd::stop`] then [`Dockerd::start`].
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// Name within the test (`d1`, `d2`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://<socket>`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// `--data-root`.
    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    /// `--exec-root`.
    pub fn exec_root(&self) -> &Path {
        &self.exec_root
    }

    /// `<data-root>/plugins/<id>`: a managed plugin's state dir.
    pub fn plugin_dir(&self, plugin_id: &str) -> PathBuf {
        self.data_root.join("plugins").join(plugin_id)
    }

    /// `<data-root>/plugins/<id>/propagated-mount`: the host side of a plugin's propagatedMount.
    pub fn propagated_mount(&self, plugin_id: &str) -> PathBuf {
        self.plugin_dir(plugin_id).join("propagated-mount")
    }

    /// The daemon log file (stdout+stderr of every start).
    pub fn log_path(&self) -> &Path {
        &self.proc.log
    }

    /// The daemon log's contents.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.proc.log).unwrap_or_default()
    }

    /// dockerd's process, while it runs.
    pub fn pid(&self) -> Option<ProcId> {
        self.proc.pid()
    }

    /// The containerd this dockerd started (from `<exec-root>/containerd/containerd.pid`).
    pub fn containerd_pid(&self) -> Option<ProcId> {
        containerd_pid(&self.exec_root)
    }

    /// Panics (with the log tail) if dockerd has exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        self.proc.assert_running("the test ran");
    }
}

impl Endpoint for Dockerd {
    fn socket(&self) -> &Path {
        &self.socket
    }
}

/// The containerd a dockerd with this exec-root started, if it is alive.
pub(crate) fn containerd_pid(exec_root: &Path) -> Option<ProcId> {
    let text = std::fs::read_to_string(exec_root.join("containerd/containerd.pid")).ok()?;
    ProcId::of(text.trim().parse().ok()?).filter(ProcId::is_alive)
}

/// `plugd daemon` with per-test paths.
pub struct Plugd {
    proc: BgProcess,
    name: String,
    socket: PathBuf,
    data_root: PathBuf,
    exec_root: PathBuf,
}

impl Plugd {
    pub(crate) fn launch(
        shared: Arc<Shared>,
        name: &str,
        args: &[&str],
        wasm_cache: &Path,
    ) -> Plugd {
        let base = shared.dir.join(name);
        std::fs::create_dir_all(&base).expect("mkdir plugd dir");
        let socket = shared.dir.join(format!("{name}.sock"));
        let data_root = base.join("root");
        let exec_root = base.join("exec");
        let mut cmd = Cmd::new(super::artifacts::plugd_binary())
            .arg("daemon")
            .arg("--data-root")
            .arg(&data_root)
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--plugin-socket-dir")
            .arg(super::PLUGIN_SOCKET_DIR);
        if !args
            .iter()
            .any(|a| *a == "--wasm-cache" || a.starts_with("--wasm-cache="))
        {
            std::fs::create_dir_all(wasm_cache)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", wasm_cache.display()));
            cmd = cmd.arg("--wasm-cache").arg(wasm_cache);
        }
        cmd = cmd.args(args).env_remove("PLUGD_HOST");
        // Debug logs of our own crates in the test's log file, unless the test or the caller chose.
        if std::env::var_os("PLUGD_LOG").is_none()
            && !args.iter().any(|a| a.starts_with("--log-level"))
        {
            cmd = cmd.env(
                "PLUGD_LOG",
                "info,plugd=debug,plugd_core=debug,plugd_wasm=debug",
            );
        }
        let proc = BgProcess::new(shared, name, cmd, StopOrder::Plugd, Duration::from_secs(15));
        let mut p = Plugd {
            proc,
            name: name.to_owned(),
            socket,
            data_root,
            exec_root,
        };
        p.start();
        p
    }

    /// (Re)starts plugd with the same paths and arguments; waits until `/_ping` answers.
    #[track_caller]
    pub fn start(&mut self) {
        let started = Instant::now();
        self.proc.start();
        let socket = self.socket.clone();
        self.proc.wait_ready("GET /_ping", || ping(&socket));
        eprintln!(
            "harness: {} answered /_ping after {:?}",
            self.name,
            started.elapsed()
        );
    }

    /// SIGTERM, bounded wait, SIGKILL.
    pub fn stop(&mut self) {
        self.proc.stop();
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// [`Plugd::stop`] then [`Plugd::start`].
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// Name within the test (`p1`, `p2`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://<socket>`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// `--data-root`.
    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    /// `--exec-root`.
    pub fn exec_root(&self) -> &Path {
        &self.exec_root
    }

    /// The daemon log file.
    pub fn log_path(&self) -> &Path {
        &self.proc.log
    }

    /// The daemon log's contents.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.proc.log).unwrap_or_default()
    }

    /// plugd's process, while it runs.
    pub fn pid(&self) -> Option<ProcId> {
        self.proc.pid()
    }

    /// Panics (with the log tail) if plugd has exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        self.proc.assert_running("the test ran");
    }
}

impl Endpoint for Plugd {
    fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Any other background process of a test (a legacy plugin, a registry, ...).
pub struct Proc {
    proc: BgProcess,
}

impl Proc {
    pub(crate) fn spawn(shared: Arc<Shared>, label: &str, cmd: Cmd) -> Proc {
        let mut proc = BgProcess::new(
            shared,
            label,
            cmd,
            StopOrder::Other,
            Duration::from_secs(10),
        );
        proc.start();
        Proc { proc }
    }

    /// Its process, while it runs.
    pub fn pid(&self) -> Option<ProcId> {
        self.proc.pid()
    }

    /// SIGTERM, bounded wait, SIGKILL.
    pub fn stop(&mut self) {
        self.proc.stop();
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Sends a signal (if it is still running).
    pub fn signal(&self, sig: Signal) -> bool {
        self.proc.pid().is_some_and(|id| id.signal(sig))
    }

    /// Exit status, if it has exited.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        self.proc.try_exited()
    }

    /// Panics (with the log tail) if it has exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        self.proc.assert_running("the test ran");
    }

    /// Waits until `ready()`; panics with the log tail if the process dies or 60 s pass.
    #[track_caller]
    pub fn wait_ready(&mut self, what: &str, ready: impl FnMut() -> bool) {
        self.proc.wait_ready(what, ready);
    }

    /// The log file (stdout+stderr).
    pub fn log_path(&self) -> &Path {
        &self.proc.log
    }

    /// The log's contents.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.proc.log).unwrap_or_default()
    }
}

/// The static fixture plugin running as a plain process: a legacy plugin on
/// `/run/docker/plugins/<name>.sock`.
pub struct LegacyPlugin {
    /// The process.
    pub proc: Proc,
    /// Plugin name (what `docker volume create -d NAME` uses).
    pub name: String,
    /// Its socket.
    pub socket: PathBuf,
    /// Its data dir; volumes are `<data_dir>/volumes/<name>`.
    pub data_dir: PathBuf,
    /// JSON-lines log of every request it got.
    pub request_log: PathBuf,
}

impl LegacyPlugin {
    pub(crate) fn spawn(shared: Arc<Shared>, name: &str) -> LegacyPlugin {
        let socket = Path::new(super::PLUGIN_SOCKET_DIR).join(format!("{name}.sock"));
        let data_dir = shared.dir.join(format!("legacy-{name}"));
        let request_log = shared.dir.join(format!("legacy-{name}.requests.jsonl"));
        let cmd = Cmd::new(super::artifacts::static_plugin_binary())
            .arg(&socket)
            .env("DATA_DIR", &data_dir)
            .env("REQUEST_LOG", &request_log);
        let mut proc = Proc::spawn(shared, &format!("legacy-{name}"), cmd);
        let s = socket.clone();
        proc.wait_ready(&format!("a listener on {}", s.display()), || {
            std::os::unix::net::UnixStream::connect(&s).is_ok()
        });
        LegacyPlugin {
            proc,
            name: name.to_owned(),
            socket,
            data_dir,
            request_log,
        }
    }

    /// Every request logged so far, oldest first (`{"conn","nth","method","path","body","status","response"}`).
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.request_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("request log line is JSON"))
            .collect()
    }

    /// The request paths logged so far (`/VolumeDriver.Get`, ...).
    pub fn request_paths(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r["path"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}
