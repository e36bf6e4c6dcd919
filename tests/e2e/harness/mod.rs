//! The end-to-end test harness.
//!
//! Every e2e test body runs through [`isolated`]: the test (in libtest's process, the "parent")
//! re-executes itself as `unshare -m --propagation private <this test binary> --exact <test>`
//! (the "child"). The child gets a private mount namespace with its own tmpfs on
//! `/run/docker/plugins` (and `/run/containerd`), a fresh per-test dir `/tmp/pd-XXXXXX/`, and an
//! [`Env`] to start real dockerds, plugd daemons and CLIs with per-test paths. Afterwards — also
//! when the test panics or times out — the child stops every process it started (by pid),
//! unmounts everything it mounted, removes the test dir, and only then re-raises the panic.
//! The parent streams the child's output (libtest captures it like any test output), checks that
//! nothing of the child survived, and fails if the child failed.
//!
//! ```ignore
//! #[test]
//! fn volume_roundtrip() {
//!     harness::isolated(|env| {
//!         let d = env.dockerd();
//!         env.import_busybox(&d);
//!         let p = env.plugd(&["--call-timeout", "2s"]);
//!         env.docker(Cli::Docker28, &d, ["volume", "ls"]).assert_ok();
//!         env.plugd_cli(&p, ["ls"]).assert_ok();
//!     })
//! }
//! ```
//!
//! Environment knobs: `PLUGD_E2E_TIMEOUT` (seconds per test, default 300), `PLUGD_E2E_KEEP=1`
//! (keep the test dir of a failed test for inspection).

mod artifacts;
mod bundle;
mod cmd;
mod daemons;
mod mounts;
mod procs;
mod pty;
mod registry;
mod util;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::BufRead as _;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

pub use artifacts::{
    CACHE_DIR, EXAMPLE_VOLUME_GUEST, FAULT_GUEST, STATIC_PLUGIN_CONFIG, STATIC_PLUGIN_IN_ROOTFS,
    WASM_CACHE_DIR, busybox_rootfs_tar, example_volume_wasm, fault_guest_wasm, plugd_binary,
    python_volume_wasm, static_plugin_binary, static_plugin_config, target_dir, wasm_guest,
};
pub use bundle::Bundle;
pub use cmd::{Cli, Cmd, DEFAULT_TIMEOUT, Output};
pub use daemons::{Dockerd, Endpoint, LegacyPlugin, Plugd, Proc};
pub use mounts::{MountEntry, mount_tmpfs, mountinfo, mounts_under};
pub use procs::{ProcId, all_pids, descendants, kill_and_wait, reap_zombie_children};
pub use pty::{PtyOutput, PtySession};
pub use registry::{Registry, base64, sha256};
pub use util::{
    HttpResponse, http, normalize_ids, ping, random_suffix, tail, wait_for, wait_for_socket,
};

use daemons::Tracked;

/// Where engine-facing plugin sockets live (a private tmpfs in every isolated test).
pub const PLUGIN_SOCKET_DIR: &str = "/run/docker/plugins";
/// containerd's fixed state dir (shim sockets); also a private tmpfs in every isolated test.
const CONTAINERD_RUN_DIR: &str = "/run/containerd";
/// Where dockerd creates the FIFOs of legacy log plugins (a fixed path); private per test.
pub const ENGINE_LOGGING_DIR: &str = "/run/docker/logging";
/// The image name [`Env::import_busybox`] creates.
pub const BUSYBOX_IMAGE: &str = "busybox:local";

const CHILD_ENV: &str = "PLUGD_E2E_CHILD";
const DIR_ENV: &str = "PLUGD_E2E_DIR";
const TIMEOUT_ENV: &str = "PLUGD_E2E_TIMEOUT";
const KEEP_ENV: &str = "PLUGD_E2E_KEEP";
const MARKER: &str = "plugd-e2e-child:";
const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(300);

