//! `LogDriver.ReadLogs`: the one reply that is a stream, re-framed on its way to dockerd.
//!
//! dockerd reads the body frame by frame until it ends, and its decoder allocates whatever length
//! a frame announces. So plugd decodes the plugin's stream with plugd-core's frame decoder (a
//! frame over `MAX_FRAME` or one that is not a `LogEntry` ends it) and sends dockerd each entry
//! re-encoded from what was decoded, with only the fields dockerd reads back — never the plugin's
//! bytes. A stream plugd refuses, or one cut inside a frame, is ended as a broken chunked body: dockerd
//! then reports `error decoding log message` to `docker logs` instead of showing a truncated log
//! as if it were whole. The stream has no deadline: dockerd ends it by going away (`docker logs -f`
//! interrupted), which drops this stream and with it the plugin's.

use bytes::Bytes;
use futures_core::Stream;
use hyper::body::Frame;
use plugd_core::protocol::logdriver::frame::{self, Decoder};
use plugd_core::runtime::ByteStream;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The plugin's stream, re-framed for dockerd.
pub(crate) struct Reframe {
    plugin: String,
    inner: ByteStream,
    decoder: Decoder,
    done: bool,
    /// Entries passed on, for the log line at the end.
    entries: u64,
}

impl Reframe {
    pub(crate) fn new(plugin: &str, inner: ByteStream) -> Reframe {
        Reframe {
            plugin: plugin.to_string(),
            inner,
            decoder: Decoder::new(),
            done: false,
            entries: 0,
        }
    }

    fn fail(&mut self, why: String) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.done = true;
        tracing::warn!(plugin = %self.plugin, "ReadLogs stream refused: {why}");
        Poll::Ready(Some(Err(std::io::Error::other(format!(
            "plugin {}: ReadLogs: {why}",
            self.plugin
        )))))
    }
}

impl Stream for Reframe {
    type Item = Result<Frame<Bytes>, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return this.fail(e),
                Poll::Ready(None) => {
                    this.done = true;
                    if let Err(e) = this.decoder.finish() {
                        return this.fail(e.to_string());
                    }
                    tracing::debug!(plugin = %this.plugin, entries = this.entries, "ReadLogs stream ended");
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    this.decoder.push(&chunk);
                    let mut out = Vec::new();
                    loop {
                        match this.decoder.next_entry() {
                            Ok(Some(entry)) => {
                                frame::encode(&entry.for_dockerd(), &mut out);
                                this.entries += 1;
                            }
                            Ok(None) => break,
                            Err(e) => return this.fail(e.to_string()),
                        }
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out.into()))));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugd_core::protocol::logdriver::frame::{LogAttr, LogEntry};

    fn chunks(parts: Vec<Result<Bytes, String>>) -> ByteStream {
        struct Iter(std::vec::IntoIter<Result<Bytes, String>>);
        impl Stream for Iter {
            type Item = Result<Bytes, String>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                Poll::Ready(self.0.next())
            }
        }
        Box::pin(Iter(parts.into_iter()))
    }

    fn drain(mut s: Reframe) -> (Vec<u8>, Option<String>) {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        loop {
            match Pin::new(&mut s).poll_next(&mut cx) {
                Poll::Ready(Some(Ok(f))) => out.extend_from_slice(&f.into_data().unwrap()),
                Poll::Ready(Some(Err(e))) => return (out, Some(e.to_string())),
                Poll::Ready(None) => return (out, None),
                Poll::Pending => unreachable!("the test stream is always ready"),
            }
        }
    }

    #[test]
    fn entries_are_re_encoded_whatever_the_chunking_and_extras_dropped() {
        let e = LogEntry {
            source: "stdout".into(),
            time_nano: 5,
            line: b"hello".to_vec(),
            partial: true, // without metadata: dockerd would not treat it as partial
            attrs: vec![LogAttr {
                key: "k".into(),
                value: "v".into(),
            }],
            ..Default::default()
        };
        let mut wire = Vec::new();
        frame::encode(&e, &mut wire);
        frame::encode(&e, &mut wire);
        let parts = wire
            .chunks(3)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let (out, err) = drain(Reframe::new("p", chunks(parts)));
        assert_eq!(err, None);
        let mut expected = Vec::new();
        frame::encode(&e.for_dockerd(), &mut expected);
        frame::encode(&e.for_dockerd(), &mut expected);
        assert_eq!(out, expected);
    }

    #[test]
    fn a_huge_announced_frame_or_a_cut_stream_breaks_the_body() {
        let (out, err) = drain(Reframe::new(
            "p",
            chunks(vec![Ok(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]))]),
        ));
        assert!(out.is_empty());
        assert!(err.unwrap().contains("over the limit"));

        let (_, err) = drain(Reframe::new(
            "p",
            chunks(vec![Ok(Bytes::from_static(&[0, 0, 0, 9, 0x0a]))]),
        ));
        assert!(err.unwrap().contains("ended inside a frame"));

        let (_, err) = drain(Reframe::new("p", chunks(vec![Err("plugin died".into())])));
        assert!(err.unwrap().contains("plugin died"));
    }
}
