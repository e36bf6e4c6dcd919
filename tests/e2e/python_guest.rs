//! A guest in another language: the Python volume driver (`guest-examples/python-volume`, built
//! by componentize-py from the same `wit/` as the Rust guests) under plugd's wasm runtime, used by
//! a real dockerd, and answering the protocol exactly like the Rust example for the same calls.
//!
//! Both tests print their timings (create, enable, call latency); docs/benchmarks.md has the
//! measured figures and docs/guests.md how the guest is built.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

use crate::harness::{
    self, BUSYBOX_IMAGE, Cli, Env, PLUGIN_SOCKET_DIR, Plugd, WASM_CACHE_DIR, python_volume_wasm,
};
use crate::volume;

/// The Python example's own config.json, as shipped in guest-examples/python-volume.
fn python_config() -> Value {
    let text = include_str!("../../guest-examples/python-volume/config.json");
    serde_json::from_str(text).expect("guest-examples/python-volume/config.json is JSON")
}

/// Creates (the compile, unless the shared cache has it) and enables the Python plugin as
/// `name`; returns its id and the create and enable durations.
fn create_and_enable_python(env: &Env, p: &Plugd, name: &str) -> (String, Duration, Duration) {
    let bundle =
        env.bundle(name)
            .config(&python_config())
            .copy("plugin.wasm", &python_volume_wasm(), 0o644);
    // The first create on a machine compiles the ~18 MB component (tens of seconds in a debug
    // plugd); the two tests here would otherwise compile it twice at once on CI's two cores.
    // Serialised, the second one finds it in the shared compile cache.
    std::fs::create_dir_all(WASM_CACHE_DIR).unwrap();
    let lock = std::fs::File::create(Path::new(WASM_CACHE_DIR).join(".python-guest.lock")).unwrap();
    let lock = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let t = Instant::now();
    env.plugd_cli_cmd(p, ["create", name])
        .arg(bundle.path())
        .run()
        .assert_ok();
    let created = t.elapsed();
    drop(lock);
    let t = Instant::now();
    env.plugd_cli(p, ["enable", name]).assert_ok();
    let enabled = t.elapsed();
    let id = env
        .plugd_cli(p, ["inspect", "--format", "{{.Id}}", name])
        .assert_ok()
        .trimmed()
        .to_owned();
    (id, created, enabled)
}

fn socket(name: &str) -> std::path::PathBuf {
    Path::new(PLUGIN_SOCKET_DIR).join(format!("{name}.sock"))
}

#[test]
fn python_volume_plugin_serves_a_real_dockerd() {
    harness::isolated(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&[]);
        let (id, created, enabled) = create_and_enable_python(env, &p, "py-volume");
        eprintln!(
            "python guest: create {:.0} ms (compile unless cached), enable {:.0} ms",
            created.as_secs_f64() * 1e3,
            enabled.as_secs_f64() * 1e3
        );

        let docker = |args: &[&str]| env.docker(Cli::Docker28, &d, args);
        assert_eq!(
            docker(&["volume", "create", "-d", "py-volume", "v1"])
                .assert_ok()
                .trimmed(),
            "v1"
        );
        let ls = docker(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]);
        assert!(ls.assert_ok().lines().contains(&"py-volume v1"), "{ls}");
        let propagated = p
            .data_root()
            .join("plugins")
            .join(&id)
            .join("propagated-mount");
        assert!(
            propagated.join("v1").is_dir(),
            "the Python driver made the volume a directory under its propagated mount"
        );
        let inspect = docker(&["volume", "inspect", "v1"]).assert_ok().json();
        assert_eq!(inspect[0]["Driver"], "py-volume");
        volume::assert_reported_through_a_view(
            &p,
            &id,
            &inspect[0]["Mountpoint"],
            &propagated.join("v1"),
        );

        docker(&[
            "run",
            "--rm",
            "-v",
            "v1:/data",
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            "echo hi > /data/f",
        ])
        .assert_ok();
        assert_eq!(
            std::fs::read_to_string(propagated.join("v1/f")).unwrap(),
            "hi\n"
        );
        let cat = docker(&[
            "run",
            "--rm",
            "-v",
            "v1:/data",
            BUSYBOX_IMAGE,
            "cat",
            "/data/f",
        ]);
        assert_eq!(cat.assert_ok().trimmed(), "hi");

        docker(&["volume", "rm", "v1"]).assert_ok();
        assert!(
            !propagated.join("v1").exists(),
            "Remove deleted the volume's directory (with its file)"
        );
        let ls = docker(&["volume", "ls", "--format", "{{.Name}}"]);
        assert!(!ls.assert_ok().lines().contains(&"v1"), "{ls}");
        // dockerd relays the driver's error for a volume the driver does not have.
        docker(&["volume", "create", "-d", "py-volume", ".."])
            .assert_failed()
            .assert_stderr_contains("invalid volume name \"..\"");
        env.plugd_cli(&p, ["disable", "py-volume"]).assert_ok();
    })
}

/// Replaces the host paths plugd put in `Mountpoint` (each plugin's own view/pin paths, which
/// embed its id) with a placeholder, after checking they are under that plugin's state dir.
fn without_mountpoints(mut v: Value, state: &Path) -> Value {
    fn walk(v: &mut Value, state: &Path) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "Mountpoint"
                        && let Value::String(s) = x
                        && !s.is_empty()
                    {
                        assert!(
                            Path::new(s.as_str()).starts_with(state),
                            "{s} is not under {}",
                            state.display()
                        );
                        *x = Value::String("<mountpoint>".into());
                    } else {
                        walk(x, state);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, state)),
            _ => {}
        }
    }
    walk(&mut v, state);
    v
}

