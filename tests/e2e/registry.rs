//! Registry distribution against a real registry (Debian's docker-registry, started per test)
//! and a real dockerd: what dockerd pushes, plugd installs; what plugd pushes, dockerd installs.

use crate::harness::{self, Cli, Env, Plugd, Registry};

/// dockerd's push format (reference §3.5, observed in dockerd-observed/06-manifest.json): a
/// docker v2 manifest, config `application/vnd.docker.plugin.v1+json`, one gzip layer, and the
/// config's diff id the digest of the *compressed* layer.
fn assert_dockerd_shape(reg: &Registry, repo: &str, tag: &str) -> serde_json::Value {
    let (ct, body) = reg.get_manifest(repo, tag);
    assert_eq!(ct, "application/vnd.docker.distribution.manifest.v2+json");
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.plugin.v1+json"
    );
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{m}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&reg.get_blob(repo, m["config"]["digest"].as_str().unwrap()))
            .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0], layers[0]["digest"],
        "{config}"
    );
    m
}

/// A plugin created on a dockerd and pushed to `reg` as `repo:tag`.
pub fn dockerd_push(env: &Env, reg: &Registry, repo: &str, tag: &str) {
    let d = env.dockerd();
    let bundle = env.static_plugin_bundle("refvol");
    let reference = reg.reference(repo, tag);
    env.docker_cmd(Cli::Docker28, &d, ["plugin", "create", &reference])
        .arg(bundle.path())
        .run()
        .assert_ok();
    env.docker(Cli::Docker28, &d, ["plugin", "push", &reference])
        .assert_ok();
}

#[test]
fn dockerd_pushes_the_documented_format() {
    harness::isolated(|env| {
        let reg = env.registry();
        dockerd_push(env, &reg, "plugins/refvol", "v1");
        assert_dockerd_shape(&reg, "plugins/refvol", "v1");
    })
}

