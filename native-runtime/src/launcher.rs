//! Launching `plugd-init`: a sealed copy of the binary, one long-lived thread that forks, and the
//! launch conversation (spec in, reports out; see [`plugd_init::launch`]).
//!
//! - **Sealed copy** (CVE-2019-5736): the init binary is copied once into a memfd sealed against
//!   every change, and exec'd as `/proc/self/fd/<memfd>`. A plugin that reopens
//!   `/proc/<init>/exe` for writing gets a read-only, sealed file, never plugd's binary on disk.
//! - **One launcher thread**: `PR_SET_PDEATHSIG` fires when the *thread* that forked the child
//!   exits, so every fork happens on one dedicated thread that lives as long as the runtime (never
//!   on a tokio blocking-pool thread, which may retire at any time). It only forks and execs;
//!   the conversation happens on the caller's task, so a slow sandbox never holds up other launches.
//! - **The child** gets fd 0 `/dev/null`, fds 1/2 pipes logged as `source=plugd-init`, fd 3 the spec
//!   pipe, fd 4 the report pipe, in a probe launch fd 5 the sealed probe binary (which the sandbox
//!   process execs in place of the entrypoint: nothing is copied into the plugin's rootfs), an
//!   empty environment and `PR_SET_PDEATHSIG(SIGKILL)`; every other descriptor of plugd is
//!   close-on-exec.

use crate::logs::{Sink, Stream, Tail, spawn_pump};
use crate::process::PluginProcess;
use plugd_init::launch::{PROBE_FD, REPORT_FD, Report, SPEC_FD};
use rustix::fs::{MemfdFlags, SealFlags, fcntl_add_seals, memfd_create};
use rustix::io::{Errno, fcntl_dupfd_cloexec};
use rustix::pipe::{PipeFlags, pipe_with};
use std::io::Write as _;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

/// Lowest descriptor number for the fds plugd keeps across the fork (the memfds, the pipe ends),
/// so that placing the pipes and the probe on fds 3 to 5 in the child never overwrites one of
/// them.
const MIN_FD: i32 = PROBE_FD + 1;
/// How long `plugd-init` may take from exec to its last report.
const REPORT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a plugin whose setup failed may take to exit before it is killed.
const FAILED_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a launch failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaunchError {
    /// The launcher thread is gone or could not fork/exec.
    #[error("cannot start plugd-init: {0}")]
    Spawn(#[source] std::io::Error),
    /// `plugd-init` reported a failed step.
    #[error("sandbox setup failed at {step}: {message}")]
    Step {
        /// The step.
        step: String,
        /// What happened.
        message: String,
    },
    /// `plugd-init` broke the protocol (died, hung, wrote garbage).
    #[error("plugd-init {0}")]
    Protocol(String),
}

/// The init binary, copied into a sealed memfd.
#[derive(Debug)]
pub(crate) struct SealedInit {
    fd: OwnedFd,
}

impl SealedInit {
    /// Copies `path` into a sealed memfd.
    pub(crate) fn copy_of(path: &Path) -> std::io::Result<Self> {
        Self::copy_named(path, "plugd-init")
    }

    /// A sealed copy of a binary that runs **inside** a sandbox (the `plugd check` probe): it must
    /// be static, since the plugin's rootfs has no loader or libc of plugd's.
    pub(crate) fn copy_static(path: &Path, name: &str) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        if is_static_elf(&bytes) == Some(false) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "dynamically linked: it runs inside the plugin's rootfs, which has no loader of plugd's (build it for x86_64-unknown-linux-musl)",
            ));
        }
        Self::copy_named(path, name)
    }

    /// [`Self::copy_of`], the memfd named `name` (what `/proc/<pid>/exe` shows).
    pub(crate) fn copy_named(path: &Path, name: &str) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        if !bytes.starts_with(b"\x7fELF") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not an ELF executable",
            ));
        }
        let base = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        // MFD_EXEC (Linux 6.3+) keeps the copy executable under vm.memfd_noexec=1; older kernels
        // refuse the flag, and their memfds are executable anyway.
        let fd = match memfd_create(name, base | MemfdFlags::EXEC) {
            Err(Errno::INVAL) => memfd_create(name, base)?,
            other => other?,
        };
        let mut file = std::fs::File::from(fd);
        file.write_all(&bytes)?;
        fcntl_add_seals(
            &file,
            SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
        )?;
        Ok(SealedInit {
            fd: fcntl_dupfd_cloexec(&file, MIN_FD)?,
        })
    }

    /// What to exec.
    fn exec_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// Whether a 64-bit little-endian ELF file has no program interpreter (`PT_INTERP`): `None` when
