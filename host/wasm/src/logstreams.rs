//! The FIFOs of a wasm log driver: plugd reads them, the guest gets typed batches.
//!
//! dockerd creates one FIFO per container (`<engine logging dir>/<id>`), keeps it open
//! read-write and writes framed entries into it with the container's output blocked while the
//! pipe is full. A guest never touches it. At `StartLogging` plugd checks the path
//! ([`fifo_name`]), opens the FIFO itself (non-blocking, no symlink followed, must be a FIFO),
//! calls the guest's `start-logging`, and starts two tasks:
//!
//! - the **reader** drains the FIFO as fast as dockerd writes it, decodes the frames and queues
//!   the entries. The queue is bounded ([`BUFFER_BYTES`] of line bytes): when it is full, new
//!   entries are **dropped and counted**, so a slow, stuck or crashed guest never blocks the
//!   container (dockerd's own `mode=non-blocking` ring buffer drops the same way);
//! - the **deliverer** hands the queue to the guest's `log` in order, up to [`BATCH`] entries a
//!   call, one call at a time. A call that fails — a guest error, a trap, a timeout — drops that
//!   batch (counted) and the stream goes on; after the instance was replaced, plugd calls
//!   `start-logging` again on the new one before its first batch (`instance`).
//!
//! `StopLogging` (dockerd has stopped writing by then) makes the reader drain what is left and the
//! deliverer hand it all over, within the call deadline (what is still queued then is dropped and
//! counted); then the guest's `stop-logging` runs and the FIFO is closed. The counters of every
//! stream are reported through `Instance::log_streams` (`plugd logstreams NAME`).
//!
//! **Across restarts.** Each open stream's `StartLogging` request is kept in the plugin's state
//! directory (plugd's own, 0700) until its `StopLogging`. When the plugin starts again — plugd
//! restarted, or the plugin was re-enabled — every stream whose FIFO dockerd still has is opened
//! again and read from where dockerd's pipe is: what the container wrote meanwhile (up to the
//! pipe's 64 KiB; beyond that dockerd blocked the container) is delivered, and the new instance
//! gets `start-logging` before its first batch.

use crate::drivers::{Answer, Call};
use crate::instance::WasmInstance;
use bytes::Bytes;
use plugd_core::protocol::logdriver::frame::{self, Decoder};
use plugd_core::protocol::logdriver::{self, Entry, Info, ReadConfig, fifo_name};
use plugd_core::protocol::status;
use plugd_core::runtime::ByteStream;
use plugd_core::{LogStream, Reply};
use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// Bytes one stream may hold between the FIFO and the guest, each entry counted with its
/// overhead ([`cost`]): 1-byte or empty lines cannot make it unbounded.
pub(crate) const BUFFER_BYTES: usize = 8 << 20;
/// What one queued entry is counted as beyond its bytes (headers, allocations).
const ENTRY_OVERHEAD: usize = 128;

/// The bytes a queued entry holds, as counted against [`BUFFER_BYTES`].
fn cost(e: &Entry) -> usize {
    e.line.len() + e.source.len() + e.partial.as_ref().map_or(0, |p| p.id.len()) + ENTRY_OVERHEAD
}
/// Most entries per `log` call.
pub(crate) const BATCH: usize = 256;
/// Stopped streams whose counters are kept for `log_streams`.
const KEEP_CLOSED: usize = 64;
/// How long a following `ReadLogs` waits before asking the guest again when nothing was logged.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// The counters of one stream.
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    /// Entries of the `log` call under way (dropped if the deliverer is cut off in it).
    in_flight: AtomicU64,
}

/// The queue between the reader and the deliverer.
#[derive(Default)]
struct Queue {
    entries: Mutex<(VecDeque<Entry>, usize)>,
    more: Notify,
    /// The reader is done (StopLogging drained the FIFO, or it failed): deliver what is left.
    finished: AtomicBool,
}

/// One open stream.
struct Stream {
    info: Info,
    /// The instance generation whose `start-logging` succeeded for it.
    started: Option<u64>,
    counters: Arc<Counters>,
    queue: Arc<Queue>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    delivered: Option<tokio::task::JoinHandle<()>>,
}