/// State shared between a test's [`Env`], its daemon handles and the cleanup (which may run on
/// the watchdog thread).
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub procs: Mutex<Vec<Tracked>>,
    pub exec_roots: Mutex<Vec<PathBuf>>,
    /// Mount ids under the test dir, /run/docker/plugins and /run/containerd that existed before
    /// the test (copies of the host's mounts): never unmounted by the cleanup.
    pub baseline_mounts: Vec<u32>,
}

/// Runs `f` as an isolated end-to-end test (see the module docs). Call it as the whole body of
/// a `#[test]` function.
#[track_caller]
pub fn isolated(f: impl FnOnce(&Env)) {
    isolated_then(f, |()| {});
}

/// Like [`isolated`], and then — in the child, after the cleanup succeeded, still inside the
/// private mount namespace — runs `after` with what `f` returned. Used to check the cleanup.
#[track_caller]
pub fn isolated_then<T>(f: impl FnOnce(&Env) -> T, after: impl FnOnce(T)) {
    if std::env::var_os(CHILD_ENV).is_some() {
        run_child(f, after);
    } else {
        run_parent(false);
    }
}

/// Like [`isolated`], in a network namespace of the test's own too (only `lo`, up): for tests
/// whose plugins or dockerd create interfaces, bridges or routes, which then never touch the
/// host's network and vanish with the namespace. plugd and dockerd both run in it, as they must
/// share one (dockerd moves the interfaces a network plugin made in its namespace).
#[track_caller]
pub fn isolated_in_netns(f: impl FnOnce(&Env)) {
    if std::env::var_os(CHILD_ENV).is_some() {
        let lo = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("run `ip` (iproute2; see .ci/setup)");
        assert!(lo.success(), "ip link set lo up: {lo}");
        run_child(f, |()| {});
    } else {
        run_parent(true);
    }
}

/// True inside the isolated child process of a test.
pub fn in_isolated_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

fn test_timeout() -> Duration {
    std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_TEST_TIMEOUT, Duration::from_secs)
}

