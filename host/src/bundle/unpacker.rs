//! The per-entry rules: what each entry of a bundle or an image layer may be and where it goes.
//!
//! One set of rules serves both: [`Naming`] only decides how a name maps into the rootfs (a bundle's
//! `rootfs/…` and `config.json`, a layer's rootfs-relative names and whiteouts).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::ops::Bound;
use std::sync::Arc;

use nix::sys::stat::{Mode, fchmod};
use nix::unistd::{Gid, Uid, fchown};
use tar::EntryType;

use super::name::{self, Components, NameError};
use super::stream::Observed;
use super::tree::{Tree, TreeError};
use super::{BundleError, Limits};

/// The cap error, if a read failed because a stream went over `max_body_bytes`.
pub(super) fn oversize(limits: &Limits, observed: &Observed) -> Option<BundleError> {
    observed.oversize().map(|stream| BundleError::Oversize {
        stream,
        limit: limits.max_body_bytes,
    })
}

/// Permission bits kept on regular files: everything but setuid/setgid (see [`super::unpack`]).
const FILE_MODE_MASK: u32 = 0o1777;
/// Permission bits kept on directories: setgid and sticky only steer group inheritance and deletion.
const DIR_MODE_MASK: u32 = 0o3777;

/// Owner and mode an entry asks for.
#[derive(Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
}

/// How entry names map into the rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Naming {
    /// A `create` bundle: `config.json` and `rootfs/…` are kept, everything else is ignored.
    Bundle,
    /// An image layer: every name is rootfs-relative, and `.wh.` names are whiteouts.
    Layer,
}

impl Naming {
    /// How a rootfs-relative path is shown: as the archive spells it.
    fn show(self, path: &[Vec<u8>]) -> String {
        match (self, path) {
            (Naming::Bundle, []) => "rootfs".into(),
            (Naming::Bundle, _) => format!("rootfs/{}", name::join(path)),
            (Naming::Layer, []) => "./".into(),
            (Naming::Layer, _) => name::join(path),
        }
    }
}

/// State carried across entries (and, for layers, across layers).
pub(super) struct Unpacker {
    tree: Tree,
    naming: Naming,
    limits: Limits,
    observed: Arc<Observed>,
    /// Whether to apply the archive's owners (only root can).
    owners: bool,
    entries: usize,
    /// The last entry seen, for locating stream errors.
    last: Option<String>,
    config: Option<Vec<u8>>,
    has_rootfs: bool,
    /// Directory metadata to apply at the end, keyed by rootfs-relative path (the last entry wins);
    /// ordered so that a whiteout can drop a whole subtree's.
    dirs: BTreeMap<Components, Meta>,
    /// What the current layer wrote, for whiteouts (layers only).
    layer: Written,
    buf: Vec<u8>,
}

impl Unpacker {
    pub(super) fn new(
        tree: Tree,
        naming: Naming,
        limits: &Limits,
        observed: Arc<Observed>,
    ) -> Self {
        Unpacker {
            tree,
            naming,
            limits: limits.clone(),
            observed,
            owners: nix::unistd::geteuid().is_root(),
            entries: 0,
            last: None,
            config: None,
            has_rootfs: false,
            dirs: BTreeMap::new(),
            layer: Written::default(),
            buf: vec![0; 64 * 1024],
        }
    }

    /// The caps, which for layers are totals over all of them.
    pub(super) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The per-stream state, reset before each layer.
    pub(super) fn observed(&self) -> &Arc<Observed> {
        &self.observed
    }

    /// Starts the next layer: whiteouts in it apply to everything written so far.
    pub(super) fn next_layer(&mut self) {
        self.layer = Written::default();
        self.last = None;
        self.observed.reset();
    }

    pub(super) fn after(&self) -> String {
        match &self.last {
            Some(entry) => format!("after entry `{entry}`"),
            None => "at the start of the stream".into(),
        }
    }

    /// A failed read, reported as the cap it tripped if it tripped one.
    pub(super) fn read_error(&self, source: io::Error, at: String) -> BundleError {
        oversize(&self.limits, &self.observed).unwrap_or(BundleError::Read { at, source })
    }

