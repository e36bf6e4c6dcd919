//! `plugd check` (docs/check.md) against the real sandboxes: for each privilege class a bundle
//! that declares it and one that does not, in both runtimes; every test fault reported in the row
//! that names it; `enable --check`; and the dockerd column beside the native one for the
//! reference configs of `../shared/reference/dockerd-observed/probes/` and the example plugin of
//! every type.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::{self, Bundle, Env, Plugd, static_plugin_binary, wasm_guest};
use crate::parity::{self, Case};

/// A bundle of the static fixture with `config` (the probe replaces its entrypoint: the rootfs
/// only has to be a plugin's), and `/tmp`.
fn bundle(env: &Env, name: &str, config: &Value) -> Bundle {
    env.bundle(name)
        .config(config)
        .copy("static-plugin", &static_plugin_binary(), 0o755)
        .dir("data")
        .dir("tmp")
        .dir("run/docker/plugins")
}

/// A config of the static fixture with `extra` merged in at the top level.
fn config(extra: Value) -> Value {
    let mut c = json!({
        "description": "check", "documentation": "docs/check.md",
        "interface": {"socket": "static.sock", "types": ["docker.volumedriver/1.0"]},
        "entrypoint": ["/static-plugin"], "workdir": "/",
        "network": {"type": "none"},
    });
    for (k, v) in extra.as_object().expect("an object") {
        c[k] = v.clone();
    }
    c
}

fn create(env: &Env, p: &Plugd, name: &str, b: &Bundle) {
    env.plugd_cli_cmd(p, ["create", name])
        .arg(b.path())
        .run()
        .assert_ok();
}

fn mkdir_with(path: PathBuf, files: &[&str]) -> PathBuf {
    std::fs::create_dir_all(&path).unwrap();
    for f in files {
        std::fs::write(path.join(f), f).unwrap();
    }
    path
}

/// `plugd check --format json` with `args`: the matrix and the exit code.
fn check(env: &Env, p: &Plugd, name: &str, args: &[&str]) -> (Value, i32) {
    let out = env
        .plugd_cli_cmd(p, ["check", "--format", "json"])
        .args(args)
        .arg(name)
        .run();
    let code = out.code.unwrap_or(-1);
    let m: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "plugd check {name}: no JSON ({e}); exit {code}\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        )
    });
    (m, code)
}

