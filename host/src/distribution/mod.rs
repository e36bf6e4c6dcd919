//! Registry distribution: plugins as images in OCI registries, in exactly the format dockerd
//! pushes and pulls (reference §3.4, §3.11), so a plugin pushed by either installs in the other.
//!
//! - [`client`] — the registry connection (`oci-client`, rustls), strict manifests, verified blobs.
//! - [`media`] — media types, manifests and indexes, platform choice.
//! - [`blobs`] — the blob store under the data root.
//! - [`auth`] — `X-Registry-Auth`.
//! - [`progress`] — docker's JSON progress messages.
//! - [`fetch`] (here) — a whole image into a staging directory — config checked first, then layers
//!   downloaded and applied with the same hostile-tar rules as `create` ([`crate::bundle`]).
//!   Nothing enters the blob store or the plugin store until the plugin is committed.

pub mod auth;
pub mod blobs;
pub mod client;
pub mod media;
pub mod progress;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::{self, Limits};
use blobs::Blobs;
use client::Session;
use media::{Descriptor, Manifest};
use progress::{Progress, short};

/// The image a plugin came from (or was packaged as at create): what `push` sends. Its blobs are
/// in the [`Blobs`] store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The manifest blob (its bytes are pushed as they are).
    pub manifest: Descriptor,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, in order.
    pub layers: Vec<Descriptor>,
}

impl Image {
    /// Every blob digest of the image.
    pub fn digests(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.manifest.digest.as_str())
            .chain(std::iter::once(self.config.digest.as_str()))
            .chain(self.layers.iter().map(|l| l.digest.as_str()))
    }
}

/// A plugin image fetched into a staging directory.
#[derive(Debug)]
pub struct Fetched {
    /// The config blob's bytes (a plugin's `config.json`), unparsed.
    pub config_json: Vec<u8>,
    /// `work/plugin/rootfs`, all layers applied: `work/plugin` is the plugin's staging directory
    /// (for `Store::commit_new`).
    pub rootfs: PathBuf,
    /// The image; its blobs are in `staging/blobs` or already in the store.
    pub image: Image,
    staged_blobs: PathBuf,
}

impl Fetched {
    /// Moves the staged blobs into the store (after the plugin is committed: a failed pull never
    /// adds to the store).
    pub fn commit_blobs(&self, store: &Blobs) -> std::io::Result<()> {
        commit_staged(&self.image, &self.staged_blobs, store)
    }
}

/// Largest config blob read (the same cap as a `create`'s config.json).
const MAX_CONFIG: u64 = 1 << 20;

/// The config blob of a resolved image, checked to be a plugin's.
pub async fn fetch_config(
    session: &Session,
    manifest: &Manifest,
    scratch: &Path,
) -> Result<Vec<u8>, String> {
    let config = &manifest.config;
    if config.media_type != media::PLUGIN_CONFIG {
        // dockerd's words for "this is an image, not a plugin".
        return Err(format!(
            "fetched plugin image but plugin config is missing (the image's config is {:?}, not {:?}: not a plugin)",
            config.media_type,
            media::PLUGIN_CONFIG
        ));
    }
    if config.size > MAX_CONFIG {
        return Err(format!(
            "plugin config blob is {} bytes, more than the limit of {MAX_CONFIG}",
            config.size
        ));
    }
    let path = scratch.join(".config");
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| format!("staging {}: {e}", path.display()))?;
    session.fetch(config, &mut file, &Progress::none()).await?;
    drop(file);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    let _ = tokio::fs::remove_file(&path).await;
    Ok(bytes)
}

