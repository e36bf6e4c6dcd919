//! A plugin's stdout and stderr → the plugin's own log (its [`Observer`], `plugd logs`), one entry
//! per line; plugd's own log never holds them. `plugd-init`'s output, which is plugd's, goes to
//! plugd's log as dockerd logs a plugin's: one record per line with the field `plugin=<name>`,
//! stdout at info and stderr at error.
//!
//! The plugin writes to two FIFOs in its state dir (`PluginSpec::state_dir`, never visible inside
//! the sandbox), `init-stdout` and `init-stderr` (dockerd's names), which `plugd-init` opened
//! read-write for it. plugd opens them read-write and non-blocking as well, so neither side ever
//! blocks on `open`, neither ever sees EOF/EPIPE, and a restarted plugd just reopens them: what
//! the plugin wrote meanwhile waits in the pipe buffer. Whatever is found at those paths must be
//! a FIFO itself: a symlink is not followed, and nothing else is opened for reading (see
//! [`open_fifo`]).
//!
//! Lines are bounded ([`MAX_LINE`]): a longer line is logged truncated, with the number of bytes
//! dropped. The last lines of stderr are kept ([`Tail`]) for error messages.

use plugd_core::Observer;
use plugd_core::observe::OutputStream;
use rustix::fs::{CWD, FileType, Mode, OFlags, mknodat};
use std::collections::VecDeque;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt as _;
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

/// FIFO for the plugin's stdout (dockerd's name).
pub(crate) const STDOUT_FIFO: &str = "init-stdout";
/// FIFO for the plugin's stderr.
pub(crate) const STDERR_FIFO: &str = "init-stderr";
/// Longest line logged as is, in bytes.
pub(crate) const MAX_LINE: usize = 16 * 1024;
/// stderr lines kept for error messages.
const TAIL_LINES: usize = 20;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// stdout: logged at info.
    Stdout,
    /// stderr: logged at error.
    Stderr,
}

/// One complete (or flushed) line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// The line without its newline, lossily decoded, at most [`MAX_LINE`] bytes of input.
    pub(crate) text: String,
    /// Bytes of this line that were dropped.
    pub(crate) truncated: usize,
}

/// Splits a byte stream into bounded lines; memory use stays below `max` bytes.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    max: usize,
    buf: Vec<u8>,
    dropped: usize,
}

impl LineSplitter {
    /// Lines longer than `max` bytes are truncated to `max`.
    pub(crate) fn new(max: usize) -> Self {
        LineSplitter {
            max,
            buf: Vec::new(),
            dropped: 0,
        }
    }

    /// Feeds `data`; returns the lines it completed.
    pub(crate) fn push(&mut self, mut data: &[u8]) -> Vec<Line> {
        let mut lines = Vec::new();
        while !data.is_empty() {
            let (part, complete) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..i], Some(i + 1)),
                None => (data, None),
            };
            let room = self.max - self.buf.len();
            let keep = part.len().min(room);
            self.buf.extend_from_slice(&part[..keep]);
            self.dropped += part.len() - keep;
            match complete {
                Some(n) => {
                    lines.push(self.take());
                    data = &data[n..];
                }
                None => break,
            }
        }
        lines
    }

    /// The unterminated rest, if any (at EOF).
    pub(crate) fn finish(&mut self) -> Option<Line> {
        (!self.buf.is_empty() || self.dropped > 0).then(|| self.take())
    }

    fn take(&mut self) -> Line {
        let mut text = String::from_utf8_lossy(&self.buf).into_owned();
        if text.ends_with('\r') {
            text.pop();
        }
        let line = Line {
            text,
            truncated: self.dropped,
        };
        self.buf.clear();
        self.dropped = 0;
        line
    }
}