/// `bytes` is not such a file.
pub fn is_static_elf(bytes: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if !bytes.starts_with(b"\x7fELF\x02\x01") {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(bytes.get(o..o + 2)?.try_into().ok()?));
    let phoff =
        usize::try_from(u64::from_le_bytes(bytes.get(0x20..0x28)?.try_into().ok()?)).ok()?;
    let (size, count) = (usize::from(u16_at(0x36)?), usize::from(u16_at(0x38)?));
    for i in 0..count {
        let at = phoff.checked_add(i.checked_mul(size)?)?;
        let kind = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
        if kind == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

/// A started `plugd-init` and the plugd ends of its pipes.
struct Spawned {
    init: InitChild,
    spec: OwnedFd,
    reports: OwnedFd,
}

struct Job {
    reply: oneshot::Sender<std::io::Result<Spawned>>,
    /// Pass the probe on [`PROBE_FD`].
    probe: bool,
}

/// The launcher thread and the sealed init it execs.
#[derive(Debug)]
pub(crate) struct Launcher {
    jobs: mpsc::Sender<Job>,
}

impl Launcher {
    /// Starts the launcher thread, which owns `init` (and `probe`, the `plugd check` probe binary,
    /// if any) and ends when the `Launcher` is dropped.
    pub(crate) fn start(init: SealedInit, probe: Option<SealedInit>) -> std::io::Result<Self> {
        Self::start_with_args(init, probe, Vec::new())
    }

    /// [`Self::start`], passing `args` to every exec (tests run a shell as the init).
    fn start_with_args(
        init: SealedInit,
        probe: Option<SealedInit>,
        args: Vec<String>,
    ) -> std::io::Result<Self> {
        reserve_low_fds();
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("plugd-launcher".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let spawned = match (job.probe, &probe) {
                        (false, _) => spawn_init(&init, None, &args),
                        (true, Some(p)) => spawn_init(&init, Some(p), &args),
                        (true, None) => Err(std::io::Error::other("no probe binary")),
                    };
                    // A caller that gave up (cancelled start) drops the reply; the child dies with
                    // it (InitChild's drop).
                    let _ = job.reply.send(spawned);
                }
            })?;
        Ok(Launcher { jobs })
    }

    /// Runs one launch: sends `spec` (a JSON [`plugd_init::SandboxSpec`]), follows the reports and
    /// returns the plugin process once its entrypoint is exec'd. `plugin` names it in logs.
    /// `probe`: pass the probe binary on [`PROBE_FD`] (the spec says to exec it).
    pub(crate) async fn launch(
        &self,
        plugin: &str,
        spec: Vec<u8>,
        probe: bool,
    ) -> Result<PluginProcess, LaunchError> {
        let (reply, rx) = oneshot::channel();
        self.jobs.send(Job { reply, probe }).map_err(|_| {
            LaunchError::Spawn(std::io::Error::other("the launcher thread is gone"))
        })?;
        let spawned = rx
            .await
            .map_err(|_| LaunchError::Spawn(std::io::Error::other("the launcher thread is gone")))?
            .map_err(LaunchError::Spawn)?;
        let Spawned {
            mut init,
            spec: spec_fd,
            reports,
        } = spawned;
        let tail = init.log(plugin);
        let mut launching = Launching(None);
        let conversation = converse(spec_fd, reports, spec, &mut launching.0);
        let outcome = match tokio::time::timeout(REPORT_TIMEOUT, conversation).await {
            Ok(r) => r,
            Err(_) => Err(LaunchError::Protocol(format!(
                "sent no final report within {}s",
                REPORT_TIMEOUT.as_secs()
            ))),
        };
        let status = init.wait().await;
        match (outcome, launching.0.take()) {
            (Ok(()), Some(process)) => {
                if let Some(s) = status.filter(|s| !s.success()) {
                    tracing::warn!(plugin = %plugin, status = %s, "plugd-init reported success but exited abnormally");
                }
                Ok(process)
            }
            (Ok(()), None) => Err(LaunchError::Protocol(
                "reported Running before Started".to_string(),
            )),
            (Err(e), process) => {
                if let Some(p) = process {
                    reap_failed(plugin, &p).await;
                }
                Err(match e {
                    LaunchError::Protocol(what) => {
                        let status = status.map_or("was killed".to_string(), |s| s.to_string());
                        let stderr = tail.text();
                        LaunchError::Protocol(if stderr.is_empty() {
                            format!("{what} ({status})")
                        } else {
                            format!("{what} ({status}); its stderr: {stderr}")
                        })
                    }
                    e => e,
                })
            }
        }
    }
}

