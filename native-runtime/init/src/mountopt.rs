//! OCI mount options → `mount(2)` flags, propagation calls and the data string, with the same
//! table as youki (`syscall/linux.rs MountOption`) and runc (`specconv`): each flag option either
//! sets or clears one `MS_*` bit, the propagation options become separate calls (the kernel
//! accepts only one propagation type per call), and anything else is filesystem data
//! (`mode=755`, `size=65536k`, `newinstance`, ...), joined with commas.

use nix::mount::MsFlags;

/// Parsed options of one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOpts {
    /// Flags for the mount call (and for a bind's remount).
    pub flags: MsFlags,
    /// Flags an option explicitly cleared (`rw`, `suid`, ...).
    pub cleared: MsFlags,
    /// One propagation change per entry, applied in order after the mount.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific data, comma-joined in order.
    pub data: Option<String>,
}

impl Default for MountOpts {
    fn default() -> Self {
        MountOpts {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            data: None,
        }
    }
}

/// Options the init refuses: recursive attributes need `mount_setattr(2)`, which dockerd never
/// asks for in a plugin spec; failing beats silently giving a weaker mount than asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mount option {0:?} is not supported (recursive mount attributes need mount_setattr)")]
pub struct UnsupportedOption(pub String);

/// `(name, clear, flag)`: the youki/runc flag table.
const FLAGS: &[(&str, bool, MsFlags)] = &[
    ("defaults", false, MsFlags::empty()),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("suid", true, MsFlags::MS_NOSUID),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("dev", true, MsFlags::MS_NODEV),
    ("nodev", false, MsFlags::MS_NODEV),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("atime", true, MsFlags::MS_NOATIME),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("bind", false, MsFlags::MS_BIND),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
];

/// The propagation options, each one `mount(NULL, dst, NULL, flags)` call.
const PROPAGATION: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

/// Recursive attributes (`rro`, `rnosuid`, ...), refused; see [`UnsupportedOption`].
const RECURSIVE: &[&str] = &[
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnodiratime",
    "rdiratime",
    "rrelatime",
    "rnorelatime",
    "rnoatime",
    "ratime",
    "rstrictatime",
    "rnostrictatime",
    "rnosymfollow",
    "rsymfollow",
];

/// The propagation flags for a `rootfsPropagation`-style word, if it is one.
pub fn propagation(word: &str) -> Option<MsFlags> {
    PROPAGATION
        .iter()
        .find(|(n, _)| *n == word)
        .map(|(_, f)| *f)
}

impl MountOpts {
    /// Parses a mount's options (later options win, as in mount(8)).
    pub fn parse(options: &[String]) -> Result<MountOpts, UnsupportedOption> {
        let mut o = MountOpts::default();
        let mut data = Vec::new();
        for opt in options {
            if let Some((_, clear, flag)) = FLAGS.iter().find(|(n, ..)| n == opt) {
                if *clear {
                    o.flags.remove(*flag);
                    o.cleared.insert(*flag);
                } else {
                    o.flags.insert(*flag);
                    o.cleared.remove(*flag);
                }
            } else if let Some(p) = propagation(opt) {
                o.propagation.push(p);
            } else if RECURSIVE.contains(&opt.as_str()) {
                return Err(UnsupportedOption(opt.clone()));
            } else {
                data.push(opt.as_str());
            }
        }
        o.data = (!data.is_empty()).then(|| data.join(","));
        Ok(o)
    }

    /// True for a bind mount (`bind`/`rbind` option).
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// The flags a bind's `MS_REMOUNT` must apply, or None when the options set nothing beyond
    /// the bind itself (then the bind keeps its source's flags, as with runc 1.1, whose spec
    /// dockerd's probes were made with).
    pub fn bind_remount_flags(&self) -> Option<MsFlags> {
        let extra = self.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        (!extra.is_empty()).then_some(extra | MsFlags::MS_BIND | MsFlags::MS_REMOUNT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> MountOpts {
        let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        MountOpts::parse(&v).unwrap()
    }

    #[test]
    fn dev_tmpfs_options_split_into_flags_and_data() {
        let o = parse(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data.as_deref(), Some("mode=755,size=65536k"));
        assert!(o.propagation.is_empty());
    }

    #[test]
    fn devpts_data_keeps_order() {
        // dockerd's /dev/pts options, from the default mounts.
        let devpts = &crate::spec::default_mounts()[2];
        assert_eq!(devpts.destination, "/dev/pts");
        let o = MountOpts::parse(&devpts.options).unwrap();
        assert_eq!(
            o.data.as_deref(),
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5")
        );
    }

    #[test]
    fn propagated_mount_is_rbind_with_one_rshared_call() {
        let o = parse(&["rbind", "rw", "rshared"]);
        assert!(o.is_bind());
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(o.cleared, MsFlags::MS_RDONLY);
        assert_eq!(o.propagation, vec![MsFlags::MS_SHARED | MsFlags::MS_REC]);
        assert_eq!(o.bind_remount_flags(), None);
    }

    #[test]
    fn ro_bind_needs_a_remount() {
        let o = parse(&["rbind", "ro"]);
        assert_eq!(
            o.bind_remount_flags(),
            Some(MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY)
        );
    }

    #[test]
    fn later_options_win() {
        assert_eq!(parse(&["ro", "rw"]).flags, MsFlags::empty());
        assert_eq!(parse(&["rw", "ro"]).flags, MsFlags::MS_RDONLY);
    }

    #[test]
    fn recursive_attributes_are_refused() {
        let err = MountOpts::parse(&["rbind".into(), "rro".into()]).unwrap_err();
        assert_eq!(err, UnsupportedOption("rro".into()));
    }

    #[test]
    fn root_propagation_words() {
        assert_eq!(
            propagation("rshared"),
            Some(MsFlags::MS_SHARED | MsFlags::MS_REC)
        );
        assert_eq!(propagation("bogus"), None);
    }
}
