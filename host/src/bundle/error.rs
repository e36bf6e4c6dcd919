//! Refusals, each naming the entry (as spelled in the archive) or the limit at fault.

use std::io;
use std::path::PathBuf;

/// Why a bundle was refused. Every message names the entry (as spelled in the archive) or the limit
/// at fault, because it is shown verbatim to the `docker plugin create` user.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The staging directory must be fresh so that cleanup never removes anything we did not write.
    #[error("staging directory {} already exists", .0.display())]
    DestExists(PathBuf),
    /// The staging directory could not be set up.
    #[error("cannot create staging directory {}: {source}", path.display())]
    Staging {
        /// The directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// A size cap was exceeded.
    #[error("oversize body: the {stream} exceeds the limit of {limit} bytes")]
    Oversize {
        /// `request body` or `decompressed tar stream`.
        stream: &'static str,
        /// The cap.
        limit: u64,
    },
    /// The entry cap was exceeded.
    #[error("too many entries: entry `{entry}` exceeds the limit of {limit} entries")]
    TooManyEntries {
        /// The first entry over the cap.
        entry: String,
        /// The cap.
        limit: usize,
    },
    /// The stream is compressed with something other than gzip (zstd is valid in OCI images, but
    /// dockerd cannot read it either, so an image that needs it is not a plugin dockerd could pull).
    #[error(
        "unsupported compression: the stream is {format}-compressed; only gzip and uncompressed tar are accepted"
    )]
    UnsupportedCompression {
        /// `zstd`, `xz` or `bzip2`.
        format: &'static str,
    },
    /// A layer entry whose name is an invalid whiteout (OCI image-spec, layer.md).
    #[error("whiteout `{entry}`: {reason}")]
    Whiteout {
        /// The entry.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A layer of a pull was refused; `source` names the entry, `index` (from 1) the layer.
    #[error("layer {index}: {source}")]
    Layer {
        /// Which layer, counting from 1 in the order applied.
        index: usize,
        /// Why.
        #[source]
        source: Box<BundleError>,
    },
    /// A layer was offered after an earlier one had been refused and its extraction removed.
    #[error("layer extraction was abandoned after an earlier layer was refused")]
    Abandoned,
    /// Nothing was sent.
    #[error("empty body: expected a tar stream")]
    Empty,
    /// The stream is not a readable tar (or gzip) stream, or reading the body failed.
    #[error("cannot read the tar stream {at}: {source}")]
    Read {
        /// Where: `at the start of the stream`, `after entry `…``, `in entry `…``.
        at: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The stream ended between entries without the end-of-archive marker.
    #[error("truncated archive: the stream ends {at} without an end-of-archive marker")]
    Truncated {
        /// Where the stream ended.
        at: String,
    },
    /// The stream ended inside an entry's data.
    #[error("truncated archive: entry `{entry}` ends after {got} of its {size} bytes")]
    TruncatedEntry {
        /// The entry.
        entry: String,
        /// Bytes present.
        got: u64,
        /// Bytes announced by the header.
        size: u64,
    },
    /// A numeric header field does not parse or does not fit.
    #[error("entry `{entry}`: invalid {field} in header: {source}")]
    Header {
        /// The entry.
        entry: String,
        /// `mode`, `uid` or `gid`.
        field: &'static str,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// An absolute entry name.
    #[error("entry `{entry}`: absolute names are not allowed")]
    AbsoluteName {
        /// The entry.
        entry: String,
    },
    /// An entry name with a `..` component.
    #[error("entry `{entry}`: `..` components are not allowed in names")]
    ParentDirName {
        /// The entry.
        entry: String,
    },
    /// An entry name longer than `PATH_MAX`.
    #[error("entry `{entry}`: name is {len} bytes, longer than the limit of {limit}")]
    NameTooLong {
        /// The entry, shortened.
        entry: String,
        /// Its length.
        len: usize,
        /// The cap.
        limit: usize,
    },
    /// No `config.json` at the root of the bundle.
    #[error("config not found: the bundle has no config.json at its root")]
    ConfigNotFound,
    /// A second `config.json`: which one dockerd would use depends on archive order, so refuse.
    #[error("duplicate config.json: entry `{entry}` follows an earlier config.json")]
    DuplicateConfig {
        /// The second entry.
        entry: String,
    },
    /// `config.json` is a link, directory or device.
    #[error("config.json entry `{entry}` is a {kind}, not a regular file")]
    ConfigNotRegular {
        /// The entry.
        entry: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// `config.json` is over its cap.
    #[error("config.json entry `{entry}` is {size} bytes, larger than the limit of {limit}")]
    ConfigTooLarge {
        /// The entry.
        entry: String,
        /// Its size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// No `rootfs/` entry at all (dockerd: `no rootfs found`).
    #[error("no rootfs found: the bundle has no rootfs/ entries")]
    NoRootfs,
    /// `rootfs` itself is not a directory.
    #[error("entry `{entry}`: rootfs must be a directory, not a {kind}")]
    RootfsNotDirectory {
        /// The entry.
        entry: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// A device node or FIFO: plugins get devices only through declared privileges.
    #[error("entry `{entry}`: {kind} entries are not allowed in a plugin rootfs")]
    SpecialFile {
        /// The entry.
        entry: String,
        /// `character device`, `block device` or `fifo`.
        kind: &'static str,
    },
    /// A tar entry type with no meaning in a rootfs (GNU sparse, volume headers, …).
    #[error("entry `{entry}`: unsupported entry type {typeflag:?}")]
    UnsupportedType {
        /// The entry.
        entry: String,
        /// The raw typeflag.
        typeflag: char,
    },
    /// A link entry without a target.
    #[error("{kind} `{entry}` has no target")]
    MissingLinkTarget {
        /// The entry.
        entry: String,
        /// `symlink` or `hardlink`.
        kind: &'static str,
    },
    /// A hardlink whose target is not under `rootfs/` (absolute, `..`, or another part of the bundle).
    #[error("hardlink `{entry}`: target `{target}` is outside rootfs/")]
    HardlinkOutsideRootfs {
        /// The entry.
        entry: String,
        /// Its target as spelled in the archive.
        target: String,
    },
    /// A hardlink to something that is not a regular file unpacked earlier.
    #[error(
        "hardlink `{entry}`: target `{target}` is not a regular file unpacked earlier {earlier}"
    )]
    HardlinkTarget {
        /// The entry.
        entry: String,
        /// Its target as spelled in the archive.
        target: String,
        /// `in the archive`, or for layers `in this or an earlier layer`.
        earlier: &'static str,
    },
    /// The entry's path goes through a symlink unpacked earlier.
    #[error("entry `{entry}`: `{symlink}` is a symlink; refusing to write through it")]
    ThroughSymlink {
        /// The entry.
        entry: String,
        /// The symlink on its path, bundle-relative.
        symlink: String,
    },
    /// The entry's path goes through a non-directory unpacked earlier.
    #[error("entry `{entry}`: `{path}` is not a directory")]
    NotADirectory {
        /// The entry.
        entry: String,
        /// The non-directory on its path, bundle-relative.
        path: String,
    },
    /// A non-directory entry where a directory was unpacked earlier.
    #[error("entry `{entry}`: refusing to replace a directory with a {kind}")]
    ReplacesDirectory {
        /// The entry.
        entry: String,
        /// What the entry is.
        kind: &'static str,
    },
    /// Writing the entry failed (disk full, permissions, name too long for the filesystem, …).
    #[error("entry `{entry}`: cannot {op}: {source}")]
    Write {
        /// The entry, or `rootfs` for the staging root.
        entry: String,
        /// The failed step.
        op: &'static str,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

impl BundleError {
    /// The refusal itself, without the layer that carried it: what a caller reacts to (or a test
    /// asserts) is the kind of refusal, whichever layer it came in.
    pub fn cause(&self) -> &BundleError {
        match self {
            BundleError::Layer { source, .. } => source.cause(),
            other => other,
        }
    }
}
