//! Plugin bundles uploaded as tar streams (`POST /plugins/create`).
//!
//! `docker plugin create NAME DIR` sends its context directory (`config.json` plus `rootfs/`) as a
//! tar stream, gzip-compressed with `--compress`. dockerd keeps `config.json`, re-roots `rootfs/…`
//! entries and discards everything else (reference §3.5); [`unpack`] does the same, except that it
//! also accepts the gzip body dockerd cannot read, and it writes the rootfs itself instead of
//! re-tarring it through a chroot. The body comes from any API client and we run as root, so every
//! name, link target, type and size in it is treated as hostile:
//!
//! - names are checked before use (no absolute names, no `..`), for ignored entries too;
//! - nothing is ever written through a symlink (`tree.rs` has the fd-relative walk);
//! - hardlinks may only point at regular files already unpacked into the rootfs;
//! - device nodes and FIFOs are refused, since plugin devices come only from declared privileges;
//! - setuid/setgid bits are stripped from regular files;
//! - the body, the decompressed stream, the entry count and `config.json` are all capped ([`Limits`]);
//! - an archive that ends without its end-of-archive marker is an error, not a partial rootfs.
//!
//! The layers of a registry pull are as hostile and go through the same per-entry rules
//! ([`LayerUnpacker`]: rootfs-relative names, OCI whiteouts, caps totalled over the layers);
//! [`write_layer`] writes the one layer a push sends, reading the tree as carefully as it was written.
//! docs/architecture.md "Layer extraction" lists what is refused and what is neutralised.

mod error;
mod layer;
mod name;
mod stream;
mod tree;
mod unpacker;
mod write;

#[cfg(test)]
#[path = "../../../tests/fixtures/layers/corpus.rs"]
mod corpus;
#[cfg(test)]
mod layer_tests;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::error::BundleError;
pub use self::layer::LayerUnpacker;
use self::stream::{Caps, Observed, OpenError, TarStream};
use self::tree::Tree;
use self::unpacker::{Naming, Unpacker, oversize};
pub use self::write::{write_bundle, write_layer};

/// Bounds on what one upload (or one pull, all its layers together) may cost; the API is reachable
/// by any client of the daemon socket, and a pull fetches whatever the registry serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Cap on the bytes read from the request body and, separately, on the tar stream after gunzip.
    /// One number for both, so a gzip bomb is held to the size a plain upload could have had. For a
    /// pull, both are totals over its layers, so splitting a bomb across layers gains nothing.
    pub max_body_bytes: u64,
    /// Cap on archive entries, ignored ones and whiteouts included (over all layers of a pull): each
    /// costs inodes and syscalls however small.
    pub max_entries: usize,
    /// Cap on `config.json`, which is held in memory and parsed.
    pub max_config_bytes: u64,
}

impl Default for Limits {
    /// 2 GiB, 200 000 entries and 1 MiB: well above real plugins (the largest in the docker
    /// ecosystem are a few hundred MiB with a few thousand files), low enough to protect the host.
    fn default() -> Self {
        Limits {
            max_body_bytes: 2 << 30,
            max_entries: 200_000,
            max_config_bytes: 1 << 20,
        }
    }
}

/// A bundle unpacked into its staging directory.
#[derive(Debug)]
pub struct Unpacked {
    /// `config.json` as uploaded, unparsed: decoding it is the caller's, so that its errors can read
    /// like dockerd's `failed to parse config: …`.
    pub config_json: Vec<u8>,
    /// `dest/rootfs`.
    pub rootfs: PathBuf,
    /// `sha256:<hex>` of the tar stream after gunzip, end-of-archive blocks and trailing bytes
    /// included: the same bundle yields the same digest whether or not it was sent compressed.
    pub digest: String,
}

