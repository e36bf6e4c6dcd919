//! A command on a pseudo-terminal: what a user at a terminal sees and types.
//!
//! The privileges prompt of `install` and the progress bars are only shown on a terminal, so the
//! tests that check them need one. stdin and stdout are the pty's slave side; stderr stays a pipe so
//! errors can be asserted apart from the screen. The screen is read continuously into a buffer;
//! [`PtySession::expect`] waits for text to appear on it, [`PtySession::send`] types.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::pty::openpty;
use nix::sys::signal::Signal;

use super::cmd::Cmd;
use super::procs::ProcId;

/// A command running on a pseudo-terminal.
pub struct PtySession {
    cmdline: String,
    child: Child,
    master: File,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

/// How a pty session ended: exit code, everything the terminal showed, and stderr.
#[derive(Debug)]
pub struct PtyOutput {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// The terminal's bytes (stdout and the echo of what was typed).
    pub screen: String,
    /// stderr, a pipe.
    pub stderr: String,
}

impl PtySession {
    /// Starts `cmd` with stdin and stdout on a new pty (stderr on a pipe).
    #[track_caller]
    pub fn spawn(cmd: Cmd) -> PtySession {
        let cmdline = cmd.display();
        let pty = openpty(None, None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let mut c = cmd.to_command();
        c.stdin(Stdio::from(slave.try_clone().expect("dup pty slave")))
            .stdout(Stdio::from(slave))
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{cmdline}` on a pty: {e}"));
        // `c` still holds the slave fds: drop it so the master sees EIO once the child is gone.
        drop(c);
        let master = File::from(pty.master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut r = master.try_clone().expect("dup pty master");
        let sink = screen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the last slave fd closes: the end of the screen.
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut err = child.stderr.take().expect("stderr pipe");
        let stderr = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        PtySession {
            cmdline,
            child,
            master,
            screen,
            reader: Some(reader),
            stderr: Some(stderr),
        }
    }

    /// What the terminal has shown so far.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits until the screen shows `needle`; panics with the screen after `timeout`.
    #[track_caller]
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(needle) {
                return s;
            }
            if start.elapsed() > timeout {
                self.kill();
                panic!(
                    "`{}`: {needle:?} did not appear within {timeout:?}\n--- screen ---\n{s}",
                    self.cmdline
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `text` on the terminal.
    pub fn send(&mut self, text: &str) {
        self.master
            .write_all(text.as_bytes())
            .expect("writing to the pty");
    }

    fn kill(&mut self) {
        if let Some(id) = ProcId::of(self.child.id() as i32) {
            id.signal(Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }

    /// Waits for the command to end (killing it after `timeout`, then panicking).
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> PtyOutput {
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("waiting for the pty command") {
                break st;
            }
            if start.elapsed() > timeout {
                self.kill();
                panic!(
                    "`{}` did not end within {timeout:?}\n--- screen ---\n{}",
                    self.cmdline,
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        PtyOutput {
            code: status.code(),
            screen: self.screen(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl Drop for PtySession {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}
