//! `sandbox:proc-sys-write`, `sandbox:sys-write`: whether the kernel's tunables and `/sys` are
//! writable in the sandbox (dockerd mounts both read-only, so the answer it gives is `EROFS`).

use crate::sys::{errno_name, writable};
use plugd_core::check::probe::Attempt;
use std::path::Path;

/// The two rows, by id and the path asked about. For `/proc/sys` a file: procfs refuses write
/// access to any sysctl directory (`EACCES`, read-only mount or not), while a root-writable
/// tunable answers `EROFS` exactly when the mount is read-only.
pub const PATHS: [(&str, &str); 2] = [
    ("sandbox:proc-sys-write", "/proc/sys/kernel/hostname"),
    ("sandbox:sys-write", "/sys/kernel"),
];

/// One attempt per [`PATHS`] entry: `faccessat(W_OK)` (the probe runs as root, so the mount's
/// read-only flag, not a mode bit, is what answers).
pub fn attempts() -> Vec<Attempt> {
    PATHS.iter().map(|(id, path)| attempt(id, path)).collect()
}

/// One `faccessat(W_OK)` attempt on `path`.
pub fn attempt(id: &str, path: &str) -> Attempt {
    match writable(Path::new(path)) {
        Ok(()) => Attempt::ok(id, format!("{path} writable")),
        Err(e) => Attempt::failed(id, errno_name(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_access_is_reported_with_the_errno() {
        let d = std::env::temp_dir();
        let a = attempt("sandbox:x", &d.display().to_string());
        assert!(a.ok, "{a:?}");
        // SAFETY: a plain syscall.
        if unsafe { libc::geteuid() } == 0 {
            // The host's own /proc/sys and /sys are writable to root.
            for (id, path) in PATHS {
                assert!(attempt(id, path).ok, "{path}");
            }
        }
        assert_eq!(
            attempt("sandbox:x", "/nonexistent-probe-dir"),
            Attempt::failed("sandbox:x", "ENOENT")
        );
    }
}