/// Sends the spec, then reads reports until `Running` or `Failed`; the plugin process, once
/// reported, is left in `process` whatever happens next (so a failure or timeout can reap it).
async fn converse(
    spec_fd: OwnedFd,
    reports: OwnedFd,
    spec: Vec<u8>,
    process: &mut Option<PluginProcess>,
) -> Result<(), LaunchError> {
    let io = |what: &str, e: std::io::Error| LaunchError::Protocol(format!("{what}: {e}"));
    let mut tx = pipe::Sender::from_owned_fd(spec_fd).map_err(|e| io("spec pipe", e))?;
    let rx = pipe::Receiver::from_owned_fd(reports).map_err(|e| io("report pipe", e))?;
    // The spec is sent in full before any report is read; plugd-init reads it all first.
    tx.write_all(&spec)
        .await
        .map_err(|e| io("did not take the spec", e))?;
    drop(tx);
    let mut lines = BufReader::new(rx).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) if process.is_some() => {
                return Err(LaunchError::Protocol(
                    "exited after starting the plugin without reporting the exec".to_string(),
                ));
            }
            Ok(None) => {
                return Err(LaunchError::Protocol(
                    "exited without reporting".to_string(),
                ));
            }
            Err(e) => return Err(io("report pipe", e)),
        };
        let report: Report = serde_json::from_str(&line)
            .map_err(|e| LaunchError::Protocol(format!("sent a bad report {line:?}: {e}")))?;
        match report {
            Report::Started { pid } if process.is_none() => {
                *process = Some(PluginProcess::open(pid).map_err(|e| {
                    LaunchError::Protocol(format!(
                        "reported pid {pid}, which cannot be opened: {e}"
                    ))
                })?);
            }
            Report::Started { pid } => {
                return Err(LaunchError::Protocol(format!(
                    "reported a second Started (pid {pid})"
                )));
            }
            Report::Running => return Ok(()),
            Report::Failed { step, message } => return Err(LaunchError::Step { step, message }),
        }
    }
}

/// The plugin process while the launch is under way: if the launch is cancelled (its future
/// dropped), the plugin is killed and reaped on a task rather than left running unrecorded.
struct Launching(Option<PluginProcess>);

impl Drop for Launching {
    fn drop(&mut self) {
        let Some(p) = self.0.take() else {
            return;
        };
        let _ = p.signal(rustix::process::Signal::KILL);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = p.exited_within(Duration::from_secs(10)).await;
            });
        }
    }
}

