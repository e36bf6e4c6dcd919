//! What the probe process is: `status:*` (its capability sets, no_new_privs, seccomp), `ns:*`
//! (its namespaces' inodes), `env`, `args`, `cwd`, and `proc:host-pid` (whether plugd's own
//! process is visible, i.e. whether the pid namespace hides the host).

use crate::sys::{err_name, read_capped};
use plugd_core::check::probe::{Attempt, Host};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

pub use plugd_core::check::probe::STATUS_FIELDS;
/// The namespaces reported, by their `/proc/self/ns` name.
pub const NAMESPACES: [&str; 7] = ["net", "pid", "ipc", "uts", "mnt", "cgroup", "user"];
/// Bit of `CAP_SYS_ADMIN` in the capability masks.
const CAP_SYS_ADMIN: u32 = 21;

/// `status:<Field>` for each of [`STATUS_FIELDS`], from the text of `/proc/self/status`.
pub fn status_attempts(status: Option<&str>) -> Vec<Attempt> {
    STATUS_FIELDS
        .iter()
        .map(|field| {
            let id = format!("status:{field}");
            let Some(text) = status else {
                return Attempt::failed(id, "cannot read /proc/self/status");
            };
            match field_of(text, field) {
                Some(v) => Attempt::ok(id, v),
                None => Attempt::failed(id, "absent from /proc/self/status"),
            }
        })
        .collect()
}

/// The value of `field` in a `/proc/<pid>/status` text, whitespace trimmed.
pub fn field_of(text: &str, field: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| *k == field)
        .map(|(_, v)| v.trim().to_owned())
}

/// Whether `CapEff` (hex) holds `CAP_SYS_ADMIN`.
pub fn sys_admin_effective(status: Option<&str>) -> bool {
    status
        .and_then(|t| field_of(t, "CapEff"))
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .is_some_and(|mask| mask & (1 << CAP_SYS_ADMIN) != 0)
}

/// `/proc/self/status`, if readable.
pub fn read_status() -> Option<String> {
    std::fs::read_to_string("/proc/self/status").ok()
}

/// `ns:<name>`: the inode of each namespace.
pub fn namespace_attempts() -> Vec<Attempt> {
    NAMESPACES
        .iter()
        .map(|ns| {
            let id = format!("ns:{ns}");
            match std::fs::metadata(format!("/proc/self/ns/{ns}")) {
                Ok(m) => Attempt::ok(id, m.ino().to_string()),
                Err(e) => Attempt::failed(id, err_name(&e)),
            }
        })
        .collect()
}

/// `env`, `args`, `cwd`.
pub fn self_attempts() -> Vec<Attempt> {
    let env: Vec<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let json = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
    vec![
        Attempt::ok("env", json(&env)),
        Attempt::ok("args", json(&args)),
        match std::env::current_dir() {
            Ok(p) => Attempt::ok("cwd", p.display().to_string()),
            Err(e) => Attempt::failed("cwd", err_name(&e)),
        },
    ]
}

/// `proc:host-pid`: `/proc/<host.pid>/stat` read and its comm is plugd's.
pub fn host_pid_attempt(host: &Host) -> Attempt {
    const ID: &str = "proc:host-pid";
    let path = format!("/proc/{}/stat", host.pid);
    match read_capped(Path::new(&path), 4096) {
        Ok(bytes) => match comm_of_stat(&String::from_utf8_lossy(&bytes)) {
            Some(comm) if comm == host.comm => Attempt::ok(ID, format!("comm {comm}")),
            Some(comm) => Attempt::failed(ID, format!("another process: comm {comm}")),
            None => Attempt::failed(ID, "unreadable stat"),
        },
        Err(e) => Attempt::failed(ID, err_name(&e)),
    }
}

/// The comm of a `/proc/<pid>/stat` line: between the first `(` and the last `)` (a comm may
/// hold parentheses and spaces).
pub fn comm_of_stat(stat: &str) -> Option<&str> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    (close > open).then(|| &stat[open + 1..close])
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\n\
CapEff:\t00000000a82425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n";

    #[test]
    fn status_fields_are_read_and_missing_ones_failed() {
        let a = status_attempts(Some(STATUS));
        assert_eq!(a.len(), STATUS_FIELDS.len());
        assert_eq!(a[1], Attempt::ok("status:CapPrm", "00000000a80425fb"));
        assert_eq!(a[5], Attempt::ok("status:NoNewPrivs", "0"));
        assert_eq!(
            a[6],
            Attempt::failed("status:Seccomp", "absent from /proc/self/status")
        );
        assert!(status_attempts(None).iter().all(|a| !a.ok));
    }

    #[test]
    fn sys_admin_is_bit_21_of_cap_eff() {
        assert!(sys_admin_effective(Some(STATUS)));
        assert!(!sys_admin_effective(Some("CapEff:\t00000000a80425fb\n")));
        assert!(!sys_admin_effective(None));
    }

    #[test]
    fn comm_may_hold_parentheses() {
        assert_eq!(comm_of_stat("42 (plugd) S 1 2"), Some("plugd"));
        assert_eq!(comm_of_stat("42 (a) b) S 1"), Some("a) b"));
        assert_eq!(comm_of_stat("garbage"), None);
    }
}
