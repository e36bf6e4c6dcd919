//! Mounts of the current mount namespace (from `/proc/self/mountinfo`) and their removal.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount id (unique within the namespace).
    pub id: u32,
    /// Parent mount id.
    pub parent: u32,
    /// Where it is mounted, unescaped.
    pub mount_point: PathBuf,
    /// Filesystem type, e.g. `tmpfs`.
    pub fstype: String,
    /// Mount source, e.g. `/dev/vda`.
    pub source: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the current namespace's mount table.
pub fn mountinfo() -> Vec<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            Some(MountEntry {
                id: f.first()?.parse().ok()?,
                parent: f.get(1)?.parse().ok()?,
                mount_point: PathBuf::from(unescape(f.get(4)?)),
                fstype: p.first()?.to_string(),
                source: unescape(p.get(1)?),
            })
        })
        .collect()
}

/// Mounts at or below any of `prefixes` (component-wise), in mountinfo order.
pub fn mounts_under(prefixes: &[&Path]) -> Vec<MountEntry> {
    mountinfo()
        .into_iter()
        .filter(|m| prefixes.iter().any(|p| m.mount_point.starts_with(p)))
        .collect()
}

/// Mounts a fresh tmpfs at `dir` (creating the directory first).
pub fn mount_tmpfs(dir: &Path, options: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir -p {}: {e}", dir.display()))?;
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options),
    )
    .map_err(|e| format!("mount tmpfs on {}: {e}", dir.display()))
}

/// Unmounts every mount at or below `prefixes` except those in `keep` (by mount id), deepest
/// first. Busy mounts are retried a few times, then detached lazily. Returns what it could not
/// remove, as messages.
pub fn unmount_all_under(prefixes: &[&Path], keep: &[u32]) -> Vec<String> {
    let mut last_errors = Vec::new();
    for round in 0..12 {
        let mut todo: Vec<MountEntry> = mounts_under(prefixes)
            .into_iter()
            .filter(|m| !keep.contains(&m.id))
            .collect();
        if todo.is_empty() {
            return Vec::new();
        }
        // Deepest path first; among equal paths (stacked mounts) the newest (highest id) first.
        todo.sort_by(|a, b| {
            let da = a.mount_point.components().count();
            let db = b.mount_point.components().count();
            db.cmp(&da).then(b.id.cmp(&a.id))
        });
        let lazy = round >= 8;
        last_errors.clear();
        for m in &todo {
            let flags = if lazy {
                MntFlags::MNT_DETACH
            } else {
                MntFlags::empty()
            };
            if let Err(e) = umount2(&m.mount_point, flags) {
                last_errors.push(format!(
                    "umount {} ({} {}): {e}",
                    m.mount_point.display(),
                    m.fstype,
                    m.source
                ));
            }
        }
        if !last_errors.is_empty() && !lazy {
            std::thread::sleep(Duration::from_millis(100 * (round + 1)));
        }
    }
    let left: Vec<String> = mounts_under(prefixes)
        .into_iter()
        .filter(|m| !keep.contains(&m.id))
        .map(|m| {
            format!(
                "still mounted: {} ({} {})",
                m.mount_point.display(),
                m.fstype,
                m.source
            )
        })
        .collect();
    if left.is_empty() {
        Vec::new()
    } else {
        last_errors.into_iter().chain(left).collect()
    }
}