/// One Engine API request to a daemon socket with extra headers (`X-Registry-Auth`).
fn api(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    let body = body.unwrap_or(b"");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

/// `X-Registry-Auth` for basic credentials, as the docker CLI encodes it (base64url of JSON).
fn auth_header(user: &str, password: &str) -> (&'static str, String) {
    let json = serde_json::json!({"username": user, "password": password}).to_string();
    let b64 = harness::base64(json.as_bytes())
        .replace('+', "-")
        .replace('/', "_");
    ("X-Registry-Auth", b64)
}

/// The privileges plugd computes for `remote` (GET /plugins/privileges).
fn privileges(p: &Plugd, remote: &str, headers: &[(&str, String)]) -> serde_json::Value {
    let (status, body) = api(
        p.socket(),
        "GET",
        &format!("/v1.41/plugins/privileges?remote={remote}"),
        headers,
        None,
    );
    assert_eq!(status, 200, "privileges of {remote}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// POST /plugins/pull with the privileges plugd itself lists; returns status and body.
fn pull(p: &Plugd, remote: &str, name: &str, headers: &[(&str, String)]) -> (u16, String) {
    let granted = privileges(p, remote, headers).to_string();
    api(
        p.socket(),
        "POST",
        &format!("/v1.41/plugins/pull?remote={remote}&name={name}"),
        headers,
        Some(granted.as_bytes()),
    )
}

/// Nothing of a failed pull is left in plugd's data root: no staging, no plugin, no new blob.
#[track_caller]
fn assert_nothing_left(p: &Plugd, blobs_before: usize) {
    let data = p.data_root();
    let tmp: Vec<_> = std::fs::read_dir(data.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "staging left behind: {tmp:?}");
    let blobs = std::fs::read_dir(data.join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, blobs_before, "blobs added by a failed pull");
}

#[test]
fn dockerd_pushed_plugin_installs_in_plugd_and_serves_dockerd() {
    harness::isolated(|env| {
        let reg = env.registry();
        dockerd_push(env, &reg, "refvol", "v1");
        let remote = reg.reference("refvol", "v1");
        let p = env.plugd(&[]);
        // The real docker CLI against plugd: privileges, pull, enable.
        env.docker(
            Cli::Docker28,
            &p,
            ["plugin", "install", "--grant-all-permissions", &remote],
        )
        .assert_ok()
        .assert_stdout_contains(&format!("Installed plugin {remote}"));
        let inspect = env.plugd_cli(&p, ["inspect", &remote]).assert_ok().json();
        assert_eq!(inspect[0]["Enabled"], true);
        assert_eq!(inspect[0]["PluginReference"], remote);
        // A dockerd uses it as a volume driver, through a container.
        let d = env.dockerd();
        env.import_busybox(&d);
        env.docker(
            Cli::Docker28,
            &d,
            ["volume", "create", "-d", "refvol", "vol1"],
        )
        .assert_ok();
        env.docker(
            Cli::Docker28,
            &d,
            [
                "run",
                "--rm",
                "-v",
                "vol1:/v",
                harness::BUSYBOX_IMAGE,
                "sh",
                "-c",
                "echo pulled > /v/f && cat /v/f",
            ],
        )
        .assert_ok()
        .assert_stdout_contains("pulled");
        // Pushed again from plugd: the very manifest dockerd pushed (same digest).
        let (_, before) = reg.get_manifest("refvol", "v1");
        env.docker(Cli::Docker28, &p, ["plugin", "push", &remote])
            .assert_ok();
        let (_, after) = reg.get_manifest("refvol", "v1");
        assert_eq!(harness::sha256(&before), harness::sha256(&after));
    })
}

#[test]
fn plugd_pushed_plugin_installs_in_dockerd() {
    harness::isolated(|env| {
        let reg = env.registry();
        let remote = reg.reference("made", "v2");
        let p = env.plugd(&[]);
        let bundle = env.static_plugin_bundle("made");
        env.plugd_cli_cmd(&p, ["create", &remote])
            .arg(bundle.path())
            .run()
            .assert_ok();
        let out = env.docker(Cli::Docker28, &p, ["plugin", "push", &remote]);
        out.assert_ok()
            .assert_stdout_contains("v2: digest: sha256:");
        assert_dockerd_shape(&reg, "made", "v2");
        let d = env.dockerd();
        env.docker(
            Cli::Docker28,
            &d,
            ["plugin", "install", "--grant-all-permissions", &remote],
        )
        .assert_ok();
        let inspect = env
            .docker(Cli::Docker28, &d, ["plugin", "inspect", &remote])
            .assert_ok()
            .json();
        assert_eq!(inspect[0]["Enabled"], true, "{inspect}");
        env.docker(Cli::Docker28, &d, ["volume", "create", "-d", &remote, "v"])
            .assert_ok();
        env.docker(Cli::Docker28, &d, ["volume", "inspect", "v"])
            .assert_ok()
            .assert_stdout_contains(&remote);
    })
}

#[test]
fn privileges_must_match_and_auth_is_required_where_the_registry_wants_it() {
    harness::isolated(|env| {
        let reg = env.registry_with_auth("alice", "s3cret");
        let remote = reg.reference("authed", "v1");
        let p = env.plugd(&[]);
        let bundle = env.static_plugin_bundle("authed");
        env.plugd_cli_cmd(&p, ["create", &remote])
            .arg(bundle.path())
            .run()
            .assert_ok();
        let creds = [auth_header("alice", "s3cret")];
        // Without credentials: a clear error, before any progress is streamed.
        let (status, body) = api(
            p.socket(),
            "POST",
            &format!("/v1.41/plugins/{remote}/push"),
            &[],
            None,
        );
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("unauthorized"), "{body}");
        let bad = [auth_header("alice", "wrong")];
        let (status, body) = api(
            p.socket(),
            "POST",
            &format!("/v1.41/plugins/{remote}/push"),
            &bad,
            None,
        );
        assert!(
            status == 500 && body.contains("unauthorized"),
            "{status} {body}"
        );
        let (status, body) = api(
            p.socket(),
            "POST",
            &format!("/v1.41/plugins/{remote}/push"),
            &creds,
            None,
        );
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"aux\""), "{body}");
        assert!(!body.contains("errorDetail"), "{body}");
        let (status, body) = api(
            p.socket(),
            "GET",
            &format!("/v1.41/plugins/privileges?remote={remote}"),
            &[],
            None,
        );
        assert!(
            status == 500 && body.contains("unauthorized"),
            "{status} {body}"
        );
        // With credentials, but privileges that differ from the config's: docker's error.
        let wrong = r#"[{"Name":"network","Description":"","Value":["host"]}]"#;
        let (status, body) = api(
            p.socket(),
            "POST",
            &format!("/v1.41/plugins/pull?remote={remote}&name=copy"),
            &creds,
            Some(wrong.as_bytes()),
        );
        assert!(body.contains("incorrect privileges"), "{status} {body}");
        assert!(
            env.plugd_cli(&p, ["inspect", "copy"]).code != Some(0),
            "a refused pull left a plugin"
        );
        // The right ones: installed.
        let (status, body) = pull(&p, &remote, "copy", &creds);
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains("errorDetail"), "{body}");
        env.plugd_cli(&p, ["inspect", "copy"]).assert_ok();
    })
}

