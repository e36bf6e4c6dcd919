//! `sandbox:proc-sys-write`, `sandbox:sys-write`: whether the kernel's tunables and `/sys` are
//! writable in the sandbox (dockerd mounts both read-only, so the answer it gives is `EROFS`).

use crate::sys::{errno_name, writable};
use plugd_core::check::probe::Attempt;
use std::path::Path;

/// The two rows, by id and the directory asked about.
pub const PATHS: [(&str, &str); 2] = [
    ("sandbox:proc-sys-write", "/proc/sys/kernel"),
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
        assert_eq!(
            attempt("sandbox:x", "/nonexistent-probe-dir"),
            Attempt::failed("sandbox:x", "ENOENT")
        );
    }
}
