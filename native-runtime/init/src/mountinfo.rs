//! `/proc/self/mountinfo` parsing (proc(5)): the init reads it to find the host's cgroup v1
//! hierarchies (to bind the plugin's own cgroups, as runc does), the mounts that are peers of
//! the host's (before `/` is made shared, and to check the sandbox after pivot_root) and, for the
//! MS_MOVE fallback, the host's full proc/sysfs mounts that must be hidden before chroot.

/// One line of mountinfo, the fields the init uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Root of the mount within its filesystem (`/` for a full mount).
    pub root: String,
    /// Where it is mounted, relative to the process root.
    pub mountpoint: String,
    /// Filesystem type (`cgroup`, `cgroup2`, `proc`, ...).
    pub fstype: String,
    /// Per-superblock options (for cgroup v1: `rw,cpu,cpuacct` or `rw,name=systemd`).
    pub superopts: String,
    /// The peer group of a shared mount (`shared:N`), None for a private or slave-only one.
    pub shared: Option<u64>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
/// A mountinfo field with the kernel's octal escapes (`\040` for a space, ...) undone, byte-exact:
/// a mount point need not be UTF-8, and cleanup must unmount exactly the path the kernel names.
pub fn unescape_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, c| acc.wrapping_mul(8) + (c - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// [`unescape_bytes`] as text (lossy), for fields only compared with known ASCII paths.
pub fn unescape(s: &str) -> String {
    String::from_utf8_lossy(&unescape_bytes(s)).into_owned()
}

/// The mount point (field 5) of one mountinfo line, byte-exact.
pub fn mount_point_of(line: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let raw = line.split(' ').nth(4)?;
    Some(std::ffi::OsString::from_vec(unescape_bytes(raw)).into())
}

fn parse_line(line: &str) -> Option<MountInfo> {
    let (pre, post) = line.split_once(" - ")?;
    let pre: Vec<&str> = pre.split(' ').collect();
    let mut post = post.split(' ');
    let fstype = post.next()?.to_owned();
    let _source = post.next()?;
    let superopts = post.next().unwrap_or("").to_owned();
    let shared = pre
        .iter()
        .skip(6)
        .find_map(|o| o.strip_prefix("shared:")?.parse().ok());
    Some(MountInfo {
        root: unescape(pre.get(3)?),
        mountpoint: unescape(pre.get(4)?),
        fstype,
        superopts,
        shared,
    })
}

/// Parses the whole file, skipping malformed lines.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_optional_fields_and_escapes() {
        let text = "31 23 0:28 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755\n\
                    32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw master:3 shared:12 - cgroup cgroup rw,cpu,cpuacct\n\
                    40 27 254:0 /a\\040b /mnt/x\\040y rw - ext4 /dev/vda rw\n\
                    garbage\n";
        let m = parse(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].fstype, "tmpfs");
        assert_eq!(m[0].shared, Some(9));
        assert_eq!(m[1].shared, Some(12));
        assert_eq!(m[2].shared, None);
        assert_eq!(m[1].superopts, "rw,cpu,cpuacct");
        assert_eq!(m[1].mountpoint, "/sys/fs/cgroup/cpu,cpuacct");
        assert_eq!(m[2].root, "/a b");
        assert_eq!(m[2].mountpoint, "/mnt/x y");
    }
}