/// A plugin image whose only layer is `layer`, with the static fixture's config.
fn push_image(reg: &Registry, repo: &str, layer: &[u8]) -> String {
    let mut config = harness::static_plugin_config();
    let (ldigest, lsize) = reg.put_blob(repo, layer);
    config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": [ldigest]});
    let config = serde_json::to_vec(&config).unwrap();
    let (cdigest, csize) = reg.put_blob(repo, &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.plugin.v1+json", "digest": cdigest, "size": csize},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ldigest, "size": lsize}],
    });
    reg.put_manifest(
        repo,
        "latest",
        "application/vnd.docker.distribution.manifest.v2+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    ldigest
}

#[path = "../fixtures/layers/corpus.rs"]
mod corpus;

#[test]
fn malicious_layers_and_corrupted_blobs_are_refused_leaving_nothing() {
    harness::isolated(|env| {
        let reg = env.registry();
        // A small cap so the size bomb stays small.
        let mut p = env.plugd(&["--max-bundle-size", "4MiB"]);
        let canary = env.path("canary");
        std::fs::create_dir_all(&canary).unwrap();
        let blobs_before = 0;
        let cases = corpus::corpus(4 << 20, 200_000);
        assert!(cases.len() > 20);
        for (i, (kind, layer)) in cases.iter().enumerate() {
            let repo = format!("evil{i}");
            push_image(&reg, &repo, layer);
            let remote = reg.reference(&repo, "latest");
            let (status, body) = pull(&p, &remote, "", &[]);
            assert!(
                status != 200 || body.contains("errorDetail"),
                "{kind}: a malicious layer was accepted: {status} {body}"
            );
            assert_nothing_left(&p, blobs_before);
            assert!(
                env.plugd_cli(&p, ["inspect", &remote]).code != Some(0),
                "{kind}"
            );
        }
        assert_eq!(std::fs::read_dir(&canary).unwrap().count(), 0);
        // A blob the registry serves with other bytes than its digest names.
        let layer = corpus::neutralised().remove(0).1;
        let digest = push_image(&reg, "corrupt", &layer);
        let hex = digest.trim_start_matches("sha256:");
        let data = reg
            .data
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        let mut bytes = std::fs::read(&data).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&data, bytes).unwrap();
        let remote = reg.reference("corrupt", "latest");
        let (_, body) = pull(&p, &remote, "", &[]);
        assert!(
            body.contains(&format!("Expected {digest}"))
                || body.contains(&format!("{digest} does not match its digest")),
            "{body}"
        );
        assert_nothing_left(&p, blobs_before);
        p.assert_running();
    })
}

/// Creates `bundle` in `p` as `remote`, pushes it, and removes it again (so the remote can be
/// installed under any name).
fn publish(env: &Env, p: &Plugd, remote: &str, bundle: &harness::Bundle) {
    env.plugd_cli_cmd(p, ["create", remote])
        .arg(bundle.path())
        .run()
        .assert_ok();
    env.docker(Cli::Docker28, p, ["plugin", "push", remote])
        .assert_ok();
    env.plugd_cli(p, ["rm", remote]).assert_ok();
}