    pub(super) fn entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
    ) -> Result<(), BundleError> {
        let raw = entry.path_bytes().into_owned();
        let shown = name::show(&raw);
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(BundleError::TooManyEntries {
                entry: shown,
                limit: self.limits.max_entries,
            });
        }
        self.last = Some(shown.clone());
        let kind = entry_kind(&entry, &raw);
        if kind == EntryType::XGlobalHeader {
            // PAX global headers carry defaults (often just a comment) and name no file.
            return Ok(());
        }
        let path = name::components(&raw).map_err(|e| name_error(e, shown.clone()))?;
        if self.naming == Naming::Layer {
            return self.layer_entry(&mut entry, kind, &shown, path);
        }
        match path.split_first() {
            Some((first, rest)) if first == b"rootfs" => {
                self.has_rootfs = true;
                self.rootfs_entry(&mut entry, kind, &shown, rest)
            }
            Some((first, [])) if first == b"config.json" => {
                self.config_entry(&mut entry, kind, shown)
            }
            // The bundle root and anything beside config.json and rootfs/ are not part of a plugin.
            _ => Ok(()),
        }
    }

    fn layer_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
        shown: &str,
        path: Components,
    ) -> Result<(), BundleError> {
        if let Some((target, opaque)) = whiteout(&path, shown)? {
            return self.whiteout(shown, target, opaque);
        }
        match self.rootfs_entry(entry, kind, shown, &path) {
            // A layer may replace a directory an earlier layer left, as dockerd's ApplyLayer does;
            // within one layer that is refused as in a bundle. Nothing of the entry was read yet.
            Err(BundleError::ReplacesDirectory { .. }) if self.layer.get(&path).is_none() => {
                let naming = self.naming;
                self.tree
                    .remove(&path)
                    .map_err(|e| tree_error(e, shown, &path, kind, naming))?;
                forget_dirs(&mut self.dirs, &path);
                self.rootfs_entry(entry, kind, shown, &path)?;
            }
            done => done?,
        }
        self.layer.insert(&path);
        Ok(())
    }

    /// Removes what earlier layers left at `target` (`opaque`: below it), keeping what this layer
    /// wrote there, before or after the marker (image-spec layer.md: whiteouts apply to lower layers
    /// only). Each directory is walked at most once per layer, however many markers name it.
    fn whiteout(
        &mut self,
        shown: &str,
        mut target: Components,
        opaque: bool,
    ) -> Result<(), BundleError> {
        if self.layer.pruned(&target) {
            return Ok(());
        }
        let naming = self.naming;
        let err = |e, target: &[Vec<u8>]| tree_error(e, shown, target, EntryType::Regular, naming);
        if opaque || self.layer.get(&target).is_some() {
            let node = self.layer.get(&target);
            prune(&mut self.tree, &mut self.dirs, node, &mut target)
                .map_err(|e| err(e, &target))?;
            self.layer.insert(&target).pruned = true;
        } else {
            self.tree.remove(&target).map_err(|e| err(e, &target))?;
            forget_dirs(&mut self.dirs, &target);
        }
        Ok(())
    }

    fn config_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
        shown: String,
    ) -> Result<(), BundleError> {
        if self.config.is_some() {
            return Err(BundleError::DuplicateConfig { entry: shown });
        }
        if !is_regular(kind) {
            return Err(BundleError::ConfigNotRegular {
                entry: shown,
                kind: kind_name(kind),
            });
        }
        let size = entry.size();
        if size > self.limits.max_config_bytes {
            return Err(BundleError::ConfigTooLarge {
                entry: shown,
                size,
                limit: self.limits.max_config_bytes,
            });
        }
        let mut config = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut config)
            .map_err(|e| self.read_error(e, format!("in entry `{shown}`")))?;
        if config.len() as u64 != size {
            return Err(BundleError::TruncatedEntry {
                entry: shown,
                got: config.len() as u64,
                size,
            });
        }
        self.config = Some(config);
        Ok(())
    }

    fn rootfs_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
        shown: &str,
        path: &[Vec<u8>],
    ) -> Result<(), BundleError> {
        if path.is_empty() {
            if kind != EntryType::Directory {
                return Err(BundleError::RootfsNotDirectory {
                    entry: shown.into(),
                    kind: kind_name(kind),
                });
            }
            let meta = meta(entry, shown)?;
            self.dirs.insert(Vec::new(), meta);
            return Ok(());
        }
        match kind {
            EntryType::Regular | EntryType::Continuous => self.file(entry, shown, path),
            EntryType::Directory => {
                let meta = meta(entry, shown)?;
                self.tree
                    .mkdir(path)
                    .map_err(|e| tree_error(e, shown, path, kind, self.naming))?;
                self.dirs.insert(path.to_vec(), meta);
                Ok(())
            }
            EntryType::Symlink => self.symlink(entry, shown, path),
            EntryType::Link => self.hardlink(entry, shown, path),
            EntryType::Char | EntryType::Block | EntryType::Fifo => Err(BundleError::SpecialFile {
                entry: shown.into(),
                kind: kind_name(kind),
            }),
            other => Err(BundleError::UnsupportedType {
                entry: shown.into(),
                typeflag: char::from(other.as_byte()),
            }),
        }
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
        path: &[Vec<u8>],
    ) -> Result<(), BundleError> {
        let meta = meta(entry, shown)?;
        let write = |op, source| BundleError::Write {
            entry: shown.into(),
            op,
            source,
        };
        let mut file = self
            .tree
            .create_file(path)
            .map_err(|e| tree_error(e, shown, path, EntryType::Regular, self.naming))?;
        let size = entry.size();
        let mut got = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_error(e, format!("in entry `{shown}`"))),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| write("write", e))?;
            got += n as u64;
        }
        if got != size {
            return Err(BundleError::TruncatedEntry {
                entry: shown.into(),
                got,
                size,
            });
        }
        if self.owners {
            fchown(
                &file,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(|e| write("chown", e.into()))?;
        }
        // After chown, which would clear set-id bits anyway; we strip them regardless.
        fchmod(&file, Mode::from_bits_truncate(meta.mode & FILE_MODE_MASK))
            .map_err(|e| write("chmod", e.into()))?;
        Ok(())
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
        path: &[Vec<u8>],
    ) -> Result<(), BundleError> {
        let meta = meta(entry, shown)?;
        let target = link_target(entry, shown, "symlink")?;
        let naming = self.naming;
        let err = |e| tree_error(e, shown, path, EntryType::Symlink, naming);
        self.tree.symlink(path, &target).map_err(err)?;
        if self.owners {
            self.tree
                .chown_symlink(path, meta.uid, meta.gid)
                .map_err(err)?;
        }
        Ok(())
    }

    fn hardlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
        path: &[Vec<u8>],
    ) -> Result<(), BundleError> {
        let raw = link_target(entry, shown, "hardlink")?;
        let target_shown = name::show(&raw);
        let outside = || BundleError::HardlinkOutsideRootfs {
            entry: shown.into(),
            target: target_shown.clone(),
        };
        let not_regular = || BundleError::HardlinkTarget {
            entry: shown.into(),
            target: target_shown.clone(),
            earlier: match self.naming {
                Naming::Bundle => "in the archive",
                Naming::Layer => "in this or an earlier layer",
            },
        };
        // Targets are spelled like names: bundle-relative (`rootfs/bin/sh`) and re-rooted the same
        // way, or rootfs-relative in a layer. The rootfs holds nothing but what was unpacked, so a
        // regular file found there (without following a symlink) was unpacked earlier.
        let target = name::components(&raw).map_err(|_| outside())?;
        let target = match (self.naming, target.split_first()) {
            (Naming::Layer, _) => &target[..],
            (Naming::Bundle, Some((first, rest))) if first == b"rootfs" => rest,
            (Naming::Bundle, _) => return Err(outside()),
        };
        if target.is_empty() || target == path {
            return Err(not_regular());
        }
        self.tree.hardlink(path, target).map_err(|e| match e {
            TreeError::LinkTarget => not_regular(),
            e => tree_error(e, shown, path, EntryType::Link, self.naming),
        })
    }

    /// Checks the bundle as a whole, applies directory metadata and returns `config.json`.
    pub(super) fn finish_bundle(mut self) -> Result<Vec<u8>, BundleError> {
        if !self.has_rootfs {
            return Err(BundleError::NoRootfs);
        }
        let config = self.config.take().ok_or(BundleError::ConfigNotFound)?;
        self.apply_dirs()?;
        Ok(config)
    }

    /// Applies directory metadata, deepest first so that a directory's own mode never stands in the
    /// way of fixing its children.
    pub(super) fn apply_dirs(&mut self) -> Result<(), BundleError> {
        let mut dirs: Vec<_> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        for (path, meta) in dirs {
            let owner = self.owners.then_some((meta.uid, meta.gid));
            let shown = self.naming.show(&path);
            self.tree
                .set_dir_meta(&path, meta.mode & DIR_MODE_MASK, owner)
                .map_err(|e| tree_error(e, &shown, &path, EntryType::Directory, self.naming))?;
        }
        Ok(())
    }
}

