//! The last steps before the plugin runs: umask and working directory (created if missing, as
//! runc does), every inherited fd above 2 marked close-on-exec, a check that the cwd is inside
//! the new root (CVE-2024-21626: a leaked fd or cwd must not outlive the exec), then the
//! environment (deduplicated, `HOME` added), signals reset (all unblocked and default: none may
//! stay ignored, as SIGPIPE is in a Rust process) and `execve` of `args[0]` looked up in the
//! sandbox's own `PATH`.
//!
//! Right before exec the error pipe to plugd-init is checked: if plugd-init died (so nobody
//! will report this process to the daemon), the sandbox gives up instead of running unowned.
//! Otherwise it tells plugd-init "exec next"; the pipe being close-on-exec, EOF after that
//! message means the exec happened.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::Mode;

use crate::child::ChildMsg;
use crate::ctx::Ctx;
use crate::error::{Failure, StepError, sys};
use crate::launch::PROBE_FD;
use crate::resolve::{self, Kind};
use crate::sys::Syscall;

/// dockerd's PATH for plugins, used when the spec's env has none.
pub use crate::spec::DEFAULT_PATH;

/// `umask(022)` and `chdir(cwd)`, creating the directory inside the root if it is missing.
pub fn chdir_cwd(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    s.umask(Mode::from_bits_truncate(0o022));
    let cwd = match ctx.spec.process.cwd.as_str() {
        "" => "/",
        c => c,
    };
    let cwd = Path::new(cwd);
    if !cwd.is_absolute() {
        return Err(StepError::Cwd(Failure::Refused(format!(
            "{} is not absolute",
            cwd.display()
        ))));
    }
    match s.chdir(cwd) {
        Err(Errno::ENOENT) => {
            let root = ctx.root().map_err(StepError::Cwd)?;
            resolve::open_or_create(s, root, cwd, Kind::Dir).map_err(StepError::Cwd)?;
            s.chdir(cwd)
        }
        other => other,
    }
    .map_err(sys(format!("chdir {}", cwd.display())))
    .map_err(StepError::Cwd)
}

/// `close_range(3, ~0, CLOSE_RANGE_CLOEXEC)`: nothing but 0-2 survives the exec.
pub fn close_fds(_ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    s.close_range_cloexec(3)
        .map_err(sys("close_range"))
        .map_err(StepError::CloseFds)
}

/// The cwd must resolve inside the new root (`getcwd` fails or is not absolute otherwise).
pub fn verify_cwd(_ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    let outside = || Failure::Refused("the working directory is outside the sandbox root".into());
    match s.getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        Ok(_) | Err(Errno::ENOENT) => Err(StepError::VerifyCwd(outside())),
        Err(e) => Err(StepError::VerifyCwd(sys("getcwd")(e))),
    }
}

/// Builds argv and env, resolves the entrypoint, checks plugd-init is alive, and execs.
pub fn exec(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    let env = environment(s, &ctx.spec.process.env, ctx.spec.process.user.uid)
        .map_err(StepError::Exec)?;
    let args = &ctx.spec.process.args;
    // A probe launch execs the probe's fd with the plugin's argv, so the entrypoint is not
    // looked up (it need not exist for the probe to report the sandbox).
    let path = match ctx.ext.probe {
        true => None,
        false => Some(lookup(s, &args[0], &env).map_err(StepError::Exec)?),
    };
    let argv = cstrings(args).map_err(StepError::Exec)?;
    let envp = cstrings(&env).map_err(StepError::Exec)?;
    s.reset_signals()
        .map_err(sys("reset signals"))
        .map_err(StepError::Exec)?;
    if let Some(fd) = ctx.sync_fd() {
        if s.reader_gone(fd) {
            let gone = "plugd-init died before the exec: nobody would report this process";
            return Err(StepError::Exec(Failure::Refused(gone.into())));
        }
        s.write_fd(fd, &ChildMsg::Exec.line())
            .map_err(sys("notify plugd-init"))
            .map_err(StepError::Exec)?;
    }
    match path {
        Some(path) => {
            let cpath = cstring(&path.to_string_lossy()).map_err(StepError::Exec)?;
            s.execve(&cpath, &argv, &envp)
                .map_err(sys(format!("execve {}", path.display())))
        }
        None => s
            .execveat_fd(PROBE_FD, &argv, &envp)
            .map_err(sys(format!("execveat of the probe (fd {PROBE_FD})"))),
    }
    .map_err(StepError::Exec)
}

