//! The native packaging of a [`LogDriver`]: the plugin protocol on a unix socket
//! ([`run_log_driver`]), and the FIFOs dockerd (or plugd's relay) writes, read inside the plugin.
//!
//! - `StartLogging` opens the FIFO at `File` (read-write and non-blocking, see `open_fifo`; it
//!   must be a FIFO), calls
//!   [`LogDriver::start_logging`], and starts a reader for it.
//! - The reader takes whole frames only, and only once the driver has them: it copies what the
//!   pipe holds with `tee(2)` (which leaves it there), decodes the whole frames, hands them to
//!   [`LogDriver::log`] in batches of at most [`PAGE_SIZE`], and only then reads those bytes out
//!   of the pipe. So a plugin killed at any point leaves every frame it had not stored in the
//!   pipe, starting at a frame boundary, for the next process to read (plugd keeps the pipe open
//!   across a restart); at worst the last batch is stored twice. A frame longer than the pipe
//!   (dockerd never writes one) is read out whole first, without that guarantee.
//! - `StopLogging` delivers what is left (dockerd has stopped writing), closes the FIFO and calls
//!   [`LogDriver::stop_logging`].
//! - `ReadLogs` answers a chunked stream of frames, page by page from [`LogDriver::read_logs`];
//!   with `follow`, an empty page that is not the end waits for that container's next batch (or
//!   [`FOLLOW_POLL`]) and asks again. The stream ends at the page marked `end`, or when the
//!   client goes away.
//!
//! Everything runs on the server's one thread, so driver calls never overlap.

use super::{Entry, LogDriver, frame};
use crate::server::{Answer, Handler};
use bytes::Bytes;
use plugd_core::Reply;
use plugd_core::protocol::logdriver::{PAGE_SIZE, Request, Response, encode};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// How long a following `ReadLogs` waits for a batch before asking the driver again.
pub const FOLLOW_POLL: Duration = Duration::from_millis(250);
/// Bytes copied out of a FIFO per step.
const STEP: usize = 1 << 20;

/// A log plugin's `main`: [`run`](crate::run) for a [`LogDriver`].
pub fn run_log_driver<D: LogDriver + 'static>(driver: D, default_socket: &str) -> ExitCode {
    crate::run(Logs::new(driver), default_socket)
}

/// [`serve`](crate::serve) for a [`LogDriver`].
pub fn serve_log_driver<D: LogDriver + 'static>(driver: D, socket: &Path) -> io::Result<()> {
    crate::serve(Logs::new(driver), socket)
}

/// A [`LogDriver`] as a [`Handler`], with its open FIFOs.
pub(crate) struct Logs<D> {
    inner: Rc<Inner<D>>,
}

struct Inner<D> {
    driver: D,
    streams: RefCell<HashMap<String, Reader>>,
    /// Woken after every delivered batch, for following readers.
    batches: Notify,
}

/// One open FIFO and the private pipe its frames are copied through.
struct Reader {
    fifo: Rc<AsyncFd<File>>,
    scratch: Rc<Scratch>,
    task: JoinHandle<()>,
}

/// A private pipe for `tee(2)`, and the destructive-read fallback's carry-over.
struct Scratch {
    read: File,
    write: OwnedFd,
    capacity: usize,
    carry: RefCell<Vec<u8>>,
}

impl Scratch {
    fn new() -> io::Result<Scratch> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array on success; each is owned once.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptors from pipe2, owned by nothing else.
        let (read, write) = unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A bigger private pipe than the FIFO so one tee always takes all the FIFO holds.
        // SAFETY: fcntl on a descriptor we own.
        let capacity = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, STEP as i32) };
        let capacity = if capacity > 0 {
            capacity as usize
        } else {
            64 << 10
        };
        Ok(Scratch {
            read,
            write,
            capacity,
            carry: RefCell::new(Vec::new()),
        })
    }
}

impl<D: LogDriver + 'static> Logs<D> {
    fn new(driver: D) -> Self {
        Logs {
            inner: Rc::new(Inner {
                driver,
                streams: RefCell::new(HashMap::new()),
                batches: Notify::new(),
            }),
        }
    }
}