/// The log streams of one wasm plugin.
pub(crate) struct LogStreams {
    plugin: String,
    engine_dir: PathBuf,
    call_timeout: Duration,
    open: Mutex<HashMap<String, Stream>>,
    /// Where open streams' `StartLogging` requests are kept (`None`: not kept).
    records: Option<PathBuf>,
    closed: Mutex<VecDeque<LogStream>>,
    /// Pinged whenever entries reach the guest or a stream ends: a following reader looks again.
    changed: Notify,
}

impl LogStreams {
    pub(crate) fn new(
        plugin: &str,
        engine_dir: PathBuf,
        call_timeout: Duration,
        records: Option<PathBuf>,
    ) -> LogStreams {
        LogStreams {
            plugin: plugin.to_string(),
            engine_dir,
            call_timeout,
            open: Mutex::new(HashMap::new()),
            records,
            closed: Mutex::new(VecDeque::new()),
            changed: Notify::new(),
        }
    }

    /// `StartLogging` (`body`, as dockerd sent it): opens the FIFO, lets the guest start, then
    /// starts reading.
    pub(crate) async fn start(
        self: &Arc<Self>,
        instance: &WasmInstance,
        me: Weak<WasmInstance>,
        file: String,
        info: Info,
        body: &[u8],
    ) -> Reply {
        let fifo = match self.open_fifo(&file) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(plugin = %self.plugin, file, "StartLogging refused: {e}");
                return Reply::err(
                    status::PLUGIN_ERROR,
                    &format!("plugin {}: {e}", self.plugin),
                );
            }
        };
        let (counters, queue) = (Arc::new(Counters::default()), Arc::new(Queue::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            if open.contains_key(&file) {
                return Reply::err(
                    status::PLUGIN_ERROR,
                    &format!("plugin {}: {file} is already logging", self.plugin),
                );
            }
            open.insert(
                file.clone(),
                Stream {
                    info: info.clone(),
                    started: None,
                    counters: counters.clone(),
                    queue: queue.clone(),
                    stop: Some(stop),
                    delivered: None,
                },
            );
        }
        let request = logdriver::Request::StartLogging {
            file: file.clone(),
            info,
        };
        let reply = instance
            .run(logdriver::START_LOGGING, Call::Log(request))
            .await
            .into_reply();
        if reply.status != status::OK {
            self.open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&file);
            return reply;
        }
        self.keep_record(&file, body);
        self.spawn_tasks(me, file, fifo, counters, queue, stopped);
        reply
    }

    fn spawn_tasks(
        self: &Arc<Self>,
        me: Weak<WasmInstance>,
        file: String,
        fifo: OwnedFd,
        counters: Arc<Counters>,
        queue: Arc<Queue>,
        stopped: tokio::sync::oneshot::Receiver<()>,
    ) {
        tokio::spawn(read_fifo(
            self.plugin.clone(),
            file.clone(),
            fifo,
            counters.clone(),
            queue.clone(),
            stopped,
        ));
        let deliverer = tokio::spawn(deliver(self.clone(), me, file.clone(), counters, queue));
        if let Some(s) = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&file)
        {
            s.delivered = Some(deliverer);
        }
    }

    fn record_path(&self, file: &str) -> Option<PathBuf> {
        Some(self.records.as_ref()?.join(fifo_name(file).ok()?))
    }

    /// Keeps `StartLogging`'s request until `StopLogging` (written whole or not at all).
    fn keep_record(&self, file: &str, body: &[u8]) {
        let (Some(dir), Some(path)) = (&self.records, self.record_path(file)) else {
            return;
        };
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return;
        };
        let tmp = dir.join(format!(".{name}.tmp"));
        let kept = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, body))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = kept {
            tracing::warn!(plugin = %self.plugin, file, "cannot keep the log stream's record \
                (it will not be resumed after a restart): {e}");
        }
    }

    /// Opens again every stream kept from an earlier run whose FIFO dockerd still has; the
    /// instance gets `start-logging` before its first batch.
    pub(crate) fn resume(self: &Arc<Self>, me: Weak<WasmInstance>) {
        let Some(dir) = &self.records else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let request = std::fs::read(&path)
                .ok()
                .and_then(|b| logdriver::Request::decode(logdriver::START_LOGGING, &b).ok());
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(logdriver::Request::StartLogging { file, info }) = request else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            if fifo_name(&file) != Ok(name.as_str()) {
                // A temporary file of an interrupted write, or a record not named for its stream.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let fifo = match self.open_fifo(&file) {
                Ok(fd) => fd,
                Err(e) => {
                    tracing::info!(plugin = %self.plugin, file, "log stream not resumed: {e}");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            let (counters, queue) = (Arc::new(Counters::default()), Arc::new(Queue::default()));
            let (stop, stopped) = tokio::sync::oneshot::channel();
            self.open.lock().unwrap_or_else(|p| p.into_inner()).insert(
                file.clone(),
                Stream {
                    info,
                    started: None,
                    counters: counters.clone(),
                    queue: queue.clone(),
                    stop: Some(stop),
                    delivered: None,
                },
            );
            tracing::info!(plugin = %self.plugin, file, "log stream resumed");
            self.spawn_tasks(me.clone(), file, fifo, counters, queue, stopped);
        }
    }

    /// `StopLogging`: everything dockerd wrote reaches the guest (or is counted as dropped), then
    /// the guest's `stop-logging` runs.
    pub(crate) async fn stop(&self, instance: &WasmInstance, file: String) -> Reply {
        let stream = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&file)
            .map(|s| (s.stop.take(), s.delivered.take()));
        if let Some((stop, delivered)) = stream {
            if let Some(stop) = stop {
                let _ = stop.send(());
            }
            if let Some(mut task) = delivered
                && tokio::time::timeout(self.call_timeout, &mut task)
                    .await
                    .is_err()
            {
                task.abort();
                tracing::warn!(plugin = %self.plugin, file, "StopLogging: the guest did not take \
                    every entry within the call deadline; the rest is dropped");
            }
        }
        let reply = instance
            .run(
                logdriver::STOP_LOGGING,
                Call::Log(logdriver::Request::StopLogging { file: file.clone() }),
            )
            .await
            .into_reply();
        self.close(&file);
        if let Some(path) = self.record_path(&file) {
            let _ = std::fs::remove_file(path);
        }
        reply
    }

    /// Forgets an open stream, keeping its counters for [`LogStreams::snapshot`].
    fn close(&self, file: &str) {
        let Some(s) = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(file)
        else {
            return;
        };
        // Entries still queued (a deliverer cut off at the deadline) never reach the guest.
        let (left, _) =
            std::mem::take(&mut *s.queue.entries.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(task) = s.delivered {
            task.abort();
        }
        let cut = s.counters.in_flight.swap(0, Ordering::AcqRel);
        s.counters
            .dropped
            .fetch_add(left.len() as u64 + cut, Ordering::Relaxed);
        let record = stats(file, &s.info, &s.counters, false);
        if record.dropped > 0 {
            tracing::warn!(plugin = %self.plugin, file, dropped = record.dropped,
                received = record.received, "log stream ended with entries dropped");
        }
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        closed.push_back(record);
        while closed.len() > KEEP_CLOSED {
            closed.pop_front();
        }
        self.changed.notify_waiters();
    }

    /// Ends every stream (the plugin stops): nothing more is read or delivered.
    pub(crate) fn close_all(&self) {
        let files: Vec<String> = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for file in files {
            self.close(&file);
        }
    }

    /// The `Info` to replay `start-logging` with, if `file` is open and the instance of
    /// `generation` has not started it yet.
    pub(crate) fn needs_start(&self, file: &str, generation: u64) -> Option<Info> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let s = open.get(file)?;
        (s.started != Some(generation)).then(|| s.info.clone())
    }

    /// Records that the instance of `generation` has started `file`.
    pub(crate) fn started(&self, file: &str, generation: u64) {
        if let Some(s) = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(file)
        {
            s.started = Some(generation);
        }
    }

    /// Every stream's counters, open ones first.
    pub(crate) fn snapshot(&self) -> Vec<LogStream> {
        let mut out: Vec<LogStream> = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(file, s)| stats(file, &s.info, &s.counters, true))
            .collect();
        out.sort_by(|a, b| a.file.cmp(&b.file));
        out.extend(
            self.closed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        out
    }

    /// Opens dockerd's FIFO for `file` without following a symlink or blocking.
    fn open_fifo(&self, file: &str) -> Result<OwnedFd, String> {
        use rustix::fs::{FileType, Mode, OFlags};
        let name = fifo_name(file)?;
        let path = self.engine_dir.join(name);
        let fd = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("StartLogging: cannot open {}: {e}", path.display()))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| format!("StartLogging: {e}"))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Fifo {
            return Err(format!("StartLogging: {} is not a FIFO", path.display()));
        }
        Ok(fd)
    }

    /// `ReadLogs`: pages of the guest's `read-logs`, framed; with `follow`, kept open until the
    /// guest says the end or dockerd goes away. The first page's failure is the reply.
    pub(crate) async fn read(
        self: &Arc<Self>,
        me: Weak<WasmInstance>,
        info: Info,
        config: ReadConfig,
    ) -> Result<ByteStream, Reply> {
        let instance = me.upgrade().ok_or_else(stopped)?;
        let first = page(&instance, &info, &config, 0).await?;
        drop(instance);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(4);
        let streams = self.clone();
        tokio::spawn(async move {
            let mut next: Result<logdriver::Page, Reply> = Ok(first);
            loop {
                let p = match next {
                    Ok(p) => p,
                    Err(reply) => {
                        let why = String::from_utf8_lossy(&reply.body).into_owned();
                        let _ = tx.send(Err(why)).await;
                        return;
                    }
                };
                if !p.entries.is_empty() {
                    let mut out = Vec::new();
                    for e in &p.entries {
                        frame::encode(&e.to_read_frame(), &mut out);
                    }
                    if tx.send(Ok(out.into())).await.is_err() {
                        return; // dockerd went away
                    }
                }
                if p.end || (p.entries.is_empty() && !config.follow) {
                    return;
                }
                if p.entries.is_empty() {
                    let changed = streams.changed.notified();
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep(FOLLOW_POLL) => {}
                        _ = tx.closed() => return,
                    }
                }
                let Some(instance) = me.upgrade() else {
                    let _ = tx.send(Err("the plugin stopped".to_string())).await;
                    return;
                };
                next = page(&instance, &info, &config, p.cursor).await;
            }
        });
        Ok(Box::pin(Receiver(rx)))
    }
}

