//! Log entries as they travel outside the HTTP calls: `[u32 big-endian length][protobuf LogEntry]`,
//! repeated — on the FIFO dockerd writes and on the `ReadLogs` stream it reads.
//!
//! The messages are moby's `entry.proto`, written out with prost's derive (no protoc, no build
//! script). Decoding is strict where it protects plugd or dockerd: a frame longer than
//! [`MAX_FRAME`] is refused before anything is allocated for it (dockerd's decoder would allocate
//! whatever a plugin announces), and a message prost cannot read (bad wire type, truncated field,
//! a `source` that is not UTF-8) fails the stream. What dockerd gets is re-encoded from the decoded
//! [`LogEntry`] by [`encode`], never the plugin's bytes.

use prost::Message;

/// The largest frame accepted, either way. dockerd writes lines of at most 16 KiB plus a few
/// bytes; a driver that keeps split lines whole may answer longer ones; nothing legitimate comes
/// near this.
pub const MAX_FRAME: usize = 16 << 20;
/// Bytes of the length prefix.
pub const PREFIX: usize = 4;

/// moby's `LogEntry`.
#[derive(Clone, PartialEq, Message)]
pub struct LogEntry {
    /// `stdout` or `stderr`.
    #[prost(string, tag = "1")]
    pub source: String,
    /// Nanoseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub time_nano: i64,
    /// The line without its `\n`, or one fragment of a longer line.
    #[prost(bytes = "vec", tag = "3")]
    pub line: Vec<u8>,
    /// Set (by dockerd) on every fragment of a split line, the last one included.
    #[prost(bool, tag = "4")]
    pub partial: bool,
    /// Which fragment this is, for a split line.
    #[prost(message, optional, tag = "5")]
    pub partial_log_metadata: Option<PartialLogEntryMetadata>,
    /// Never set by dockerd, and not read back by it.
    #[prost(message, repeated, tag = "6")]
    pub attrs: Vec<LogAttr>,
}

/// moby's `PartialLogEntryMetadata`.
#[derive(Clone, PartialEq, Message)]
pub struct PartialLogEntryMetadata {
    /// The final fragment.
    #[prost(bool, tag = "1")]
    pub last: bool,
    /// Shared by the fragments of one line (64 hex).
    #[prost(string, tag = "2")]
    pub id: String,
    /// 1 for the first fragment.
    #[prost(int32, tag = "3")]
    pub ordinal: i32,
}

/// moby's `LogAttr`.
#[derive(Clone, PartialEq, Message)]
pub struct LogAttr {
    /// Attribute name.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Attribute value.
    #[prost(string, tag = "2")]
    pub value: String,
}

impl LogEntry {
    /// The entry as dockerd reads it back (`pluginAdapterWithRead`): source, time, line and the
    /// partial metadata; `partial` follows the metadata, and attributes are dropped.
    pub fn for_dockerd(&self) -> LogEntry {
        LogEntry {
            source: self.source.clone(),
            time_nano: self.time_nano,
            line: self.line.clone(),
            partial: self.partial_log_metadata.is_some(),
            partial_log_metadata: self.partial_log_metadata.clone(),
            attrs: Vec::new(),
        }
    }
}

/// Appends `entry` as one frame.
pub fn encode(entry: &LogEntry, out: &mut Vec<u8>) {
    let len = entry.encoded_len();
    out.reserve(PREFIX + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    entry
        .encode(out)
        .expect("a Vec grows to whatever the message needs");
}

/// Why a stream of frames was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is over [`MAX_FRAME`].
    #[error("a log frame announces {0} bytes, over the limit of {MAX_FRAME}")]
    TooLong(usize),
    /// The message is not a `LogEntry`.
    #[error("a log frame is not a LogEntry: {0}")]
    Malformed(String),
    /// The stream ended inside a frame.
    #[error("the log stream ended inside a frame ({0} bytes left over)")]
    Truncated(usize),
}

/// Splits a byte stream into entries as the bytes arrive, holding at most one frame.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
}

impl Decoder {
    /// A decoder with nothing buffered.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole entry, `Ok(None)` if more bytes are needed.
    pub fn next_entry(&mut self) -> Result<Option<LogEntry>, FrameError> {
        let pending = &self.buf[self.start..];
        let Some(prefix) = pending.first_chunk::<PREFIX>() else {
            self.compact();
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLong(len));
        }
        if pending.len() < PREFIX + len {
            self.compact();
            return Ok(None);
        }
        let entry = LogEntry::decode(&pending[PREFIX..PREFIX + len])
            .map_err(|e| FrameError::Malformed(e.to_string()))?;
        self.start += PREFIX + len;
        Ok(Some(entry))
    }

    /// Bytes held that are not yet a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Checks that the stream ended between frames.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buffered() {
            0 => Ok(()),
            n => Err(FrameError::Truncated(n)),
        }
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: &str) -> LogEntry {
        LogEntry {
            source: "stdout".into(),
            time_nano: 1_700_000_000_123_456_789,
            line: line.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn frames_round_trip_whatever_the_chunking() {
        let entries = vec![
            entry("line1"),
            LogEntry {
                partial: true,
                partial_log_metadata: Some(PartialLogEntryMetadata {
                    last: true,
                    id: "ab".repeat(32),
                    ordinal: 2,
                }),
                ..entry(&"x".repeat(16 << 10))
            },
            entry(""),
        ];
        let mut wire = Vec::new();
        for e in &entries {
            encode(e, &mut wire);
        }
        for chunk in [1, 3, 4, 5, 100, wire.len()] {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                d.push(piece);
                while let Some(e) = d.next_entry().unwrap() {
                    got.push(e);
                }
            }
            d.finish().unwrap();
            assert_eq!(got, entries, "chunk {chunk}");
        }
    }

    #[test]
    fn the_wire_is_mobys() {
        // What dockerd's gogo-protobuf writes for {source:"stdout", time_nano:1, line:"hi"}.
        let mut wire = Vec::new();
        encode(
            &LogEntry {
                source: "stdout".into(),
                time_nano: 1,
                line: b"hi".to_vec(),
                ..Default::default()
            },
            &mut wire,
        );
        assert_eq!(
            wire,
            [
                &[0, 0, 0, 14][..],
                &[0x0a, 6],
                b"stdout",
                &[0x10, 1],
                &[0x1a, 2],
                b"hi"
            ]
            .concat()
        );
    }

    #[test]
    fn an_oversized_or_malformed_frame_is_refused_and_a_cut_one_reported() {
        let mut d = Decoder::new();
        d.push(&((MAX_FRAME + 1) as u32).to_be_bytes());
        assert_eq!(d.next_entry(), Err(FrameError::TooLong(MAX_FRAME + 1)));

        let mut d = Decoder::new();
        d.push(&[0, 0, 0, 2, 0x0a, 9]);
        assert!(matches!(d.next_entry(), Err(FrameError::Malformed(_))));

        let mut d = Decoder::new();
        d.push(&[0, 0, 0, 2, 0x10]);
        assert_eq!(d.next_entry(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Truncated(5)));
    }

    #[test]
    fn dockerd_reads_back_only_what_it_knows() {
        let e = LogEntry {
            partial: true,
            attrs: vec![LogAttr {
                key: "k".into(),
                value: "v".into(),
            }],
            ..entry("a")
        };
        let back = e.for_dockerd();
        assert!(!back.partial && back.attrs.is_empty());
        assert_eq!(back.line, b"a");
    }
}