/// The cell of `privilege` in `column`: `(status, observed, expected)`.
fn cell<'a>(m: &'a Value, privilege: &str, column: &str) -> (&'a str, &'a str, &'a str) {
    let row = m["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["privilege"] == privilege)
        .unwrap_or_else(|| panic!("no row {privilege:?} in {}", m["plugin"]));
    let c = &row["cells"][column];
    (
        c["status"].as_str().unwrap_or("?"),
        c["observed"].as_str().unwrap_or("?"),
        c["expected"].as_str().unwrap_or("?"),
    )
}

fn state<'a>(m: &'a Value, column: &str) -> (&'a str, &'a str) {
    let c = m["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == column)
        .unwrap_or_else(|| panic!("no column {column}"));
    (c["state"].as_str().unwrap(), c["detail"].as_str().unwrap())
}

/// Every mismatching row as `privilege [column: observed (expected)]`.
fn mismatches(m: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for r in m["rows"].as_array().unwrap() {
        for (column, c) in r["cells"].as_object().unwrap() {
            if c["status"] == "mismatch" {
                out.push(format!(
                    "{} [{column}: {} (expected {})]",
                    r["privilege"].as_str().unwrap(),
                    c["observed"].as_str().unwrap(),
                    c["expected"].as_str().unwrap()
                ));
            }
        }
    }
    out
}

#[track_caller]
fn assert_clean(m: &Value, code: i32) {
    assert_eq!(mismatches(m), Vec::<String>::new(), "{}", m["plugin"]);
    assert_eq!(code, 0, "{}", m["plugin"]);
}

#[track_caller]
fn assert_cell(m: &Value, privilege: &str, column: &str, status: &str, observed_starts: &str) {
    let (s, o, e) = cell(m, privilege, column);
    assert!(
        s == status && o.starts_with(observed_starts),
        "{} {privilege} [{column}]: {s} {o:?} (expected {e:?}); wanted {status} {observed_starts:?}",
        m["plugin"]
    );
}

#[test]
fn rows_follow_the_declaration_in_both_runtimes() {
    harness::isolated(|env| {
        let p = env.plugd(&[]);
        let ro = mkdir_with(env.path("src-ro"), &["a", "b"]);
        let rw = mkdir_with(env.path("src-rw"), &["c"]);
        let bind = |src: &Path, dest: &str, opt: &str| {
            json!({"name": dest.trim_start_matches('/'), "source": src, "destination": dest,
                   "type": "bind", "options": ["rbind", opt]})
        };
        // Nothing beyond dockerd's defaults.
        create(env, &p, "plain", &bundle(env, "plain", &config(json!({}))));
        // Every native-only privilege class declared.
        let privileged = config(json!({
            "network": {"type": "host"}, "pidhost": true, "ipchost": true,
            "linux": {"capabilities": ["CAP_SYS_ADMIN"], "devices": [{"path": "/dev/fuse"}]},
            "propagatedMount": "/data",
        }));
        create(
            env,
            &p,
            "privileged",
            &bundle(env, "privileged", &privileged),
        );
        // Every device, the one declaration that opens what was never named.
        let all_devices = config(json!({"linux": {"allowAllDevices": true}}));
        create(env, &p, "alldev", &bundle(env, "alldev", &all_devices));
        // What both runtimes can give: binds, a propagated mount, env, args.
        let shared = config(json!({
            "mounts": [bind(&ro, "/ro", "ro"), bind(&rw, "/rw", "rw")],
            "propagatedMount": "/data",
            "env": [{"name": "MODE", "settable": ["value"], "value": "fast"}],
            "args": {"name": "args", "settable": ["value"], "value": ["static.sock"]},
        }));
        create(env, &p, "shared", &bundle(env, "shared", &shared));
        env.plugd_cli(&p, ["set", "shared", "MODE=slow"])
            .assert_ok();

        let (plain, code) = check(env, &p, "plain", &["--runtime", "both"]);
        assert_clean(&plain, code);
        assert_eq!(state(&plain, "native").0, "ran");
        assert_eq!(state(&plain, "wasm").0, "ran");
        let (privileged, code) = check(env, &p, "privileged", &["--runtime", "both"]);
        assert_clean(&privileged, code);
        let (wasm_state, why) = state(&privileged, "wasm");
        assert_eq!(wasm_state, "refused", "{why}");
        assert!(
            why.contains("CAP_SYS_ADMIN") || why.contains("host"),
            "{why}"
        );
        let (alldev, code) = check(env, &p, "alldev", &["--runtime", "both"]);
        assert_clean(&alldev, code);
        assert_eq!(state(&alldev, "wasm").0, "refused", "wasm gives no devices");
        for node in [
            "c 10:229 (fuse) made with mknod: open",
            "b 7:0 (loop0) made with mknod: open",
        ] {
            assert_cell(&plain, node, "native", "ok", "denied");
            assert_cell(&alldev, node, "native", "ok", "granted");
        }
        let (shared, code) = check(env, &p, "shared", &["--runtime", "both"]);
        assert_clean(&shared, code);

        // Declared vs not, native: each privilege class granted where declared, denied where not.
        for (privilege, denied, granted) in [
            ("CAP_SYS_ADMIN", "absent", "effective; operation succeeded"),
            ("network namespace", "its own", "the host's"),
            ("host interfaces visible", "hidden", "visible"),
            ("host loopback listener reachable", "denied", "granted"),
            ("pid namespace", "its own", "the host's"),
            ("ipc namespace", "its own", "the host's"),
            (
                "host processes visible (plugd's /proc entry)",
                "denied",
                "granted",
            ),
            ("c 10:229 (fuse) made with mknod: open", "denied", "granted"),
        ] {
            assert_cell(&plain, privilege, "native", "ok", denied);
            assert_cell(&privileged, privilege, "native", "ok", granted);
        }
        assert_cell(
            &privileged,
            "/dev/fuse: open",
            "native",
            "ok",
            "granted (c 10:229)",
        );
        // With CAP_SYS_ADMIN the probe mounts in / and leaves it: nothing reaches the host.
        assert_cell(
            &privileged,
            "a mount made inside / or a writable mount reaches the host",
            "native",
            "ok",
            "denied",
        );
        for m in [&plain, &privileged] {
            assert_cell(
                m,
                "/proc/sys writable (kernel tunables)",
                "native",
                "ok",
                "denied (EROFS)",
            );
            assert_cell(m, "/sys writable", "native", "ok", "denied (EROFS)");
        }
        assert_cell(
            &privileged,
            "b 7:0 (loop0) made with mknod: open",
            "native",
            "ok",
            "denied",
        );
        // The default capabilities are effective and their operations work; the others not.
        assert_cell(
            &plain,
            "CAP_CHOWN",
            "native",
            "ok",
            "effective; operation succeeded",
        );
        assert_cell(
            &plain,
            "CAP_NET_ADMIN",
            "native",
            "ok",
            "absent; operation failed",
        );
        assert_cell(&plain, "inheritable set", "native", "ok", "none");
        assert_cell(
            &privileged,
            "inheritable set",
            "native",
            "ok",
            "CAP_SYS_ADMIN",
        );
        // Mounts in both runtimes: ro is read-only, rw writable, each shows exactly its source,
        // and nothing outside is reachable.
        for column in ["native", "wasm"] {
            assert_cell(&shared, "/ro: read", column, "ok", "granted");
            assert_cell(&shared, "/ro: write", column, "ok", "denied");
            assert_cell(&shared, "/rw: write", column, "ok", "granted");
            assert_cell(
                &shared,
                "/ro: shows exactly its source",
                column,
                "ok",
                "a/b",
            );
            let inode = cell(&shared, "/rw: is its source (device and inode)", column);
            let want = if column == "native" {
                "ok"
            } else {
                "not-applicable"
            };
            assert_eq!(inode.0, want, "{inode:?}");
            assert_cell(
                &shared,
                "/rw/../..: host file outside every mount",
                column,
                "ok",
                "denied",
            );
            assert_cell(
                &shared,
                "host file by its absolute path",
                column,
                "ok",
                "denied",
            );
            assert_cell(
                &shared,
                "host file through a symlink made inside",
                column,
                "ok",
                "denied",
            );
            assert_cell(
                &shared,
                "a file made inside is on the host",
                column,
                "ok",
                "granted",
            );
            assert_cell(&shared, "environment", column, "ok", "[");
            assert_cell(
                &shared,
                "arguments after argv[0]",
                column,
                "ok",
                r#"["static.sock"]"#,
            );
            // The wasm runtime grants no sockets, whatever the declaration.
            assert_cell(&plain, "bind a socket", "wasm", "ok", "denied");
        }
        assert!(cell(&shared, "environment", "wasm").1.contains("MODE=slow"));
        assert_cell(
            &privileged,
            "a mount made inside is on the host",
            "native",
            "ok",
            "granted",
        );
        assert_cell(&plain, "bind a socket", "native", "ok", "granted");

        // enable --check passes for a plugin whose sandbox is what it declares, and the check
        // runs beside the enabled plugin without touching it.
        env.plugd_cli(&p, ["enable", "--check", "shared"])
            .assert_ok();
        let (again, code) = check(env, &p, "shared", &[]);
        assert_clean(&again, code);
        assert_eq!(
            again["columns"].as_array().unwrap().len(),
            1,
            "the plugin's own runtime only"
        );
        env.plugd_cli(&p, ["inspect", "-f", "{{.Enabled}}", "shared"])
            .assert_ok()
            .assert_stdout_contains("true");
        // Nothing of the probes stays in the sources.
        for dir in [&ro, &rw] {
            let names: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                names.iter().all(|n| !n.starts_with(".plugd-check")),
                "{names:?}"
            );
        }
        // The table form names the columns and rows.
        let table = env.plugd_cli(&p, ["check", "--runtime", "both", "shared"]);
        table.assert_ok();
        table.assert_stdout_contains("PRIVILEGE");
        table.assert_stdout_contains("/ro: write");
        assert!(
            !p.exec_root()
                .join("check")
                .read_dir()
                .map(|mut d| d.next().is_some())
                .unwrap_or(false),
            "a check leaves nothing in <exec-root>/check"
        );
    });
}