/// Pushes `repo:to` as `repo:from` with its config changed by `edit`, straight to the registry
/// (plugd's and dockerd's `create` would refuse a config that cannot work).
fn republish_with(
    reg: &Registry,
    repo: &str,
    from: &str,
    to: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let (_, manifest) = reg.get_manifest(repo, from);
    let mut manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&reg.get_blob(repo, manifest["config"]["digest"].as_str().unwrap()))
            .unwrap();
    edit(&mut config);
    let (digest, size) = reg.put_blob(repo, &serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = digest.into();
    manifest["config"]["size"] = size.into();
    reg.put_manifest(
        repo,
        to,
        "application/vnd.docker.distribution.manifest.v2+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
}

/// Calls `VolumeDriver.List` on the plugin socket `name` in a loop until `stop`; returns the
/// number of calls, the failures (with what they got) and the slowest call.
fn call_loop(
    name: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>, std::time::Duration)> {
    let socket = std::path::Path::new(harness::PLUGIN_SOCKET_DIR).join(format!("{name}.sock"));
    std::thread::spawn(move || {
        let (mut calls, mut failures, mut slowest) = (0, Vec::new(), std::time::Duration::ZERO);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let t = std::time::Instant::now();
            match harness::http(&socket, "POST", "/VolumeDriver.List", Some(b"{}")) {
                Ok(r) if r.status == 200 && r.text().contains("\"Volumes\"") => {}
                Ok(r) => failures.push(format!("{} {}", r.status, r.text())),
                Err(e) => failures.push(e.to_string()),
            }
            slowest = slowest.max(t.elapsed());
            calls += 1;
        }
        (calls, failures, slowest)
    })
}

/// `POST /plugins/{name}/upgrade?remote=` with the privileges plugd lists; the response text.
fn upgrade(p: &Plugd, name: &str, remote: &str) -> (u16, String) {
    let granted = privileges(p, remote, &[]).to_string();
    api(
        p.socket(),
        "POST",
        &format!("/v1.41/plugins/{name}/upgrade?remote={remote}"),
        &[],
        Some(granted.as_bytes()),
    )
}

