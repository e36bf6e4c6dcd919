//! Log drivers: plugd relays each FIFO dockerd names to a FIFO of its own inside the plugin's
//! sandbox, so a native log plugin reads the path dockerd sent and reaches nothing else.
//!
//! **Why a relay, not a bind of the engine's logging dir.** dockerd sends a legacy plugin the host
//! path `/run/docker/logging/<id>`. Binding the host's `/run/docker/logging` into the sandbox
//! would make it work, but would also hand the plugin every other container's FIFO — the streams
//! of every other log plugin — readable (stealing lines) and writable (forging them). Instead the
//! plugin gets a directory of plugd's, [`Relays::dir`] (in its state dir, which the plugin cannot
//! otherwise see), bound read-only at `/run/docker/logging`, and on each `StartLogging` plugd:
//! 1. checks `File` with [`fifo_name`] (one plain name in `/run/docker/logging`; anything else is
//!    refused before anything is opened);
//! 2. opens the engine's FIFO `<engine_logging_dir>/<name>` without following a symlink and only
//!    if it is a FIFO;
//! 3. makes `<dir>/<name>` and opens it read-write itself, so the plugin's death never gives a
//!    writer EPIPE and whatever it has not read stays in the pipe;
//! 4. copies bytes from the engine's FIFO to it on a task (the relay), counting dockerd's frames;
//! 5. forwards the call unchanged: the path inside the sandbox is the one dockerd sent.
//!
//! `StopLogging` drains the engine's FIFO (dockerd has stopped writing when it sends it) into the
//! plugin's, forwards the call, then removes the plugin's FIFO. The relay never holds more than
//! [`MAX_PENDING`] bytes: past that it stops reading, and dockerd's writes block as they would on
//! a managed plugin's full FIFO.
//!
//! **Crashes.** The relays belong to the plugin id, not to one process: when the plugin dies and
//! the manager starts it again, [`Relays::replay`] runs before the new process serves anything.
//! Bytes still in the plugin's FIFO survive (plugd holds it open). The dead reader may have taken
//! part of a frame out of the pipe, and the new one would then read garbage; so plugd reads what
//! is left in the pipe through its own descriptor, knows from the bytes it wrote and the frame
//! boundaries it recorded where the reader stopped, counts the one frame cut there as
//! **dropped**, and writes back the whole frames that follow; then it sends `StartLogging` again
//! with the body dockerd sent. A frame the dead plugin read whole but had not stored yet is lost
//! without plugd being able to see it; the SDK's reader keeps that window to one `log` call.

use crate::forward::Forwarder;
use bytes::Bytes;
use plugd_core::protocol::logdriver::{self, Request, fifo_name, frame};
use plugd_core::protocol::status;
use plugd_core::{LogStream, Reply};
use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

/// Bytes read from dockerd and not yet in the plugin's FIFO, at most.
pub(crate) const MAX_PENDING: usize = 1 << 20;
/// Most bytes taken back out of a dead reader's FIFO (a pipe holds at most 1 MiB unless raised).
const MAX_RECOVER: usize = 16 << 20;
/// How long `StopLogging` waits for the plugin to take the rest of a stream into its FIFO.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Stopped streams kept for [`Relays::streams`], newest last.
const KEEP_STOPPED: usize = 64;
/// Read size.
const CHUNK: usize = 64 << 10;

/// The log streams of one plugin, across its restarts.
#[derive(Debug)]
pub(crate) struct Relays {
    plugin: String,
    engine_dir: PathBuf,
    dir: PathBuf,
    /// `StartLogging` bodies of open streams, one file per FIFO name, so that a restarted plugd
    /// resumes them; not bound into the sandbox (they carry the container's environment).
    records: PathBuf,
    streams: Mutex<BTreeMap<String, Arc<Stream>>>,
    stopped: Mutex<VecDeque<LogStream>>,
}