/// A plugin whose setup failed exits by itself (127); reap it, killing it if it lingers.
async fn reap_failed(plugin: &str, p: &PluginProcess) {
    if p.exited_within(FAILED_EXIT_TIMEOUT).await.is_none() {
        tracing::warn!(
            plugin = %plugin,
            pid = p.pid(),
            "plugin process of a failed launch lingers: SIGKILL"
        );
        let _ = p.signal(rustix::process::Signal::KILL);
        let _ = p.exited_within(FAILED_EXIT_TIMEOUT).await;
    }
}

/// `plugd-init` as a child; killed and reaped (off the async threads) if dropped unwaited.
struct InitChild(Option<Child>);

impl InitChild {
    /// Starts logging its stdout/stderr; returns its stderr tail.
    fn log(&mut self, plugin: &str) -> Tail {
        let tail = Tail::default();
        let Some(child) = self.0.as_mut() else {
            return tail;
        };
        if let Some(out) = child.stdout.take()
            && let Ok(rx) = pipe::Receiver::from_owned_fd(OwnedFd::from(out))
        {
            let sink = Sink::Daemon(plugin.to_string());
            spawn_pump(rx, sink, "plugd-init", Stream::Stdout, tail.clone());
        }
        if let Some(err) = child.stderr.take()
            && let Ok(rx) = pipe::Receiver::from_owned_fd(OwnedFd::from(err))
        {
            let sink = Sink::Daemon(plugin.to_string());
            spawn_pump(rx, sink, "plugd-init", Stream::Stderr, tail.clone());
        }
        tail
    }

    /// Waits for it to exit (it does right after its last report), killing it after a while.
    async fn wait(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.0.take()?;
        let waited = tokio::task::spawn_blocking(move || {
            // plugd-init exits right after its final report; give a stuck one a moment.
            for _ in 0..200 {
                match child.try_wait() {
                    Ok(Some(s)) => return Some(s),
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => return None,
                }
            }
            let _ = child.kill();
            child.wait().ok()
        });
        waited.await.ok().flatten()
    }
}

impl Drop for InitChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = std::thread::Builder::new()
                .name("plugd-init-reaper".into())
                .spawn(move || child.wait());
        }
    }
}

