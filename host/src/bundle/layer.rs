//! Image layers of a registry pull, applied one on top of the other into one rootfs.
//!
//! A layer is as hostile as a `create` upload (the registry, or whoever pushed to it, chose every
//! byte), so each goes through the same [`Unpacker`] with the same rules; only naming differs:
//! names are rootfs-relative, and OCI whiteouts (`.wh.<name>`, `.wh..wh..opq`) remove what earlier
//! layers wrote. Caps are totals over all layers, so splitting a bomb across layers gains nothing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::stream::{Caps, Observed};
use super::unpacker::{Naming, Unpacker};
use super::{BundleError, Limits, create_dest, make_rootfs, read_archive, remove_dest};

/// Applies the layers of one image, in order, into a staging directory.
///
/// Nothing is left half-written: the staging directory is removed as soon as [`apply`](Self::apply)
/// or [`finish`](Self::finish) fails, and when the unpacker is dropped unfinished (a download that
/// fails between layers simply drops it). Only a successful `finish` hands the rootfs over.
pub struct LayerUnpacker {
    dest: PathBuf,
    rootfs: PathBuf,
    /// `None` once finished or abandoned.
    unpacker: Option<Unpacker>,
    /// Layers applied so far, for naming the one at fault.
    layers: usize,
    /// Body and tar bytes used by earlier layers, against the totals.
    body_used: u64,
    tar_used: u64,
}

impl LayerUnpacker {
    /// Creates `dest` (which must not exist, so cleanup never removes anything plugd did not write)
    /// and `dest/rootfs` (0755). `limits` bound all layers together.
    pub fn new(dest: &Path, limits: &Limits) -> Result<LayerUnpacker, BundleError> {
        create_dest(dest)?;
        let rootfs = dest.join("rootfs");
        let tree = match make_rootfs(&rootfs) {
            Ok(tree) => tree,
            Err(err) => {
                remove_dest(dest, &err);
                return Err(err);
            }
        };
        let observed = Arc::new(Observed::default());
        Ok(LayerUnpacker {
            dest: dest.to_owned(),
            rootfs,
            unpacker: Some(Unpacker::new(tree, Naming::Layer, limits, observed)),
            layers: 0,
            body_used: 0,
            tar_used: 0,
        })
    }

    /// Applies one layer blob (gzip or plain tar, sniffed; zstd and others refused by name) on top of
    /// the earlier ones, reading it to its end so that a caller hashing the blob as it streams sees
    /// all of it. Returns the layer's diff id, `sha256:<hex>` of the uncompressed tar stream, which
    /// the caller checks against the image config's `rootfs.diff_ids`.
    ///
    /// Errors are [`BundleError::Layer`] naming the layer (from 1) around the refusal
    /// ([`BundleError::cause`] unwraps it); after one, `dest` is gone and every later call fails.
    pub fn apply(&mut self, layer: impl Read) -> Result<String, BundleError> {
        let Some(unpacker) = self.unpacker.as_mut() else {
            return Err(BundleError::Abandoned);
        };
        self.layers += 1;
        unpacker.next_layer();
        let max = unpacker.limits().max_body_bytes;
        let caps = Caps::layer(
            max.saturating_sub(self.body_used),
            max.saturating_sub(self.tar_used),
        );
        match read_archive(layer, unpacker, &caps) {
            Ok(read) => {
                self.body_used += read.body_bytes;
                self.tar_used += read.tar_bytes;
                Ok(read.digest)
            }
            Err(source) => {
                let err = BundleError::Layer {
                    index: self.layers,
                    source: Box::new(source),
                };
                self.abandon(&err);
                Err(err)
            }
        }
    }

    /// Applies directory modes and owners (last, so a read-only directory could not block what
    /// later layers write into it) and returns `dest/rootfs` for the caller to rename into place.
    pub fn finish(mut self) -> Result<PathBuf, BundleError> {
        let Some(mut unpacker) = self.unpacker.take() else {
            return Err(BundleError::Abandoned);
        };
        match unpacker.apply_dirs() {
            Ok(()) => Ok(self.rootfs.clone()),
            Err(err) => {
                remove_dest(&self.dest, &err);
                Err(err)
            }
        }
    }

    fn abandon(&mut self, err: &BundleError) {
        self.unpacker = None;
        remove_dest(&self.dest, err);
    }
}

impl Drop for LayerUnpacker {
    fn drop(&mut self) {
        if self.unpacker.take().is_some() {
            remove_dest(&self.dest, &"the pull was abandoned before its last layer");
        }
    }
}

impl std::fmt::Debug for LayerUnpacker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerUnpacker")
            .field("dest", &self.dest)
            .field("layers", &self.layers)
            .field("open", &self.unpacker.is_some())
            .finish()
    }
}