fn keep_on_failure() -> bool {
    std::env::var_os(KEEP_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

// ---------------------------------------------------------------------------------------------
// Parent side

#[track_caller]
fn run_parent(netns: bool) {
    let thread = std::thread::current();
    let name = match thread.name() {
        Some(n) if n != "main" => n.to_owned(),
        _ => panic!(
            "harness::isolated must run on a libtest test thread (its name is the test's path)"
        ),
    };
    // Not `current_exe()`: when the test binary is rebuilt while tests run, that path names a new
    // (or a "(deleted)") file; `/proc/<our pid>/exe` keeps pointing at the binary that is running.
    let exe = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
    let dir = reserve_test_dir();
    let timeout = test_timeout();
    let (reader, writer) = std::io::pipe().expect("pipe");
    let mut cmd = Command::new("unshare");
    cmd.arg("-m");
    if netns {
        cmd.arg("-n");
    }
    cmd.args(["--propagation", "private", "--"])
        .arg(&exe)
        .args([
            "--exact",
            &name,
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .args(["--color", "never"])
        .env(CHILD_ENV, "1")
        .env(DIR_ENV, &dir)
        .stdin(Stdio::null())
        .stdout(writer.try_clone().expect("dup pipe"))
        .stderr(writer);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `unshare` (util-linux; see .ci/setup): {e}"));
    drop(cmd); // our copies of the pipe's write end: EOF must come when the child's are closed
    let child_id = ProcId::of(child.id() as i32).expect("child has a /proc entry");

    enum Msg {
        Line(String),
        Eof,
        Exited(std::io::Result<std::process::ExitStatus>),
    }
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_owned();
                    if tx.send(Msg::Line(line)).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Msg::Eof);
    });
    std::thread::spawn(move || {
        let _ = tx2.send(Msg::Exited(child.wait()));
    });

    // The child enforces `timeout` itself (watchdog + cleanup); this is the backstop.
    let hard_deadline = started + timeout + Duration::from_secs(90);
    let mut child_ns: Option<String> = None;
    // Holding the child's namespace open keeps its inode number from being reused by another
    // test's namespace before the leftover check below.
    let mut child_ns_fd: Option<std::fs::File> = None;
    let mut status = None;
    let mut eof = false;
    let mut killed = false;
    while status.is_none() || !eof {
        let wait = if status.is_some() {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(1)
        };
        match rx.recv_timeout(wait) {
            Ok(Msg::Line(line)) => {
                // libtest prints "test x ... " without a newline, so the marker can be mid-line.
                if let Some(rest) = line.split_once(MARKER).map(|(_, rest)| rest) {
                    child_ns = rest
                        .split_whitespace()
                        .find_map(|kv| kv.strip_prefix("mntns="))
                        .map(str::to_owned);
                    child_ns_fd = child_ns.as_deref().and_then(|ns| hold_mnt_ns(child_id, ns));
                }
                // println!, not a raw write: libtest captures it (shown on failure / --nocapture).
                println!("{line}");
            }
            Ok(Msg::Eof) => eof = true,
            Ok(Msg::Exited(s)) => status = Some(s.expect("waiting for the isolated child")),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if status.is_some() {
                    // Exited, but something it started still holds the output pipe.
                    break;
                }
                if !killed && Instant::now() >= hard_deadline {
                    println!(
                        "harness: child of `{name}` still running after {:?}: SIGKILL",
                        started.elapsed()
                    );
                    child_id.signal(Signal::SIGKILL);
                    killed = true;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = status.expect("child exit status");

    let mut problems = Vec::new();
    match &child_ns {
        None => problems.push(format!(
            "the child never reached harness::isolated (no `{MARKER}` line): does `unshare -m` work (it needs root)? was `--exact {name}` the right test?"
        )),
        Some(_) if child_ns_fd.is_none() => {
            println!("harness: note: could not hold the child's mount namespace; skipping the leftover check");
        }
        Some(ns) => {
            let left = procs::in_mnt_ns(ns, -1);
            if !left.is_empty() {
                let names: Vec<String> = left.iter().map(ProcId::to_string).collect();
                problems.push(format!("processes of the test survived its child: {}", names.join("; ")));
                let still = procs::kill_and_wait(&left, Duration::from_secs(10));
                if !still.is_empty() {
                    problems.push(format!("could not kill: {still:?}"));
                }
            }
        }
    }
    let kept = keep_on_failure() && !status.success();
    drop(child_ns_fd);
    if dir.exists() && !kept {
        problems.push(format!(
            "the test dir {} was not removed by the child",
            dir.display()
        ));
        // In this (the host's) namespace nothing is mounted under it, so this only removes files.
        if mounts::mounts_under(&[&dir]).is_empty() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    if !status.success() {
        panic!(
            "isolated test `{name}` failed in its child process ({status}) after {:?}; its output is above{}",
            started.elapsed(),
            problems
                .iter()
                .map(|p| format!("\n- {p}"))
                .collect::<String>()
        );
    }
    if !problems.is_empty() {
        panic!(
            "isolated test `{name}` passed but the harness found problems:{}",
            problems
                .iter()
                .map(|p| format!("\n- {p}"))
                .collect::<String>()
        );
    }
}

/// Opens `/proc/<child>/ns/mnt` if it still is the namespace `ns` (`mnt:[<inode>]`).
fn hold_mnt_ns(child: ProcId, ns: &str) -> Option<std::fs::File> {
    use std::os::unix::fs::MetadataExt as _;
    let inode: u64 = ns.strip_prefix("mnt:[")?.strip_suffix(']')?.parse().ok()?;
    let f = std::fs::File::open(format!("/proc/{}/ns/mnt", child.pid)).ok()?;
    (child.is_alive() && f.metadata().ok()?.ino() == inode).then_some(f)
}

/// Creates a fresh, short `/tmp/pd-XXXXXX` (unix socket paths must stay below 108 bytes).
fn reserve_test_dir() -> PathBuf {
    for _ in 0..100 {
        let dir = PathBuf::from(format!("/tmp/pd-{}", util::random_suffix(6)));
        match std::fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("mkdir {}: {e}", dir.display()),
        }
    }
    panic!("could not create a unique /tmp/pd-* dir");
}

// ---------------------------------------------------------------------------------------------
// Child side

struct Cleanup {
    shared: Arc<Shared>,
    mnt_ns: String,
    done: Mutex<bool>,
}

fn run_child<T>(f: impl FnOnce(&Env) -> T, after: impl FnOnce(T)) {
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("PLUGD_E2E_DIR is set in the child"));
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    let me = std::process::id() as i32;
    let mnt_ns = procs::mnt_ns(me).expect("own mount namespace");
    let parent_ns = procs::mnt_ns(nix::unistd::getppid().as_raw());
    if parent_ns.as_deref() == Some(mnt_ns.as_str())
        || procs::mnt_ns(1).as_deref() == Some(mnt_ns.as_str())
    {
        panic!(
            "{CHILD_ENV} is set but this process is not in a private mount namespace; run tests via harness::isolated"
        );
    }
    // Orphans (containerd shims daemonize) are re-parented to us, so the cleanup finds all of them.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    println!(
        "\n{MARKER} mntns={mnt_ns} dir={} test={test}",
        dir.display()
    );

    let prefixes = [
        dir.as_path(),
        Path::new(PLUGIN_SOCKET_DIR),
        Path::new(CONTAINERD_RUN_DIR),
        Path::new(ENGINE_LOGGING_DIR),
    ];
    let shared = Arc::new(Shared {
        dir: dir.clone(),
        procs: Mutex::new(Vec::new()),
        exec_roots: Mutex::new(Vec::new()),
        baseline_mounts: mounts::mounts_under(&prefixes)
            .iter()
            .map(|m| m.id)
            .collect(),
    });
    let cleanup = Arc::new(Cleanup {
        shared: shared.clone(),
        mnt_ns: mnt_ns.clone(),
        done: Mutex::new(false),
    });

    let finished = Arc::new(AtomicBool::new(false));
    procs::spawn_orphan_reaper(finished.clone());
    let timeout = test_timeout();
    {
        let cleanup = cleanup.clone();
        let finished = finished.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if finished.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            if finished.load(Ordering::SeqCst) {
                return;
            }
            eprintln!(
                "harness: TIMEOUT: the test ran longer than {timeout:?} ({TIMEOUT_ENV}); cleaning up and failing"
            );
            for e in cleanup.run(true) {
                eprintln!("harness: cleanup: {e}");
            }
            std::process::exit(101);
        });
    }

    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| {
        setup_child_mounts();
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("test dir {}: {e}", dir.display()))
            .count();
        assert_eq!(entries, 0, "test dir {} is not empty", dir.display());
        let env = Env {
            shared: shared.clone(),
            test: test.clone(),
            mnt_ns: mnt_ns.clone(),
            counters: Mutex::new(HashMap::new()),
        };
        f(&env)
    }));
    finished.store(true, Ordering::SeqCst);
    let failed = result.is_err();
    eprintln!(
        "harness: test body {} after {:?}; cleaning up",
        if failed { "FAILED" } else { "passed" },
        started.elapsed()
    );
    let errors = cleanup.run(failed);
    for e in &errors {
        eprintln!("harness: cleanup: {e}");
    }
    match result {
        Err(panic) => resume_unwind(panic),
        Ok(value) => {
            if !errors.is_empty() {
                panic!("cleanup of `{test}` failed:\n- {}", errors.join("\n- "));
            }
            after(value);
        }
    }
}