/// What one layer wrote, as a tree of path components (so that a deep path costs its depth, not
/// its depth squared), with the directories already pruned by a whiteout in this layer.
#[derive(Default)]
struct Written {
    pruned: bool,
    children: HashMap<Vec<u8>, Written>,
}

impl Written {
    fn insert(&mut self, path: &[Vec<u8>]) -> &mut Written {
        let mut node = self;
        for part in path {
            if !node.children.contains_key(part) {
                node.children.insert(part.clone(), Written::default());
            }
            node = node.children.get_mut(part).expect("just inserted");
        }
        node
    }

    fn get(&self, path: &[Vec<u8>]) -> Option<&Written> {
        path.iter()
            .try_fold(self, |node, part| node.children.get(part))
    }

    /// Whether `path` or a directory above it was pruned in this layer: nothing from earlier layers
    /// is left there.
    fn pruned(&self, path: &[Vec<u8>]) -> bool {
        let mut node = self;
        for part in path {
            if node.pruned {
                return true;
            }
            match node.children.get(part) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.pruned
    }
}

/// Removes everything below `path` that this layer did not write (`written` is its node, if any),
/// descending into the directories it did write.
fn prune(
    tree: &mut Tree,
    dirs: &mut BTreeMap<Components, Meta>,
    written: Option<&Written>,
    path: &mut Components,
) -> Result<(), TreeError> {
    for (name, is_dir) in tree.children(path)? {
        let child = written.and_then(|w| w.children.get(&name));
        path.push(name);
        let done = match child {
            None => tree.remove(path).map(|()| forget_dirs(dirs, path)),
            Some(child) if is_dir && !child.pruned => prune(tree, dirs, Some(child), path),
            Some(_) => Ok(()),
        };
        path.pop();
        done?;
    }
    Ok(())
}

/// Drops the metadata of `path` and every directory below it, which a whiteout removed.
fn forget_dirs(dirs: &mut BTreeMap<Components, Meta>, path: &[Vec<u8>]) {
    // Keys with `path` as a prefix sort together, right from `path` on.
    let doomed: Vec<Components> = dirs
        .range::<[Vec<u8>], _>((Bound::Included(path), Bound::Unbounded))
        .map(|(key, _)| key)
        .take_while(|key| key.starts_with(path))
        .cloned()
        .collect();
    for key in doomed {
        dirs.remove(&key);
    }
}

/// The OCI whiteout marker for an opaque directory.
const OPAQUE: &[u8] = b".wh..wh..opq";
/// The prefix of a whiteout name.
const WHITEOUT: &[u8] = b".wh.";

/// If `path` is a whiteout, what it removes: the named sibling, or (`true`) below its directory.
fn whiteout(path: &[Vec<u8>], shown: &str) -> Result<Option<(Components, bool)>, BundleError> {
    let bad = |reason| BundleError::Whiteout {
        entry: shown.into(),
        reason,
    };
    let Some((last, dir)) = path.split_last() else {
        return Ok(None);
    };
    if dir.iter().any(|part| part.starts_with(WHITEOUT)) {
        return Err(bad(
            "a `.wh.` name marks a removal and cannot be a directory",
        ));
    }
    if last == OPAQUE {
        return Ok(Some((dir.to_vec(), true)));
    }
    if last.starts_with(b".wh..wh.") {
        // dockerd skips these (AUFS metadata such as `.wh..wh.plnk`); no current writer emits them.
        return Err(bad(
            "`.wh..wh.` names other than `.wh..wh..opq` are reserved",
        ));
    }
    let Some(name) = last.strip_prefix(WHITEOUT) else {
        return Ok(None);
    };
    match name {
        b"" | b"." => Err(bad("it names no file")),
        b".." => Err(BundleError::ParentDirName {
            entry: shown.into(),
        }),
        _ => {
            let mut target = dir.to_vec();
            target.push(name.to_vec());
            Ok(Some((target, false)))
        }
    }
}

/// The entry's type, with Go's reading of a pre-POSIX regular file whose name ends in `/` as a
/// directory (`archive/tar` does this for typeflag NUL, and dockerd reads bundles with it).
fn entry_kind<R: Read>(entry: &tar::Entry<'_, R>, raw_name: &[u8]) -> EntryType {
    let typeflag = entry.header().as_old().linkflag[0];
    if typeflag == 0 && raw_name.ends_with(b"/") {
        return EntryType::Directory;
    }
    entry.header().entry_type()
}

fn is_regular(kind: EntryType) -> bool {
    matches!(kind, EntryType::Regular | EntryType::Continuous)
}

fn kind_name(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Regular | EntryType::Continuous => "regular file",
        EntryType::Link => "hardlink",
        EntryType::Symlink => "symlink",
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Directory => "directory",
        EntryType::Fifo => "fifo",
        EntryType::GNUSparse => "sparse file",
        _ => "special entry",
    }
}

