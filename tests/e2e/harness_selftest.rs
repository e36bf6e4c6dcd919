//! Tests of the harness itself, against dockerd only: the static fixture plugin as a managed and
//! as a legacy plugin, isolation between parallel tests, and the cleanup (normal, failing, timed out).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{
    self, BUSYBOX_IMAGE, Cli, Cmd, Dockerd, Env, MountEntry, PLUGIN_SOCKET_DIR, ProcId,
    mounts_under, normalize_ids, wait_for,
};

/// Set by [`parallel_isolated_tests_do_not_interfere`] for the copies it starts: `<dir>:<count>`.
const RENDEZVOUS_ENV: &str = "PLUGD_SELFTEST_RENDEZVOUS";
/// Set by [`failing_and_timed_out_tests_are_cleaned_up`] for the copies it starts: `fail` or `hang`.
const MODE_ENV: &str = "PLUGD_SELFTEST_MODE";

/// With [`RENDEZVOUS_ENV`] set, waits until every copy of this test reached `point`, so the
/// copies really overlap. Without it, does nothing.
fn rendezvous(env: &Env, point: &str) {
    let Ok(spec) = std::env::var(RENDEZVOUS_ENV) else {
        return;
    };
    let (dir, n) = spec.rsplit_once(':').expect("rendezvous spec is DIR:N");
    let n: usize = n.parse().expect("rendezvous count");
    let me = env
        .dir()
        .file_name()
        .expect("test dir name")
        .to_string_lossy()
        .into_owned();
    std::fs::write(Path::new(dir).join(format!("{point}.{me}")), "")
        .expect("write rendezvous file");
    let prefix = format!("{point}.");
    wait_for(
        &format!("{n} tests at rendezvous {point}"),
        Duration::from_secs(120),
        || {
            std::fs::read_dir(dir).map_or(0, |rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .count()
            }) >= n
        },
    );
    println!("selftest: rendezvous {point}: {n} of {n} present");
}

/// `docker plugin create NAME <fixture bundle>` + `enable`; returns the plugin id.
fn create_and_enable(env: &Env, d: &Dockerd, name: &str) -> String {
    let bundle = env.static_plugin_bundle(name);
    env.docker_cmd(Cli::Docker28, d, ["plugin", "create", name])
        .arg(bundle.path())
        .run()
        .assert_ok();
    env.docker(Cli::Docker28, d, ["plugin", "enable", name])
        .assert_ok();
    let id = env
        .docker(
            Cli::Docker28,
            d,
            ["plugin", "inspect", "--format", "{{.Id}}", name],
        )
        .assert_ok()
        .trimmed()
        .to_owned();
    assert_eq!(
        normalize_ids(&id),
        "<ID>",
        "plugin id {id:?} is not a 64-hex id"
    );
    id
}

