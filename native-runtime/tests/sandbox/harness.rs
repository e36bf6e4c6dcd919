//! Root-only test harness: every test body runs in a re-executed copy of this test binary under
//! `unshare -m --propagation private` (as `tests/e2e/harness` does), so the mounts the runtime makes
//! (rshared propagated-mount dirs, the plugin's own mounts) never reach the host's namespace.
//!
//! In the child, the body gets an [`Env`]: a fresh dir `/tmp/pn-XXXXXXXX/` with a plugin rootfs
//! built from busybox-static and the static fixture plugin. Afterwards, also when the body
//! panicked, the child kills every process it started (it is a child subreaper, so orphans are its
//! own), kills and removes the plugin cgroups (`plugd-*`) recorded in any `state.json` left in a
//! state dir, unmounts everything under the dir and removes it. Without root the tests are skipped
//! with a note.

use plugd_core::config::Settings;
use plugd_core::{PluginConfig, PluginSpec};
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PLUGD_NATIVE_TEST_CHILD";
/// The static fixture's managed-plugin config (`static.sock`, `/static-plugin`, propagated `/data`).
pub const STATIC_PLUGIN_CONFIG: &str =
    include_str!("../../../tests/fixtures/static-plugin/config.json");
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// Runs `f` isolated (see the module docs). Call it as the whole body of a `#[test]`.
pub fn isolated(f: impl FnOnce(&Env)) {
    if std::env::var_os(CHILD_ENV).is_some() {
        run_child(f);
    } else {
        run_parent();
    }
}

fn run_parent() {
    if !rustix::process::geteuid().is_root() {
        println!("skipped: the native runtime's sandbox tests need root");
        return;
    }
    let name = std::thread::current()
        .name()
        .expect("a libtest test thread is named after its test")
        .to_string();
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--"])
        .arg(&exe)
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run `unshare` (util-linux): {e}"));
    // print!, so libtest captures it (shown on failure or with --nocapture).
    print!("{}", String::from_utf8_lossy(&out.stdout));
    print!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "isolated test `{name}` failed in its child ({})",
        out.status
    );
    let ran = String::from_utf8_lossy(&out.stdout).contains("1 passed");
    assert!(ran, "the child did not run `{name}`");
}

fn run_child(f: impl FnOnce(&Env)) {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .expect("PR_SET_CHILD_SUBREAPER");
    let dir = PathBuf::from(format!("/tmp/pn-{}", &random_hex()[..8]));
    std::fs::create_dir_all(&dir).unwrap();
    let env = Env { dir: dir.clone() };
    let result = catch_unwind(AssertUnwindSafe(|| f(&env)));
    let problems = cleanup(&dir);
    if let Err(panic) = result {
        resume_unwind(panic);
    }
    assert!(problems.is_empty(), "cleanup: {problems:?}");
}

/// What a test body gets.
pub struct Env {
    dir: PathBuf,
}

/// One plugin's host layout under the test dir.
struct PluginDirs {
    /// `<dir>/<tag>/rootfs`.
    rootfs: PathBuf,
    /// `<dir>/<tag>/propagated-mount`.
    propagated: PathBuf,
    /// `<dir>/run/<id>`.
    runtime_dir: PathBuf,
    /// `<dir>/state/<id>`.
    state_dir: PathBuf,
}

impl Env {
    /// The test's scratch dir (`/tmp/pn-XXXXXXXX`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A plugin of the static fixture: its config.json with `edit` applied, a rootfs with
    /// `/static-plugin`, busybox as `/bin/{busybox,sh,sleep}`, and the dirs the manager would
    /// create (runtime dir and state dir 0700, propagated-mount dir).
    pub fn static_plugin(
        &self,
        tag: &str,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> PluginSpec {
        let id = random_hex();
        let dirs = PluginDirs {
            rootfs: self.dir.join(tag).join("rootfs"),
            propagated: self.dir.join(tag).join("propagated-mount"),
            runtime_dir: self.dir.join("run").join(&id),
            state_dir: self.dir.join("state").join(&id),
        };
        let r = &dirs.rootfs;
        for d in [
            "bin",
            "data",
            "run/docker/plugins",
            "proc",
            "sys",
            "dev",
            "etc",
            "tmp",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        copy_exe(&static_plugin_binary(), &r.join("static-plugin"));
        copy_exe(Path::new("/usr/bin/busybox"), &r.join("bin/busybox"));
        for applet in ["sh", "sleep", "cat", "echo"] {
            symlink("busybox", r.join("bin").join(applet)).unwrap();
        }
        std::fs::create_dir_all(&dirs.propagated).unwrap();
        for dir in [&dirs.runtime_dir, &dirs.state_dir] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }

        let mut json: serde_json::Value = serde_json::from_str(STATIC_PLUGIN_CONFIG).unwrap();
        edit(&mut json);
        let (config, _) = PluginConfig::parse(&serde_json::to_vec(&json).unwrap()).unwrap();
        let settings = Settings::initial(&config);
        PluginSpec {
            id,
            name: format!("test/{tag}:latest"),
            config,
            settings,
            rootfs: dirs.rootfs,
            propagated_mount: Some(dirs.propagated),
            runtime_dir: dirs.runtime_dir,
            state_dir: dirs.state_dir,
            observer: Default::default(),
        }
    }
}

fn copy_exe(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} → {}: {e}", from.display(), to.display()));
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// 64 random hex digits (a plugin id).
pub fn random_hex() -> String {
    let mut s = String::new();
    while s.len() < 64 {
        let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
        s.extend(uuid.trim().chars().filter(|c| *c != '-'));
    }
    s.truncate(64);
    s
}

/// Cargo's target dir, from this test binary's path (`<target>/debug/deps/<test>`).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .find(|p| p.join("CACHEDIR.TAG").exists())
        .expect("the test binary lives under cargo's target dir")
        .to_path_buf()
}

