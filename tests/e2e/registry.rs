//! Registry distribution against a real registry (Debian's docker-registry, started per test)
//! and a real dockerd: what dockerd pushes, plugd installs; what plugd pushes, dockerd installs.

use crate::harness::{self, Cli, Env, Registry};

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
