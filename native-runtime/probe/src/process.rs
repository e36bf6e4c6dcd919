//! What the probe process is: `status:*` (its capability sets, no_new_privs, seccomp: asked of the
//! kernel, written as `/proc/self/status` writes them), `ns:*` (its namespaces' inodes), `env`,
//! `args`, `cwd`, and `proc:host-pid` (whether plugd's own process is visible, i.e. whether the
//! pid namespace hides the host). What reads `/proc` first makes sure it is procfs.

use crate::sys::{err_name, errno_name, last_errno, procfs_check, read_capped, untried};
use plugd_core::check::probe::{Attempt, Host};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

pub use plugd_core::check::probe::STATUS_FIELDS;
/// The namespaces reported, by their `/proc/self/ns` name.
pub const NAMESPACES: [&str; 7] = ["net", "pid", "ipc", "uts", "mnt", "cgroup", "user"];
/// Bit of `CAP_SYS_ADMIN` in the capability masks.
const CAP_SYS_ADMIN: u32 = 21;

/// What the kernel says of the probe's credentials: capability masks (bit n = capability n) and
/// the two flags, each `Err(errno name)` when the call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub inheritable: Result<u64, String>,
    pub permitted: Result<u64, String>,
    pub effective: Result<u64, String>,
    pub bounding: Result<u64, String>,
    pub ambient: Result<u64, String>,
    pub no_new_privs: Result<u64, String>,
    pub seccomp: Result<u64, String>,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_V3: u32 = 0x2008_0522;
/// The highest capability number asked of the bounding and ambient sets (the kernel's last is
/// 40, `CAP_CHECKPOINT_RESTORE`; asking stops at the first it does not know).
const LAST_CAP: u32 = 40;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Reads the calling thread's credentials from the kernel (`capget`, `prctl`), not from
/// `/proc/self/status`: a `/proc` the sandbox does not own must not decide what is reported.
pub fn read_creds() -> Creds {
    let mut header = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: a raw capget with a v3 header and the two data words v3 fills.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    let sets = if r == 0 {
        let join =
            |f: fn(&CapData) -> u32| Ok(u64::from(f(&data[0])) | u64::from(f(&data[1])) << 32);
        (
            join(|d| d.inheritable),
            join(|d| d.permitted),
            join(|d| d.effective),
        )
    } else {
        let e = format!("capget: {}", errno_name(last_errno()));
        (Err(e.clone()), Err(e.clone()), Err(e))
    };
    Creds {
        inheritable: sets.0,
        permitted: sets.1,
        effective: sets.2,
        bounding: per_cap("PR_CAPBSET_READ", |cap| {
            prctl(libc::PR_CAPBSET_READ, cap, 0)
        }),
        ambient: per_cap("PR_CAP_AMBIENT_IS_SET", |cap| {
            prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_IS_SET as libc::c_ulong,
                cap,
            )
        }),
        no_new_privs: flag(
            "PR_GET_NO_NEW_PRIVS",
            prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0),
        ),
        seccomp: flag("PR_GET_SECCOMP", prctl(libc::PR_GET_SECCOMP, 0, 0)),
    }
}