fn sorted_dir(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The whole managed-plugin lifecycle of the static fixture on a real dockerd, plus the same
/// binary as a legacy plugin; every name (plugin `sp`, legacy `legacy`, volume `v1`) is the same in
/// every copy of this test, so copies running side by side would collide without isolation.
#[test]
fn static_plugin_roundtrip_on_dockerd() {
    harness::isolated(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        // Unique per test run: whatever a volume holds must be this test's own token.
        let token = env
            .dir()
            .file_name()
            .expect("dir name")
            .to_string_lossy()
            .into_owned();

        let id = create_and_enable(env, &d, "sp");
        let ls = env.docker(
            Cli::Docker28,
            &d,
            ["plugin", "ls", "--format", "{{.Name}} {{.Enabled}}"],
        );
        assert_eq!(ls.assert_ok().lines(), ["sp:latest true"], "{ls}");
        let plugin_sock_dir = Path::new(PLUGIN_SOCKET_DIR).join(&id);
        assert!(
            plugin_sock_dir.join("static.sock").exists(),
            "dockerd 20.10 puts the socket in /run/docker/plugins/<id>/"
        );

        let legacy = env.legacy_static_plugin("legacy");
        rendezvous(env, "plugins-up");
        // Our private /run/docker/plugins holds exactly our two plugins.
        let mut expected = vec![id.clone(), "legacy.sock".to_owned()];
        expected.sort();
        assert_eq!(sorted_dir(Path::new(PLUGIN_SOCKET_DIR)), expected);

        env.docker(Cli::Docker28, &d, ["volume", "create", "-d", "sp", "v1"])
            .assert_ok()
            .assert_stdout_contains("v1");
        env.docker(
            Cli::Docker28,
            &d,
            ["volume", "create", "-d", "legacy", "lv"],
        )
        .assert_ok();
        for cli in Cli::ALL {
            let vols = env.docker(
                cli,
                &d,
                ["volume", "ls", "--format", "{{.Driver}} {{.Name}}"],
            );
            let mut lines = vols.assert_ok().lines();
            lines.sort();
            assert_eq!(lines, ["legacy lv", "sp:latest v1"], "{vols}");
        }
        let mp = env.docker(
            Cli::Docker20,
            &d,
            ["volume", "inspect", "--format", "{{.Mountpoint}}", "v1"],
        );
        assert_eq!(mp.assert_ok().trimmed(), "/data/volumes/v1");

        let script = format!("echo {token} > /data/f");
        env.docker(
            Cli::Docker28,
            &d,
            [
                "run",
                "--rm",
                "-v",
                "v1:/data",
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                &script,
            ],
        )
        .assert_ok();
        let host_file = d.propagated_mount(&id).join("volumes/v1/f");
        assert_eq!(
            std::fs::read_to_string(&host_file)
                .unwrap_or_else(|e| panic!("{}: {e}", host_file.display())),
            format!("{token}\n")
        );
        env.docker(
            Cli::Docker20,
            &d,
            [
                "run",
                "--rm",
                "-v",
                "lv:/data",
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                &script,
            ],
        )
        .assert_ok();
        assert_eq!(
            std::fs::read_to_string(legacy.data_dir.join("volumes/lv/f"))
                .expect("legacy volume file"),
            format!("{token}\n")
        );
        let paths = legacy.request_paths();
        assert_eq!(
            paths.first().map(String::as_str),
            Some("/Plugin.Activate"),
            "{paths:?}"
        );
        assert!(
            paths.iter().any(|p| p == "/VolumeDriver.Mount"),
            "{paths:?}"
        );
        // Only our own volume ever reached our legacy plugin.
        for r in legacy.requests() {
            let body = r["body"].as_str().unwrap_or_default();
            assert!(!body.contains("v1"), "foreign volume in {r}");
        }
        rendezvous(env, "volumes-used");

        env.docker(Cli::Docker28, &d, ["volume", "rm", "v1"])
            .assert_ok();
        assert!(
            !host_file.parent().expect("volume dir").exists(),
            "volume dir still exists after rm"
        );
        env.docker(Cli::Docker28, &d, ["volume", "rm", "lv"])
            .assert_ok();
        env.docker(Cli::Docker28, &d, ["plugin", "disable", "sp"])
            .assert_ok();
        env.docker(Cli::Docker28, &d, ["plugin", "rm", "sp"])
            .assert_ok();
        let ls = env.docker(Cli::Docker28, &d, ["plugin", "ls", "-q"]);
        assert!(ls.assert_ok().lines().is_empty(), "{ls}");
        assert!(
            !plugin_sock_dir.exists(),
            "{} left after plugin rm",
            plugin_sock_dir.display()
        );
        assert!(
            !d.plugin_dir(&id).exists(),
            "{} left after plugin rm",
            d.plugin_dir(&id).display()
        );
    })
}

/// Runs a copy of the test binary restricted to one test, as cargo would, and returns its output.
fn run_test_copy(test: &str, envs: &[(&str, &str)]) -> harness::Output {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Cmd::new(exe)
        .args([
            "--exact",
            test,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
            "--color",
            "never",
        ])
        .timeout(Duration::from_secs(400));
    for (k, v) in envs {
        cmd = cmd.env(k, v);
    }
    cmd.run()
}

