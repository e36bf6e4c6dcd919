//! The per-entry rules: what each entry of the bundle may be and where it goes.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::rc::Rc;

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

/// State carried across entries.
pub(super) struct Unpacker<'l> {
    tree: Tree,
    limits: &'l Limits,
    observed: Rc<Observed>,
    /// Whether to apply the archive's owners (only root can).
    owners: bool,
    entries: usize,
    /// The last entry seen, for locating stream errors.
    last: Option<String>,
    config: Option<Vec<u8>>,
    has_rootfs: bool,
    /// Rootfs-relative paths currently holding a regular file unpacked from the archive: the only
    /// valid hardlink targets.
    regular: HashSet<Components>,
    /// Directory metadata to apply at the end, keyed by rootfs-relative path (the last entry wins).
    dirs: HashMap<Components, Meta>,
    buf: Vec<u8>,
}

impl<'l> Unpacker<'l> {
    pub(super) fn new(tree: Tree, limits: &'l Limits, observed: Rc<Observed>) -> Self {
        Unpacker {
            tree,
            limits,
            observed,
            owners: nix::unistd::geteuid().is_root(),
            entries: 0,
            last: None,
            config: None,
            has_rootfs: false,
            regular: HashSet::new(),
            dirs: HashMap::new(),
            buf: vec![0; 64 * 1024],
        }
    }

    pub(super) fn after(&self) -> String {
        match &self.last {
            Some(entry) => format!("after entry `{entry}`"),
            None => "at the start of the stream".into(),
        }
    }

    /// A failed read, reported as the cap it tripped if it tripped one.
    pub(super) fn read_error(&self, source: io::Error, at: String) -> BundleError {
        oversize(self.limits, &self.observed).unwrap_or(BundleError::Read { at, source })
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
                    .map_err(|e| tree_error(e, shown, path, kind))?;
                self.regular.remove(path);
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
            .map_err(|e| tree_error(e, shown, path, EntryType::Regular))?;
        self.regular.remove(path);
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
        self.regular.insert(path.to_vec());
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
        let err = |e| tree_error(e, shown, path, EntryType::Symlink);
        self.tree.symlink(path, &target).map_err(err)?;
        self.regular.remove(path);
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
        };
        // Targets are bundle-relative like names (`rootfs/bin/sh`) and re-rooted the same way.
        let target = name::components(&raw).map_err(|_| outside())?;
        let target = match target.split_first() {
            Some((first, rest)) if first == b"rootfs" => rest,
            _ => return Err(outside()),
        };
        if target == path || !self.regular.contains(target) {
            return Err(not_regular());
        }
        self.tree.hardlink(path, target).map_err(|e| match e {
            TreeError::LinkTarget => not_regular(),
            e => tree_error(e, shown, path, EntryType::Link),
        })?;
        self.regular.insert(path.to_vec());
        Ok(())
    }

    /// Checks the bundle as a whole and applies directory metadata, deepest first so that a
    /// directory's own mode never stands in the way of fixing its children.
    pub(super) fn finish(mut self) -> Result<Vec<u8>, BundleError> {
        if !self.has_rootfs {
            return Err(BundleError::NoRootfs);
        }
        let config = self.config.take().ok_or(BundleError::ConfigNotFound)?;
        let mut dirs: Vec<_> = self.dirs.drain().collect();
        dirs.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        for (path, meta) in dirs {
            let owner = self.owners.then_some((meta.uid, meta.gid));
            let shown = if path.is_empty() {
                "rootfs".to_owned()
            } else {
                format!("rootfs/{}", name::join(&path))
            };
            self.tree
                .set_dir_meta(&path, meta.mode & DIR_MODE_MASK, owner)
                .map_err(|e| tree_error(e, &shown, &path, EntryType::Directory))?;
        }
        Ok(config)
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
/// entry on its path (bundle-relative, as the user wrote it).
fn tree_error(e: TreeError, shown: &str, path: &[Vec<u8>], kind: EntryType) -> BundleError {
    let prefix = |i: usize| format!("rootfs/{}", name::join(&path[..=i]));
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
