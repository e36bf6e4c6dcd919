//! `mount:<destination>:read|write|identity|inode` for each declared mount, `propagated:*` and
//! `leak:*`: what the probe can do with the mounts the declaration gives it.

use crate::sys::{create_failed, dev_pair, err_name, errno_name, mkdir, untried};
use plugd_core::check::probe::{
    Attempt, PlanMount, leak_id, leak_name, listing, mount_id, propagated_name,
};
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The four attempts for one mount: read, write, identity, inode.
pub fn attempts(mount: &PlanMount, nonce: &str) -> Vec<Attempt> {
    let mut out = access_attempts(mount, nonce);
    let d = mount.destination.as_str();
    out.push(match std::fs::metadata(d) {
        Ok(m) => Attempt::ok(mount_id(d, "inode"), inode_of(m.dev(), m.ino())),
        Err(e) => Attempt::failed(mount_id(d, "inode"), err_name(&e)),
    });
    out
}

/// `<major>:<minor>:<inode>`: the same numbers `stat` gives the source on the host when the mount
/// is a bind of it.
pub fn inode_of(dev: u64, ino: u64) -> String {
    format!("{}:{ino}", dev_pair(dev))
}

fn access_attempts(mount: &PlanMount, nonce: &str) -> Vec<Attempt> {
    let d = mount.destination.as_str();
    let path = Path::new(d);
    if mount.directory {
        let read = std::fs::read_dir(path).map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        });
        let (read_attempt, identity) = match read {
            Ok(names) => (
                Attempt::ok(mount_id(d, "read"), format!("{} entries", names.len())),
                Attempt::ok(mount_id(d, "identity"), listing(names)),
            ),
            Err(e) => (
                Attempt::failed(mount_id(d, "read"), err_name(&e)),
                Attempt::failed(mount_id(d, "identity"), err_name(&e)),
            ),
        };
        let probe_file = path.join(format!(".plugd-check-{nonce}"));
        let write = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe_file)
        {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe_file);
                Attempt::ok(mount_id(d, "write"), "created and removed a file")
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Attempt::failed(
                mount_id(d, "write"),
                untried(format!("{} already exists", probe_file.display())),
            ),
            Err(e) => Attempt::failed(mount_id(d, "write"), err_name(&e)),
        };
        vec![read_attempt, write, identity]
    } else {
        let open = |write: bool| {
            std::fs::OpenOptions::new()
                .read(!write)
                .write(write)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(path)
        };
        let read = match open(false) {
            Ok(_) => Attempt::ok(mount_id(d, "read"), "opened for reading"),
            Err(e) => Attempt::failed(mount_id(d, "read"), err_name(&e)),
        };
        // Opened for writing, never written: the host's file stays as it is.
        let write = match open(true) {
            Ok(_) => Attempt::ok(mount_id(d, "write"), "opened for writing"),
            Err(e) => Attempt::failed(mount_id(d, "write"), err_name(&e)),
        };
        let identity = match std::fs::metadata(path) {
            Ok(m) => Attempt::ok(mount_id(d, "identity"), format!("file {}", m.len())),
            Err(e) => Attempt::failed(mount_id(d, "identity"), err_name(&e)),
        };
        vec![read, write, identity]
    }
}

/// `propagated:write`, and `propagated:mount` when `sys_admin` (the probe's `CAP_SYS_ADMIN` is
/// effective). Both are left in place: plugd looks for them on the host, then removes them.
pub fn propagated_attempts(dir: &str, nonce: &str, sys_admin: bool) -> Vec<Attempt> {
    let name = propagated_name(nonce);
    let file = Path::new(dir).join(&name);
    let write = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&file)
        .and_then(|mut f| f.write_all(nonce.as_bytes()));
    let mut out = vec![match write {
        Ok(()) => Attempt::ok("propagated:write", file.display().to_string()),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Attempt::failed(
            "propagated:write",
            untried(format!("{} already exists", file.display())),
        ),
        Err(e) => Attempt::failed("propagated:write", err_name(&e)),
    }];
    if sys_admin {
        let at = Path::new(dir).join(format!("{name}.mnt"));
        out.push(match mount_nonce(&at, nonce) {
            Ok(()) => Attempt::ok("propagated:mount", at.display().to_string()),
            Err(e) => Attempt::failed("propagated:mount", e),
        });
    }
    out
}

/// A tmpfs at `at` holding a file `nonce` with the nonce.
fn mount_nonce(at: &Path, nonce: &str) -> Result<(), String> {
    mkdir(at).map_err(|e| create_failed("mkdir", e))?;
    crate::sys::mount_tmpfs(at).map_err(|errno| format!("mount: {}", errno_name(errno)))?;
    std::fs::write(at.join("nonce"), nonce).map_err(|e| format!("write: {}", err_name(&e)))
}

/// `leak:<destination>` for `/` and each mount the plan marks writable: a tmpfs mounted at
/// `<destination>/<leak_name>` and left mounted (plugd looks for it on the host, where it must not
/// be, then removes the directories). Only asked when `CAP_SYS_ADMIN` is effective.
pub fn leak_attempts(mounts: &[PlanMount], nonce: &str) -> Vec<Attempt> {
    leak_destinations(mounts)
        .into_iter()
        .map(|d| leak_at(&d, nonce))
        .collect()
}

