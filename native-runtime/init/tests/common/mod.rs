//! Harness for the root-only sandbox tests.
//!
//! Every test body runs through [`isolated`]: the test re-executes itself as
//! `unshare -m --propagation private <test binary> --exact <test>` (the pattern of
//! `tests/e2e/harness`), so whatever a bug mounts stays in a throwaway mount namespace. Inside,
//! [`Sandbox`] builds a tiny busybox rootfs in a fresh `/tmp/plugd-init-*` dir, starts the real
//! `plugd-init` through the launch protocol (spec on fd 3, reports on fd 4), reads the plugin's
//! stdout FIFO, and on drop kills the plugin by pid, reaps it, unmounts what the test mounted
//! and removes the dir.

#![allow(dead_code)]

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use plugd_init::launch::Report;
use plugd_init::spec::{
    Capabilities, DEFAULT_PATH_ENV, Mount, Namespace, PlugdExt, Process, Root, SandboxSpec,
    default_mounts,
};

const CHILD_ENV: &str = "PLUGD_INIT_TEST_CHILD";
/// The last line every probe script prints before it sleeps.
pub const END: &str = "== END";

/// dockerd's default capabilities for plugins (CapEff a80425fb).
pub use plugd_init::spec::DEFAULT_CAPABILITIES as DEFAULT_CAPS;

/// Runs `body` in a private mount namespace (see the module docs). Skips, loudly, when not root.
pub fn isolated(body: impl FnOnce()) {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP: the sandbox tests need root (CI runs as root)");
        return;
    }
    if std::env::var_os(CHILD_ENV).is_some() {
        body();
        return;
    }
    let name = std::thread::current()
        .name()
        .expect("a libtest thread")
        .to_owned();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--"])
        .arg(exe)
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .expect("run unshare (util-linux)");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    println!("{}", String::from_utf8_lossy(&out.stderr));
    let ran = String::from_utf8_lossy(&out.stdout).contains("1 passed");
    assert!(
        out.status.success() && ran,
        "isolated `{name}` failed: {}",
        out.status
    );
}

/// The plugd-init binary: the static musl build (`cargo build -p plugd-init --target
/// x86_64-unknown-linux-musl`) when it is newer than every source file of the crate, else —
/// with a note — the host build cargo made for this test. `PLUGD_INIT_BIN` overrides both (to
/// measure a release build).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PLUGD_INIT_BIN") {
        return PathBuf::from(p);
    }
    let host = PathBuf::from(env!("CARGO_BIN_EXE_plugd-init"));
    let target = host.parent().and_then(Path::parent).unwrap();
    let musl = target.join("x86_64-unknown-linux-musl/debug/plugd-init");
    let built = fs::metadata(&musl).and_then(|m| m.modified()).ok();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    match built {
        Some(b) if newest(&src).is_some_and(|s| s <= b) => musl,
        _ => {
            println!("NOTE: using the host build of plugd-init; the musl one is missing or stale");
            host
        }
    }
}

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut best = None;
    for e in fs::read_dir(dir).ok()?.flatten() {
        let t = match e.file_type().ok()?.is_dir() {
            true => newest(&e.path()),
            false => e.metadata().and_then(|m| m.modified()).ok(),
        };
        best = best.max(t);
    }
    best
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A mount entry.
pub fn mount(dest: &str, kind: &str, source: &str, opts: &[&str]) -> Mount {
    Mount {
        destination: dest.into(),
        kind: kind.into(),
        source: source.into(),
        options: strings(opts),
    }
}

/// What one launch produced.
#[derive(Debug)]
pub struct Launch {
    /// Every report line.
    pub reports: Vec<Report>,
    /// From spawning plugd-init to its final report.
    pub elapsed: Duration,
    /// plugd-init's own stderr (warnings, failures).
    pub stderr: String,
}

impl Launch {
    /// The plugin's pid from `Started`.
    pub fn pid(&self) -> Option<i32> {
        self.reports.iter().find_map(|r| match r {
            Report::Started { pid } => Some(*pid),
            _ => None,
        })
    }