/// The last lines of a stream, for error messages.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: &str) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == TAIL_LINES {
            q.pop_front();
        }
        q.push_back(line.to_string());
    }

    /// The kept lines joined by `\n` (empty when none).
    pub(crate) fn text(&self) -> String {
        let q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

/// Where the lines of one stream go.
#[derive(Debug, Clone)]
pub(crate) enum Sink {
    /// plugd's own log, naming the plugin (`plugd-init`'s output).
    Daemon(String),
    /// The plugin's own log (the plugin's output).
    Plugin(Observer),
}

impl Sink {
    fn name(&self) -> &str {
        match self {
            Sink::Daemon(name) => name,
            Sink::Plugin(_) => "plugin",
        }
    }

    /// Passes on one line of `stream`.
    fn emit(&self, source: &str, stream: Stream, line: &Line) {
        let text = line.text.as_str();
        match self {
            Sink::Plugin(observer) => {
                let stream = match stream {
                    Stream::Stdout => OutputStream::Stdout,
                    Stream::Stderr => OutputStream::Stderr,
                };
                if line.truncated > 0 {
                    observer.output(
                        stream,
                        &format!("{text}[... {} bytes truncated]", line.truncated),
                    );
                } else {
                    observer.output(stream, text);
                }
            }
            Sink::Daemon(plugin) => match (stream, line.truncated) {
                (Stream::Stdout, 0) => tracing::info!(plugin = %plugin, source, "{text}"),
                (Stream::Stderr, 0) => tracing::error!(plugin = %plugin, source, "{text}"),
                (Stream::Stdout, n) => {
                    tracing::info!(plugin = %plugin, source, truncated = n, "{text}…")
                }
                (Stream::Stderr, n) => {
                    tracing::error!(plugin = %plugin, source, truncated = n, "{text}…")
                }
            },
        }
    }
}

/// Reads `rx` until EOF or error, passing lines on and keeping stderr's tail.
async fn pump(
    mut rx: pipe::Receiver,
    sink: Sink,
    source: &'static str,
    stream: Stream,
    tail: Tail,
) {
    let mut splitter = LineSplitter::new(MAX_LINE);
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(plugin = %sink.name(), source, error = %e, "reading plugin output");
                break;
            }
        };
        for line in splitter.push(&buf[..n]) {
            if stream == Stream::Stderr {
                tail.push(&line.text);
            }
            sink.emit(source, stream, &line);
        }
    }
    if let Some(line) = splitter.finish() {
        if stream == Stream::Stderr {
            tail.push(&line.text);
        }
        sink.emit(source, stream, &line);
    }
}

/// Spawns a task passing on everything read from `rx`; `source` says whose output it is.
pub(crate) fn spawn_pump(
    rx: pipe::Receiver,
    sink: Sink,
    source: &'static str,
    stream: Stream,
    tail: Tail,
) -> JoinHandle<()> {
    tokio::spawn(pump(rx, sink, source, stream, tail))
}

/// The two FIFOs of one plugin.
#[derive(Debug, Clone)]
pub(crate) struct Fifos {
    /// `<state_dir>/init-stdout`.
    pub(crate) stdout: PathBuf,
    /// `<state_dir>/init-stderr`.
    pub(crate) stderr: PathBuf,
}

impl Fifos {
    /// The FIFO paths inside `state_dir`.
    pub(crate) fn in_dir(state_dir: &Path) -> Self {
        Fifos {
            stdout: state_dir.join(STDOUT_FIFO),
            stderr: state_dir.join(STDERR_FIFO),
        }
    }

    /// Creates both (mode 0600), replacing whatever was there.
    pub(crate) fn create(&self) -> std::io::Result<()> {
        for path in [&self.stdout, &self.stderr] {
            remove_file(path)?;
            mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o600), 0)?;
        }
        Ok(())
    }

    /// Removes both (absent is fine).
    pub(crate) fn remove(&self) -> std::io::Result<()> {
        remove_file(&self.stdout)?;
        remove_file(&self.stderr)
    }

    /// Opens both read-write, non-blocking ([`open_fifo`]), and starts passing their lines to
    /// `observer`.
    pub(crate) fn attach(&self, observer: &Observer) -> std::io::Result<Logs> {
        let stdout = pipe::Receiver::from_owned_fd(open_fifo(&self.stdout)?)?;
        let stderr = pipe::Receiver::from_owned_fd(open_fifo(&self.stderr)?)?;
        let tail = Tail::default();
        Ok(Logs {
            tasks: vec![
                spawn_pump(
                    stdout,
                    Sink::Plugin(observer.clone()),
                    "plugin",
                    Stream::Stdout,
                    tail.clone(),
                ),
                spawn_pump(
                    stderr,
                    Sink::Plugin(observer.clone()),
                    "plugin",
                    Stream::Stderr,
                    tail.clone(),
                ),
            ],
            tail,
        })
    }
}

/// Opens the FIFO at `path` read-write and non-blocking. The path itself is opened first with
/// `O_PATH | O_NOFOLLOW` (no symlink is followed, and opening an `O_PATH` fd has no side effect
/// even on a device node) and must be a FIFO; only then is that same inode opened for reading,
/// through `/proc/self/fd`, so nothing but the FIFO that was checked is ever read.
pub(crate) fn open_fifo(path: &Path) -> std::io::Result<OwnedFd> {
    let not_a_fifo = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a FIFO", path.display()),
        )
    };
    let at = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // O_NOFOLLOW | O_PATH opens a symlink itself; ELOOP is for older kernels.
        rustix::io::Errno::LOOP => not_a_fifo(),
        e => e.into(),
    })?;
    if FileType::from_raw_mode(rustix::fs::fstat(&at)?.st_mode) != FileType::Fifo {
        return Err(not_a_fifo());
    }
    let fd = rustix::fs::open(
        format!("/proc/self/fd/{}", at.as_raw_fd()),
        OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) != FileType::Fifo {
        return Err(not_a_fifo());
    }
    Ok(fd)
}