#[test]
fn every_test_fault_is_a_mismatch_in_the_row_that_names_it() {
    harness::isolated(|env| {
        let p = env.plugd(&[
            "--test-fault",
            "native-bounding-cap,native-device-rule,wasm-wide-preopen",
        ]);
        let src = mkdir_with(env.path("parent/src"), &["mine"]);
        mkdir_with(env.path("parent/other"), &["secret"]);
        let native = config(json!({"linux": {"devices": [{"path": "/dev/fuse"}]}}));
        create(env, &p, "weak-native", &bundle(env, "weak-native", &native));
        let wasm = config(
            json!({"mounts": [{"name": "src", "source": src, "destination": "/src",
            "type": "bind", "options": ["rbind", "rw"]}]}),
        );
        create(env, &p, "weak-wasm", &bundle(env, "weak-wasm", &wasm));

        let (m, code) = check(env, &p, "weak-native", &["--runtime", "native"]);
        assert_eq!(code, 1, "a mismatch exits 1");
        // Left in the bounding set, root's execve makes it effective too (docs/check.md).
        assert_cell(
            &m,
            "CAP_SYS_ADMIN",
            "native",
            "mismatch",
            "effective; operation succeeded",
        );
        assert_cell(&m, "/dev/fuse: open", "native", "mismatch", "denied");
        // The same missing rule denies the declared device's node made with mknod.
        assert_cell(
            &m,
            "c 10:229 (fuse) made with mknod: open",
            "native",
            "mismatch",
            "denied",
        );
        assert_eq!(mismatches(&m).len(), 3, "{:?}", mismatches(&m));

        let (m, code) = check(env, &p, "weak-wasm", &["--runtime", "wasm"]);
        assert_eq!(code, 1);
        let (status, observed, expected) = cell(&m, "/src: shows exactly its source", "wasm");
        assert_eq!((status, expected), ("mismatch", "mine"), "{observed}");
        assert!(
            observed.contains("other"),
            "the parent is what the guest sees: {observed}"
        );

        // enable --check refuses, naming the row, and the plugin stays disabled.
        let out = env.plugd_cli(&p, ["enable", "--check", "weak-native"]);
        out.assert_failed();
        out.assert_stderr_contains("not enabled");
        out.assert_stderr_contains("CAP_SYS_ADMIN");
        env.plugd_cli(&p, ["inspect", "-f", "{{.Enabled}}", "weak-native"])
            .assert_ok()
            .assert_stdout_contains("false");
    });
}