/// `prctl(option, a, b, 0, 0)`: its result, or the errno.
fn prctl(option: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> Result<libc::c_int, i32> {
    // SAFETY: the prctl options used here only read the caller's state.
    let r = unsafe { libc::prctl(option, a, b, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if r < 0 { Err(last_errno()) } else { Ok(r) }
}

fn flag(what: &str, r: Result<libc::c_int, i32>) -> Result<u64, String> {
    r.map(|v| v as u64)
        .map_err(|e| format!("{what}: {}", errno_name(e)))
}

/// A mask from asking `ask` about each capability from 0 up: 1 sets the bit, 0 leaves it,
/// `EINVAL` (a capability this kernel does not know) ends the mask.
pub fn per_cap(
    what: &str,
    ask: impl Fn(libc::c_ulong) -> Result<libc::c_int, i32>,
) -> Result<u64, String> {
    let mut mask = 0u64;
    for cap in 0..=LAST_CAP {
        match ask(libc::c_ulong::from(cap)) {
            Ok(0) => {}
            Ok(1) => mask |= 1 << cap,
            Ok(n) => return Err(format!("{what}({cap}): unexpected {n}")),
            Err(libc::EINVAL) if cap > 0 => break,
            Err(e) => return Err(format!("{what}({cap}): {}", errno_name(e))),
        }
    }
    Ok(mask)
}

/// `status:<Field>` for each of [`STATUS_FIELDS`], written as `/proc/self/status` writes them
/// (masks as 16 hex digits, flags in decimal) so plugd judges them the same either way.
pub fn status_attempts(creds: &Creds) -> Vec<Attempt> {
    STATUS_FIELDS
        .iter()
        .map(|field| {
            let id = format!("status:{field}");
            let (value, hex) = match *field {
                "CapInh" => (&creds.inheritable, true),
                "CapPrm" => (&creds.permitted, true),
                "CapEff" => (&creds.effective, true),
                "CapBnd" => (&creds.bounding, true),
                "CapAmb" => (&creds.ambient, true),
                "NoNewPrivs" => (&creds.no_new_privs, false),
                "Seccomp" => (&creds.seccomp, false),
                _ => return Attempt::failed(id, untried("a field this probe does not know")),
            };
            match value {
                Ok(v) if hex => Attempt::ok(id, format!("{v:016x}")),
                Ok(v) => Attempt::ok(id, v.to_string()),
                Err(e) => Attempt::failed(id, e.clone()),
            }
        })
        .collect()
}

/// Whether `CAP_SYS_ADMIN` is effective.
pub fn sys_admin_effective(creds: &Creds) -> bool {
    creds
        .effective
        .as_ref()
        .is_ok_and(|mask| mask & (1 << CAP_SYS_ADMIN) != 0)
}

/// `ns:<name>`: the inode of each namespace.
pub fn namespace_attempts() -> Vec<Attempt> {
    let procfs = procfs_check();
    NAMESPACES
        .iter()
        .map(|ns| {
            let id = format!("ns:{ns}");
            if let Err(why) = &procfs {
                return Attempt::failed(id, why.clone());
            }
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
    if let Err(why) = procfs_check() {
        return Attempt::failed(ID, why);
    }
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

    fn creds(eff: u64) -> Creds {
        Creds {
            inheritable: Ok(0),
            permitted: Ok(0xa80425fb),
            effective: Ok(eff),
            bounding: Err("PR_CAPBSET_READ(0): EPERM".into()),
            ambient: Ok(0),
            no_new_privs: Ok(1),
            seccomp: Ok(2),
        }
    }

    #[test]
    fn status_fields_are_written_as_proc_writes_them() {
        let a = status_attempts(&creds(0xa82425fb));
        assert_eq!(a.len(), STATUS_FIELDS.len());
        assert_eq!(a[0], Attempt::ok("status:CapInh", "0000000000000000"));
        assert_eq!(a[1], Attempt::ok("status:CapPrm", "00000000a80425fb"));
        assert_eq!(a[2], Attempt::ok("status:CapEff", "00000000a82425fb"));
        assert_eq!(
            a[3],
            Attempt::failed("status:CapBnd", "PR_CAPBSET_READ(0): EPERM")
        );
        assert_eq!(a[5], Attempt::ok("status:NoNewPrivs", "1"));
        assert_eq!(a[6], Attempt::ok("status:Seccomp", "2"));
    }

    #[test]
    fn sys_admin_is_bit_21_of_the_effective_set() {
        assert!(sys_admin_effective(&creds(0xa82425fb)));
        assert!(!sys_admin_effective(&creds(0xa80425fb)));
        let mut c = creds(0);
        c.effective = Err("capget: EPERM".into());
        assert!(!sys_admin_effective(&c));
    }

    #[test]
    fn per_cap_masks_stop_at_the_first_unknown_capability() {
        let known = |cap: libc::c_ulong| {
            if cap > 3 {
                Err(libc::EINVAL)
            } else {
                Ok((cap % 2) as i32)
            }
        };
        assert_eq!(per_cap("x", known), Ok(0b1010));
        assert_eq!(
            per_cap("x", |_| Err(libc::EINVAL)),
            Err("x(0): EINVAL".into())
        );
        assert_eq!(per_cap("x", |_| Ok(7)), Err("x(0): unexpected 7".into()));
    }

    #[test]
    fn the_kernel_agrees_with_proc() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let field = |f: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{f}:")))
                .unwrap()
                .trim()
                .to_owned()
        };
        for a in status_attempts(&read_creds()) {
            let f = a.id.strip_prefix("status:").unwrap();
            assert_eq!((a.ok, a.detail.as_str()), (true, field(f).as_str()), "{f}");
        }
    }

    #[test]
    fn comm_may_hold_parentheses() {
        assert_eq!(comm_of_stat("42 (plugd) S 1 2"), Some("plugd"));
        assert_eq!(comm_of_stat("42 (a) b) S 1"), Some("a) b"));
        assert_eq!(comm_of_stat("garbage"), None);
    }
}
