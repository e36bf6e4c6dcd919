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
#[allow(dead_code)]
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