/// The reference configs dockerd was observed with (`parity`'s cases): the dockerd column agrees
/// with the native one.
#[test]
fn the_dockerd_column_agrees_for_the_reference_configs() {
    harness::isolated(|env| {
        let d = env.dockerd();
        let p = env.plugd(&[]);
        let src = mkdir_with(env.path("hostdir"), &["x"]);
        for case in parity::CASES {
            let name = format!("ref-{}", case.name);
            let bind = case.bind_mount.then_some(src.as_path());
            let b = parity::probe_bundle(env, &name, &case, bind);
            create(env, &p, &name, &b);
            let (m, code) = check(
                env,
                &p,
                &name,
                &["--runtime", "native", "--docker-host", &d.host()],
            );
            assert_eq!(
                state(&m, "dockerd").0,
                "ran",
                "{}: {}",
                name,
                state(&m, "dockerd").1
            );
            assert_clean(&m, code);
            same_as_native(&m, &case);
        }
        // Nothing of the checks is left in dockerd: no plugin, no volume.
        for what in ["plugin", "volume"] {
            let left = env.docker(harness::Cli::Docker28, &d, [what, "ls", "-q"]);
            left.assert_ok();
            assert_eq!(left.trimmed(), "", "probe {what}s left in dockerd");
        }
    });
}