/// One `leak:<destination>` attempt.
pub fn leak_at(destination: &str, nonce: &str) -> Attempt {
    let at = Path::new(destination).join(leak_name(nonce));
    let made = mkdir(&at)
        .map_err(|e| create_failed("mkdir", e))
        .and_then(|()| {
            crate::sys::mount_tmpfs(&at).map_err(|e| format!("mount: {}", errno_name(e)))
        });
    match made {
        Ok(()) => Attempt::ok(leak_id(destination), at.display().to_string()),
        Err(e) => Attempt::failed(leak_id(destination), e),
    }
}

/// `/` then every writable directory mount's destination, each once.
pub fn leak_destinations(mounts: &[PlanMount]) -> Vec<String> {
    let mut out = vec!["/".to_owned()];
    for m in mounts.iter().filter(|m| m.writable && m.directory) {
        if !out.contains(&m.destination) {
            out.push(m.destination.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("plugd-probe-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_writable_directory_is_read_written_and_listed_without_leftovers() {
        let d = tempdir("mount");
        std::fs::write(d.join("b"), "").unwrap();
        std::fs::write(d.join("a"), "").unwrap();
        let m = PlanMount {
            destination: d.display().to_string(),
            directory: true,
            writable: true,
        };
        let a = attempts(&m, "n1");
        assert!(a.iter().all(|a| a.ok), "{a:?}");
        assert_eq!(a[0].id, format!("mount:{}:read", d.display()));
        assert_eq!(a[2].detail, "a/b");
        let st = std::fs::metadata(&d).unwrap();
        assert_eq!(
            a[3],
            Attempt::ok(
                format!("mount:{}:inode", d.display()),
                format!(
                    "{}:{}:{}",
                    libc::major(st.dev()),
                    libc::minor(st.dev()),
                    st.ino()
                )
            )
        );
        // A leftover by the probe's name: the write is not tried, not denied.
        std::fs::write(d.join(".plugd-check-n1"), "").unwrap();
        let again = attempts(&m, "n1");
        assert!(
            !again[1].ok && again[1].detail.starts_with("untried: "),
            "{again:?}"
        );
        std::fs::remove_file(d.join(".plugd-check-n1")).unwrap();
        assert!(!d.join(".plugd-check-n1").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_mount_is_opened_not_written() {
        let d = tempdir("file");
        let f = d.join("f");
        std::fs::write(&f, "abc").unwrap();
        let m = PlanMount {
            destination: f.display().to_string(),
            directory: false,
            writable: true,
        };
        let a = attempts(&m, "n1");
        assert!(a.iter().all(|a| a.ok), "{a:?}");
        assert_eq!(a[2].detail, "file 3");
        assert_eq!(std::fs::read(&f).unwrap(), b"abc");
        let missing = PlanMount {
            destination: d.join("missing").display().to_string(),
            directory: true,
            writable: true,
        };
        let a = attempts(&missing, "n1");
        assert_eq!(a.len(), 4);
        assert!(a.iter().all(|a| !a.ok && a.detail == "ENOENT"), "{a:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_propagated_file_holds_the_nonce() {
        let d = tempdir("prop");
        let a = propagated_attempts(&d.display().to_string(), "n2", false);
        assert_eq!(a.len(), 1);
        assert!(a[0].ok, "{a:?}");
        assert_eq!(
            std::fs::read_to_string(d.join("plugd-check-n2")).unwrap(),
            "n2"
        );
        let again = propagated_attempts(&d.display().to_string(), "n2", false);
        assert!(again[0].detail.starts_with("untried: "), "{again:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn leaks_are_tried_in_root_and_each_writable_directory_once() {
        let m = |d: &str, directory, writable| PlanMount {
            destination: d.into(),
            directory,
            writable,
        };
        let ms = [
            m("/data", true, true),
            m("/ro", true, false),
            m("/etc/x.conf", false, true),
            m("/data", true, true),
            m("/", true, true),
        ];
        assert_eq!(leak_destinations(&ms), ["/", "/data"]);
    }

    #[test]
    fn a_leak_mount_is_left_mounted_and_a_taken_name_is_untried() {
        // SAFETY: a plain syscall.
        if unsafe { libc::geteuid() } != 0 {
            println!("skipped: needs root");
            return;
        }
        let d = tempdir("leak");
        let m = PlanMount {
            destination: d.display().to_string(),
            directory: true,
            writable: true,
        };
        let a = leak_at(&m.destination, "n4");
        let at = d.join(leak_name("n4"));
        // A mount there: its device is not the directory's.
        let mounted =
            std::fs::metadata(&at).is_ok_and(|m| m.dev() != std::fs::metadata(&d).unwrap().dev());
        let c = crate::sys::cpath(&at).unwrap();
        // SAFETY: `c` is a valid C string.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        assert_eq!(
            a,
            Attempt::ok(leak_id(&m.destination), at.display().to_string())
        );
        assert!(mounted, "a tmpfs was at {}", at.display());
        assert_eq!(
            leak_at(&m.destination, "n4"),
            Attempt::failed(leak_id(&m.destination), "untried: mkdir already exists")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
