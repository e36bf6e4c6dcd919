//! One check: every attempt of a [`Plan`], each bounded in time, in a fixed order (what only
//! reads first, then what creates and removes).

use crate::sys::{ATTEMPT_TIMEOUT, bounded, err_name, is_nodev};
use crate::{caps, devices, escape, mounts, net, process, sandbox};
use plugd_core::check::probe::{Attempt, Plan, Report};
use std::path::{Path, PathBuf};

/// The engine's metrics socket as dockerd binds it into a metrics collector.
const ENGINE_METRICS: &str = "/run/docker/metrics.sock";
/// Writable places for the scratch directory, best first: `/dev` is the sandbox's own tmpfs
/// without `nodev` (nodes made there can be opened, so the device cgroup decides), and none of
/// them is the plugin's rootfs.
const SCRATCH_PARENTS: [&str; 3] = ["/dev", "/tmp", "/dev/shm"];

/// Runs every attempt of `plan`.
pub fn run(plan: &Plan) -> Report {
    run_as(plan, process::read_creds())
}

/// [`run`] with the credentials read beforehand (a test clears `CAP_SYS_ADMIN` so that no leak
/// mount is made on its host's `/`).
fn run_as(plan: &Plan, creds: process::Creds) -> Report {
    let mut attempts = Vec::new();
    attempts.extend(process::status_attempts(&creds));
    attempts.extend(process::namespace_attempts());
    attempts.push(net::interfaces());
    push_all(
        &mut attempts,
        sandbox::PATHS
            .iter()
            .map(|(id, _)| id.to_string())
            .collect(),
        ATTEMPT_TIMEOUT,
        sandbox::attempts,
    );

    let scratch = make_scratch(&plan.nonce);

    let (caps_wanted, dir) = (plan.capabilities.clone(), scratch.clone());
    let cap_ids: Vec<String> = plugd_core::check::probe::CAP_OPERATIONS
        .iter()
        .filter(|(c, _)| caps_wanted.iter().any(|w| w == c))
        .map(|(c, _)| format!("op:{c}"))
        .collect();
    // Each operation is bounded by itself; the whole set gets one more bound.
    push_all(&mut attempts, cap_ids, ATTEMPT_TIMEOUT * 4, move || {
        caps::attempts(&caps_wanted, dir.as_deref())
    });

    let (port, nonce) = (plan.host.loopback_port, plan.nonce.clone());
    push_one(&mut attempts, "net:host-loopback", move || {
        net::host_loopback(port, &nonce)
    });
    push_one(&mut attempts, "net:bind", net::bind);
    push_one(&mut attempts, "net:lookup", net::lookup);

    for m in &plan.mounts {
        let ids = ["read", "write", "identity", "inode"]
            .iter()
            .map(|w| plugd_core::check::probe::mount_id(&m.destination, w))
            .collect();
        let (m, nonce) = (m.clone(), plan.nonce.clone());
        push_all(&mut attempts, ids, ATTEMPT_TIMEOUT, move || {
            mounts::attempts(&m, &nonce)
        });
    }

    let mut ids: Vec<String> = ["escape:absolute", "escape:dotdot", "escape:symlink"]
        .map(String::from)
        .to_vec();
    ids.extend(
        plan.mounts
            .iter()
            .map(|m| plugd_core::check::probe::escape_mount_id(&m.destination)),
    );
    let (canary, nonce, ms, dir) = (
        plan.host.canary.clone(),
        plan.nonce.clone(),
        plan.mounts.clone(),
        scratch.clone(),
    );
    push_all(&mut attempts, ids, ATTEMPT_TIMEOUT * 2, move || {
        escape::attempts(&canary, &nonce, &ms, dir.as_deref())
    });

    let sys_admin = process::sys_admin_effective(&creds);
    if let Some(p) = &plan.propagated_mount {
        let mut ids = vec!["propagated:write".to_owned()];
        if sys_admin {
            ids.push("propagated:mount".to_owned());
        }
        let (p, nonce) = (p.clone(), plan.nonce.clone());
        push_all(&mut attempts, ids, ATTEMPT_TIMEOUT, move || {
            mounts::propagated_attempts(&p, &nonce, sys_admin)
        });
    }

    if sys_admin {
        let ids = mounts::leak_destinations(&plan.mounts)
            .iter()
            .map(|d| plugd_core::check::probe::leak_id(d))
            .collect();
        let (ms, nonce) = (plan.mounts.clone(), plan.nonce.clone());
        push_all(&mut attempts, ids, ATTEMPT_TIMEOUT, move || {
            mounts::leak_attempts(&ms, &nonce)
        });
    }

    for d in &plan.devices {
        let d = d.clone();
        push_one(
            &mut attempts,
            &plugd_core::check::probe::device_id(&d),
            move || devices::declared(std::slice::from_ref(&d)).remove(0),
        );
    }
    let ids = plugd_core::check::probe::UNDECLARED_DEVICES
        .iter()
        .map(|(k, ma, mi, _)| plugd_core::check::probe::mknod_id(*k, *ma, *mi))
        .collect();
    let dir = scratch.clone();
    push_all(&mut attempts, ids, ATTEMPT_TIMEOUT, move || {
        devices::undeclared(dir.as_deref())
    });

    let host = plan.host.clone();
    push_one(&mut attempts, "proc:host-pid", move || {
        process::host_pid_attempt(&host)
    });
    attempts.extend(process::self_attempts());
    push_one(&mut attempts, "import:engine-metrics", engine_metrics);

    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    Report {
        probe: format!("native {}", env!("CARGO_PKG_VERSION")),
        attempts,
    }
}

