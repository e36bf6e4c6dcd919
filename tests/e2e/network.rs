//! The example network driver (guest-examples/network) used by a real dockerd, in both packagings:
//! a network with dockerd's default IPAM, a container whose eth0 is the veth the driver made
//! (moved in by dockerd), the veth gone once the container is; a wasm driver without the
//! declaration cannot make links; a trap fails one call only; a Join naming an interface plugd
//! did not make for the plugin never reaches dockerd. Every test runs in a network namespace of
//! its own (`isolated_in_netns`), shared by plugd and dockerd.

use std::path::PathBuf;

use crate::harness::{self, BUSYBOX_IMAGE, Cli, Dockerd, Env, Plugd, target_dir, wasm_guest};

pub(crate) fn example_config(native: bool) -> serde_json::Value {
    let text = if native {
        include_str!("../../guest-examples/network/config-native.json")
    } else {
        include_str!("../../guest-examples/network/config.json")
    };
    serde_json::from_str(text).expect("the example's config is JSON")
}

fn native_binary() -> PathBuf {
    let p =
        target_dir().join("wasm-guests/x86_64-unknown-linux-musl/release/plugd-example-network");
    assert!(
        p.is_file(),
        "{} is missing: build it with .ci/test",
        p.display()
    );
    p
}

/// Creates and enables the example as `name` with `config`, wasm or native.
pub(crate) fn create_enable(
    env: &Env,
    p: &Plugd,
    name: &str,
    config: &serde_json::Value,
    native: bool,
) {
    let b = env.bundle(name).config(config);
    let b = if native {
        b.copy("plugd-example-network", &native_binary(), 0o755)
            .dir("run/docker/plugins")
    } else {
        b.copy("plugin.wasm", &wasm_guest("plugd_example_network"), 0o644)
    };
    env.plugd_cli_cmd(p, ["create", name])
        .arg(b.path())
        .run()
        .assert_ok();
    env.plugd_cli(p, ["enable", name]).assert_ok();
}

/// The links of the test's network namespace, by name.
fn links(env: &Env) -> Vec<String> {
    let out = env.cmd("ip").args(["-o", "link", "show"]).run();
    out.assert_ok();
    out.stdout
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

pub(crate) fn plugd_links(env: &Env) -> Vec<String> {
    links(env)
        .into_iter()
        .filter(|l| l.starts_with("pd"))
        .collect()
}

/// create / run / rm with dockerd's default IPAM, as the issue states it.
fn veth_roundtrip(env: &Env, d: &Dockerd, plugin: &str) {
    let docker = |args: &[&str]| env.docker(Cli::Docker28, d, args);
    docker(&[
        "network",
        "create",
        "-d",
        plugin,
        "--subnet",
        "10.55.0.0/24",
        "n1",
    ])
    .assert_ok();
    let addr = docker(&[
        "run",
        "--rm",
        "--network",
        "n1",
        BUSYBOX_IMAGE,
        "ip",
        "addr",
    ]);
    let text = addr.assert_ok().stdout.clone();
    assert!(
        text.contains("eth0") && text.contains("inet 10.55.0.2/24"),
        "the container's eth0 is the driver's veth with IPAM's address:\n{text}"
    );
    let route = docker(&[
        "run",
        "--rm",
        "--network",
        "n1",
        BUSYBOX_IMAGE,
        "ip",
        "route",
    ]);
    assert!(
        route.assert_ok().stdout.contains("default via 10.55.0.1"),
        "Join's gateway became the default route: {route}"
    );
    // While a container runs, its host-side peer is in dockerd's namespace; once it is gone,
    // DeleteEndpoint deleted the pair.
    docker(&[
        "run",
        "-d",
        "--name",
        "holder",
        "--network",
        "n1",
        BUSYBOX_IMAGE,
        "sleep",
        "300",
    ])
    .assert_ok();
    let live = plugd_links(env);
    assert_eq!(
        live.len(),
        1,
        "one host-side peer while one container runs: {live:?}"
    );
    docker(&["rm", "-f", "holder"]).assert_ok();
    assert_eq!(plugd_links(env), Vec::<String>::new(), "veths left behind");
    docker(&["network", "rm", "n1"]).assert_ok();
}

#[test]
fn wasm_network_plugin_gives_containers_a_veth() {
    harness::isolated_in_netns(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&[]);
        create_enable(env, &p, "example-network", &example_config(false), false);
        let id = env
            .plugd_cli(&p, ["inspect", "--format", "{{.Id}}", "example-network"])
            .assert_ok()
            .trimmed()
            .to_owned();
        veth_roundtrip(env, &d, "example-network");
        // A pair still in use at disable is plugd's to delete: it tracks what it made.
        let docker = |args: &[&str]| env.docker(Cli::Docker28, &d, args);
        docker(&[
            "network",
            "create",
            "-d",
            "example-network",
            "--subnet",
            "10.59.0.0/24",
            "n2",
        ])
        .assert_ok();
        docker(&[
            "run",
            "-d",
            "--name",
            "left",
            "--network",
            "n2",
            BUSYBOX_IMAGE,
            "sleep",
            "300",
        ])
        .assert_ok();
        let prefix = format!("pd{}h", &id[..4]);
        let live = plugd_links(env);
        assert!(
            live.len() == 1 && live[0].starts_with(&prefix),
            "plugd named the host-side peer after the plugin ({prefix}): {live:?}"
        );
        // The host end takes nothing from the container over IPv6 (router advertisements would
        // otherwise add routes and addresses to the host).
        let v6 =
            std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", live[0]))
                .expect("the host end's IPv6 settings");
        assert_eq!(v6.trim(), "1", "IPv6 is off on the host end {}", live[0]);
        env.plugd_cli(&p, ["disable", "example-network"])
            .assert_ok();
        assert_eq!(plugd_links(env), Vec::<String>::new(), "disable deleted it");
        // Enabled again, a fresh instance that knows no endpoints lets dockerd clean up.
        env.plugd_cli(&p, ["enable", "example-network"]).assert_ok();
        docker(&["rm", "-f", "left"]).assert_ok();
        docker(&["network", "rm", "n2"]).assert_ok();
    });
}

