//! The byte pipeline under the tar reader: body → size cap → optional gunzip → size cap → sha256.
//!
//! The caps sit on both sides of the decompressor because either side alone is bypassable: capping
//! only the body lets a gzip bomb expand without bound, capping only the tar stream lets a client
//! stream an endless compressed body that never decompresses to anything.

use std::cell::Cell;
use std::io::{self, Chain, Cursor, Read};
use std::rc::Rc;

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

/// The gzip magic number (RFC 1952 §2.3.1).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// What the readers observed, shared with the unpacker because the tar crate owns the readers while
/// entries are processed and turns our errors into its own.
#[derive(Default)]
pub(super) struct Observed {
    /// Which stream went over its cap, if any: checked first when any read fails, so a tripped cap is
    /// reported as such instead of as whatever the tar crate made of the failed read.
    oversize: Cell<Option<&'static str>>,
    /// The tar stream reached its end; if that happens before the tar reader saw an end-of-archive
    /// block, the archive was cut short.
    eof: Cell<bool>,
}

impl Observed {
    /// The stream (`"request body"` or `"decompressed tar stream"`) that exceeded its cap.
    pub(super) fn oversize(&self) -> Option<&'static str> {
        self.oversize.get()
    }

    /// Whether the tar stream hit end-of-file.
    pub(super) fn eof(&self) -> bool {
        self.eof.get()
    }
}

/// Fails reads once more than `limit` bytes have come through.
struct Capped<R> {
    inner: R,
    read: u64,
    limit: u64,
    name: &'static str,
    observed: Rc<Observed>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read > self.limit {
            return Err(self.tripped());
        }
        // Ask for one byte past the cap so a stream of exactly `limit` bytes passes and one more fails.
        let room = self.limit - self.read + 1;
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(self.tripped());
        }
        Ok(n)
    }
}

impl<R> Capped<R> {
    fn tripped(&self) -> io::Error {
        self.observed.oversize.set(Some(self.name));
        io::Error::other(format!("{} exceeds {} bytes", self.name, self.limit))
    }
}

type Raw<'a> = Chain<Cursor<Vec<u8>>, Capped<Box<dyn Read + 'a>>>;

/// The decompressed tar stream, hashed as it is read.
pub(super) struct TarStream<'a> {
    inner: Capped<Box<dyn Read + 'a>>,
    hasher: Sha256,
    observed: Rc<Observed>,
}

impl<'a> TarStream<'a> {
    /// Wraps `body`, sniffing the gzip magic from its first two bytes.
    pub(super) fn new(
        body: impl Read + 'a,
        limit: u64,
        observed: Rc<Observed>,
    ) -> io::Result<Self> {
        let mut body = Capped {
            inner: Box::new(body) as Box<dyn Read + 'a>,
            read: 0,
            limit,
            name: "request body",
            observed: observed.clone(),
        };
        let magic = read_prefix(&mut body, GZIP_MAGIC.len())?;
        let gzip = magic == GZIP_MAGIC;
        let raw: Raw<'a> = Cursor::new(magic).chain(body);
        let tar: Box<dyn Read + 'a> = if gzip {
            Box::new(GzDecoder::new(raw))
        } else {
            Box::new(raw)
        };
        Ok(TarStream {
            inner: Capped {
                inner: tar,
                read: 0,
                limit,
                name: "decompressed tar stream",
                observed: observed.clone(),
            },
            hasher: Sha256::new(),
            observed,
        })
    }

    /// Bytes of tar stream read so far.
    pub(super) fn position(&self) -> u64 {
        self.inner.read
    }

    /// Reads what follows the end-of-archive blocks, so the digest covers the whole stream as sent
    /// and gzip's trailing CRC is checked (flate2 verifies it only when the stream is read to its end).
    pub(super) fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }

    /// `sha256:<hex>` of every byte read.
    pub(super) fn digest(self) -> String {
        format!("sha256:{:x}", self.hasher.finalize())
    }
}

impl Read for TarStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.observed.eof.set(true);
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads up to `len` bytes, fewer only at end-of-file.
fn read_prefix(r: &mut impl Read, len: usize) -> io::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(len);
    r.take(len as u64).read_to_end(&mut prefix)?;
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(body: &[u8], limit: u64) -> (io::Result<Vec<u8>>, Rc<Observed>) {
        let observed = Rc::new(Observed::default());
        let mut stream = TarStream::new(body, limit, observed.clone()).unwrap();
        let mut out = Vec::new();
        (stream.read_to_end(&mut out).map(|_| out), observed)
    }

    #[test]
    fn exact_limit_passes_and_one_more_fails() {
        let (out, observed) = read_all(&[7; 100], 100);
        assert_eq!(out.unwrap().len(), 100);
        assert!(observed.eof());
        let (out, observed) = read_all(&[7; 101], 100);
        assert!(out.is_err());
        assert_eq!(observed.oversize(), Some("request body"));
    }

    #[test]
    fn gzip_is_detected_and_capped_after_decompression() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[0; 10_000]).unwrap();
        let body = gz.finish().unwrap();
        let (out, _) = read_all(&body, 10_000);
        assert_eq!(out.unwrap(), vec![0; 10_000]);
        let (out, observed) = read_all(&body, 9_999);
        assert!(out.is_err());
        assert_eq!(observed.oversize(), Some("decompressed tar stream"));
    }

    #[test]
    fn short_bodies_are_passed_through() {
        assert_eq!(read_all(b"", 10).0.unwrap(), b"");
        assert_eq!(read_all(b"\x1f", 10).0.unwrap(), b"\x1f");
    }
}
