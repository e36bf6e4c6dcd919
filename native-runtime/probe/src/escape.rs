//! `escape:*`: tries to read plugd's canary (a host file outside every mount of the plugin) by
//! its host path, through `..`, through a symlink and through each mount. Reading the nonce means
//! the sandbox leaked the host's filesystem.

use crate::net::judge_nonce;
use crate::sys::{err_name, read_capped, setup_failed, untried};
use plugd_core::check::probe::{Attempt, PlanMount, escape_mount_id};
use std::path::Path;

/// Enough `..` to climb from any mount destination to `/` (the kernel stops at the root).
const CLIMB: usize = 64;

/// All escape attempts; the symlink is made in `scratch` and removed.
pub fn attempts(
    canary: &str,
    nonce: &str,
    mounts: &[PlanMount],
    scratch: Option<&Path>,
) -> Vec<Attempt> {
    let mut out = vec![
        read_as("escape:absolute", canary, nonce),
        read_as("escape:dotdot", &format!("/../../..{canary}"), nonce),
    ];
    out.push(match scratch {
        None => Attempt::failed("escape:symlink", untried("no scratch directory")),
        Some(dir) => symlink_attempt(canary, nonce, &dir.join("canary-link")),
    });
    for m in mounts {
        let id = escape_mount_id(&m.destination);
        let path = climb_path(&m.destination, m.directory, canary);
        let mut a = read_as(&id, &path, nonce);
        a.id = id;
        out.push(a);
    }
    out
}

fn symlink_attempt(canary: &str, nonce: &str, link: &Path) -> Attempt {
    let _ = std::fs::remove_file(link);
    match std::os::unix::fs::symlink(canary, link) {
        Ok(()) => {
            let a = read_as("escape:symlink", &link.display().to_string(), nonce);
            let _ = std::fs::remove_file(link);
            a
        }
        Err(e) => Attempt::failed(
            "escape:symlink",
            setup_failed("symlink", e.raw_os_error().unwrap_or(0)),
        ),
    }
}

/// `<destination>/../../…<canary>` (from a file mount's directory).
pub fn climb_path(destination: &str, directory: bool, canary: &str) -> String {
    let base = if directory {
        destination.trim_end_matches('/').to_owned()
    } else {
        Path::new(destination)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    format!(
        "{base}/{}{}",
        "../".repeat(CLIMB),
        canary.trim_start_matches('/')
    )
}

fn read_as(id: &str, path: &str, nonce: &str) -> Attempt {
    match read_capped(Path::new(path), 4096) {
        Ok(bytes) => judge_nonce(id, &bytes, nonce),
        Err(e) => Attempt::failed(id, err_name(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn climbing_starts_at_the_mount() {
        let p = climb_path("/data/", true, "/run/plugd/canary");
        assert!(p.starts_with("/data/../../"), "{p}");
        assert!(p.ends_with("/../run/plugd/canary"), "{p}");
        assert!(climb_path("/etc/x.conf", false, "/c").starts_with("/etc/../"));
    }

    #[test]
    fn without_a_sandbox_every_escape_reads_the_canary() {
        let d = std::env::temp_dir().join(format!("plugd-probe-esc-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let canary = d.join("canary");
        std::fs::write(&canary, "n3").unwrap();
        let m = PlanMount {
            destination: d.display().to_string(),
            directory: true,
            writable: false,
        };
        let a = attempts(&canary.display().to_string(), "n3", &[m], Some(&d));
        assert_eq!(a.len(), 4);
        assert!(a.iter().all(|a| a.ok), "{a:?}");
        assert!(!d.join("canary-link").exists());
        let none = attempts(&d.join("nope").display().to_string(), "n3", &[], Some(&d));
        assert!(
            none.iter().all(|a| !a.ok && a.detail == "ENOENT"),
            "{none:?}"
        );
        let no_scratch = attempts(&canary.display().to_string(), "n3", &[], None);
        assert_eq!(
            no_scratch[2],
            Attempt::failed("escape:symlink", "untried: no scratch directory")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