#[derive(Debug)]
struct Stream {
    file: String,
    container_id: String,
    /// `StartLogging` as dockerd sent it, sent again after a restart.
    start: Bytes,
    path: PathBuf,
    engine: Arc<AsyncFd<File>>,
    plugin: Arc<AsyncFd<File>>,
    core: Arc<Mutex<Core>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// One stream's bytes and counts; only ever locked for non-blocking work.
#[derive(Debug)]
struct Core {
    pending: Vec<u8>,
    decoder: frame::Decoder,
    /// The frame decoder failed (dockerd wrote something else): bytes are still relayed, frames
    /// no longer counted.
    undecodable: bool,
    /// Bytes read from dockerd, ever.
    received_bytes: u64,
    /// Bytes written to the plugin's FIFO (or skipped as cut), ever: a prefix of those received.
    written: u64,
    /// Stream offsets where frames end, oldest first, for every frame that may still be (partly)
    /// in the plugin's FIFO or pending.
    ends: VecDeque<u64>,
    /// The end of the newest frame dropped from `ends` (so the start of `ends[0]`).
    base: u64,
    /// The plugin FIFO's capacity: a frame that ended this far before `written` has been read.
    capacity: u64,
    received: u64,
    dropped: u64,
    /// dockerd closed its end (it never does while logging: it holds the FIFO read-write).
    eof: bool,
}

/// What one [`Core::pump`] ran into.
#[derive(Debug, Default, Clone, Copy)]
struct Pumped {
    engine_blocked: bool,
    plugin_blocked: bool,
}

impl Core {
    fn new(capacity: u64) -> Core {
        Core {
            pending: Vec::new(),
            decoder: frame::Decoder::new(),
            undecodable: false,
            received_bytes: 0,
            written: 0,
            ends: VecDeque::new(),
            base: 0,
            capacity,
            received: 0,
            dropped: 0,
            eof: false,
        }
    }

    /// Moves what can move without blocking: dockerd's FIFO → pending → the plugin's FIFO.
    fn pump(&mut self, engine: &File, plugin: &File) -> io::Result<Pumped> {
        let mut out = Pumped::default();
        let mut buf = vec![0u8; CHUNK];
        loop {
            self.flush(plugin, &mut out)?;
            if self.eof || self.pending.len() >= MAX_PENDING {
                return Ok(out);
            }
            let room = (MAX_PENDING - self.pending.len()).min(CHUNK);
            match (&*engine).read(&mut buf[..room]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.take_in(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    out.engine_blocked = true;
                    self.flush(plugin, &mut out)?;
                    return Ok(out);
                }
                Err(e) => return Err(e),
            }
            if out.plugin_blocked && self.pending.len() >= MAX_PENDING {
                return Ok(out);
            }
        }
    }

    fn take_in(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.received_bytes += bytes.len() as u64;
        if self.undecodable {
            return;
        }
        self.decoder.push(bytes);
        loop {
            match self.decoder.next_entry() {
                Ok(Some(_)) => {
                    self.received += 1;
                    self.ends
                        .push_back(self.received_bytes - self.decoder.buffered() as u64);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "log stream from the engine is not framed; relaying it uncounted");
                    self.undecodable = true;
                    break;
                }
            }
        }
    }