fn stopped() -> Reply {
    Reply::err(status::PLUGIN_ERROR, "the plugin is stopped")
}

async fn page(
    instance: &WasmInstance,
    info: &Info,
    config: &ReadConfig,
    cursor: u64,
) -> Result<logdriver::Page, Reply> {
    let call = Call::ReadPage {
        info: info.clone(),
        config: *config,
        cursor,
    };
    match instance.run(logdriver::READ_LOGS, call).await {
        Answer::Page(p) => Ok(p),
        Answer::Reply(r) => Err(r),
    }
}

fn stats(file: &str, info: &Info, c: &Counters, open: bool) -> LogStream {
    LogStream {
        file: file.to_string(),
        container_id: info.container_id.clone(),
        received: c.received.load(Ordering::Relaxed),
        delivered: c.delivered.load(Ordering::Relaxed),
        dropped: c.dropped.load(Ordering::Relaxed),
        open,
    }
}

/// Reads the FIFO into the queue until told to stop (then drains it) or it fails.
async fn read_fifo(
    plugin: String,
    file: String,
    fifo: OwnedFd,
    counters: Arc<Counters>,
    queue: Arc<Queue>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let finish = |queue: &Queue| {
        queue.finished.store(true, Ordering::Release);
        queue.more.notify_one();
    };
    let rx = match tokio::net::unix::pipe::Receiver::from_owned_fd(fifo) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::error!(plugin, file, "cannot read the log FIFO: {e}");
            finish(&queue);
            return;
        }
    };
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut stopping = false;
    loop {
        let n = if stopping {
            // dockerd has stopped writing: what is in the pipe is all there is.
            match rx.try_read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                Err(e) => {
                    tracing::warn!(plugin, file, "reading the log FIFO: {e}");
                    0
                }
            }
        } else {
            tokio::select! {
                sent = &mut stop => {
                    if sent.is_err() {
                        // The stream was closed (the plugin stops): leave what dockerd wrote in
                        // its pipe for the next start, which resumes the stream from its record.
                        break;
                    }
                    stopping = true;
                    continue;
                }
                ready = rx.readable() => {
                    if let Err(e) = ready {
                        tracing::warn!(plugin, file, "reading the log FIFO: {e}");
                        break;
                    }
                    match rx.try_read(&mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(e) => {
                            tracing::warn!(plugin, file, "reading the log FIFO: {e}");
                            break;
                        }
                    }
                }
            }
        };
        if n == 0 {
            // Drained after StopLogging; or every writer is gone (dockerd closed it).
            break;
        }
        decoder.push(&buf[..n]);
        let mut got = false;
        loop {
            match decoder.next_entry() {
                Ok(Some(e)) => {
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    let entry = Entry::from(e);
                    let mut q = queue.entries.lock().unwrap_or_else(|p| p.into_inner());
                    let cost = cost(&entry);
                    if q.1 + cost > BUFFER_BYTES {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                    } else {
                        q.1 += cost;
                        q.0.push_back(entry);
                        got = true;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(
                        plugin,
                        file,
                        "the log FIFO holds no frames plugd can read: {e}"
                    );
                    finish(&queue);
                    return;
                }
            }
        }
        if got {
            queue.more.notify_one();
        }
    }
    finish(&queue);
}

