//! Guest stdout/stderr → the plugin's own log.
//!
//! Each complete line a guest writes goes to the plugin's [`Observer`] (the daemon keeps it in
//! that plugin's log, `plugd logs`; plugd's own log never holds guest output). Two bounds keep a
//! chatty or hostile guest from flooding the log or plugd's memory:
//! - a line longer than [`MAX_LINE_BYTES`] is cut there; the rest of it is counted and dropped, and
//!   the logged line ends with `[... N bytes truncated]`;
//! - an instance may write [`OUTPUT_BUDGET_BYTES`] in total (stdout and stderr together). Past that,
//!   its output is dropped and one note in its log says so; writes still succeed, so the guest is not
//!   disturbed. The budget is per instance: a replaced instance (after a fault, or at the next
//!   enable) starts with a fresh one.
//!
//! A partial last line is logged when the instance is dropped.

use bytes::Bytes;
use plugd_core::Observer;
use plugd_core::observe::OutputStream as Stream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line logged as is.
pub(crate) const MAX_LINE_BYTES: usize = 4096;
/// Bytes of output an instance may log in its lifetime.
pub(crate) const OUTPUT_BUDGET_BYTES: usize = 1 << 20;
/// What `check-write` grants per call (the guest writes in chunks of at most this).
const WRITE_PERMIT: usize = 64 << 10;

/// The budget stdout and stderr of one instance share.
struct Budget {
    remaining: AtomicUsize,
    exhausted_logged: AtomicBool,
}

/// One stream (stdout or stderr) of one instance; clones share the same line buffer.
#[derive(Clone)]
pub(crate) struct GuestOutput(Arc<Mutex<LineBuffer>>);

struct LineBuffer {
    observer: Observer,
    stream: Stream,
    line: Vec<u8>,
    /// Bytes of the current line dropped past [`MAX_LINE_BYTES`].
    truncated: usize,
    budget: Arc<Budget>,
}

impl GuestOutput {
    /// A stdout and a stderr for one instance, reporting to `observer`, sharing one budget.
    pub(crate) fn pair(observer: Observer) -> (GuestOutput, GuestOutput) {
        Self::pair_with_budget(observer, OUTPUT_BUDGET_BYTES)
    }

    fn pair_with_budget(observer: Observer, budget: usize) -> (GuestOutput, GuestOutput) {
        let budget = Arc::new(Budget {
            remaining: AtomicUsize::new(budget),
            exhausted_logged: AtomicBool::new(false),
        });
        let make = |stream| {
            GuestOutput(Arc::new(Mutex::new(LineBuffer {
                observer: observer.clone(),
                stream,
                line: Vec::new(),
                truncated: 0,
                budget: budget.clone(),
            })))
        };
        (make(Stream::Stdout), make(Stream::Stderr))
    }

    fn lock(&self) -> MutexGuard<'_, LineBuffer> {
        // A panic while holding the lock leaves at worst a partial line: keep going.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes in guest bytes; logs every completed line. Never fails.
    pub(crate) fn write_bytes(&self, bytes: &[u8]) {
        self.lock().push(bytes);
    }
}

impl LineBuffer {
    fn push(&mut self, bytes: &[u8]) {
        let granted = self
            .budget
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                Some(r.saturating_sub(bytes.len()))
            })
            .unwrap_or(0)
            .min(bytes.len());
        if granted < bytes.len() && !self.budget.exhausted_logged.swap(true, Ordering::Relaxed) {
            self.observer.note(&format!(
                "output budget of {} KiB exhausted: dropping the instance's further output until it is replaced",
                OUTPUT_BUDGET_BYTES >> 10
            ));
        }
        for chunk in bytes[..granted].split_inclusive(|b| *b == b'\n') {
            let (body, complete) = match chunk.split_last() {
                Some((b'\n', body)) => (body, true),
                _ => (chunk, false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(self.line.len());
            let keep = body.len().min(room);
            self.line.extend_from_slice(&body[..keep]);
            self.truncated += body.len() - keep;
            if complete {
                self.emit();
            }
        }
    }

    fn emit(&mut self) {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        let text = String::from_utf8_lossy(&self.line);
        if self.truncated > 0 {
            let text = format!("{text}[... {} bytes truncated]", self.truncated);
            self.observer.output(self.stream, &text);
        } else {
            self.observer.output(self.stream, &text);
        }
        self.line.clear();
        self.truncated = 0;
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.line.is_empty() || self.truncated > 0 {
            self.emit();
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(o: &GuestOutput) -> (Vec<u8>, usize, usize) {
        let b = o.lock();
        (
            b.line.clone(),
            b.truncated,
            b.budget.remaining.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn lines_are_split_and_partial_lines_kept() {
        let (observer, seen) = Observer::recording();
        let (out, err) = GuestOutput::pair(observer);
        out.write_bytes(b"one\ntwo\nthr");
        assert_eq!(state(&out).0, b"thr");
        out.write_bytes(b"ee\n");
        assert_eq!(state(&out).0, b"");
        err.write_bytes(b"oops\r\nhalf");
        drop(err);
        let lines: Vec<(Stream, String)> = seen.lines();
        let want = [
            (Stream::Stdout, "one"),
            (Stream::Stdout, "two"),
            (Stream::Stdout, "three"),
            (Stream::Stderr, "oops"),
            (Stream::Stderr, "half"),
        ];
        assert_eq!(
            lines,
            want.map(|(s, l)| (s, l.to_string())),
            "a partial line is reported when the instance goes"
        );
    }

    #[test]
    fn long_lines_are_capped() {
        let (observer, seen) = Observer::recording();
        let (out, _) = GuestOutput::pair(observer);
        out.write_bytes(&vec![b'x'; MAX_LINE_BYTES + 100]);
        let (line, truncated, _) = state(&out);
        assert_eq!((line.len(), truncated), (MAX_LINE_BYTES, 100));
        out.write_bytes(b"\n");
        assert_eq!(state(&out).1, 0, "reset after the line is logged");
        assert!(seen.lines()[0].1.ends_with("x[... 100 bytes truncated]"));
    }

    #[test]
    fn budget_is_shared_and_output_past_it_dropped() {
        let (observer, seen) = Observer::recording();
        let (out, err) = GuestOutput::pair_with_budget(observer, 10);
        out.write_bytes(b"12345\n");
        err.write_bytes(b"abcdefgh");
        let (line, _, remaining) = state(&err);
        assert_eq!((line.as_slice(), remaining), (&b"abcd"[..], 0));
        out.write_bytes(b"more\n");
        assert_eq!(state(&out).0, b"", "nothing buffered past the budget");
        assert_eq!(seen.notes().len(), 1, "one note says output was dropped");
    }
}