/// Every row's dockerd cell says what the native one does.
#[track_caller]
fn same_as_native(m: &Value, case: &Case) {
    for r in m["rows"].as_array().unwrap() {
        let (n, d) = (&r["cells"]["native"], &r["cells"]["dockerd"]);
        if r["privilege"] == "engine metrics socket" {
            continue; // docs/check.md: dockerd binds its own; plugd only with the flag.
        }
        assert_eq!(
            n["observed"].as_str().map(first_word),
            d["observed"].as_str().map(first_word),
            "{} {}: native and dockerd differ",
            case.name,
            r["privilege"]
        );
    }
}

/// The verdict part of an observation (`denied (EPERM)` → `denied`).
fn first_word(s: &str) -> &str {
    s.split([' ', ';']).next().unwrap_or(s)
}

/// The example plugin of every type (as `.ci/demo` serves them): both plugd runtimes and dockerd.
#[test]
fn the_dockerd_column_agrees_for_every_example_type() {
    harness::isolated_in_netns(|env| {
        let d = env.dockerd();
        let p = env.plugd(&[]);
        for t in ["volume", "authz", "ipam", "network", "log", "metrics"] {
            let name = format!("example-{t}");
            let root = env!("CARGO_MANIFEST_DIR");
            let config: Value = serde_json::from_str(
                &std::fs::read_to_string(format!("{root}/../guest-examples/{t}/config.json"))
                    .unwrap(),
            )
            .unwrap();
            let b = env.bundle(&name).config(&config).copy(
                "plugin.wasm",
                &wasm_guest(&format!("plugd_example_{t}")),
                0o644,
            );
            create(env, &p, &name, &b);
            let (m, code) = check(
                env,
                &p,
                &name,
                &["--runtime", "both", "--docker-host", &d.host()],
            );
            for column in ["native", "wasm", "dockerd"] {
                assert_eq!(
                    state(&m, column).0,
                    "ran",
                    "{name} {column}: {}",
                    state(&m, column).1
                );
            }
            assert_clean(&m, code);
            env.plugd_cli(&p, ["enable", "--check", &name]).assert_ok();
        }
    });
}

/// A check interrupted by plugd's death leaves a scratch dir (with its propagated mount) and a
/// probe; the next plugd removes both before it serves.
#[test]
fn a_restarted_plugd_removes_what_an_interrupted_check_left() {
    harness::isolated(|env| {
        let mut p = env.plugd(&[]);
        p.stop();
        let scratch = p.exec_root().join("check/0123456789abcdef");
        let pm = scratch.join("propagated-mount");
        harness::mount_tmpfs(&pm, "size=1m").unwrap();
        std::fs::write(pm.join("left"), "x").unwrap();
        p.start();
        assert!(!scratch.exists(), "{} is still there", scratch.display());
        assert!(
            harness::mounts_under(&[p.exec_root()]).is_empty(),
            "a mount under the exec root survived the sweep"
        );
        assert!(p.log().contains("removed a check left by an earlier plugd"));
    });
}