/// A fresh scratch directory named with the nonce in the first writable [`SCRATCH_PARENTS`]
/// without `nodev` (nodes made there can be opened), else in the first writable one (the device
/// attempts then report themselves untried).
fn make_scratch(nonce: &str) -> Option<PathBuf> {
    let make = |parent: &&str| {
        let dir = Path::new(parent).join(format!(".plugd-check-{nonce}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).ok().map(|()| dir)
    };
    SCRATCH_PARENTS
        .iter()
        .filter(|p| matches!(is_nodev(Path::new(p)), Ok(false)))
        .find_map(make)
        .or_else(|| SCRATCH_PARENTS.iter().find_map(make))
}

/// Runs `f` bounded; on timeout each of `ids` is an untried attempt (a hang is no denial).
fn push_all(
    out: &mut Vec<Attempt>,
    ids: Vec<String>,
    limit: std::time::Duration,
    f: impl FnOnce() -> Vec<Attempt> + Send + 'static,
) {
    match bounded(limit, f) {
        Ok(a) => out.extend(a),
        Err(why) => out.extend(ids.into_iter().map(|id| Attempt::failed(id, why.clone()))),
    }
}

fn push_one(out: &mut Vec<Attempt>, id: &str, f: impl FnOnce() -> Attempt + Send + 'static) {
    push_all(out, vec![id.to_owned()], ATTEMPT_TIMEOUT, move || vec![f()]);
}

/// `import:engine-metrics`: is the engine's metrics socket there (a socket file: the grant), and
/// does the engine answer on it (the detail: an engine that is down is not a missing grant).
fn engine_metrics() -> Attempt {
    use std::os::unix::fs::FileTypeExt as _;
    const ID: &str = "import:engine-metrics";
    let is_socket = std::fs::symlink_metadata(ENGINE_METRICS).map(|m| m.file_type().is_socket());
    match (
        is_socket,
        std::os::unix::net::UnixStream::connect(ENGINE_METRICS),
    ) {
        (Ok(true), Ok(_)) => Attempt::ok(ID, "connected"),
        (Ok(true), Err(e)) => Attempt::ok(ID, format!("present, connect: {}", err_name(&e))),
        (Ok(false), _) => Attempt::failed(ID, "not a socket"),
        (Err(e), _) => Attempt::failed(ID, err_name(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_attempt_is_untried() {
        let mut out = Vec::new();
        push_all(
            &mut out,
            vec!["a".into(), "b".into()],
            std::time::Duration::from_millis(20),
            || {
                std::thread::sleep(std::time::Duration::from_secs(1));
                Vec::new()
            },
        );
        assert_eq!(out.len(), 2);
        assert!(
            out.iter()
                .all(|a| !a.ok && a.detail.starts_with("untried: time limit")),
            "{out:?}"
        );
    }

    #[test]
    fn every_attempt_of_a_plan_is_reported_once() {
        let plan = Plan {
            nonce: format!("t{}", std::process::id()),
            devices: vec!["/dev/null".into()],
            capabilities: vec!["CAP_CHOWN".into(), "CAP_NET_RAW".into(), "CAP_BOGUS".into()],
            mounts: vec![plugd_core::check::probe::PlanMount {
                destination: "/nonexistent-probe-mount".into(),
                directory: true,
                writable: true,
            }],
            ..Plan::default()
        };
        let mut creds = process::read_creds();
        creds.effective = creds.effective.map(|m| m & !(1 << 21));
        let r = run_as(&plan, creds);
        assert!(r.probe.starts_with("native "));
        let ids: Vec<&str> = r.attempts.iter().map(|a| a.id.as_str()).collect();
        for want in [
            "status:CapEff",
            "ns:net",
            "net:interfaces",
            "op:CAP_CHOWN",
            "op:CAP_NET_RAW",
            "net:host-loopback",
            "mount:/nonexistent-probe-mount:write",
            "mount:/nonexistent-probe-mount:inode",
            "sandbox:proc-sys-write",
            "sandbox:sys-write",
            "escape:mount:/nonexistent-probe-mount",
            "device:/dev/null",
            "device:mknod:c:10:229",
            "device:mknod:b:7:0",
            "proc:host-pid",
            "env",
            "args",
            "cwd",
            "import:engine-metrics",
        ] {
            assert_eq!(
                ids.iter().filter(|i| **i == want).count(),
                1,
                "{want}: {ids:?}"
            );
        }
        assert!(!ids.contains(&"op:CAP_SYS_ADMIN"));
        assert!(!ids.iter().any(|i| i.starts_with("leak:")), "{ids:?}");
        assert!(!ids.iter().any(|i| i.starts_with("propagated:")));
        assert!(SCRATCH_PARENTS.iter().all(|p| {
            !Path::new(p)
                .join(format!(".plugd-check-{}", plan.nonce))
                .exists()
        }));
    }
}
