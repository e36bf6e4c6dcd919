//! The plugin store: one directory per plugin under the data root, one state file each, and the
//! lookup rules dockerd uses (exact id, then name, then unique id prefix).
//!
//! Layout (`<root>` is `--data-root`):
//! ```text
//! <root>/plugins/<id>/plugin.json        state: the plugin object + create-time warnings (0600, atomic)
//! <root>/plugins/<id>/rootfs/            the bundle's filesystem
//! <root>/plugins/<id>/propagated-mount/  host side of PropagatedMount
//! <root>/plugins/<id>-removing           transient during rm; finished at next start
//! <root>/tmp/<random>/                   staging for create, pull and upgrade; anything left here at start is a crash leftover
//! <root>/blobs/sha256/<hex>              image blobs (manifests, configs, layers) of stored plugins
//! ```
//! A create is staged completely (rootfs and state file) and becomes visible with a single rename, so
//! a kill -9 at any point leaves either nothing or a whole plugin.

use crate::error::{Error, Result, at};
use crate::fsutil;
use crate::reference::Reference;
use plugd_core::config::PluginObject;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const STATE_FILE: &str = "plugin.json";
/// Written before an upgrade swaps a plugin's rootfs, removed once the swap is over either way:
/// the new image's manifest digest. Found at start, it says whether the record was saved (then
/// the new rootfs stays) or not (then the old one is put back).
const SWAP_MARKER: &str = "upgrading";

/// A stored plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// What the Engine API shows.
    pub plugin: PluginObject,
    /// Config keys Docker ignores and other notes found at create; shown again by inspect.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The image it was pulled as or packaged into at create (blobs in the data root's blob
    /// store); absent for plugins stored before plugd packaged them, which `push` packages then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<crate::distribution::Image>,
}

/// The set of stored plugins.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    plugins: BTreeMap<String, Record>,
}

/// A fresh random 64-hex id, as dockerd's `stringid.GenerateRandomID`.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the kernel's random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Store {
    /// Opens (creating) the store, finishing interrupted removals and discarding interrupted creates.
    pub fn open(root: &Path) -> Result<Store> {
        let plugins = root.join("plugins");
        fsutil::create_dir_all(&plugins, 0o700).map_err(at(&plugins))?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(at(&tmp))?;
        }
        fsutil::create_dir_all(&tmp, 0o700).map_err(at(&tmp))?;
        let mut plugins = BTreeMap::new();
        for entry in fs::read_dir(root.join("plugins"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with("-removing") {
                match crate::unmount::remove_dir_all(&entry.path()) {
                    Ok(()) => {}
                    Err(e @ crate::unmount::UnmountError::StillMounted { .. }) => {
                        tracing::warn!(path = %entry.path().display(), error = %e, "interrupted removal left as is")
                    }
                    Err(e) => return Err(e.into()),
                }
                continue;
            }
            if !is_id(&name) {
                continue;
            }
            let state = entry.path().join(STATE_FILE);
            match fs::read(&state) {
                Ok(bytes) => match serde_json::from_slice::<Record>(&bytes) {
                    Ok(record) if record.plugin.id == name => {
                        finish_swap(&entry.path(), &record);
                        plugins.insert(name, record);
                    }
                    Ok(_) => {
                        tracing::warn!(path = %state.display(), "state file names another id; skipped")
                    }
                    Err(e) => {
                        tracing::warn!(path = %state.display(), error = %e, "unreadable state file; skipped")
                    }
                },
                Err(e) => {
                    tracing::warn!(path = %state.display(), error = %e, "plugin without state file; skipped")
                }
            }
        }
        Ok(Store {
            root: root.to_path_buf(),
            plugins,
        })
    }

    /// The data root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/plugins/<id>`.
    pub fn plugin_dir(&self, id: &str) -> PathBuf {
        self.root.join("plugins").join(id)
    }

    /// A new, not yet existing, staging path for a create.
    pub fn staging_path(&self) -> PathBuf {
        self.root.join("tmp").join(&new_id()[..16])
    }

    /// Makes a fully staged plugin (`staging/rootfs` already in place) visible in one rename.
    pub fn commit_new(&mut self, staging: &Path, record: Record) -> Result<()> {
        let id = record.plugin.id.clone();
        let bytes = serde_json::to_vec_pretty(&record)?;
        let state = staging.join(STATE_FILE);
        fsutil::write_atomic(&state, &bytes, 0o600).map_err(at(&state))?;
        let dir = self.plugin_dir(&id);
        fs::rename(staging, &dir).map_err(at(&dir))?;
        fsutil::sync_dir(&self.root.join("plugins")).map_err(at(&self.root))?;
        self.plugins.insert(id, record);
        Ok(())
    }

    /// Persists a changed record (atomically) and updates the in-memory copy only if that worked.
    pub fn save(&mut self, record: Record) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&record)?;
        let state = self.plugin_dir(&record.plugin.id).join(STATE_FILE);
        fsutil::write_atomic(&state, &bytes, 0o600).map_err(at(&state))?;
        self.plugins.insert(record.plugin.id.clone(), record);
        Ok(())
    }

    /// Marks the start of an upgrade's rootfs swap of plugin `id` to the image `digest`.
    pub fn begin_swap(&self, id: &str, digest: &str) -> Result<()> {
        let marker = self.plugin_dir(id).join(SWAP_MARKER);
        fsutil::write_atomic(&marker, digest.as_bytes(), 0o600).map_err(at(&marker))
    }

    /// Marks the end of a swap (done or undone).
    pub fn end_swap(&self, id: &str) {
        let _ = fs::remove_file(self.plugin_dir(id).join(SWAP_MARKER));
    }

    /// Deletes a plugin's directory (rename first) and forgets it.
    pub fn remove(&mut self, id: &str) -> Result<()> {
        let dir = self.plugin_dir(id);
        fsutil::remove_dir_atomic(&dir).map_err(at(&dir))?;
        self.plugins.remove(id);
        Ok(())
    }

    /// All plugins, by id.
    pub fn list(&self) -> impl Iterator<Item = &Record> {
        self.plugins.values()
    }

    /// The plugin with this exact normalised name.
    pub fn by_name(&self, name: &str) -> Option<&Record> {
        self.plugins.values().find(|r| r.plugin.name == name)
    }

    /// dockerd's resolution: exact id, then name (normalised, `:latest` added), then unique id prefix.
    pub fn resolve(&self, key: &str) -> Result<&Record> {
        if let Some(r) = self.plugins.get(key) {
            return Ok(r);
        }
        if let Ok(reference) = Reference::parse(key)
            && let Some(r) = self.by_name(&reference.to_string())
        {
            return Ok(r);
        }
        let mut matches = self
            .plugins
            .iter()
            .filter(|(id, _)| !key.is_empty() && id.starts_with(key));
        match (matches.next(), matches.next()) {
            (Some((_, r)), None) => Ok(r),
            (Some(_), Some(_)) => Err(Error::invalid(format!(
                "multiple plugins found for {key:?}"
            ))),
            (None, _) => Err(Error::not_found(format!("plugin {key:?} not found"))),
        }
    }
}