impl<D: LogDriver + 'static> Handler for Logs<D> {
    fn handle(&self, endpoint: &str, body: &[u8]) -> Reply {
        match self.answer(endpoint, body) {
            Answer::Reply(reply) => reply,
            Answer::Stream(_) => Reply::err(500, "a streamed reply asked for whole"),
        }
    }

    fn answer(&self, endpoint: &str, body: &[u8]) -> Answer {
        let request = match Request::decode(endpoint, body) {
            Ok(r) => r,
            Err(reply) => return Answer::Reply(reply),
        };
        let inner = &self.inner;
        Answer::Reply(match request {
            Request::Activate => encode(Ok(Response::Activate)),
            Request::Capabilities => encode(Ok(Response::Capabilities {
                read_logs: inner.driver.read_logs_supported(),
            })),
            Request::StartLogging { file, info } => encode(start(inner, &file, &info)),
            Request::StopLogging { file } => encode(stop(inner, &file)),
            Request::ReadLogs { info, config } => {
                let first = match inner.driver.read_logs(&info, &config, 0, PAGE_SIZE) {
                    Ok(page) => page,
                    Err(e) => return Answer::Reply(encode(Err(e))),
                };
                let (tx, rx) = mpsc::channel(4);
                let inner = inner.clone();
                tokio::task::spawn_local(async move {
                    let mut page = first;
                    loop {
                        if !page.entries.is_empty() {
                            let mut buf = Vec::new();
                            for e in &page.entries {
                                frame::encode(&e.to_read_frame(), &mut buf);
                            }
                            if tx.send(Ok(Bytes::from(buf))).await.is_err() {
                                return;
                            }
                        }
                        // As plugd's wasm host: without follow, an empty page ends the stream.
                        if page.end || (page.entries.is_empty() && !config.follow) {
                            return;
                        }
                        if page.entries.is_empty() {
                            if tx.is_closed() {
                                return;
                            }
                            let _ =
                                tokio::time::timeout(FOLLOW_POLL, inner.batches.notified()).await;
                        }
                        page = match inner
                            .driver
                            .read_logs(&info, &config, page.cursor, PAGE_SIZE)
                        {
                            Ok(p) => p,
                            Err(e) => {
                                crate::server::log_line(format_args!("ReadLogs: {e}"));
                                // Ends the body as broken: `docker logs` reports an error rather
                                // than a truncated log that looks whole.
                                let _ = tx.send(Err(e.to_string())).await;
                                return;
                            }
                        };
                    }
                });
                return Answer::Stream(rx);
            }
        })
    }
}

fn start<D: LogDriver + 'static>(
    inner: &Rc<Inner<D>>,
    file: &str,
    info: &super::Info,
) -> Result<Response, crate::Error> {
    if inner.streams.borrow().contains_key(file) {
        return Err(crate::Error::invalid_argument(format!(
            "already logging to {file}"
        )));
    }
    let fifo = open_fifo(file)
        .map_err(|e| crate::Error::internal(format!("opening the FIFO {file}: {e}")))?;
    let scratch =
        Scratch::new().map_err(|e| crate::Error::internal(format!("a pipe for {file}: {e}")))?;
    inner.driver.start_logging(file, info)?;
    let fifo = Rc::new(fifo);
    let scratch = Rc::new(scratch);
    let task = {
        let (inner, fifo, scratch, file) = (
            inner.clone(),
            fifo.clone(),
            scratch.clone(),
            file.to_string(),
        );
        tokio::task::spawn_local(async move {
            loop {
                let Ok(mut ready) = fifo.readable().await else {
                    return;
                };
                match deliver(&inner, &file, fifo.get_ref(), &scratch) {
                    Ok(true) => {}
                    Ok(false) => ready.clear_ready(),
                    Err(e) => {
                        crate::server::log_line(format_args!("{file}: {e}; no longer read"));
                        return;
                    }
                }
            }
        })
    };
    inner.streams.borrow_mut().insert(
        file.to_string(),
        Reader {
            fifo,
            scratch,
            task,
        },
    );
    Ok(Response::Done)
}

fn stop<D: LogDriver>(inner: &Inner<D>, file: &str) -> Result<Response, crate::Error> {
    let reader = inner.streams.borrow_mut().remove(file);
    if let Some(reader) = reader {
        reader.task.abort();
        // dockerd wrote everything before StopLogging: take it all.
        loop {
            match deliver(inner, file, reader.fifo.get_ref(), &reader.scratch) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    crate::server::log_line(format_args!("{file}: {e} at StopLogging"));
                    break;
                }
            }
        }
    }
    inner.driver.stop_logging(file)?;
    Ok(Response::Done)
}

/// Opens the FIFO dockerd named, non-blocking, and only if it is one. Read-write, as dockerd
/// opens it: while the plugin holds a write end itself the pipe never reports a hang-up, which
/// it would once every other writer is gone (a plugd restarting, dockerd going away) and which
/// tokio then reports as readable for good — a reader spinning on an empty pipe. A FIFO opens
/// read-write even on a read-only mount.
fn open_fifo(file: &str) -> io::Result<AsyncFd<File>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(file)?;
    if !f.metadata()?.file_type().is_fifo() {
        return Err(io::Error::other("not a FIFO"));
    }
    // SAFETY: a `File` is a valid open descriptor that stays open, and always returns the same
    // number, for as long as the `AsyncFd` owns it.
    unsafe { AsyncFd::register(f) }.map_err(|e| e.into_parts().1)
}