/// Downloads and applies a resolved image into `work` (which must exist and be empty): config
/// first, checked by `check` (privileges) before any layer is downloaded, then each layer
/// (skipped when the store has it) into `work/blobs`, then applied in order into
/// `work/plugin/rootfs`. On error the caller removes `work`.
pub async fn fetch(
    session: &Session,
    resolved: client::Resolved,
    work: &Path,
    store: &Blobs,
    limits: &Limits,
    progress: &Progress,
    check: impl FnOnce(&[u8]) -> Result<(), crate::error::Error>,
) -> Result<Fetched, crate::error::Error> {
    use crate::error::Error;
    let staged_blobs = work.join("blobs");
    crate::fsutil::create_dir_all(&staged_blobs, 0o700).map_err(crate::error::at(&staged_blobs))?;
    let manifest = &resolved.manifest;
    let config_json = fetch_config(session, manifest, &staged_blobs)
        .await
        .map_err(Error::system)?;
    check(&config_json)?;
    let mut total = 0u64;
    for layer in &manifest.layers {
        if !media::LAYER_TYPES.contains(&layer.media_type.as_str()) {
            return Err(Error::system(format!(
                "layer {} has media type {:?}, which plugins cannot use (accepted: {})",
                layer.digest,
                layer.media_type,
                media::LAYER_TYPES.join(", ")
            )));
        }
        total = total.saturating_add(layer.size);
    }
    if total > limits.max_body_bytes {
        return Err(Error::system(format!(
            "the image's layers are {total} bytes, more than the limit of {} (--max-bundle-size)",
            limits.max_body_bytes
        )));
    }
    let mut sources = Vec::new();
    for layer in &manifest.layers {
        let id = short(&layer.digest);
        if store.has(&layer.digest) {
            progress.status(&id, "Already exists");
            sources.push(store.path(&layer.digest).map_err(Error::system)?);
            continue;
        }
        progress.status(&id, "Pulling fs layer");
        let path = staged_blobs.join(layer.digest.trim_start_matches("sha256:"));
        if !path.exists() {
            let mut file = tokio::fs::File::create(&path)
                .await
                .map_err(crate::error::at(&path))?;
            session
                .fetch(layer, &mut file, progress)
                .await
                .map_err(Error::system)?;
            file.sync_all().await.map_err(crate::error::at(&path))?;
        }
        progress.status(&id, "Download complete");
        sources.push(path);
    }
    // The manifest and config blobs too, so a push sends these very bytes.
    let manifest_desc = Descriptor {
        media_type: resolved.media_type.clone(),
        digest: resolved.digest.clone(),
        size: resolved.bytes.len() as u64,
        platform: None,
    };
    if blobs::digest_of(&resolved.bytes) != resolved.digest {
        return Err(Error::system(format!(
            "manifest does not match its digest {}",
            resolved.digest
        )));
    }
    for (digest, bytes) in [
        (&manifest_desc.digest, &resolved.bytes),
        (&manifest.config.digest, &config_json),
    ] {
        let path = staged_blobs.join(digest.trim_start_matches("sha256:"));
        std::fs::write(&path, bytes).map_err(crate::error::at(&path))?;
    }
    let dest = work.join("plugin");
    let limits = limits.clone();
    let layers = manifest.layers.clone();
    let rootfs = tokio::task::spawn_blocking(move || -> Result<PathBuf, Error> {
        let mut unpacker = bundle::LayerUnpacker::new(&dest, &limits)?;
        for (layer, source) in layers.iter().zip(&sources) {
            let file = std::fs::File::open(source).map_err(crate::error::at(source))?;
            unpacker
                .apply(std::io::BufReader::new(file))
                .map_err(|e| Error::system(format!("layer {}: {e}", layer.digest)))?;
        }
        Ok(unpacker.finish()?)
    })
    .await
    .map_err(|e| Error::system(format!("applying layers: {e}")))??;
    Ok(Fetched {
        config_json,
        rootfs,
        image: Image {
            manifest: manifest_desc,
            config: manifest.config.clone(),
            layers: manifest.layers.clone(),
        },
        staged_blobs,
    })
}

/// Packages a plugin as dockerd's `create` does (reference §3.5): its rootfs as one gzip layer,
/// its config with `rootfs.diff_ids` set to that layer's digest (dockerd's quirk: the compressed
/// digest) as the config blob, and a docker v2 manifest. Blobs go to `staged` (a directory on the
/// store's filesystem) for [`Blobs::commit`]. Returns the image and the config as stored.
pub fn package(
    rootfs: &Path,
    config: &mut plugd_core::config::PluginConfig,
    staged: &Path,
) -> Result<Image, crate::error::Error> {
    use crate::error::{Error, at};
    crate::fsutil::create_dir_all(staged, 0o700).map_err(at(staged))?;
    let layer_tmp = staged.join(".layer");
    let file = std::fs::File::create(&layer_tmp).map_err(at(&layer_tmp))?;
    let mut out = std::io::BufWriter::new(file);
    let (digest, size) = bundle::write_layer(rootfs, &mut out)
        .map_err(|e| Error::system(format!("packaging the rootfs as a layer: {e}")))?;
    let file = out
        .into_inner()
        .map_err(|e| Error::system(format!("packaging the rootfs as a layer: {e}")))?;
    file.sync_all().map_err(at(&layer_tmp))?;
    let hex = media::check_digest(&digest)
        .map_err(Error::system)?
        .to_string();
    std::fs::rename(&layer_tmp, staged.join(&hex)).map_err(at(staged))?;
    config.rootfs = Some(plugd_core::config::RootFs {
        diff_ids: Some(vec![digest.clone()]),
        kind: "layers".into(),
    });
    let mut config_blob = serde_json::to_vec(&*config)?;
    config_blob.push(b'\n');
    let config_desc = Descriptor {
        media_type: media::PLUGIN_CONFIG.into(),
        digest: blobs::digest_of(&config_blob),
        size: config_blob.len() as u64,
        platform: None,
    };
    let layer_desc = Descriptor {
        media_type: media::LAYER_GZIP.into(),
        digest,
        size,
        platform: None,
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST_V2.into()),
        config: config_desc.clone(),
        layers: vec![layer_desc.clone()],
    };
    let manifest_blob = serde_json::to_vec(&manifest)?;
    let manifest_desc = Descriptor {
        media_type: media::MANIFEST_V2.into(),
        digest: blobs::digest_of(&manifest_blob),
        size: manifest_blob.len() as u64,
        platform: None,
    };
    for (d, bytes) in [
        (&config_desc, &config_blob),
        (&manifest_desc, &manifest_blob),
    ] {
        let path = staged.join(d.digest.trim_start_matches("sha256:"));
        std::fs::write(&path, bytes).map_err(at(&path))?;
    }
    Ok(Image {
        manifest: manifest_desc,
        config: config_desc,
        layers: vec![layer_desc],
    })
}

/// Moves blobs [`package`] staged into the store.
pub fn commit_staged(image: &Image, staged: &Path, store: &Blobs) -> std::io::Result<()> {
    for digest in image.digests() {
        let path = staged.join(digest.trim_start_matches("sha256:"));
        if path.exists() {
            store.commit(&path, digest)?;
        }
    }
    Ok(())
}