/// `plugd-init`: `$PLUGD_INIT_BINARY`, else `<target>/debug/plugd-init`.
pub fn init_binary() -> PathBuf {
    let path = std::env::var_os("PLUGD_INIT_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/plugd-init"));
    assert!(
        path.is_file(),
        "plugd-init not found at {}: build it with `cargo build -p plugd-init` (or set PLUGD_INIT_BINARY)",
        path.display()
    );
    path
}

/// The static fixture plugin (musl).
pub fn static_plugin_binary() -> PathBuf {
    let path = target_dir()
        .join(MUSL_TARGET)
        .join("debug/plugd-static-plugin");
    assert!(
        path.is_file(),
        "static fixture not found at {}: build it with `cargo build -p plugd-static-plugin --target {MUSL_TARGET}`",
        path.display()
    );
    path
}

/// Mount points at or under `dir` in this namespace.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// The `/proc/<pid>/stat` fields after the command name: (state, ppid).
fn stat(pid: i32) -> Option<(char, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = s.rsplit_once(')')?;
    let mut f = rest.split_ascii_whitespace();
    let state = f.next()?.chars().next()?;
    Some((state, f.next()?.parse().ok()?))
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    matches!(stat(pid), Some((s, _)) if s != 'Z')
}

/// Waits until `cond` holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn descendants(root: i32) -> Vec<i32> {
    let all: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(|pid: i32| Some((pid, stat(pid)?.1)))
        .collect();
    let mut out = vec![];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, _) in all.iter().filter(|(_, ppid)| *ppid == p) {
            out.push(*pid);
            frontier.push(*pid);
        }
    }
    out
}

/// Kills everything the test started, its cgroups and mounts, and removes the test dir.
fn cleanup(dir: &Path) -> Vec<String> {
    let mut problems = vec![];
    let me = std::process::id() as i32;
    // Cgroups a failed test left (the runtime removes them on stop).
    for state in glob_states(&dir.join("state")) {
        for cg in plugin_cgroups(&state) {
            let cg = Path::new(cg);
            let _ = std::fs::write(cg.join("cgroup.kill"), "1");
            if let Ok(procs) = std::fs::read_to_string(cg.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|p| p.parse::<i32>().ok()) {
                    let _ = rustix::process::kill_process(
                        rustix::process::Pid::from_raw(pid).unwrap(),
                        rustix::process::Signal::KILL,
                    );
                }
            }
        }
    }
    for round in 0..5 {
        let left: Vec<i32> = descendants(me).into_iter().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            break;
        }
        if round == 4 {
            problems.push(format!("processes survived SIGKILL: {left:?}"));
        }
        for pid in &left {
            eprintln!("harness: killing leftover process {pid}");
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(*pid).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
        wait_until(Duration::from_secs(5), || left.iter().all(|p| !alive(*p)));
    }
    // Reap our zombie children, by pid (never waitpid(-1)).
    for pid in descendants(me) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
        }
    }
    for state in glob_states(&dir.join("state")) {
        for cg in plugin_cgroups(&state) {
            let cg = Path::new(cg);
            if cg.exists()
                && !wait_until(Duration::from_secs(5), || {
                    std::fs::remove_dir(cg).is_ok() || !cg.exists()
                })
            {
                problems.push(format!("cannot remove cgroup {}", cg.display()));
            }
        }
    }
    let mut mounts = mounts_under(dir);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in &mounts {
        let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
    }
    if !mounts_under(dir).is_empty() {
        problems.push(format!(
            "mounts left under {}: {:?}",
            dir.display(),
            mounts_under(dir)
        ));
    } else if let Err(e) = std::fs::remove_dir_all(dir) {
        problems.push(format!("rm -rf {}: {e}", dir.display()));
    }
    problems
}

/// The `plugd-*` cgroups a state records (a test may have forged others into it).
fn plugin_cgroups(state: &serde_json::Value) -> Vec<&str> {
    state["cgroups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str())
        .filter(|c| {
            Path::new(c)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("plugd-"))
        })
        .collect()
}

fn glob_states(states: &Path) -> Vec<serde_json::Value> {
    let Ok(rd) = std::fs::read_dir(states) else {
        return vec![];
    };
    rd.filter_map(|e| std::fs::read(e.ok()?.path().join("state.json")).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}

/// `<state_dir>/state.json` as JSON, if present.
pub fn state(spec: &PluginSpec) -> Option<serde_json::Value> {
    let bytes = std::fs::read(spec.state_dir.join("state.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A multi-threaded tokio runtime for a test body.
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Logs (plugd's and the plugin's output) to stderr, once per process.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(std::io::stderr)
        .try_init();
}