fn setup_child_mounts() {
    // Private to this namespace: dockerd's managed plugins use /run/docker/plugins/<id>/ (fixed
    // path), legacy plugins and plugd's engine sockets /run/docker/plugins/<name>.sock, and
    // containerd shims /run/containerd/s/.
    mounts::mount_tmpfs(Path::new(PLUGIN_SOCKET_DIR), "mode=0755,size=64m")
        .unwrap_or_else(|e| panic!("{e}"));
    mounts::mount_tmpfs(Path::new(CONTAINERD_RUN_DIR), "mode=0711,size=64m")
        .unwrap_or_else(|e| panic!("{e}"));
    mounts::mount_tmpfs(Path::new(ENGINE_LOGGING_DIR), "mode=0700,size=64m")
        .unwrap_or_else(|e| panic!("{e}"));
}

impl Cleanup {
    /// Stops every process, unmounts, removes the test dir. Runs once; returns what failed.
    fn run(&self, failed: bool) -> Vec<String> {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        if *done {
            return Vec::new();
        }
        *done = true;
        let mut errors = Vec::new();
        let me = std::process::id() as i32;
        let dir = &self.shared.dir;

        // 1. Registered daemons still running (their handles were leaked, or we are the watchdog).
        let mut tracked = self
            .shared
            .procs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        tracked.sort_by_key(|t| t.order);
        for t in tracked.iter().filter(|t| t.id.is_alive()) {
            eprintln!("harness: stopping {} ({})", t.label, t.id);
            if !procs::terminate(t.id, t.grace) {
                errors.push(format!("could not stop {} ({})", t.label, t.id));
            }
        }
        // 2. The containerd of every dockerd the test started.
        for exec_root in self
            .shared
            .exec_roots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if let Some(c) = daemons::containerd_pid(exec_root) {
                eprintln!(
                    "harness: stopping containerd of {} ({c})",
                    exec_root.display()
                );
                procs::terminate(c, Duration::from_secs(10));
            }
        }
        // 3. Everything else: our descendants (we are a subreaper), anything in our mount
        //    namespace, anything whose root is under the test dir (plugins, containers).
        for round in 0..5 {
            let mut left = procs::descendants(&[me]);
            left.extend(procs::in_mnt_ns(&self.mnt_ns, me));
            for r in procs::rooted_under(dir) {
                left.push(r);
            }
            let roots: Vec<i32> = left.iter().map(|p| p.pid).collect();
            left.extend(procs::descendants(&roots));
            left.sort();
            left.dedup();
            if left.is_empty() {
                break;
            }
            if round == 4 {
                errors.push(format!(
                    "processes survived SIGKILL: {}",
                    left.iter()
                        .map(ProcId::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
                break;
            }
            for p in &left {
                eprintln!("harness: killing leftover {p}");
            }
            procs::kill_and_wait(&left, Duration::from_secs(10));
        }
        procs::reap_zombie_children();

        // 4. On failure, the daemons' story.
        if failed {
            print_log_tails(dir);
        }

        // 5. Mounts under the test dir, /run/docker/plugins and /run/containerd.
        let prefixes = [
            dir.as_path(),
            Path::new(PLUGIN_SOCKET_DIR),
            Path::new(CONTAINERD_RUN_DIR),
            Path::new(ENGINE_LOGGING_DIR),
        ];
        errors.extend(mounts::unmount_all_under(
            &prefixes,
            &self.shared.baseline_mounts,
        ));

        // 6. The test dir.
        if failed && keep_on_failure() {
            eprintln!("harness: {KEEP_ENV} is set: keeping {}", dir.display());
        } else if !mounts::mounts_under(&[dir.as_path()]).is_empty() {
            errors.push(format!(
                "not removing {}: mounts are left under it",
                dir.display()
            ));
        } else if let Err(e) = std::fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            errors.push(format!("rm -rf {}: {e}", dir.display()));
        }
        errors
    }
}

fn print_log_tails(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    for log in logs {
        eprintln!(
            "---- harness: tail of {} ----\n{}",
            log.display(),
            tail(&log, 80)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The test environment

/// What an isolated test body gets: its dir, and constructors for daemons, CLIs and bundles.
pub struct Env {
    shared: Arc<Shared>,
    test: String,
    mnt_ns: String,
    counters: Mutex<HashMap<&'static str, usize>>,
}

impl Env {
    fn next(&self, prefix: &'static str) -> String {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(prefix).or_insert(0);
        *n += 1;
        format!("{prefix}{n}")
    }

    /// The per-test directory (`/tmp/pd-XXXXXX`); removed after the test.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// `dir()/name`.
    pub fn path(&self, name: impl AsRef<Path>) -> PathBuf {
        self.shared.dir.join(name)
    }

    /// The test's path as libtest names it (`module::test`).
    pub fn test_name(&self) -> &str {
        &self.test
    }

    /// Ids of mounts under the test dir, /run/docker/plugins and /run/containerd that existed
    /// before the test started (copies of the host's); the cleanup leaves them alone.
    pub fn preexisting_mount_ids(&self) -> &[u32] {
        &self.shared.baseline_mounts
    }

    /// This test's mount namespace (`mnt:[...]`).
    pub fn mnt_ns(&self) -> &str {
        &self.mnt_ns
    }

    /// Starts a dockerd (`d1`, `d2`, ...) with per-test paths and waits until `/_ping` answers.
    #[track_caller]
    pub fn dockerd(&self) -> Dockerd {
        self.dockerd_with(&[])
    }

    /// [`Env::dockerd`] with extra dockerd arguments (e.g. `--live-restore`).
    #[track_caller]
    pub fn dockerd_with(&self, extra: &[&str]) -> Dockerd {
        Dockerd::launch(self.shared.clone(), &self.next("d"), extra)
    }

    /// [`Env::dockerd`] with `--authorization-plugin=<plugin>`: every Engine API call of this
    /// dockerd (its `/_ping` at start included) goes through that plugin. dockerd looks the plugin
    /// up at start (after its own plugins are restored) and refuses to start without it, so a
    /// plugd-served plugin must already be enabled and allowing, its socket in
    /// [`PLUGIN_SOCKET_DIR`].
    #[track_caller]
    pub fn dockerd_with_authz(&self, plugin: &str) -> Dockerd {
        self.dockerd_with(&[&format!("--authorization-plugin={plugin}")])
    }

    /// Imports [`BUSYBOX_IMAGE`] (`busybox:local`) into a daemon from the cached rootfs tarball.
    #[track_caller]
    pub fn import_busybox<E: Endpoint + ?Sized>(&self, target: &E) {
        let tar = busybox_rootfs_tar();
        let started = Instant::now();
        self.docker_cmd(
            Cli::Docker28,
            target,
            ["import", "--change", r#"CMD ["sh"]"#],
        )
        .arg(&tar)
        .arg(BUSYBOX_IMAGE)
        .run()
        .assert_ok();
        eprintln!(
            "harness: imported {BUSYBOX_IMAGE} in {:?}",
            started.elapsed()
        );
    }

    /// Starts `plugd daemon` (`p1`, `p2`, ...) with `--data-root`/`--exec-root`/`-H` in the
    /// test dir, `--plugin-socket-dir /run/docker/plugins`, `--wasm-cache` [`WASM_CACHE_DIR`]
    /// (unless `args` has one), then `args`; waits until `/_ping` answers.
    #[track_caller]
    pub fn plugd(&self, args: &[&str]) -> Plugd {
        Plugd::launch(
            self.shared.clone(),
            &self.next("p"),
            args,
            Path::new(WASM_CACHE_DIR),
        )
    }

    /// A docker CLI command against a daemon (dockerd or plugd), not yet run. It uses a per-test
    /// `DOCKER_CONFIG` and ignores `DOCKER_HOST` & co. from the environment.
    pub fn docker_cmd<E, I, S>(&self, cli: Cli, target: &E, args: I) -> Cmd
    where
        E: Endpoint + ?Sized,
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Cmd::new(cli.path())
            .arg("-H")
            .arg(target.host())
            .args(args)
            .env("DOCKER_CONFIG", self.path(".docker"))
            .env("DOCKER_CLI_HINTS", "false")
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_API_VERSION")
    }

    /// Runs a docker CLI command against a daemon; see [`Env::docker_cmd`].
    #[track_caller]
    pub fn docker<E, I, S>(&self, cli: Cli, target: &E, args: I) -> Output
    where
        E: Endpoint + ?Sized,
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.docker_cmd(cli, target, args).run()
    }

    /// A `plugd` CLI command (`plugd -H unix://<socket> ...`, also `PLUGD_HOST`), not yet run.
    pub fn plugd_cli_cmd<E, I, S>(&self, target: &E, args: I) -> Cmd
    where
        E: Endpoint + ?Sized,
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Cmd::new(plugd_binary())
            .arg("-H")
            .arg(target.host())
            .args(args)
            .env("PLUGD_HOST", target.host())
    }

    /// Runs the `plugd` CLI against a daemon; see [`Env::plugd_cli_cmd`].
    #[track_caller]
    pub fn plugd_cli<E, I, S>(&self, target: &E, args: I) -> Output
    where
        E: Endpoint + ?Sized,
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.plugd_cli_cmd(target, args).run()
    }

    /// Any command, with the default timeout.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Cmd {
        Cmd::new(program)
    }