/// Finishes a rootfs swap a crash interrupted (see [`SWAP_MARKER`]): the record is the commit
/// point, so a saved record with the new image keeps the new rootfs, anything else gets the old one
/// back.
fn finish_swap(dir: &Path, record: &Record) {
    let (live, old, marker) = (
        dir.join("rootfs"),
        dir.join("rootfs-old"),
        dir.join(SWAP_MARKER),
    );
    let target = fs::read_to_string(&marker).ok();
    if !old.exists() {
        let _ = fs::remove_file(&marker);
        return;
    }
    let committed = target.as_ref().is_some_and(|digest| {
        record
            .image
            .as_ref()
            .is_some_and(|i| i.manifest.digest == digest.trim())
    }) || (target.is_none() && live.exists());
    let outcome = if committed {
        crate::unmount::remove_dir_all(&old).map_err(|e| e.to_string())
    } else {
        let discarded = dir.join("rootfs-discarded");
        let moved = if live.exists() {
            fs::rename(&live, &discarded)
        } else {
            Ok(())
        };
        moved
            .and_then(|()| fs::rename(&old, &live))
            .map_err(|e| e.to_string())
            .and_then(|()| {
                if discarded.exists() {
                    crate::unmount::remove_dir_all(&discarded).map_err(|e| e.to_string())
                } else {
                    Ok(())
                }
            })
    };
    match outcome {
        Ok(()) => {
            tracing::warn!(plugin = %record.plugin.name, kept_new = committed, "finished an upgrade a crash interrupted");
            let _ = fs::remove_file(&marker);
        }
        Err(e) => {
            tracing::error!(plugin = %record.plugin.name, error = %e, "cannot finish an interrupted upgrade")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugd_core::config::{PluginConfig, Settings};

    fn record(id: &str, name: &str) -> Record {
        Record {
            plugin: PluginObject {
                config: PluginConfig::default(),
                enabled: false,
                id: id.to_string(),
                name: name.to_string(),
                plugin_reference: name.to_string(),
                settings: Settings::default(),
            },
            warnings: vec![],
            image: None,
        }
    }

    fn temp_root(tag: &str) -> PathBuf {
        // A path that does not exist yet, in a fresh directory of its own.
        let dir = tempfile::Builder::new()
            .prefix(&format!("plugd-store-{tag}-"))
            .tempdir()
            .unwrap();
        dir.keep().join("root")
    }

    fn add(store: &mut Store, id: &str, name: &str) {
        let staging = store.staging_path();
        fsutil::create_dir_all(&staging.join("rootfs"), 0o755).unwrap();
        store.commit_new(&staging, record(id, name)).unwrap();
    }

    #[test]
    fn resolves_id_then_name_then_unique_prefix() {
        let root = temp_root("resolve");
        let mut s = Store::open(&root).unwrap();
        let a = format!("abc{}", "0".repeat(61));
        let b = format!("abd{}", "1".repeat(61));
        add(&mut s, &a, "foo:latest");
        add(&mut s, &b, "bar:v1");
        assert_eq!(s.resolve(&a).unwrap().plugin.name, "foo:latest");
        assert_eq!(s.resolve("foo").unwrap().plugin.id, a);
        assert_eq!(s.resolve("bar:v1").unwrap().plugin.id, b);
        assert_eq!(s.resolve("abd").unwrap().plugin.id, b);
        let e = s.resolve("ab").unwrap_err();
        assert_eq!(
            (e.kind.status(), e.message.as_str()),
            (400, "multiple plugins found for \"ab\"")
        );
        let e = s.resolve("nope").unwrap_err();
        assert_eq!(
            (e.kind.status(), e.message.as_str()),
            (404, "plugin \"nope\" not found")
        );
        // Survives a reopen.
        let s2 = Store::open(&root).unwrap();
        assert_eq!(s2.list().count(), 2);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn open_discards_interrupted_create_and_finishes_removal() {
        let root = temp_root("crash");
        let mut s = Store::open(&root).unwrap();
        let id = new_id();
        add(&mut s, &id, "keep:latest");
        // An interrupted create: staged but never renamed.
        let staging = s.staging_path();
        fsutil::create_dir_all(&staging.join("rootfs/bin"), 0o755).unwrap();
        // An interrupted rm.
        let gone = root.join("plugins").join(format!("{}-removing", new_id()));
        fsutil::create_dir_all(&gone, 0o700).unwrap();
        // A directory without a state file (create killed before the rename can't produce this, but a
        // manual deletion can): skipped, like dockerd.
        fsutil::create_dir_all(&root.join("plugins").join(new_id()), 0o700).unwrap();
        let s = Store::open(&root).unwrap();
        assert_eq!(
            s.list().map(|r| r.plugin.name.as_str()).collect::<Vec<_>>(),
            ["keep:latest"]
        );
        assert!(!staging.exists());
        assert!(!gone.exists());
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_swap_cut_short_keeps_the_rootfs_its_record_names() {
        let root = temp_root("swap");
        let mut s = Store::open(&root).unwrap();
        let (a, b) = (new_id(), new_id());
        add(&mut s, &a, "saved:latest");
        add(&mut s, &b, "unsaved:latest");
        let digest = format!("sha256:{}", "a".repeat(64));
        let image = crate::distribution::Image {
            manifest: crate::distribution::media::Descriptor {
                media_type: String::new(),
                digest: digest.clone(),
                size: 0,
                platform: None,
            },
            config: crate::distribution::media::Descriptor {
                media_type: String::new(),
                digest: digest.clone(),
                size: 0,
                platform: None,
            },
            layers: vec![],
        };
        // `a`: killed after its record was saved with the new image; `b`: before.
        let mut rec = s.resolve(&a).unwrap().clone();
        rec.image = Some(image);
        s.save(rec).unwrap();
        for id in [&a, &b] {
            let dir = s.plugin_dir(id);
            fs::rename(dir.join("rootfs"), dir.join("rootfs-old")).unwrap();
            fs::write(dir.join("rootfs-old/which"), "old").unwrap();
            fsutil::create_dir_all(&dir.join("rootfs"), 0o755).unwrap();
            fs::write(dir.join("rootfs/which"), "new").unwrap();
            s.begin_swap(id, &digest).unwrap();
        }
        let s = Store::open(&root).unwrap();
        for (id, want) in [(&a, "new"), (&b, "old")] {
            let dir = s.plugin_dir(id);
            assert_eq!(fs::read_to_string(dir.join("rootfs/which")).unwrap(), want);
            assert!(!dir.join("rootfs-old").exists() && !dir.join(SWAP_MARKER).exists());
        }
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let (a, b) = (new_id(), new_id());
        assert!(is_id(&a) && is_id(&b));
        assert_ne!(a, b);
    }
}
