//! Running short-lived commands (docker CLIs, the plugd CLI, tools) with a timeout, and their
//! [`Output`] with assertion helpers that panic with the whole story.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::procs::ProcId;

/// Default time limit for one command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Which docker CLI binary runs a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cli {
    /// `/usr/local/bin/docker`, Docker CLI 28.x.
    Docker28,
    /// `/usr/bin/docker`, Debian's docker.io CLI 20.10.
    Docker20,
}

impl Cli {
    /// Both CLIs, for tests that run the same thing with each.
    pub const ALL: [Cli; 2] = [Cli::Docker28, Cli::Docker20];

    /// Path of the binary.
    pub fn path(self) -> &'static Path {
        match self {
            Cli::Docker28 => Path::new("/usr/local/bin/docker"),
            Cli::Docker20 => Path::new("/usr/bin/docker"),
        }
    }
}

/// A command to run to completion: builder plus [`Cmd::run`].
#[derive(Debug)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    dir: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Cmd {
    /// A command with no arguments, empty stdin and [`DEFAULT_TIMEOUT`].
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            dir: None,
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.args.push(a.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Cmd {
        self.envs
            .push((k.as_ref().to_owned(), Some(v.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Cmd {
        self.envs.push((k.as_ref().to_owned(), None));
        self
    }

    /// Working directory.
    pub fn current_dir(mut self, d: impl AsRef<Path>) -> Cmd {
        self.dir = Some(d.as_ref().to_owned());
        self
    }

    /// Bytes fed to stdin (default: stdin is /dev/null).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    /// Time limit; on expiry the process is SIGKILLed (by pid) and `run` panics.
    pub fn timeout(mut self, t: Duration) -> Cmd {
        self.timeout = t;
        self
    }

    /// The command line, shell-like, for messages.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| {
                let s = a.to_string_lossy();
                if s.is_empty() || s.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c)) {
                    format!("'{}'", s.replace('\'', r"'\''"))
                } else {
                    s.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A `std::process::Command` with the program, arguments, environment and directory set.
    pub fn to_command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.envs {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = &self.dir {
            c.current_dir(d);
        }
        c
    }

    /// Runs the command to completion. Panics only if it cannot be started or exceeds its
    /// timeout; a non-zero exit is reported in the [`Output`] (use [`Output::assert_ok`]).
    pub fn run(self) -> Output {
        let cmdline = self.display();
        let started = Instant::now();
        let mut c = self.to_command();
        c.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}"));
        let id = ProcId::of(child.id() as i32);
        if let (Some(input), Some(mut w)) = (self.stdin, child.stdin.take()) {
            std::thread::spawn(move || {
                let _ = w.write_all(&input);
            });
        }
        let out_rx = read_all(child.stdout.take().expect("stdout pipe"));
        let err_rx = read_all(child.stderr.take().expect("stderr pipe"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = match rx.recv_timeout(self.timeout) {
            Ok(s) => s.unwrap_or_else(|e| panic!("waiting for `{cmdline}`: {e}")),
            Err(_) => {
                if let Some(id) = id {
                    id.signal(Signal::SIGKILL);
                }
                let _ = rx.recv_timeout(Duration::from_secs(10));
                let stdout = out_rx
                    .recv_timeout(Duration::from_secs(2))
                    .unwrap_or_default();
                let stderr = err_rx
                    .recv_timeout(Duration::from_secs(2))
                    .unwrap_or_default();
                panic!(
                    "`{cmdline}` timed out after {:?} and was killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.timeout,
                    String::from_utf8_lossy(&stdout),
                    String::from_utf8_lossy(&stderr)
                );
            }
        };
        // A grandchild that inherited the pipes could keep them open: don't wait forever.
        let stdout = out_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_default();
        let stderr = err_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_default();
        Output {
            cmdline,
            code: status.code(),
            signal: std::os::unix::process::ExitStatusExt::signal(&status),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed: started.elapsed(),
        }
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// What a finished command did.
#[derive(Clone)]
pub struct Output {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit code; `None` if it was killed by a signal.
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// Wall-clock time it took.
    pub elapsed: Duration,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "unknown status".to_owned(),
        };
        writeln!(f, "`{}`: {status} after {:?}", self.cmdline, self.elapsed)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

impl Output {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics (showing everything) unless the command exited 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &Output {
        if !self.success() {
            panic!("command failed, expected success:\n{self}");
        }
        self
    }

    /// Panics unless the command exited with a non-zero code (a signal death is not accepted).
    #[track_caller]
    pub fn assert_failed(&self) -> &Output {
        if self.success() || self.code.is_none() {
            panic!("expected the command to fail with an exit code:\n{self}");
        }
        self
    }

    /// Panics unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Output {
        if self.code != Some(code) {
            panic!("expected exit code {code}:\n{self}");
        }
        self
    }

    /// Panics unless stdout contains `needle`.
    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Output {
        if !self.stdout.contains(needle) {
            panic!("expected stdout to contain {needle:?}:\n{self}");
        }
        self
    }

    /// Panics unless stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Output {
        if !self.stderr.contains(needle) {
            panic!("expected stderr to contain {needle:?}:\n{self}");
        }
        self
    }

    /// Stdout with surrounding whitespace removed.
    pub fn trimmed(&self) -> &str {
        self.stdout.trim()
    }

    /// Non-empty stdout lines, trimmed.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Stdout parsed as JSON; panics (showing the output) if it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}