/// With a client calling `name` in a loop: an upgrade to `name:v2` succeeds, one to `name:v3`
/// fails, and not one call fails; afterwards the plugin (same id, enabled) is v2, described as
/// `description`.
#[track_caller]
fn upgrade_twice_under_load(
    env: &Env,
    p: &Plugd,
    reg: &Registry,
    name: &str,
    id: &str,
    description: &str,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = call_loop(name, stop.clone());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_upgraded_ok(upgrade(p, name, &reg.reference(name, "v2")));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (status, body) = upgrade(p, name, &reg.reference(name, "v3"));
    assert!(
        status != 200 || body.contains("errorDetail"),
        "v3 was accepted: {body}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (n, failures, slowest) = calls.join().unwrap();
    eprintln!("{n} calls during the upgrades, slowest {slowest:?}");
    assert!(n > 20, "only {n} calls");
    assert!(
        failures.is_empty(),
        "{} of {n} calls failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    let inspect = env.plugd_cli(p, ["inspect", name]).assert_ok().json();
    assert_eq!(inspect[0]["Id"], id);
    assert_eq!(inspect[0]["Enabled"], true);
    assert_eq!(inspect[0]["Config"]["Description"], description);
    assert_eq!(inspect[0]["PluginReference"], reg.reference(name, "v2"));
}

#[track_caller]
fn assert_upgraded_ok((status, body): (u16, String)) {
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("errorDetail"), "upgrade failed: {body}");
}

#[test]
fn enabled_wasm_plugin_upgrades_without_losing_a_call_and_rolls_back() {
    harness::isolated(|env| {
        let reg = env.registry();
        let p = env.plugd(&[]);
        let mut config = crate::volume::example_config();
        let wasm = harness::example_volume_wasm();
        for (tag, description) in [("v1", "version one"), ("v2", "version two")] {
            config["description"] = description.into();
            let bundle = env
                .bundle(&format!("w{tag}"))
                .config(&config)
                .copy("plugin.wasm", &wasm, 0o644)
                .file("etc/version", tag.as_bytes(), 0o644);
            publish(env, &p, &reg.reference("wvol", tag), &bundle);
        }
        // v3's entrypoint is not a component: it cannot even be compiled.
        republish_with(&reg, "wvol", "v2", "v3", |c| {
            c["Entrypoint"] = serde_json::json!(["/etc/version"])
        });
        let (status, body) = pull(&p, &reg.reference("wvol", "v1"), "wvol", &[]);
        assert_eq!(status, 200, "{body}");
        env.plugd_cli(&p, ["enable", "wvol"]).assert_ok();
        let id = env
            .plugd_cli(&p, ["inspect", "-f", "{{.Id}}", "wvol"])
            .assert_ok()
            .trimmed()
            .to_owned();

        // A volume mounted through it keeps it: the upgrade is refused, saying why, until the
        // volume is unmounted.
        let sock = std::path::Path::new(harness::PLUGIN_SOCKET_DIR).join("wvol.sock");
        for (method, body) in [
            ("Create", r#"{"Name":"held"}"#),
            ("Mount", r#"{"Name":"held","ID":"c1"}"#),
        ] {
            let r = harness::http(
                &sock,
                "POST",
                &format!("/VolumeDriver.{method}"),
                Some(body.as_bytes()),
            )
            .unwrap();
            assert_eq!(r.status, 200, "{method}: {}", r.text());
        }
        let (status, body) = upgrade(&p, "wvol", &reg.reference("wvol", "v2"));
        assert_eq!(status, 409, "{body}");
        assert!(
            body.contains("cannot be upgraded while enabled: in use"),
            "{body}"
        );
        let r = harness::http(
            &sock,
            "POST",
            "/VolumeDriver.Unmount",
            Some(br#"{"Name":"held","ID":"c1"}"#),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());

        upgrade_twice_under_load(env, &p, &reg, "wvol", &id, "version two");
        let rootfs = p.data_root().join("plugins").join(&id).join("rootfs");
        assert_eq!(
            std::fs::read_to_string(rootfs.join("etc/version")).unwrap(),
            "v2"
        );
        assert!(!rootfs.with_file_name("rootfs-old").exists());
    })
}

#[test]
fn enabled_native_plugin_upgrade_holds_calls_and_a_failed_one_rolls_back() {
    harness::isolated(|env| {
        let reg = env.registry();
        // v3 never becomes ready: fail its start in 5 s, not the default 30.
        let p = env.plugd(&["--enable-timeout", "5s"]);
        let mut config = harness::static_plugin_config();
        for (tag, description) in [("v1", "native one"), ("v2", "native two")] {
            config["description"] = description.into();
            let bundle = env.static_plugin_bundle(&format!("n{tag}")).config(&config);
            publish(env, &p, &reg.reference("nvol", tag), &bundle);
        }
        // v3 starts, cannot bind its socket and exits: it never becomes ready.
        republish_with(&reg, "nvol", "v2", "v3", |c| {
            c["Description"] = "native three".into();
            c["Env"].as_array_mut().unwrap().push(serde_json::json!({
                "Name": "PLUGIN_SOCKET", "Description": "", "Settable": null, "Value": "/no-such-dir/x.sock"
            }));
        });

        let (status, body) = pull(&p, &reg.reference("nvol", "v1"), "nvol", &[]);
        assert_eq!(status, 200, "{body}");
        env.plugd_cli(&p, ["enable", "nvol"]).assert_ok();
        let id = env
            .plugd_cli(&p, ["inspect", "-f", "{{.Id}}", "nvol"])
            .assert_ok()
            .trimmed()
            .to_owned();

        upgrade_twice_under_load(env, &p, &reg, "nvol", &id, "native two");
    })
}

/// Benchmark (not run by CI; prints figures, asserts nothing about them): `docker plugin
/// install` of one dockerd-pushed plugin from the local registry, against dockerd and against
/// plugd, median of 7 each. `cargo test -p plugd --test e2e -- --ignored --nocapture
/// registry::bench_install_vs_dockerd`; recorded in docs/benchmarks.md.
#[test]
#[ignore = "benchmark: run by hand, see docs/benchmarks.md"]
fn bench_install_vs_dockerd() {
    harness::isolated(|env| {
        let reg = env.registry();
        dockerd_push(env, &reg, "refvol", "v1");
        let remote = reg.reference("refvol", "v1");
        let d = env.dockerd();
        let p = env.plugd(&[]);
        let times = |target: &dyn harness::Endpoint| {
            let mut ms = Vec::new();
            for _ in 0..7 {
                let out = env.docker(
                    Cli::Docker28,
                    target,
                    ["plugin", "install", "--grant-all-permissions", &remote],
                );
                out.assert_ok();
                ms.push(out.elapsed.as_secs_f64() * 1000.0);
                env.docker(Cli::Docker28, target, ["plugin", "rm", "-f", &remote])
                    .assert_ok();
            }
            ms.sort_by(f64::total_cmp);
            ms[ms.len() / 2]
        };
        let (dockerd, plugd) = (times(&d), times(&p));
        eprintln!(
            "install (privileges + pull + enable) of {remote}, median of 7: dockerd {dockerd:.0} ms, plugd {plugd:.0} ms, plugd/dockerd {:.2}",
            plugd / dockerd
        );
    })
}

#[test]
fn indexes_resolve_to_this_platform_or_name_the_ones_they_have() {
    harness::isolated(|env| {
        let reg = env.registry();
        dockerd_push(env, &reg, "multi", "docker");
        // The same plugin as an OCI manifest, listed in OCI indexes.
        let (_, manifest) = reg.get_manifest("multi", "docker");
        let mut oci: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        oci["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
        let oci = serde_json::to_vec(&oci).unwrap();
        let digest = reg.put_manifest(
            "multi",
            "oci",
            "application/vnd.oci.image.manifest.v1+json",
            &oci,
        );
        let entry = |arch: &str| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest, "size": oci.len(),
                "platform": {"architecture": arch, "os": "linux"},
            })
        };
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let index = |tag: &str, entries: Vec<serde_json::Value>| {
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": entries,
            });
            reg.put_manifest(
                "multi",
                tag,
                "application/vnd.oci.image.index.v1+json",
                &serde_json::to_vec(&index).unwrap(),
            );
        };
        index("both", vec![entry("s390x"), entry(arch)]);
        index("foreign", vec![entry("s390x"), entry("riscv64")]);
        let p = env.plugd(&[]);
        let (status, body) = pull(&p, &reg.reference("multi", "both"), "both", &[]);
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains("errorDetail"), "{body}");
        env.plugd_cli(&p, ["enable", "both"]).assert_ok();
        let (status, body) = api(
            p.socket(),
            "GET",
            &format!(
                "/v1.41/plugins/privileges?remote={}",
                reg.reference("multi", "foreign")
            ),
            &[],
            None,
        );
        assert_eq!(status, 500, "{body}");
        assert!(
            body.contains(&format!("no matching manifest for linux/{arch}"))
                && body.contains("linux/s390x, linux/riscv64"),
            "{body}"
        );
        // A plain image (not a plugin) is refused with dockerd's words.
        let image_config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let (cdigest, csize) = reg.put_blob("image", image_config);
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cdigest, "size": csize},
            "layers": [],
        });
        reg.put_manifest(
            "image",
            "latest",
            "application/vnd.docker.distribution.manifest.v2+json",
            &serde_json::to_vec(&m).unwrap(),
        );
        let (_, body) = api(
            p.socket(),
            "GET",
            &format!(
                "/v1.41/plugins/privileges?remote={}",
                reg.reference("image", "latest")
            ),
            &[],
            None,
        );
        assert!(
            body.contains("fetched plugin image but plugin config is missing"),
            "{body}"
        );
    })
}