/// Hands queued entries to the guest until the reader is done and the queue empty.
async fn deliver(
    streams: Arc<LogStreams>,
    me: Weak<WasmInstance>,
    file: String,
    counters: Arc<Counters>,
    queue: Arc<Queue>,
) {
    loop {
        let batch: Vec<Entry> = {
            let mut q = queue.entries.lock().unwrap_or_else(|p| p.into_inner());
            let n = q.0.len().min(BATCH);
            let batch: Vec<Entry> = q.0.drain(..n).collect();
            q.1 -= batch.iter().map(cost).sum::<usize>();
            batch
        };
        if batch.is_empty() {
            if queue.finished.load(Ordering::Acquire) {
                return;
            }
            let more = queue.more.notified();
            if queue
                .entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .is_empty()
                && !queue.finished.load(Ordering::Acquire)
            {
                more.await;
            }
            continue;
        }
        let n = batch.len() as u64;
        let Some(instance) = me.upgrade() else {
            counters.dropped.fetch_add(n, Ordering::Relaxed);
            return;
        };
        counters.in_flight.store(n, Ordering::Release);
        let reply = instance
            .run(
                "LogDriver.Log",
                Call::LogBatch {
                    file: file.clone(),
                    entries: batch,
                },
            )
            .await
            .into_reply();
        drop(instance);
        counters.in_flight.store(0, Ordering::Release);
        if reply.status == status::OK {
            counters.delivered.fetch_add(n, Ordering::Relaxed);
        } else {
            counters.dropped.fetch_add(n, Ordering::Relaxed);
            tracing::warn!(plugin = %streams.plugin, file, entries = n,
                "log batch dropped: {}", String::from_utf8_lossy(&reply.body));
        }
        streams.changed.notify_waiters();
    }
}

/// A channel as a [`ByteStream`].
struct Receiver(tokio::sync::mpsc::Receiver<Result<Bytes, String>>);

impl futures_core::Stream for Receiver {
    type Item = Result<Bytes, String>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lines_still_fill_the_buffer() {
        let empty = Entry::default();
        assert_eq!(cost(&empty), ENTRY_OVERHEAD);
        // A stalled guest and `yes ''`: at most this many entries wait, not unboundedly many.
        assert!(BUFFER_BYTES / cost(&empty) <= 65_536);
        let line = Entry {
            source: "stdout".into(),
            line: vec![b'x'; 1000],
            ..Default::default()
        };
        assert_eq!(cost(&line), 1000 + 6 + ENTRY_OVERHEAD);
    }
}