/// Field `key=` of the harness's child marker line, for every copy in `out`.
fn marker_fields(out: &str, key: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_once("plugd-e2e-child:").map(|(_, rest)| rest))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn parallel_isolated_tests_do_not_interfere() {
    let rv = PathBuf::from(format!("/tmp/pd-rv-{}", harness::random_suffix(6)));
    std::fs::create_dir(&rv).expect("mkdir rendezvous dir");
    let spec = format!("{}:2", rv.display());
    let test = "harness_selftest::static_plugin_roundtrip_on_dockerd";
    let outs: Vec<harness::Output> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| run_test_copy(test, &[(RENDEZVOUS_ENV, spec.as_str())])))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("copy thread"))
            .collect()
    });
    let _ = std::fs::remove_dir_all(&rv);
    for out in &outs {
        out.assert_ok()
            .assert_stdout_contains("selftest: rendezvous plugins-up: 2 of 2 present")
            .assert_stdout_contains("selftest: rendezvous volumes-used: 2 of 2 present")
            .assert_stdout_contains("test result: ok. 1 passed");
    }
    // Different dirs and different mount namespaces.
    let dirs: BTreeSet<String> = outs
        .iter()
        .flat_map(|o| marker_fields(&o.stdout, "dir"))
        .collect();
    let nss: BTreeSet<String> = outs
        .iter()
        .flat_map(|o| marker_fields(&o.stdout, "mntns"))
        .collect();
    assert_eq!(
        (dirs.len(), nss.len()),
        (2, 2),
        "dirs {dirs:?}, namespaces {nss:?}"
    );
    for d in &dirs {
        assert!(!Path::new(d).exists(), "{d} was not removed");
    }
}

/// What [`cleanup_stops_every_process_and_unmounts_everything`] saw while the test ran.
struct Snapshot {
    procs: Vec<(ProcId, String)>,
    mounts: Vec<MountEntry>,
    preexisting: Vec<u32>,
    dir: PathBuf,
}

fn snapshot(env: &Env) -> Snapshot {
    let me = std::process::id() as i32;
    let procs: Vec<(ProcId, String)> = harness::descendants(&[me])
        .into_iter()
        .map(|p| (p, p.cmdline()))
        .collect();
    let dir = env.dir().to_path_buf();
    let mounts = mounts_under(&[
        dir.as_path(),
        Path::new(PLUGIN_SOCKET_DIR),
        Path::new("/run/containerd"),
    ]);
    Snapshot {
        procs,
        mounts,
        preexisting: env.preexisting_mount_ids().to_vec(),
        dir,
    }
}

/// Starts a dockerd with an enabled managed plugin, a volume, a running container using it, and a
/// legacy plugin; leaks the handles (so the final cleanup, not `Drop`, must stop them) and then
/// checks, after the cleanup, that every one of those processes is gone and every mount undone.
#[test]
fn cleanup_stops_every_process_and_unmounts_everything() {
    harness::isolated_then(
        |env| {
            let d = env.dockerd();
            env.import_busybox(&d);
            let id = create_and_enable(env, &d, "sp");
            env.docker(Cli::Docker28, &d, ["volume", "create", "-d", "sp", "v1"])
                .assert_ok();
            let legacy = env.legacy_static_plugin("legacy");
            let script = "trap 'exit 0' TERM; echo up > /data/up; while :; do sleep 1; done";
            env.docker(
                Cli::Docker28,
                &d,
                [
                    "run",
                    "-d",
                    "--name",
                    "c1",
                    "-v",
                    "v1:/data",
                    BUSYBOX_IMAGE,
                    "sh",
                    "-c",
                    script,
                ],
            )
            .assert_ok();
            let up = d.propagated_mount(&id).join("volumes/v1/up");
            wait_for(
                "the container to write /data/up",
                Duration::from_secs(30),
                || up.exists(),
            );

            let snap = snapshot(env);
            let has = |needle: &str| snap.procs.iter().any(|(_, c)| c.contains(needle));
            for needle in [
                "dockerd",
                "containerd --config",
                "containerd-shim-runc-v2",
                "/static-plugin",
                "plugd-static-plugin",
                "trap 'exit 0' TERM",
            ] {
                assert!(
                    has(needle),
                    "no `{needle}` among the test's processes: {:#?}",
                    snap.procs
                );
            }
            let at = |p: &Path| snap.mounts.iter().any(|m| m.mount_point == p);
            assert!(
                at(Path::new(PLUGIN_SOCKET_DIR)),
                "no tmpfs on {PLUGIN_SOCKET_DIR}: {:#?}",
                snap.mounts
            );
            assert!(
                at(&d.propagated_mount(&id)),
                "propagated mount not mounted: {:#?}",
                snap.mounts
            );
            std::mem::forget(d);
            std::mem::forget(legacy);
            snap
        },
        |snap| {
            let alive: Vec<&(ProcId, String)> =
                snap.procs.iter().filter(|(p, _)| p.is_alive()).collect();
            assert!(
                alive.is_empty(),
                "processes survived the cleanup: {alive:#?}"
            );
            let ids: BTreeSet<u32> = harness::mountinfo().iter().map(|m| m.id).collect();
            // Copies of the host's own mounts at those paths (if any) are not ours to remove.
            let left: Vec<&MountEntry> = snap
                .mounts
                .iter()
                .filter(|m| ids.contains(&m.id) && !snap.preexisting.contains(&m.id))
                .collect();
            assert!(left.is_empty(), "mounts survived the cleanup: {left:#?}");
            assert!(
                !snap.dir.exists(),
                "{} survived the cleanup",
                snap.dir.display()
            );
        },
    )
}