/// The mode and owner an entry's header asks for (the tar crate has already applied PAX `uid`/`gid`).
fn meta<R: Read>(entry: &tar::Entry<'_, R>, shown: &str) -> Result<Meta, BundleError> {
    let header = entry.header();
    let raw = header.as_old();
    let field = |field, raw: &[u8], value: io::Result<u64>| {
        let bad = |source| BundleError::Header {
            entry: shown.into(),
            field,
            source,
        };
        let value = numeric(raw, value).map_err(bad)?;
        u32::try_from(value)
            .map_err(|_| bad(io::Error::other(format!("{value} does not fit in 32 bits"))))
    };
    Ok(Meta {
        mode: field("mode", &raw.mode, header.mode().map(u64::from))?,
        uid: field("uid", &raw.uid, header.uid())?,
        gid: field("gid", &raw.gid, header.gid())?,
    })
}

/// A numeric header field, blank read as 0: Go's archive/tar (the docker CLI's and dockerd's) does,
/// the tar crate refuses it.
fn numeric(raw: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    if raw.iter().all(|&b| b == 0 || b == b' ') {
        Ok(0)
    } else {
        parsed
    }
}

fn name_error(e: NameError, entry: String) -> BundleError {
    match e {
        NameError::Absolute => BundleError::AbsoluteName { entry },
        NameError::ParentDir => BundleError::ParentDirName { entry },
        NameError::TooLong(len) => BundleError::NameTooLong {
            entry,
            len,
            limit: name::MAX_NAME_BYTES,
        },
    }
}