fn median_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

/// The same calls to the Python and the Rust example answer the same status, content type and
/// body: errors byte for byte (the encoding is plugd's, the messages are the drivers' and were
/// written alike), successes after replacing each plugin's own host paths.
#[test]
fn python_and_rust_guests_answer_alike() {
    harness::isolated(|env| {
        let p = env.plugd(&[]);
        let (py_id, _, _) = create_and_enable_python(env, &p, "py");
        let rs_id = volume::create_example(env, &p, "rs");
        env.plugd_cli(&p, ["enable", "rs"]).assert_ok();
        let state = |id: &str| p.exec_root().join("state").join(id);

        let cases: &[(&str, &str)] = &[
            ("/Plugin.Activate", ""),
            ("/VolumeDriver.Capabilities", "{}"),
            ("/VolumeDriver.List", "{}"),
            ("/VolumeDriver.Get", r#"{"Name":"missing"}"#),
            ("/VolumeDriver.Remove", r#"{"Name":"missing"}"#),
            ("/VolumeDriver.Path", r#"{"Name":"missing"}"#),
            ("/VolumeDriver.Mount", r#"{"Name":"missing","ID":"m1"}"#),
            ("/VolumeDriver.Unmount", r#"{"Name":"missing","ID":"m1"}"#),
            ("/VolumeDriver.Create", r#"{"Name":"..","Opts":null}"#),
            ("/VolumeDriver.Create", r#"{"Name":"a/b","Opts":{}}"#),
            ("/VolumeDriver.Get", r#"{"Name":"no\"pe\\x\t"}"#),
            ("/VolumeDriver.Create", r#"{"Name":"v1","Opts":{"k":"v"}}"#),
            ("/VolumeDriver.Create", r#"{"Name":"v1","Opts":null}"#),
            ("/VolumeDriver.Get", r#"{"Name":"v1"}"#),
            ("/VolumeDriver.List", "{}"),
            ("/VolumeDriver.Path", r#"{"Name":"v1"}"#),
            ("/VolumeDriver.Mount", r#"{"Name":"v1","ID":"m1"}"#),
            ("/VolumeDriver.Unmount", r#"{"Name":"v1","ID":"m1"}"#),
            ("/VolumeDriver.Remove", r#"{"Name":"v1"}"#),
            ("/VolumeDriver.Get", r#"{"Name":"v1"}"#),
            ("/VolumeDriver.Get", r#"{"Name":1}"#),
        ];
        let compare = |path: &str, body: &str| {
            let call = |name: &str, id: &str| {
                let body = (!body.is_empty()).then_some(body.as_bytes());
                let r = harness::http(&socket(name), "POST", path, body).unwrap();
                let json = without_mountpoints(r.json(), &state(id));
                (
                    r.status,
                    r.header("content-type").map(str::to_owned),
                    json,
                    r.body,
                )
            };
            let (py, rs) = (call("py", &py_id), call("rs", &rs_id));
            assert_eq!(
                (py.0, &py.1, &py.2),
                (rs.0, &rs.1, &rs.2),
                "{path} {body}: Python and Rust differ"
            );
            if py.0 != 200 {
                assert_eq!(py.3, rs.3, "{path} {body}: error bodies differ in bytes");
            }
            eprintln!(
                "{path} {body} -> {} {}",
                py.0,
                String::from_utf8_lossy(&py.3)
            );
        };
        for (path, body) in cases {
            compare(path, body);
        }

        // The plugin's Env reaches the Python guest at run time (not the build's environment, which
        // componentize-py snapshots), and an I/O error reads the same from both.
        for name in ["py", "rs"] {
            env.plugd_cli(&p, ["disable", name]).assert_ok();
            env.plugd_cli(&p, ["set", name, "VOLUME_ROOT=/data/none"])
                .assert_ok();
            env.plugd_cli(&p, ["enable", name]).assert_ok();
        }
        compare("/VolumeDriver.List", "{}");
        let list = harness::http(&socket("py"), "POST", "/VolumeDriver.List", Some(b"{}")).unwrap();
        assert!(
            list.text().contains("cannot read volume root /data/none"),
            "{}",
            list.text()
        );
        for name in ["py", "rs"] {
            env.plugd_cli(&p, ["disable", name]).assert_ok();
            env.plugd_cli(&p, ["set", name, "VOLUME_ROOT=/data"])
                .assert_ok();
            env.plugd_cli(&p, ["enable", name]).assert_ok();
        }

        // Call latency: a Get of an existing volume, one connection per call (as dockerd does).
        const N: usize = 200;
        for name in ["py", "rs"] {
            let sock = socket(name);
            let create = harness::http(
                &sock,
                "POST",
                "/VolumeDriver.Create",
                Some(br#"{"Name":"bench","Opts":null}"#),
            )
            .unwrap();
            assert_eq!(create.status, 200, "{}", create.text());
            let samples = (0..N)
                .map(|_| {
                    let t = Instant::now();
                    let r = harness::http(
                        &sock,
                        "POST",
                        "/VolumeDriver.Get",
                        Some(br#"{"Name":"bench"}"#),
                    )
                    .unwrap();
                    assert_eq!(r.status, 200);
                    t.elapsed()
                })
                .collect();
            eprintln!(
                "latency {name}: VolumeDriver.Get median of {N}: {:.0} us",
                median_us(samples)
            );
        }
    })
}