/// Helper for [`failing_and_timed_out_tests_are_cleaned_up`]: starts things, prints their pids,
/// then fails or hangs as [`MODE_ENV`] says.
#[test]
#[ignore = "helper: run (and expected to fail) by failing_and_timed_out_tests_are_cleaned_up"]
fn helper_fails_or_hangs() {
    harness::isolated(|env| {
        let d = env.dockerd();
        create_and_enable(env, &d, "sp");
        let _legacy = env.legacy_static_plugin("legacy");
        let me = std::process::id() as i32;
        let pids: Vec<String> = harness::descendants(&[me])
            .iter()
            .map(|p| format!("{}:{}", p.pid, p.start))
            .collect();
        println!("selftest-pids: {}", pids.join(" "));
        match std::env::var(MODE_ENV).as_deref() {
            Ok("hang") => loop {
                std::thread::sleep(Duration::from_secs(1));
            },
            _ => panic!("deliberate failure"),
        }
    })
}

#[test]
fn failing_and_timed_out_tests_are_cleaned_up() {
    let test = "harness_selftest::helper_fails_or_hangs";
    let outs: Vec<(&str, harness::Output)> = std::thread::scope(|s| {
        let fail = s.spawn(|| run_test_copy(test, &[(MODE_ENV, "fail")]));
        let hang =
            s.spawn(|| run_test_copy(test, &[(MODE_ENV, "hang"), ("PLUGD_E2E_TIMEOUT", "30")]));
        vec![
            ("fail", fail.join().expect("fail copy")),
            ("hang", hang.join().expect("hang copy")),
        ]
    });
    for (mode, out) in &outs {
        assert_eq!(
            out.code,
            Some(101),
            "{mode}: expected libtest's failure exit code\n{out}"
        );
        let text = format!("{}{}", out.stdout, out.stderr);
        let expect: &[&str] = match *mode {
            "fail" => &[
                "deliberate failure",
                "harness: test body FAILED",
                "---- harness: tail of",
            ],
            _ => &["harness: TIMEOUT", "---- harness: tail of"],
        };
        for e in expect {
            assert!(
                text.contains(e),
                "{mode}: expected {e:?} in the output\n{out}"
            );
        }
        for bad in ["survived", "was not removed", "cleanup:"] {
            assert!(
                !text.contains(bad),
                "{mode}: cleanup problem ({bad:?})\n{out}"
            );
        }
        let pids: Vec<ProcId> = text
            .lines()
            .filter_map(|l| l.strip_prefix("selftest-pids: "))
            .flat_map(|l| l.split_whitespace())
            .filter_map(|p| {
                let (pid, start) = p.split_once(':')?;
                Some(ProcId {
                    pid: pid.parse().ok()?,
                    start: start.parse().ok()?,
                })
            })
            .collect();
        assert!(
            pids.len() >= 4,
            "{mode}: expected dockerd, containerd, shim, plugin and legacy pids\n{out}"
        );
        let alive: Vec<&ProcId> = pids.iter().filter(|p| p.is_alive()).collect();
        assert!(
            alive.is_empty(),
            "{mode}: still alive after the failed test: {alive:?}"
        );
        for d in marker_fields(&out.stdout, "dir") {
            assert!(!Path::new(&d).exists(), "{mode}: {d} was not removed");
        }
    }
}

#[test]
fn normalize_ids_replaces_full_and_short_ids_only() {
    let full = "3943f174f463aab93acccf721b8887ece5dc354665d9a2c967a9336a60751b25";
    let text = format!("ID {full}\nshort 3943f174f463 sha256:{full}\n");
    assert_eq!(normalize_ids(&text), "ID <ID>\nshort <ID> sha256:<ID>\n");
    // Not ids: other lengths, part of a longer word, upper case.
    for keep in [
        "3943f174f46",
        "3943f174f463a1",
        "x3943f174f463",
        "3943F174F463",
        "deadbeef",
    ] {
        assert_eq!(normalize_ids(keep), keep);
    }
    assert_eq!(normalize_ids("a-3943f174f463/b"), "a-<ID>/b");
}