    fn flush(&mut self, plugin: &File, out: &mut Pumped) -> io::Result<()> {
        while !self.pending.is_empty() {
            match (&*plugin).write(&self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                    self.written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    out.plugin_blocked = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        while self
            .ends
            .front()
            .is_some_and(|&end| end.saturating_add(self.capacity) <= self.written)
        {
            self.base = self.ends.pop_front().unwrap_or(self.base);
        }
        Ok(())
    }

    /// Frames written whole to the plugin's FIFO and not cut since.
    fn delivered(&self) -> u64 {
        let not_yet = self
            .ends
            .iter()
            .rev()
            .take_while(|&&e| e > self.written)
            .count() as u64;
        self.received.saturating_sub(not_yet + self.dropped)
    }

    /// After the reader died: takes back what it left in the pipe, drops the frame it cut (if
    /// any) and puts back the whole frames after it. Returns how many frames were dropped.
    fn recover(&mut self, plugin: &File) -> io::Result<u64> {
        // No more than plugd itself may have left there: what it wrote since the first frame it
        // still tracks. A plugin writing into its own FIFO (below) cannot make plugd read, or
        // hold, more than that.
        let limit = usize::try_from(self.written.saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(MAX_RECOVER);
        let mut left = Vec::new();
        let mut buf = vec![0u8; CHUNK];
        while left.len() < limit {
            let want = (limit - left.len()).min(buf.len());
            match (&*plugin).read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => left.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        // The plugin can open its own FIFO for writing too (a read-only mount does not stop that
        // for a FIFO) and add bytes plugd never wrote: it only misleads itself, but the count
        // must not underflow.
        let consumed = self.written.saturating_sub(left.len() as u64);
        let mut start = self.base;
        let mut cut_end = None;
        for &end in &self.ends {
            if start < consumed && consumed < end {
                cut_end = Some(end);
                break;
            }
            if end > consumed {
                break;
            }
            start = end;
        }
        let mut dropped = 0;
        if let Some(end) = cut_end.filter(|_| !self.undecodable) {
            dropped = 1;
            self.dropped += 1;
            let skip = end - consumed;
            let from_left = (skip as usize).min(left.len());
            left.drain(..from_left);
            let from_pending = skip as usize - from_left;
            self.pending.drain(..from_pending.min(self.pending.len()));
            self.written += from_pending as u64;
        }
        // The pipe is empty and `left` came out of it, so it fits back in at once.
        let mut rest = &left[..];
        while !rest.is_empty() {
            match (&*plugin).write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(dropped)
    }
}

impl Relays {
    /// The relays of plugin `plugin`, whose FIFOs go in `dir` (created here, 0700), reading the
    /// engine's FIFOs in `engine_dir`.
    pub(crate) fn new(plugin: &str, engine_dir: &Path, dir: PathBuf, records: PathBuf) -> Relays {
        Relays {
            plugin: plugin.to_string(),
            engine_dir: engine_dir.to_path_buf(),
            dir,
            records,
            streams: Mutex::new(BTreeMap::new()),
            stopped: Mutex::new(VecDeque::new()),
        }
    }

    /// The directory bound at `/run/docker/logging`; created (0700, a real directory) if missing.
    pub(crate) fn dir(&self) -> io::Result<&Path> {
        use std::os::unix::fs::DirBuilderExt as _;
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if !std::fs::symlink_metadata(&self.dir)?.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                self.dir.display()
            )));
        }
        Ok(&self.dir)
    }

    /// The counters of every open stream and of the last stopped ones.
    pub(crate) fn streams(&self) -> Vec<LogStream> {
        let mut out: Vec<LogStream> = self
            .stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        out.extend(streams.values().map(|s| s.counters(true)));
        out
    }

    fn refuse(&self, message: String) -> Reply {
        tracing::warn!(plugin = %self.plugin, "{message}");
        Reply::err(status::BAD_REQUEST, &message)
    }

    /// `LogDriver.StartLogging`: see the module docs.
    pub(crate) async fn start(&self, forwarder: &Forwarder, body: Bytes) -> Reply {
        let (file, container_id) = match Request::decode(logdriver::START_LOGGING, &body) {
            Ok(Request::StartLogging { file, info }) => (file, info.container_id),
            Ok(_) => unreachable!("decode answers StartLogging with StartLogging"),
            Err(reply) => return reply,
        };
        let name = match fifo_name(&file) {
            Ok(n) => n.to_string(),
            Err(e) => return self.refuse(e),
        };
        if self.lookup(&name).is_some() {
            return self.refuse(format!("File {file:?}: already logging to it"));
        }
        let stream = match self.open(&name, &file, &container_id, body.clone(), false) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                return Reply::err(
                    status::PLUGIN_ERROR,
                    &format!("plugd cannot relay {file}: {e}"),
                );
            }
        };
        stream.spawn();
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), stream.clone());
        let reply = forwarder.call(logdriver::START_LOGGING, body.clone()).await;
        if reply.status != status::OK {
            self.remove(&name);
            stream.close().await;
        } else if let Err(e) = self.record(&name, &body) {
            tracing::warn!(plugin = %self.plugin, file = %file, error = %e, "cannot record the log stream; a plugd restart will not resume it");
        }
        reply
    }

    fn record(&self, name: &str, body: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt as _;
        match std::fs::DirBuilder::new().mode(0o700).create(&self.records) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let tmp = self.records.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, self.records.join(name))
    }

    fn forget(&self, name: &str) {
        if let Err(e) = std::fs::remove_file(self.records.join(name))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(plugin = %self.plugin, name, error = %e, "removing a log stream's record");
        }
    }

    /// After a plugd restart: the streams recorded by the previous plugd are relayed again.
    /// dockerd still holds their FIFOs (one it has unlinked is over: its record goes); an adopted
    /// plugin (`replay` false) still reads its FIFOs, a new process is sent `StartLogging` again.
    /// What the previous plugd held in memory (at most [`MAX_PENDING`] per stream) is lost.
    pub(crate) async fn restore(&self, forwarder: &Forwarder, replay: bool) {
        let Ok(dir) = std::fs::read_dir(&self.records) else {
            return;
        };
        let names: Vec<String> = dir
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        for name in names {
            if self.lookup(&name).is_some() {
                continue;
            }
            let body = match std::fs::read(self.records.join(&name)) {
                Ok(b) => Bytes::from(b),
                Err(_) => continue,
            };
            let parsed = match Request::decode(logdriver::START_LOGGING, &body) {
                Ok(Request::StartLogging { file, info }) => {
                    Some((file, info.container_id)).filter(|(f, _)| fifo_name(f) == Ok(&name))
                }
                _ => None,
            };
            let Some((file, container_id)) = parsed else {
                self.forget(&name);
                continue;
            };
            let stream = match self.open(&name, &file, &container_id, body.clone(), !replay) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    tracing::info!(plugin = %self.plugin, file = %file, error = %e, "a recorded log stream is over");
                    self.forget(&name);
                    let _ = std::fs::remove_file(self.dir.join(&name));
                    continue;
                }
            };
            stream.spawn();
            self.streams
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), stream.clone());
            if replay {
                let reply = forwarder.call(logdriver::START_LOGGING, body).await;
                if reply.status != status::OK {
                    tracing::warn!(plugin = %self.plugin, file = %file, status = reply.status, "the plugin refused a resumed StartLogging");
                }
            }
            tracing::info!(plugin = %self.plugin, file = %file, "log stream resumed after a plugd restart");
        }
    }

    /// `LogDriver.StopLogging`: see the module docs.
    pub(crate) async fn stop(&self, forwarder: &Forwarder, body: Bytes) -> Reply {
        let name = match Request::decode(logdriver::STOP_LOGGING, &body) {
            Ok(Request::StopLogging { file }) => fifo_name(&file).map(str::to_string),
            Ok(_) => unreachable!("decode answers StopLogging with StopLogging"),
            Err(reply) => return reply,
        };
        let stream = match name {
            Ok(name) => self.lookup(&name).map(|s| (name, s)),
            Err(e) => return self.refuse(e),
        };
        let Some((name, stream)) = stream else {
            return forwarder.call(logdriver::STOP_LOGGING, body).await;
        };
        stream.halt().await;
        if let Err(e) = stream.drain().await {
            tracing::warn!(plugin = %self.plugin, file = %stream.file, error = %e, "draining the log stream at StopLogging");
        }
        let reply = forwarder.call(logdriver::STOP_LOGGING, body).await;
        self.remove(&name);
        self.forget(&name);
        stream.close().await;
        let mut stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        stopped.push_back(stream.counters(false));
        while stopped.len() > KEEP_STOPPED {
            stopped.pop_front();
        }
        reply
    }

    /// After a restart: every open stream resumes in the new process (see the module docs).
    pub(crate) async fn replay(&self, forwarder: &Forwarder) {
        let streams: Vec<Arc<Stream>> = self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for stream in streams {
            let recovered = {
                let mut core = stream.core.lock().unwrap_or_else(|p| p.into_inner());
                core.recover(stream.plugin.get_ref())
            };
            match recovered {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(plugin = %self.plugin, file = %stream.file, dropped = n, "the plugin died inside a log frame; that entry is dropped")
                }
                Err(e) => {
                    tracing::warn!(plugin = %self.plugin, file = %stream.file, error = %e, "recovering the log stream after a restart")
                }
            }
            let reply = forwarder
                .call(logdriver::START_LOGGING, stream.start.clone())
                .await;
            if reply.status == status::OK {
                tracing::info!(plugin = %self.plugin, file = %stream.file, "log stream resumed after a restart");
            } else {
                tracing::warn!(plugin = %self.plugin, file = %stream.file, status = reply.status, body = %String::from_utf8_lossy(&reply.body), "the restarted plugin refused StartLogging again");
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<Arc<Stream>> {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn remove(&self, name: &str) {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// A stream's FIFOs: dockerd's, and the plugin's — made anew, or (`reuse`, after a plugd
    /// restart, when an adopted plugin still reads it) the one already there.
    fn open(
        &self,
        name: &str,
        file: &str,
        container_id: &str,
        start: Bytes,
        reuse: bool,
    ) -> io::Result<Stream> {
        let engine = open_fifo(&self.engine_dir.join(name), libc::O_RDONLY)?;
        let path = self.dir()?.join(name);
        let existing = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_fifo() && reuse => true,
            Ok(m) if m.file_type().is_fifo() => {
                std::fs::remove_file(&path)?;
                false
            }
            Ok(_) => return Err(io::Error::other(format!("{} exists", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if !existing {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )?;
        }
        let plugin = open_fifo(&path, libc::O_RDWR)?;
        let capacity = rustix::pipe::fcntl_getpipe_size(&plugin).unwrap_or(64 << 10) as u64;
        // SAFETY: a `File` is a valid open descriptor that stays open, and always returns the
        // same number, for as long as the `AsyncFd` owns it.
        let register = |f: File| unsafe { AsyncFd::register(f) }.map_err(|e| e.into_parts().1);
        Ok(Stream {
            file: file.to_string(),
            container_id: container_id.to_string(),
            start,
            path,
            engine: Arc::new(register(engine)?),
            plugin: Arc::new(register(plugin)?),
            core: Arc::new(Mutex::new(Core::new(capacity))),
            task: Mutex::new(None),
        })
    }
}

/// Opens the FIFO at `path`, non-blocking, only if it is a FIFO and not through a symlink.
fn open_fifo(path: &Path, access: i32) -> io::Result<File> {
    let at = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    if !at.metadata()?.file_type().is_fifo() {
        return Err(io::Error::other(format!(
            "{} is not a FIFO",
            path.display()
        )));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(access == libc::O_RDWR)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", at.as_raw_fd()))?;
    if !file.metadata()?.file_type().is_fifo() {
        return Err(io::Error::other(format!(
            "{} is not a FIFO",
            path.display()
        )));
    }
    Ok(file)
}

impl Stream {
    fn counters(&self, open: bool) -> LogStream {
        let core = self.core.lock().unwrap_or_else(|p| p.into_inner());
        LogStream {
            file: self.file.clone(),
            container_id: self.container_id.clone(),
            received: core.received,
            delivered: core.delivered(),
            dropped: core.dropped,
            open,
        }
    }

    fn spawn(&self) {
        let (engine, plugin, core) = (self.engine.clone(), self.plugin.clone(), self.core.clone());
        let file = self.file.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = relay(&engine, &plugin, &core).await {
                tracing::warn!(file = %file, error = %e, "log relay stopped");
            }
        });
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    async fn halt(&self) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Everything dockerd wrote, into the plugin's FIFO, waiting for the plugin to make room.
    async fn drain(&self) -> io::Result<()> {
        let work = async {
            loop {
                let pumped = {
                    let mut core = self.core.lock().unwrap_or_else(|p| p.into_inner());
                    let p = core.pump(self.engine.get_ref(), self.plugin.get_ref())?;
                    if (p.engine_blocked || core.eof) && core.pending.is_empty() {
                        return Ok(());
                    }
                    p
                };
                if pumped.plugin_blocked {
                    self.plugin.writable().await?.clear_ready();
                }
            }
        };
        match tokio::time::timeout(DRAIN_TIMEOUT, work).await {
            Ok(r) => r,
            Err(_) => {
                let mut core = self.core.lock().unwrap_or_else(|p| p.into_inner());
                let lost = core.ends.iter().filter(|&&e| e > core.written).count() as u64;
                core.dropped += lost;
                // Given up: what is pending is never written, and no longer counted as to come.
                core.pending.clear();
                core.written = core.received_bytes;
                Err(io::Error::other(format!(
                    "the plugin took nothing for {DRAIN_TIMEOUT:?}: {lost} entries dropped"
                )))
            }
        }
    }

    async fn close(&self) {
        self.halt().await;
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.path.display(), error = %e, "removing a relayed log FIFO");
        }
    }
}

/// The relay task: moves bytes whenever either side is ready.
async fn relay(
    engine: &AsyncFd<File>,
    plugin: &AsyncFd<File>,
    core: &Mutex<Core>,
) -> io::Result<()> {
    loop {
        let (want_read, want_write) = {
            let core = core.lock().unwrap_or_else(|p| p.into_inner());
            if core.eof && core.pending.is_empty() {
                return Ok(());
            }
            (
                !core.eof && core.pending.len() < MAX_PENDING,
                !core.pending.is_empty(),
            )
        };
        tokio::select! {
            ready = engine.readable(), if want_read => {
                let mut ready = ready?;
                let p = core.lock().unwrap_or_else(|p| p.into_inner()).pump(engine.get_ref(), plugin.get_ref())?;
                if p.engine_blocked {
                    ready.clear_ready();
                }
            }
            ready = plugin.writable(), if want_write => {
                let mut ready = ready?;
                let p = core.lock().unwrap_or_else(|p| p.into_inner()).pump(engine.get_ref(), plugin.get_ref())?;
                if p.plugin_blocked {
                    ready.clear_ready();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use plugd_core::protocol::logdriver::frame::LogEntry;

    fn frames(lines: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            frame::encode(
                &LogEntry {
                    source: "stdout".into(),
                    time_nano: 1,
                    line: l.as_bytes().to_vec(),
                    ..Default::default()
                },
                &mut out,
            );
        }
        out
    }

    fn fifo(dir: &Path, name: &str) -> File {
        let path = dir.join(name);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        open_fifo(&path, libc::O_RDWR).unwrap()
    }

    fn decode_all(bytes: &[u8]) -> Vec<String> {
        let mut d = frame::Decoder::new();
        d.push(bytes);
        let mut out = Vec::new();
        while let Some(e) = d.next_entry().unwrap() {
            out.push(String::from_utf8(e.line).unwrap());
        }
        d.finish().unwrap();
        out
    }

    fn read_all(f: &File) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match (&*f).read(&mut buf) {
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// A reader that dies inside a frame costs exactly that frame: the next reader gets the whole
    /// frames after it, and the counters say one was dropped.
    #[test]
    fn a_reader_cut_inside_a_frame_costs_that_frame_only() {
        let dir = TempDir::new("relay");
        let engine = fifo(dir.path(), "engine");
        let plugin = fifo(dir.path(), "plugin");
        let wire = frames(&["one", "two", "three", "four"]);
        (&engine).write_all(&wire).unwrap();
        let mut core = Core::new(64 << 10);
        let p = core.pump(&engine, &plugin).unwrap();
        assert!(p.engine_blocked && !p.plugin_blocked);
        assert_eq!((core.received, core.delivered(), core.dropped), (4, 4, 0));

        // The dead reader took frame "one" and 3 bytes of "two".
        let first = frames(&["one"]).len();
        let mut taken = vec![0u8; first + 3];
        (&plugin).read_exact(&mut taken).unwrap();
        assert_eq!(core.recover(&plugin).unwrap(), 1);
        assert_eq!(decode_all(&read_all(&plugin)), ["three", "four"]);
        assert_eq!((core.received, core.delivered(), core.dropped), (4, 3, 1));

        // More comes and goes on as before.
        (&engine).write_all(&frames(&["five"])).unwrap();
        core.pump(&engine, &plugin).unwrap();
        assert_eq!(decode_all(&read_all(&plugin)), ["five"]);
        assert_eq!((core.received, core.delivered(), core.dropped), (5, 4, 1));
    }

    /// Bytes the plugin wrote into its own FIFO (it can: a read-only mount does not stop a FIFO
    /// being opened for writing) never make plugd's accounting fail; they are put back for it.
    #[test]
    fn bytes_a_plugin_adds_to_its_fifo_do_not_break_recovery() {
        let dir = TempDir::new("relay-forged");
        let engine = fifo(dir.path(), "engine");
        let plugin = fifo(dir.path(), "plugin");
        (&engine).write_all(&frames(&["a"])).unwrap();
        let mut core = Core::new(64 << 10);
        core.pump(&engine, &plugin).unwrap();
        (&plugin).write_all(&[0xff; 100]).unwrap();
        assert_eq!(core.recover(&plugin).unwrap(), 0);
        assert_eq!(read_all(&plugin).len(), frames(&["a"]).len() + 100);
        assert_eq!((core.received, core.delivered(), core.dropped), (1, 1, 0));
    }

    /// A reader that dies between frames costs nothing.
    #[test]
    fn a_reader_stopped_between_frames_costs_nothing() {
        let dir = TempDir::new("relay-clean");
        let engine = fifo(dir.path(), "engine");
        let plugin = fifo(dir.path(), "plugin");
        (&engine).write_all(&frames(&["a", "b", "c"])).unwrap();
        let mut core = Core::new(64 << 10);
        core.pump(&engine, &plugin).unwrap();
        let mut taken = vec![0u8; frames(&["a"]).len()];
        (&plugin).read_exact(&mut taken).unwrap();
        assert_eq!(core.recover(&plugin).unwrap(), 0);
        assert_eq!(decode_all(&read_all(&plugin)), ["b", "c"]);
        assert_eq!(core.dropped, 0);
    }

    /// With the plugin's FIFO full the relay holds at most MAX_PENDING and then stops reading, so
    /// dockerd's writes block on its own FIFO rather than plugd buffering without bound; a cut
    /// frame straddling the FIFO and pending is skipped in both.
    #[test]
    fn a_full_plugin_fifo_bounds_what_plugd_holds() {
        let dir = TempDir::new("relay-full");
        let engine = fifo(dir.path(), "engine");
        let plugin = fifo(dir.path(), "plugin");
        let line = "x".repeat(1000);
        let mut core = Core::new(rustix::pipe::fcntl_getpipe_size(&plugin).unwrap() as u64);
        let mut sent = 0u64;
        let one = frames(&[&line]);
        loop {
            match (&engine).write(&one) {
                Ok(n) => assert_eq!(n, one.len()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let p = core.pump(&engine, &plugin).unwrap();
                    if !p.engine_blocked {
                        break;
                    }
                    continue;
                }
                Err(e) => panic!("{e}"),
            }
            sent += 1;
        }
        assert!(core.pending.len() >= MAX_PENDING - CHUNK && core.pending.len() <= MAX_PENDING);
        // Read half a frame, die, recover: the rest arrives whole.
        let mut taken = vec![0u8; one.len() / 2];
        (&plugin).read_exact(&mut taken).unwrap();
        assert_eq!(core.recover(&plugin).unwrap(), 1);
        let mut got = 0u64;
        let mut reader = frame::Decoder::new();
        loop {
            let bytes = read_all(&plugin);
            let p = core.pump(&engine, &plugin).unwrap();
            reader.push(&bytes);
            while let Some(e) = reader.next_entry().unwrap() {
                assert_eq!(e.line, line.as_bytes());
                got += 1;
            }
            if bytes.is_empty() && p.engine_blocked && core.pending.is_empty() {
                break;
            }
        }
        reader.finish().unwrap();
        assert_eq!(got, sent - 1);
        assert_eq!(core.received, sent);
        assert_eq!((core.delivered(), core.dropped), (sent - 1, 1));
    }
}