/// Turns a tree failure into a message naming the entry and, where one is at fault, the earlier
/// entry on its path (spelled as in the archive).
fn tree_error(
    e: TreeError,
    shown: &str,
    path: &[Vec<u8>],
    kind: EntryType,
    naming: Naming,
) -> BundleError {
    let prefix = |i: usize| naming.show(&path[..(i + 1).min(path.len())]);
    let entry = shown.to_owned();
    match e {
        TreeError::Symlink(i) => BundleError::ThroughSymlink {
            entry,
            symlink: prefix(i),
        },
        TreeError::NotDir(i) => BundleError::NotADirectory {
            entry,
            path: prefix(i),
        },
        TreeError::ReplacesDir => BundleError::ReplacesDirectory {
            entry,
            kind: kind_name(kind),
        },
        TreeError::LinkTarget => BundleError::Write {
            entry,
            op: "create hardlink",
            source: io::Error::other("target is not a regular file"),
        },
        TreeError::Sys(op, errno) => BundleError::Write {
            entry,
            op,
            source: errno.into(),
        },
    }
}

/// A link entry's target, which must not be empty.
fn link_target<R: Read>(
    entry: &tar::Entry<'_, R>,
    shown: &str,
    kind: &'static str,
) -> Result<Vec<u8>, BundleError> {
    match entry.link_name_bytes() {
        Some(target) if !target.is_empty() => Ok(target.into_owned()),
        _ => Err(BundleError::MissingLinkTarget {
            entry: shown.into(),
            kind,
        }),
    }
}