fn cstring(s: &str) -> Result<CString, Failure> {
    CString::new(s).map_err(|_| Failure::Refused(format!("{s:?} contains a NUL byte")))
}

fn cstrings(v: &[String]) -> Result<Vec<CString>, Failure> {
    v.iter().map(|s| cstring(s)).collect()
}

/// The spec's env with duplicates removed (the last value wins, at the first one's place) and
/// `HOME` added from the sandbox's `/etc/passwd` (or `/`) when missing, as runc does.
pub fn environment(s: &dyn Syscall, env: &[String], uid: u32) -> Result<Vec<String>, Failure> {
    let mut out: Vec<(String, String)> = Vec::new();
    for kv in env {
        let Some((k, v)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Failure::Refused(format!(
                "invalid environment entry {kv:?}"
            )));
        };
        match out.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_owned(),
            None => out.push((k.to_owned(), v.to_owned())),
        }
    }
    if !out.iter().any(|(k, _)| k == "HOME") {
        out.push(("HOME".into(), home_of(s, uid)));
    }
    Ok(out.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// The home directory of `uid` in the sandbox's `/etc/passwd`, or `/`.
fn home_of(s: &dyn Syscall, uid: u32) -> String {
    let passwd = s.read_file(Path::new("/etc/passwd")).unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].parse() == Ok(uid))
        .map(|f| f[5].to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// `args[0]` as a path: itself if it has a slash, else the first executable regular file named
/// so in the env's `PATH` (absolute entries only, as Go's `exec.LookPath` in runc).
pub fn lookup(s: &dyn Syscall, name: &str, env: &[String]) -> Result<PathBuf, Failure> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| d.starts_with('/')) {
        let candidate = Path::new(dir).join(name);
        if let Ok(st) = s.stat(&candidate)
            && st.kind() == nix::sys::stat::SFlag::S_IFREG
            && st.mode & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(Failure::Refused(format!(
        "{name:?}: executable file not found in $PATH"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::recording::{Recording, regular};

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn env_dedups_and_adds_home_from_passwd() {
        let r = Recording::new();
        r.set_file("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
        let env = environment(&r, &strings(&["PATH=/bin", "A=1", "A=2"]), 0).unwrap();
        assert_eq!(env, ["PATH=/bin", "A=2", "HOME=/root"]);
    }

    #[test]
    fn home_defaults_to_slash_and_bad_entries_are_refused() {
        let r = Recording::new();
        assert_eq!(
            environment(&r, &strings(&["X=1"]), 0).unwrap(),
            ["X=1", "HOME=/"]
        );
        assert!(environment(&r, &strings(&["NOEQUALS"]), 0).is_err());
    }

    #[test]
    fn args0_is_looked_up_in_the_sandbox_path() {
        let r = Recording::new();
        r.set_absent("/usr/bin/sh")
            .set_stat("/bin/sh", regular(0o755));
        let env = strings(&["PATH=/usr/bin:relative:/bin"]);
        assert_eq!(lookup(&r, "sh", &env).unwrap(), Path::new("/bin/sh"));
        assert_eq!(lookup(&r, "./x", &env).unwrap(), Path::new("./x"));
        r.set_stat("/bin/data", regular(0o644));
        assert!(lookup(&r, "data", &strings(&["PATH=/bin"])).is_err());
    }
}