/// One step of a reader: delivers the whole frames the FIFO holds (see the module docs).
/// `Ok(true)`: something was delivered and more may follow; `Ok(false)`: nothing (more) to do
/// until the FIFO gets more.
fn deliver<D: LogDriver>(
    inner: &Inner<D>,
    file: &str,
    fifo: &File,
    scratch: &Scratch,
) -> io::Result<bool> {
    if !scratch.carry.borrow().is_empty() {
        return deliver_carried(inner, file, fifo, scratch);
    }
    // SAFETY: tee between two pipe descriptors we hold; no memory is passed.
    let n = unsafe {
        libc::tee(
            fifo.as_raw_fd(),
            scratch.write.as_raw_fd(),
            scratch.capacity,
            libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(false),
            _ => Err(e),
        };
    }
    if n == 0 {
        return Ok(false);
    }
    let mut copy = vec![0u8; n as usize];
    (&scratch.read).read_exact(&mut copy)?;
    let (entries, whole) = whole_frames(&copy)?;
    if entries.is_empty() {
        // Part of one frame. It grows with the next write, unless it cannot fit in the pipe.
        if whole == 0 && copy.len() >= pipe_size(fifo).saturating_sub(frame::PREFIX) {
            let mut carry = scratch.carry.borrow_mut();
            carry.resize(copy.len(), 0);
            (&*fifo).read_exact(&mut carry)?;
            drop(carry);
            return deliver_carried(inner, file, fifo, scratch);
        }
        return Ok(false);
    }
    hand_over(inner, file, entries);
    let mut taken = vec![0u8; whole];
    (&*fifo).read_exact(&mut taken)?;
    Ok(true)
}

/// The fallback for a frame larger than the pipe: read it out as it comes.
fn deliver_carried<D: LogDriver>(
    inner: &Inner<D>,
    file: &str,
    fifo: &File,
    scratch: &Scratch,
) -> io::Result<bool> {
    let mut buf = vec![0u8; STEP];
    let n = match (&*fifo).read(&mut buf) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    let mut carry = scratch.carry.borrow_mut();
    carry.extend_from_slice(&buf[..n]);
    let (entries, whole) = whole_frames(&carry)?;
    if entries.is_empty() {
        return Ok(n == STEP);
    }
    carry.drain(..whole);
    drop(carry);
    hand_over(inner, file, entries);
    Ok(true)
}

fn pipe_size(fifo: &File) -> usize {
    // SAFETY: fcntl on a descriptor we hold.
    let n = unsafe { libc::fcntl(fifo.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if n > 0 { n as usize } else { 64 << 10 }
}

/// The whole frames at the start of `bytes`, and how many bytes they take.
fn whole_frames(bytes: &[u8]) -> io::Result<(Vec<Entry>, usize)> {
    let mut entries = Vec::new();
    let mut at = 0;
    let mut decoder = frame::Decoder::new();
    while let Some(prefix) = bytes[at..].first_chunk::<{ frame::PREFIX }>() {
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > frame::MAX_FRAME {
            return Err(io::Error::other(format!(
                "a frame of {len} bytes, over the limit"
            )));
        }
        let end = at + frame::PREFIX + len;
        if end > bytes.len() {
            break;
        }
        decoder.push(&bytes[at..end]);
        let entry = decoder
            .next_entry()
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::other("a frame cut short"))?;
        entries.push(Entry::from(entry));
        at = end;
    }
    Ok((entries, at))
}

/// Calls the driver with `entries` in batches; a failed batch is reported and the stream goes on
/// (the trait's contract).
fn hand_over<D: LogDriver>(inner: &Inner<D>, file: &str, entries: Vec<Entry>) {
    for batch in entries.chunks(PAGE_SIZE as usize) {
        // A panicking driver loses this batch, not the stream: the reader must go on draining
        // the FIFO, or the container blocks once the pipe is full.
        let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            inner.driver.log(file, batch)
        }));
        match called {
            Ok(Ok(())) => {}
            Ok(Err(e)) => crate::server::log_line(format_args!(
                "{file}: the driver refused {} entries: {e}",
                batch.len()
            )),
            Err(_) => crate::server::log_line(format_args!(
                "{file}: the driver panicked on {} entries; they are lost",
                batch.len()
            )),
        }
    }
    inner.batches.notify_waiters();
}

#[cfg(test)]
mod tests;
