//! A unix stream for plugd's data path that wakes its thread only for reads.
//!
//! tokio registers every socket for readability *and* writability, edge-triggered. A unix socket
//! signals "writable" each time its peer reads (the peer's read frees send buffer), so in a
//! request/reply exchange every reply the peer reads wakes the thread that sent it, which then
//! finds nothing to do. plugd sits between two such peers on every protocol call, and on a VM a
//! wake-up of a sleeping thread (an inter-processor interrupt, a context switch) costs more than
//! the call's own work: measured, ~2.5 wake-ups per forwarded call where one is needed (issue 12,
//! docs/benchmarks.md).
//!
//! [`QuietStream`] is registered for readability only. A write is tried directly; only when the
//! send buffer is full (`EAGAIN`: a reply larger than the buffer, a peer that does not read) is a
//! duplicate of the descriptor registered for writability, waited on, and dropped again once a
//! write goes through.

#![deny(unsafe_code)]

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A connected unix stream, registered for readability only (see the crate docs).
#[derive(Debug)]
pub struct QuietStream {
    io: AsyncFd<UnixStream>,
    /// A duplicate of the descriptor registered for writability, while a write waits for room.
    room: Option<AsyncFd<OwnedFd>>,
}

impl QuietStream {
    /// Wraps a connected stream (made non-blocking here); must run inside a tokio runtime, whose
    /// reactor then serves it.
    pub fn from_std(stream: UnixStream) -> io::Result<QuietStream> {
        stream.set_nonblocking(true)?;
        Ok(QuietStream {
            io: register(stream, Interest::READABLE)?,
            room: None,
        })
    }

    /// Re-registers a tokio stream (accepted or connected by tokio) as a quiet one.
    pub fn from_tokio(stream: tokio::net::UnixStream) -> io::Result<QuietStream> {
        QuietStream::from_std(stream.into_std()?)
    }

    /// Writes with `write` once there is room: directly when the send buffer has room, else after
    /// waiting for writability on a duplicate registered just for that wait.
    fn poll_room(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&UnixStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            match write(self.io.get_ref()) {
                Ok(n) => {
                    // Back to being woken for reads only.
                    self.room = None;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if self.room.is_none() {
                let dup = self.io.get_ref().try_clone()?;
                self.room = Some(register(OwnedFd::from(dup), Interest::WRITABLE)?);
            }
            let room = self.room.as_ref().expect("registered above");
            let mut guard = ready!(room.poll_write_ready(cx))?;
            // Try again; if there is still no room, the readiness is stale: wait for the next edge.
            match write(self.io.get_ref()) {
                Ok(n) => {
                    self.room = None;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Registers `inner` with the current runtime's reactor for `interest` only.
#[allow(unsafe_code)]
fn register<T: AsRawFd>(inner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `inner` (a `UnixStream` or an `OwnedFd`) owns its descriptor, and from here on the
    // `AsyncFd` owns `inner`: the descriptor stays open and names the same file description until
    // the `AsyncFd` is dropped, and `as_raw_fd` of these types always returns that descriptor.
    Ok(unsafe { AsyncFd::register_with_interest(inner, interest) }?)
}

impl AsyncRead for QuietStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.io.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let wanted = unfilled.len();
            match guard.try_io(|s| s.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    // A short read almost always emptied the socket, so wait for the next edge
                    // instead of making a read that would say `EAGAIN` (as tokio's own streams
                    // do). Where it did not (the kernel also stops at a message carrying
                    // descriptors), the peer that sent it stalls only its own connection.
                    if n > 0 && n < wanted {
                        guard.clear_ready();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for QuietStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_room(cx, |mut s| s.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_room(cx, |mut s| s.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.io.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_and_writes_like_a_stream_and_waits_for_room() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut a = QuietStream::from_std(a).unwrap();
        let mut b = QuietStream::from_std(b).unwrap();
        // Far more than a unix socket's send buffer: the writer must wait for the reader.
        let big = vec![7u8; 4 << 20];
        let expected = big.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&big).await.unwrap();
            a.shutdown().await.unwrap();
            assert!(
                a.room.is_none(),
                "the wait for room is over once the write went through"
            );
            a
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected);
        let mut a = writer.await.unwrap();
        b.write_all(b"reply").await.unwrap();
        let mut reply = [0u8; 5];
        a.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"reply");
    }

    #[tokio::test]
    async fn a_closed_peer_is_an_end_of_stream_and_a_write_error() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut a = QuietStream::from_std(a).unwrap();
        drop(b);
        let mut buf = [0u8; 8];
        assert_eq!(a.read(&mut buf).await.unwrap(), 0);
        assert!(a.write_all(b"x").await.is_err());
    }
}
