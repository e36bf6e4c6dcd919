//! The byte pipeline under the tar reader: body → size cap → optional gunzip → size cap → sha256.
//!
//! The caps sit on both sides of the decompressor because either side alone is bypassable: capping
//! only the body lets a gzip bomb expand without bound, capping only the tar stream lets a client
//! stream an endless compressed body that never decompresses to anything.

use std::io::{self, Chain, Cursor, Read};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

/// The gzip magic number (RFC 1952 §2.3.1).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Magic numbers of the compressions registries carry (zstd layers are OCI-valid) or tools emit,
/// which are not read here: naming them beats the tar reader's "invalid header" on their bytes.
/// bzip2's `BZh` is the one dockerd's `DetectCompression` also claims.
const UNSUPPORTED: &[(&[u8], &str)] = &[
    (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
    (&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], "xz"),
    (b"BZh", "bzip2"),
];

/// Why a stream could not be opened.
pub(super) enum OpenError {
    /// Reading its first bytes failed.
    Io(io::Error),
    /// It starts with the magic number of a compression we do not read.
    Compression(&'static str),
}

/// What a stream's two caps are called in errors, and how many bytes each may still pass.
pub(super) struct Caps {
    pub(super) body_name: &'static str,
    pub(super) body_limit: u64,
    pub(super) tar_name: &'static str,
    pub(super) tar_limit: u64,
}

impl Caps {
    /// A `create` upload: one cap for the body and the tar stream.
    pub(super) fn bundle(limit: u64) -> Caps {
        Caps {
            body_name: "request body",
            body_limit: limit,
            tar_name: "decompressed tar stream",
            tar_limit: limit,
        }
    }

    /// One layer of a pull, allowed what earlier layers left of the totals.
    pub(super) fn layer(body_left: u64, tar_left: u64) -> Caps {
        Caps {
            body_name: "total of the layer blobs",
            body_limit: body_left,
            tar_name: "total of the uncompressed layers",
            tar_limit: tar_left,
        }
    }
}

/// What the readers observed, shared with the unpacker (thread-safe only so that a
/// [`super::LayerUnpacker`] can move between threads between layers) because the tar crate owns the readers while
/// entries are processed and turns our errors into its own.
#[derive(Default)]
pub(super) struct Observed {
    /// Which stream went over its cap, if any: checked first when any read fails, so a tripped cap is
    /// reported as such instead of as whatever the tar crate made of the failed read.
    oversize: Mutex<Option<&'static str>>,
    /// The tar stream reached its end; if that happens before the tar reader saw an end-of-archive
    /// block, the archive was cut short.
    eof: AtomicBool,
}

impl Observed {
    /// The stream (`"request body"` or `"decompressed tar stream"`) that exceeded its cap.
    pub(super) fn oversize(&self) -> Option<&'static str> {
        *self.oversize.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the tar stream hit end-of-file.
    pub(super) fn eof(&self) -> bool {
        self.eof.load(Ordering::Relaxed)
    }

    /// Forgets what an earlier stream did, before the next one (layers share one unpacker).
    pub(super) fn reset(&self) {
        *self.oversize.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.eof.store(false, Ordering::Relaxed);
    }
}

/// Fails reads once more than `limit` bytes have come through.
struct Capped<R> {
    inner: R,
    read: u64,
    limit: u64,
    name: &'static str,
    observed: Arc<Observed>,
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
        *self
            .observed
            .oversize
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(self.name);
        io::Error::other(format!("{} exceeds {} bytes", self.name, self.limit))
    }
}

/// The body as read so far, shared so its byte count stays readable under the decompressor.
type Body<'a> = Rc<std::cell::RefCell<Capped<Box<dyn Read + 'a>>>>;

/// Reads through a shared [`Body`].
struct Shared<'a>(Body<'a>);

impl Read for Shared<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

type Raw<'a> = Chain<Cursor<Vec<u8>>, Shared<'a>>;

/// The decompressed tar stream, hashed as it is read.
pub(super) struct TarStream<'a> {
    inner: Capped<Box<dyn Read + 'a>>,
    body: Body<'a>,
    hasher: Sha256,
    observed: Arc<Observed>,
}

impl<'a> TarStream<'a> {
    /// Wraps `body`, sniffing the compression from its first bytes: gzip (one or more members, as Go's
    /// reader and so dockerd accept) or none; the compressions in [`UNSUPPORTED`] are refused.
    pub(super) fn new(
        body: impl Read + 'a,
        caps: &Caps,
        observed: Arc<Observed>,
    ) -> Result<Self, OpenError> {
        let mut capped = Capped {
            inner: Box::new(body) as Box<dyn Read + 'a>,
            read: 0,
            limit: caps.body_limit,
            name: caps.body_name,
            observed: observed.clone(),
        };
        let longest = UNSUPPORTED.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
        let magic = read_prefix(&mut capped, longest).map_err(OpenError::Io)?;
        if let Some((_, format)) = UNSUPPORTED.iter().find(|(m, _)| magic.starts_with(m)) {
            return Err(OpenError::Compression(format));
        }
        let gzip = magic.starts_with(&GZIP_MAGIC);
        let body = Rc::new(std::cell::RefCell::new(capped));
        let raw: Raw<'a> = Cursor::new(magic).chain(Shared(body.clone()));
        let tar: Box<dyn Read + 'a> = if gzip {
            Box::new(MultiGzDecoder::new(raw))
        } else {
            Box::new(raw)
        };
        Ok(TarStream {
            inner: Capped {
                inner: tar,
                read: 0,
                limit: caps.tar_limit,
                name: caps.tar_name,
                observed: observed.clone(),
            },
            body,
            hasher: Sha256::new(),
            observed,
        })
    }

    /// Bytes of the (possibly compressed) body read so far.
    pub(super) fn body_read(&self) -> u64 {
        self.body.borrow().read
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
            self.observed.eof.store(true, Ordering::Relaxed);
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

    fn read_all(body: &[u8], limit: u64) -> (io::Result<Vec<u8>>, Arc<Observed>) {
        let observed = Arc::new(Observed::default());
        let Ok(mut stream) = TarStream::new(body, &Caps::bundle(limit), observed.clone()) else {
            panic!("cannot open the stream");
        };
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
    fn gzip_members_are_all_read() {
        use std::io::Write;
        let mut body = Vec::new();
        for part in [&b"first "[..], b"second"] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(part).unwrap();
            body.extend(gz.finish().unwrap());
        }
        assert_eq!(read_all(&body, 100).0.unwrap(), b"first second");
        // Anything after a member must be another member, as Go's multistream reader has it.
        body.extend_from_slice(b"not gzip");
        assert!(read_all(&body, 100).0.is_err());
    }

    #[test]
    fn other_compressions_are_named() {
        for (body, name) in [
            (&[0x28, 0xb5, 0x2f, 0xfd, 0, 0][..], "zstd"),
            (&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1][..], "xz"),
            (b"BZh91AY", "bzip2"),
        ] {
            let observed = Arc::new(Observed::default());
            match TarStream::new(body, &Caps::bundle(100), observed) {
                Err(OpenError::Compression(format)) => assert_eq!(format, name),
                _ => panic!("{name} not refused"),
            }
        }
    }

    #[test]
    fn short_bodies_are_passed_through() {
        assert_eq!(read_all(b"", 10).0.unwrap(), b"");
        assert_eq!(read_all(b"\x1f", 10).0.unwrap(), b"\x1f");
    }
}