#[test]
fn native_network_plugin_gives_containers_a_veth() {
    harness::isolated_in_netns(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&[]);
        create_enable(env, &p, "native-network", &example_config(true), true);
        veth_roundtrip(env, &d, "native-network");
    });
}

#[test]
fn wasm_network_plugin_without_the_declaration_cannot_make_links() {
    harness::isolated_in_netns(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&[]);
        let mut cfg = example_config(false);
        cfg["network"]["type"] = "none".into();
        cfg["linux"]["capabilities"] = serde_json::json!([]);
        create_enable(env, &p, "undeclared", &cfg, false);
        let docker = |args: &[&str]| env.docker(Cli::Docker28, &d, args);
        docker(&[
            "network",
            "create",
            "-d",
            "undeclared",
            "--subnet",
            "10.56.0.0/24",
            "n1",
        ])
        .assert_ok();
        docker(&["run", "--rm", "--network", "n1", BUSYBOX_IMAGE, "true"])
            .assert_failed()
            .assert_stderr_contains("CAP_NET_ADMIN");
        assert_eq!(plugd_links(env), Vec::<String>::new());
        docker(&["network", "rm", "n1"]).assert_ok();
    });
}

#[test]
fn a_trapping_network_plugin_fails_that_call_only() {
    harness::isolated_in_netns(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&[]);
        let cfg = example_config(false);
        create_enable(env, &p, "net-a", &cfg, false);
        create_enable(env, &p, "net-b", &cfg, false);
        let docker = |args: &[&str]| env.docker(Cli::Docker28, &d, args);
        let out = docker(&[
            "network",
            "create",
            "-d",
            "net-a",
            "-o",
            "plugd.example.trap=1",
            "nx",
        ]);
        out.assert_failed().assert_stderr_contains("net-a");
        // The other plugin and the trapped one (a fresh instance) both serve.
        veth_roundtrip(env, &d, "net-b");
        veth_roundtrip(env, &d, "net-a");
    });
}

#[test]
fn join_naming_an_interface_plugd_did_not_make_is_refused() {
    harness::isolated_in_netns(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&[]);
        env.cmd("ip")
            .args(["link", "add", "victim", "type", "veth"])
            .args(["peer", "name", "victim-peer"])
            .run()
            .assert_ok();
        // The wasm driver has the declaration, but not this link; the native one lacks it.
        let mut native_cfg = example_config(true);
        native_cfg["network"]["type"] = "none".into();
        native_cfg["linux"]["capabilities"] = serde_json::json!([]);
        create_enable(env, &p, "hostile-wasm", &example_config(false), false);
        create_enable(env, &p, "hostile-native", &native_cfg, true);
        let docker = |args: &[&str]| env.docker(Cli::Docker28, &d, args);
        for (plugin, net, subnet, why) in [
            (
                "hostile-wasm",
                "n1",
                "10.57.0.0/24",
                "did not create for this plugin",
            ),
            ("hostile-native", "n2", "10.58.0.0/24", "CAP_NET_ADMIN"),
        ] {
            docker(&[
                "network",
                "create",
                "-d",
                plugin,
                "--subnet",
                subnet,
                "-o",
                "plugd.example.src_name=victim",
                net,
            ])
            .assert_ok();
            docker(&["run", "--rm", "--network", net, BUSYBOX_IMAGE, "true"])
                .assert_failed()
                .assert_stderr_contains(why);
            assert!(
                links(env).contains(&"victim".to_string()),
                "the host interface stayed where it was"
            );
            docker(&["network", "rm", net]).assert_ok();
        }
    });
}