    /// The final report.
    pub fn last(&self) -> &Report {
        self.reports.last().expect("at least one report")
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One test's sandbox: dir, rootfs, FIFOs, the spec, the running plugin.
pub struct Sandbox {
    /// `/tmp/plugd-init-<pid>-<n>`.
    pub dir: PathBuf,
    /// `<dir>/rootfs`.
    pub rootfs: PathBuf,
    /// The spec to launch (tests edit it).
    pub spec: SandboxSpec,
    stdout: Option<File>,
    pid: Option<i32>,
    mounted: Vec<PathBuf>,
}

impl Sandbox {
    /// A busybox rootfs and a dockerd-like spec running `script` with `sh -c`.
    pub fn new(script: &str) -> Sandbox {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/plugd-init-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in applets() {
            let _ = symlink("busybox", rootfs.join("bin").join(applet));
        }
        for fifo in ["stdout", "stderr"] {
            nix::unistd::mkfifo(
                &dir.join(fifo),
                nix::sys::stat::Mode::from_bits_truncate(0o600),
            )
            .unwrap();
        }
        let spec = base_spec(&dir, &rootfs, script);
        Sandbox {
            dir,
            rootfs,
            spec,
            stdout: None,
            pid: None,
            mounted: Vec::new(),
        }
    }

    /// Adds dockerd's network binds (from test files, not the host's) and the runtime dir.
    pub fn with_plugin_mounts(&mut self) -> &mut Self {
        let hosts = self.dir.join("hosts");
        fs::write(&hosts, "127.0.0.1 localhost HOSTS-MARKER\n").unwrap();
        fs::write(
            self.dir.join("resolv.conf"),
            "nameserver 127.0.0.53 # RESOLV-MARKER\n",
        )
        .unwrap();
        fs::create_dir_all(self.dir.join("run-plugins")).unwrap();
        let d = |p: &str| self.dir.join(p).display().to_string();
        self.spec.mounts.push(mount(
            "/run/docker/plugins",
            "bind",
            &d("run-plugins"),
            &["rbind", "rshared"],
        ));
        self.spec
            .mounts
            .push(mount("/etc/hosts", "bind", &d("hosts"), &["rbind", "ro"]));
        self.spec.mounts.push(mount(
            "/etc/resolv.conf",
            "bind",
            &d("resolv.conf"),
            &["rbind", "ro"],
        ));
        self
    }

    /// The propagated mount at `dest`: a shared self-bind of `<dir>/propagated` on the host side
    /// (what dockerd's `MakeRShared` does) and an `rbind,rw,rshared` mount plus
    /// `rootfsPropagation: rshared` in the spec. Returns the host dir.
    pub fn with_propagated_mount(&mut self, dest: &str) -> PathBuf {
        let host = self.dir.join("propagated");
        fs::create_dir_all(&host).unwrap();
        nix::mount::mount(
            Some(&host),
            &host,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        self.mounted.push(host.clone());
        nix::mount::mount(
            None::<&str>,
            &host,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
        .unwrap();
        let src = host.display().to_string();
        self.spec
            .mounts
            .push(mount(dest, "bind", &src, &["rbind", "rw", "rshared"]));
        self.spec.linux.rootfs_propagation = "rshared".into();
        if let Some(ext) = self.spec.plugd.as_mut() {
            ext.propagated_mount = Some(host.clone());
        }
        host
    }

    /// A host directory `<dir>/<name>` made a shared mount of its own (as every mount is on a
    /// systemd host), bound at `dest` with `options`. Returns the host dir.
    pub fn with_shared_host_bind(&mut self, name: &str, dest: &str, options: &[&str]) -> PathBuf {
        let host = self.dir.join(name);
        fs::create_dir_all(&host).unwrap();
        nix::mount::mount(
            Some(&host),
            &host,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        self.mounted.push(host.clone());
        nix::mount::mount(
            None::<&str>,
            &host,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        let src = host.display().to_string();
        self.spec.mounts.push(mount(dest, "bind", &src, options));
        host
    }

    /// Starts plugd-init with the spec and waits for its final report.
    pub fn launch(&mut self) -> Launch {
        // The test holds a read end of the stdout FIFO (non-blocking, so opening cannot hang).
        let fifo = self.dir.join("stdout");
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags_nonblock()
            .open(&fifo)
            .unwrap();
        self.stdout = Some(f);
        let launch = spawn(&binary(), &self.spec);
        self.pid = launch.pid();
        launch
    }

    /// Reads the plugin's stdout until the [`END`] line (or fails after 20 s).
    pub fn output(&mut self) -> String {
        let f = self.stdout.as_mut().expect("launched");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while !String::from_utf8_lossy(&out).contains(END) {
            assert!(
                Instant::now() < deadline,
                "no {END:?} from the plugin; got:\n{}",
                String::from_utf8_lossy(&out)
            );
            match f.read(&mut buf) {
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The running plugin's pid (in the test's pid namespace).
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// Kills the plugin (by its pid) and reaps it; returns how it ended.
    pub fn stop(&mut self) -> Option<WaitStatus> {
        let pid = Pid::from_raw(self.pid.take()?);
        let _ = kill(pid, Signal::SIGKILL);
        waitpid(pid, None).ok()
    }

    /// Reaps a plugin process that exits by itself (a failed launch), within 10 s.
    pub fn reap(&mut self) -> Option<WaitStatus> {
        let pid = Pid::from_raw(self.pid?);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(WaitStatus::StillAlive) => return self.stop(),
                other => {
                    self.pid = None;
                    return other.ok();
                }
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
        for m in self.mounted.iter().rev() {
            // Everything mounted under it too (the propagation test's volume), then itself.
            for sub in mounts_under(m).into_iter().rev() {
                let _ = nix::mount::umount2(&sub, MntFlags::MNT_DETACH);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Mount points at or under `dir` in this mount namespace, outermost first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// This namespace's mount points, for before/after comparisons.
pub fn mount_points() -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(str::to_owned)
        .collect()
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

fn applets() -> Vec<OsString> {
    let out = Command::new("/bin/busybox").arg("--list").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(OsString::from)
        .collect()
}

fn base_spec(dir: &Path, rootfs: &Path, script: &str) -> SandboxSpec {
    let caps = strings(&DEFAULT_CAPS);
    let mut spec = SandboxSpec {
        process: Process {
            args: strings(&["sh", "-c", script]),
            env: strings(&[DEFAULT_PATH_ENV, "PROBE=1"]),
            cwd: "/".into(),
            capabilities: Capabilities {
                bounding: caps.clone(),
                effective: caps.clone(),
                permitted: caps,
                ..Default::default()
            },
            ..Default::default()
        },
        root: Root {
            path: rootfs.to_path_buf(),
            readonly: false,
        },
        mounts: default_mounts(),
        plugd: Some(PlugdExt {
            id: "test".into(),
            stdout: dir.join("stdout"),
            stderr: dir.join("stderr"),
            cgroups: Vec::new(),
            no_pivot: false,
            propagated_mount: None,
            probe: false,
        }),
        ..Default::default()
    };
    spec.linux.namespaces = ["mount", "network", "uts", "pid", "ipc"]
        .iter()
        .map(|k| Namespace {
            kind: k.to_string(),
        })
        .collect();
    spec.linux.masked_paths = strings(&[
        "/proc/asound",
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
    ]);
    spec.linux.readonly_paths = strings(&[
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]);
    spec
}

/// Starts `bin` as the daemon would: fd 3 = the spec (then EOF), fd 4 = the report pipe.
pub fn spawn(bin: &Path, spec: &SandboxSpec) -> Launch {
    let (spec_r, spec_w) = std::io::pipe().unwrap();
    let (report_r, report_w) = std::io::pipe().unwrap();
    let (spec_r, report_w): (OwnedFd, OwnedFd) = (spec_r.into(), report_w.into());
    let (a, b) = (spec_r.as_raw_fd(), report_w.as_raw_fd());
    let mut cmd = Command::new(bin);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. The fds are
    // first moved above 10 so that placing them on 3 and 4 cannot clobber each other.
    unsafe {
        cmd.pre_exec(move || {
            let a = libc::fcntl(a, libc::F_DUPFD, 10);
            let b = libc::fcntl(b, libc::F_DUPFD, 10);
            if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn plugd-init");
    drop((spec_r, report_w));
    let mut w = spec_w;
    w.write_all(&serde_json::to_vec(spec).unwrap()).unwrap();
    drop(w);
    let mut reports = Vec::new();
    let mut elapsed = Duration::ZERO;
    for line in BufReader::new(report_r).lines() {
        let r: Report = serde_json::from_str(&line.unwrap()).expect("a report line");
        let last = !matches!(r, Report::Started { .. });
        reports.push(r);
        if last {
            elapsed = started.elapsed();
            break;
        }
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "plugd-init exited {status}; stderr:\n{stderr}"
    );
    Launch {
        reports,
        elapsed,
        stderr,
    }
}

/// The lines of one `== name` section of the probe output.
pub fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let head = format!("== {name}");
    out.lines()
        .skip_while(|l| *l != head)
        .skip(1)
        .take_while(|l| !l.starts_with("== "))
        .collect()
}

/// The value of `Key:` in the status section.
pub fn status_field<'a>(out: &'a str, key: &str) -> &'a str {
    section(out, "status")
        .into_iter()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in the status section:\n{out}"))
}

/// `readlink /proc/self/ns/<kind>` of the test process.
pub fn own_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

/// The mountinfo line for `mountpoint` in the probe output (the last one: the top mount).
pub fn mount_line<'a>(out: &'a str, mountpoint: &str) -> &'a str {
    section(out, "mountinfo")
        .into_iter()
        .rfind(|l| l.split(' ').nth(4) == Some(mountpoint))
        .unwrap_or_else(|| {
            panic!(
                "no mount at {mountpoint}:\n{}",
                section(out, "mountinfo").join("\n")
            )
        })
}