#[test]
fn a_tls_registry_is_trusted_through_its_certs_dir_only() {
    harness::isolated(|env| {
        let reg = env.registry_tls();
        let remote = reg.reference("secure", "v1");
        // plugd trusts the test CA for this registry only, in dockerd's certs.d layout.
        let certs = env.path("certs.d");
        std::fs::create_dir_all(certs.join(&reg.addr)).unwrap();
        std::fs::copy(
            reg.ca.as_ref().unwrap(),
            certs.join(&reg.addr).join("ca.crt"),
        )
        .unwrap();
        let trusting = env.plugd(&["--registry-certs-dir", certs.to_str().unwrap()]);
        let bundle = env.static_plugin_bundle("secure");
        env.plugd_cli_cmd(&trusting, ["create", &remote])
            .arg(bundle.path())
            .run()
            .assert_ok();
        // The registry speaks only TLS: a push that works went over HTTPS, verified.
        env.docker(Cli::Docker28, &trusting, ["plugin", "push", &remote])
            .assert_ok();
        let (status, body) = pull(&trusting, &remote, "copy", &[]);
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains("errorDetail"), "{body}");
        // Without the CA the certificate is not trusted, and the plain-HTTP fallback (allowed
        // for loopback) reaches a TLS server: the pull fails, naming the registry.
        let other = env.plugd(&["--registry-certs-dir", env.path("empty").to_str().unwrap()]);
        let (status, body) = api(
            other.socket(),
            "GET",
            &format!("/v1.41/plugins/privileges?remote={remote}"),
            &[],
            None,
        );
        assert_ne!(status, 200, "{body}");
        assert!(
            body.contains(&format!("registry {}: HTTPS failed", reg.addr))
                && body.contains("UnknownIssuer"),
            "{body}"
        );
    })
}