    /// A new, empty bundle dir `dir()/bundles/<name>` (with `rootfs/`).
    pub fn bundle(&self, name: &str) -> Bundle {
        let dir = self.path("bundles").join(name);
        assert!(!dir.exists(), "bundle {name} already exists in this test");
        Bundle::new(dir)
    }

    /// A bundle of the static fixture plugin as a dockerd managed plugin: the fixture's
    /// config.json, the binary as `/static-plugin`, and `/etc/plugd-bundle` holding `name` (so two
    /// bundles never have identical layers, which dockerd 20.10 refuses: "content ... already exists").
    #[track_caller]
    pub fn static_plugin_bundle(&self, name: &str) -> Bundle {
        self.bundle(name)
            .config(&static_plugin_config())
            .copy(STATIC_PLUGIN_IN_ROOTFS, &static_plugin_binary(), 0o755)
            .file("etc/plugd-bundle", format!("{name}\n").as_bytes(), 0o644)
            .dir("data")
            .dir("run/docker/plugins")
    }

    /// Creates (not enables) the static fixture plugin `name` in `p` as a plugin of `types` playing
    /// a hostile one: it answers a method with the raw bytes of `/hostile/<Method>` when that file
    /// exists. Returns the plugin's id and that directory on the host, for the test to plant
    /// replies in (before or after the enable).
    #[track_caller]
    pub fn hostile_static_plugin(
        &self,
        p: &Plugd,
        name: &str,
        types: &[&str],
    ) -> (String, PathBuf) {
        let mut cfg = static_plugin_config();
        cfg["interface"]["types"] = serde_json::json!(types);
        cfg["env"]
            .as_array_mut()
            .expect("the fixture's config has env")
            .push(serde_json::json!({"name": "HOSTILE_DIR", "value": "/hostile"}));
        let bundle = self
            .bundle(name)
            .config(&cfg)
            .copy(STATIC_PLUGIN_IN_ROOTFS, &static_plugin_binary(), 0o755)
            .dir("data")
            .dir("hostile")
            .dir("run/docker/plugins");
        self.plugd_cli_cmd(p, ["create", name])
            .arg(bundle.path())
            .run()
            .assert_ok();
        let id = self
            .plugd_cli(p, ["inspect", "-f", "{{.Id}}", name])
            .assert_ok()
            .trimmed()
            .to_owned();
        let hostile = p
            .data_root()
            .join("plugins")
            .join(&id)
            .join("rootfs/hostile");
        (id, hostile)
    }

    /// Starts the static fixture plugin as a plain process, i.e. a legacy plugin `name` on
    /// `/run/docker/plugins/<name>.sock`, and waits for its socket.
    #[track_caller]
    pub fn legacy_static_plugin(&self, name: &str) -> LegacyPlugin {
        LegacyPlugin::spawn(self.shared.clone(), name)
    }

    /// Starts a background process, logging to `dir()/<label>.log`; stopped on drop/cleanup.
    #[track_caller]
    pub fn spawn(&self, label: &str, cmd: Cmd) -> Proc {
        Proc::spawn(self.shared.clone(), label, cmd)
    }
}
