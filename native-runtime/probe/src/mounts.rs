//! `mount:<destination>:read|write|identity` for each declared mount, and `propagated:*`: what the
//! probe can do with the mounts the declaration gives it.

use crate::sys::{err_name, errno_name};
use plugd_core::check::probe::{Attempt, PlanMount, listing, mount_id, propagated_name};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The three attempts for one mount.
pub fn attempts(mount: &PlanMount, nonce: &str) -> Vec<Attempt> {
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
    std::fs::create_dir(at).map_err(|e| format!("mkdir: {}", err_name(&e)))?;
    crate::sys::mount_tmpfs(at).map_err(|errno| format!("mount: {}", errno_name(errno)))?;
    std::fs::write(at.join("nonce"), nonce).map_err(|e| format!("write: {}", err_name(&e)))
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
        };
        let a = attempts(&m, "n1");
        assert!(a.iter().all(|a| a.ok), "{a:?}");
        assert_eq!(a[0].id, format!("mount:{}:read", d.display()));
        assert_eq!(a[2].detail, "a/b");
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
        };
        let a = attempts(&m, "n1");
        assert!(a.iter().all(|a| a.ok), "{a:?}");
        assert_eq!(a[2].detail, "file 3");
        assert_eq!(std::fs::read(&f).unwrap(), b"abc");
        let missing = PlanMount {
            destination: d.join("missing").display().to_string(),
            directory: true,
        };
        assert!(
            attempts(&missing, "n1")
                .iter()
                .all(|a| !a.ok && a.detail == "ENOENT")
        );
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
        std::fs::remove_dir_all(&d).unwrap();
    }
}