/// Reads a (possibly gzip-compressed, detected by magic bytes 1f 8b) tar stream and writes its
/// `rootfs/` into `dest/rootfs`; `dest` must not exist yet (the caller passes a staging dir under the
/// data root and renames it into place on success). On any error everything written under `dest` is
/// removed before returning, so a failed create leaves nothing for the store to trip over.
///
/// Ownership from the archive is applied only when running as root (as dockerd's chrootarchive does);
/// otherwise files belong to the caller. Modes are kept except setuid/setgid on regular files: the
/// plugin runs as root, and a set-id binary smuggled in by a bundle is a privilege-escalation tool the
/// moment that rootfs is reachable without `nosuid`. Directory modes are applied once every entry is
/// written, so a read-only directory in the archive cannot block its own contents.
pub fn unpack(body: impl Read, dest: &Path, limits: &Limits) -> Result<Unpacked, BundleError> {
    create_dest(dest)?;
    let result = unpack_into(body, dest, limits);
    if let Err(err) = &result {
        remove_dest(dest, err);
    }
    result
}

/// Creates the staging directory, which must be fresh so that cleanup never removes anything we
/// did not write.
fn create_dest(dest: &Path) -> Result<(), BundleError> {
    match fs::DirBuilder::new().mode(0o700).create(dest) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(BundleError::DestExists(dest.to_owned()))
        }
        Err(source) => Err(BundleError::Staging {
            path: dest.to_owned(),
            source,
        }),
    }
}

/// Removes the staging directory of a refused archive (`err` says why, for the log if that fails).
fn remove_dest(dest: &Path, err: &dyn std::fmt::Display) {
    if let Err(cleanup) = fs::remove_dir_all(dest) {
        let dest = dest.display();
        tracing::warn!(%dest, %err, %cleanup, "cannot remove the staging directory of a refused archive");
    }
}

fn unpack_into(body: impl Read, dest: &Path, limits: &Limits) -> Result<Unpacked, BundleError> {
    let rootfs = dest.join("rootfs");
    let tree = make_rootfs(&rootfs)?;
    let mut unpacker = Unpacker::new(tree, Naming::Bundle, limits, Arc::new(Observed::default()));
    let read = read_archive(body, &mut unpacker, &Caps::bundle(limits.max_body_bytes))?;
    let config_json = unpacker.finish_bundle()?;
    Ok(Unpacked {
        config_json,
        rootfs,
        digest: read.digest,
    })
}

/// What reading one archive cost, and its digest.
struct Archived {
    /// `sha256:<hex>` of the tar stream after decompression, to its very end.
    digest: String,
    /// Bytes of the body as given.
    body_bytes: u64,
    /// Bytes of the tar stream.
    tar_bytes: u64,
}

/// Feeds every entry of one archive (a bundle, or one layer) to `unpacker` and reads the stream to
/// its end, so that gzip's trailer is checked and the digest covers everything.
fn read_archive(
    body: impl Read,
    unpacker: &mut Unpacker,
    caps: &Caps,
) -> Result<Archived, BundleError> {
    let observed = unpacker.observed().clone();
    let mut stream = TarStream::new(body, caps, observed.clone()).map_err(|e| match e {
        OpenError::Compression(format) => BundleError::UnsupportedCompression { format },
        OpenError::Io(source) => {
            oversize(unpacker.limits(), &observed).unwrap_or(BundleError::Read {
                at: "at the start of the stream".into(),
                source,
            })
        }
    })?;
    {
        let mut archive = tar::Archive::new(&mut stream);
        let entries = archive
            .entries()
            .map_err(|e| unpacker.read_error(e, unpacker.after()))?;
        for entry in entries {
            let entry = entry.map_err(|e| unpacker.read_error(e, unpacker.after()))?;
            unpacker.entry(entry)?;
        }
    }
    if observed.eof() {
        // The tar reader stopped at end-of-file, not at a zero block.
        return Err(match stream.position() {
            0 => BundleError::Empty,
            _ => BundleError::Truncated {
                at: unpacker.after(),
            },
        });
    }
    stream
        .drain()
        .map_err(|e| unpacker.read_error(e, "after the end-of-archive marker".into()))?;
    Ok(Archived {
        body_bytes: stream.body_read(),
        tar_bytes: stream.position(),
        digest: stream.digest(),
    })
}

/// Creates `dest/rootfs` (0755 until a `rootfs/` entry says otherwise) and opens it for the walk.
fn make_rootfs(rootfs: &Path) -> Result<Tree, BundleError> {
    let staging = |source: io::Error| BundleError::Staging {
        path: rootfs.to_owned(),
        source,
    };
    fs::create_dir(rootfs).map_err(staging)?;
    Tree::open(rootfs).map_err(|e| staging(e.into()))
}