/// Forks and execs `plugd-init` (on the launcher thread).
fn spawn_init(
    init: &SealedInit,
    probe: Option<&SealedInit>,
    args: &[String],
) -> std::io::Result<Spawned> {
    // -1: no probe; dup2 is then skipped.
    let probe_raw = probe.map_or(-1, |p| p.fd.as_raw_fd());
    let (spec_r, spec_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let (rep_r, rep_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let spec_r = fcntl_dupfd_cloexec(&spec_r, MIN_FD)?;
    let rep_w = fcntl_dupfd_cloexec(&rep_w, MIN_FD)?;
    let (spec_raw, rep_raw) = (spec_r.as_raw_fd(), rep_w.as_raw_fd());
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(init.exec_path());
    cmd.arg0("plugd-init")
        .args(args)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let place_fds = move || -> std::io::Result<()> {
        // SAFETY: runs in the forked child before exec, where only async-signal-safe calls are
        // allowed: dup2, prctl and getppid are plain syscalls, and `last_os_error` only reads errno.
        // The source fds are >= MIN_FD (so 3 to 5 never overwrite them) and open until spawn
        // returns (the probe's memfd for the launcher's life); dup2 clears close-on-exec.
        unsafe {
            if libc::dup2(spec_raw, SPEC_FD) < 0
                || libc::dup2(rep_raw, REPORT_FD) < 0
                || (probe_raw >= 0 && libc::dup2(probe_raw, PROBE_FD) < 0)
                || libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // plugd died between fork and prctl: the signal was never going to come.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        Ok(())
    };
    // SAFETY: `place_fds` is async-signal-safe (see inside) and captures only integers.
    unsafe {
        cmd.pre_exec(place_fds);
    }
    let child = cmd.spawn()?;
    drop((spec_r, rep_w));
    Ok(Spawned {
        init: InitChild(Some(child)),
        spec: spec_w,
        reports: rep_r,
    })
}

/// Makes sure fds 3 to 5 are in use in plugd (with `/dev/null`, close-on-exec, if free), so the
/// pipe `std::process::Command` makes for exec errors never lands on one of them in the child,
/// where placing the spec/report pipes and the probe would overwrite it.
fn reserve_low_fds() {
    use rustix::fs::{Mode, OFlags, open};
    for _ in 0..3 {
        let Ok(fd) = open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) else {
            return;
        };
        if fd.as_raw_fd() > PROBE_FD {
            return;
        }
        // Kept open for the life of the process on purpose.
        let _ = std::os::fd::IntoRawFd::into_raw_fd(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use rustix::fs::{SealFlags, fcntl_get_seals};

    #[test]
    fn the_sealed_copy_cannot_change() {
        let copy = SealedInit::copy_of(Path::new("/proc/self/exe")).unwrap();
        assert!(copy.fd.as_raw_fd() >= MIN_FD);
        let seals = fcntl_get_seals(&copy.fd).unwrap();
        for s in [
            SealFlags::SEAL,
            SealFlags::SHRINK,
            SealFlags::GROW,
            SealFlags::WRITE,
        ] {
            assert!(seals.contains(s), "{seals:?}");
        }
        let path = copy.exec_path();
        assert!(
            std::fs::OpenOptions::new().write(true).open(&path).is_err() || {
                // Opening for writing may succeed; writing must not.
                let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.write_all(b"x").is_err()
            }
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            std::fs::metadata("/proc/self/exe").unwrap().len()
        );
    }

    #[test]
    fn a_probe_must_be_static() {
        let own = std::fs::read("/proc/self/exe").unwrap();
        // The test binary is a glibc (dynamic) build; /bin/busybox on the CI hosts is static.
        assert_eq!(is_static_elf(&own), Some(false));
        let err = SealedInit::copy_static(Path::new("/proc/self/exe"), "plugd-probe").unwrap_err();
        assert!(err.to_string().contains("dynamically linked"), "{err}");
        if let Ok(busybox) = std::fs::read("/bin/busybox") {
            assert_eq!(is_static_elf(&busybox), Some(true));
        }
        assert_eq!(is_static_elf(b"#!/bin/sh"), None);
    }

    #[test]
    fn only_elf_binaries_are_sealed() {
        let dir = TempDir::new("seal");
        let script = dir.path().join("init.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let err = SealedInit::copy_of(&script).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(SealedInit::copy_of(&dir.path().join("missing")).is_err());
    }

    /// A launcher whose "init" is a sealed copy of `sh -c <script>`: it must find the spec on
    /// fd 3 and the report pipe on fd 4, as the protocol says.
    fn fake_init(script: &str) -> Launcher {
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let args = vec!["-c".to_string(), script.to_string()];
        Launcher::start_with_args(SealedInit::copy_of(&sh).unwrap(), None, args).unwrap()
    }

    const SPEC: &[u8] = br#"{"process":{"args":["/x"]}}"#;
    /// Checks the spec arrived whole on fd 3 (exit 9 otherwise).
    const READ_SPEC: &str =
        r#"spec=$(cat <&3); [ "$spec" = '{"process":{"args":["/x"]}}' ] || exit 9; "#;

    #[tokio::test]
    async fn started_then_running_returns_the_plugin_process() {
        let launcher = fake_init(&format!(
            r#"{READ_SPEC} sleep 100 & echo "{{\"report\":\"started\",\"pid\":$!}}" >&4; echo '{{"report":"running"}}' >&4"#
        ));
        let p = launcher
            .launch("p:latest", SPEC.to_vec(), false)
            .await
            .unwrap();
        assert_eq!(p.try_exit(), None);
        p.signal(rustix::process::Signal::KILL).unwrap();
        // Not our child (sh's), so the status is unknown, but the exit is seen.
        assert!(p.exited_within(Duration::from_secs(5)).await.is_some());
    }

    #[tokio::test]
    async fn a_failed_step_is_reported_with_its_name() {
        let launcher = fake_init(&format!(
            r#"{READ_SPEC} echo '{{"report":"failed","step":"pivot_root","message":"EINVAL: not a mount point"}}' >&4"#
        ));
        let err = launcher
            .launch("p:latest", SPEC.to_vec(), false)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "sandbox setup failed at pivot_root: EINVAL: not a mount point"
        );
    }

    #[tokio::test]
    async fn an_init_that_dies_is_a_protocol_error_with_its_stderr() {
        let launcher = fake_init(&format!(
            r#"{READ_SPEC} echo "cannot read spec: boom" >&2; exit 3"#
        ));
        let err = launcher
            .launch("p:latest", SPEC.to_vec(), false)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("plugd-init exited without reporting (exit status: 3)"),
            "{msg}"
        );
        assert!(msg.ends_with("its stderr: cannot read spec: boom"), "{msg}");

        // Wrong spec bytes: the fake exits 9, proving fd 3 carried exactly the spec.
        let launcher = fake_init(READ_SPEC);
        let err = launcher
            .launch("p:latest", b"other".to_vec(), false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("exit status: 9"), "{err}");
    }

    #[tokio::test]
    async fn garbage_reports_are_refused() {
        let launcher = fake_init(&format!(r#"{READ_SPEC} echo 'hello' >&4"#));
        let err = launcher
            .launch("p:latest", SPEC.to_vec(), false)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with(r#"plugd-init sent a bad report "hello""#),
            "{err}"
        );
    }

    #[tokio::test]
    async fn launches_run_concurrently() {
        // Each fake takes 300 ms; four in parallel must not take four times as long.
        let launcher = std::sync::Arc::new(fake_init(&format!(
            r#"{READ_SPEC} sleep 0.3; echo '{{"report":"failed","step":"s","message":"m"}}' >&4"#
        )));
        let started = std::time::Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let l = launcher.clone();
                tokio::spawn(async move { l.launch("p", SPEC.to_vec(), false).await.map(drop) })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_err());
        }
        assert!(
            started.elapsed() < Duration::from_millis(1100),
            "{:?}",
            started.elapsed()
        );
    }

    /// A probe launch finds the sealed probe on fd 5; any other launch has no fd 5.
    #[tokio::test]
    async fn only_a_probe_launch_gets_the_probe_on_fd_5() {
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let script = format!(
            r#"{READ_SPEC} case "$(readlink /proc/$$/fd/5)" in *plugd-probe*) echo '{{"report":"failed","step":"probe","message":"present"}}' >&4;; *) echo '{{"report":"failed","step":"probe","message":"absent"}}' >&4;; esac"#
        );
        let probe = SealedInit::copy_named(&sh, "plugd-probe").unwrap();
        assert!(probe.fd.as_raw_fd() >= MIN_FD);
        let launcher = Launcher::start_with_args(
            SealedInit::copy_of(&sh).unwrap(),
            Some(probe),
            vec!["-c".to_string(), script],
        )
        .unwrap();
        let err = launcher.launch("p", SPEC.to_vec(), true).await.unwrap_err();
        assert_eq!(err.to_string(), "sandbox setup failed at probe: present");
        let err = launcher
            .launch("p", SPEC.to_vec(), false)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "sandbox setup failed at probe: absent");

        let without = fake_init(READ_SPEC);
        let err = without.launch("p", SPEC.to_vec(), true).await.unwrap_err();
        assert!(err.to_string().contains("no probe binary"), "{err}");
    }
}