fn remove_file(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The logging tasks of one plugin; they end when this is dropped.
#[derive(Debug)]
pub(crate) struct Logs {
    tasks: Vec<JoinHandle<()>>,
    tail: Tail,
}

impl Logs {
    /// The last stderr lines read so far.
    pub(crate) fn stderr_tail(&self) -> String {
        self.tail.text()
    }

    /// Lets the tasks log what is already buffered, then stops them.
    pub(crate) async fn drain_and_close(&mut self) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn texts(lines: &[Line]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn splits_on_newlines_across_chunks() {
        let mut s = LineSplitter::new(64);
        assert!(s.push(b"hel").is_empty());
        let lines = s.push(b"lo\nwor");
        assert_eq!(texts(&lines), ["hello"]);
        let lines = s.push(b"ld\r\n\nlast");
        assert_eq!(texts(&lines), ["world", ""]);
        assert_eq!(s.finish().unwrap().text, "last");
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn long_lines_are_truncated_and_counted() {
        let mut s = LineSplitter::new(4);
        let lines = s.push(b"abcdefgh\nij");
        assert_eq!(
            lines,
            [Line {
                text: "abcd".into(),
                truncated: 4
            }]
        );
        // The bound holds across chunks, and the next line starts clean.
        assert!(s.push(b"klmnop").is_empty());
        assert!(s.buf.len() <= 4);
        let lines = s.push(b"q\nok\n");
        assert_eq!(
            lines,
            [
                Line {
                    text: "ijkl".into(),
                    truncated: 5
                },
                Line {
                    text: "ok".into(),
                    truncated: 0
                }
            ]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut s = LineSplitter::new(64);
        let lines = s.push(b"a\xffb\n");
        assert_eq!(lines[0].text, "a\u{fffd}b");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let tail = Tail::default();
        for i in 0..30 {
            tail.push(&format!("l{i}"));
        }
        let text = tail.text();
        assert!(text.starts_with("l10\n"), "{text}");
        assert!(text.ends_with("l29"), "{text}");
    }

    #[tokio::test]
    async fn fifos_open_without_a_writer_and_feed_the_tail() {
        let dir = TempDir::new("fifo");
        let fifos = Fifos::in_dir(dir.path());
        fifos.create().unwrap();
        // Creating again replaces them.
        fifos.create().unwrap();
        let (observer, seen) = Observer::recording();
        let logs = fifos.attach(&observer).unwrap();
        // A writer that opens, writes and goes away: the reader sees no EOF (it holds a write end).
        {
            use std::io::Write as _;
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifos.stderr)
                .unwrap();
            w.write_all(b"first\nsecond\n").unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while logs.stderr_tail() != "first\nsecond" {
            assert!(
                std::time::Instant::now() < deadline,
                "tail: {:?}",
                logs.stderr_tail()
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // The lines are the plugin's: they went to its observer (its own log), as stderr.
        assert_eq!(
            seen.lines(),
            [
                (OutputStream::Stderr, "first".to_string()),
                (OutputStream::Stderr, "second".to_string())
            ]
        );
        drop(logs);
        fifos.remove().unwrap();
        fifos.remove().unwrap();
        assert!(!fifos.stdout.exists() && !fifos.stderr.exists());
    }

    #[tokio::test]
    async fn only_a_fifo_itself_is_opened() {
        let dir = TempDir::new("fifo-kinds");
        // A FIFO elsewhere, reached through a symlink: not followed.
        let target = dir.path().join("target-fifo");
        mknodat(CWD, &target, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = open_fifo(&link).unwrap_err();
        assert!(err.to_string().contains("is not a FIFO"), "{err}");
        // A regular file, a directory, a device node: refused before any read-open.
        let file = dir.path().join("file");
        std::fs::write(&file, "secret").unwrap();
        for p in [file.as_path(), dir.path(), Path::new("/dev/null")] {
            let err = open_fifo(p).unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::InvalidInput,
                "{}",
                p.display()
            );
        }
        let fifos = Fifos {
            stdout: link,
            stderr: target.clone(),
        };
        assert!(fifos.attach(&Observer::discard()).is_err());
        // The FIFO itself is fine.
        open_fifo(&target).unwrap();
    }
}
