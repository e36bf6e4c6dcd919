//! IPAM plugins (`docker.ipamdriver/1.0`) used by a real dockerd through plugd, each test in a
//! network namespace of its own: the example driver (`guest-examples/ipam`) as a wasm component
//! and as a native binary hands out the subnet, gateway and container addresses dockerd uses,
//! keeps them on disk across a disable/enable, and frees them again; a trapping wasm IPAM guest
//! fails only the call that trapped; hostile native replies never reach dockerd.
//!
//! The network driver is dockerd's built-in `bridge` (it makes a Linux bridge, inside the test's
//! namespace); it works under the suite's `--bridge=none --iptables=false`.

use std::path::PathBuf;
use std::time::Instant;

use crate::harness::{self, BUSYBOX_IMAGE, Cli, Env, Plugd, target_dir, wasm_guest};

const STATE_FILE: &str = "ipam-state.json";

fn config(file: &str) -> serde_json::Value {
    let text = match file {
        "config.json" => include_str!("../../guest-examples/ipam/config.json"),
        _ => include_str!("../../guest-examples/ipam/config-native.json"),
    };
    serde_json::from_str(text).expect("guest-examples/ipam config is JSON")
}

fn native_example() -> PathBuf {
    let p = target_dir().join("wasm-guests/x86_64-unknown-linux-musl/release/plugd-example-ipam");
    assert!(
        p.is_file(),
        "{} is missing: build it with .ci/test",
        p.display()
    );
    p
}

/// Creates and enables the example IPAM plugin as `name`, wasm or native; returns its id.
pub(crate) fn create_example(env: &Env, p: &Plugd, name: &str, wasm: bool) -> String {
    let bundle = if wasm {
        env.bundle(name).config(&config("config.json")).copy(
            "plugin.wasm",
            &wasm_guest("plugd_example_ipam"),
            0o644,
        )
    } else {
        env.bundle(name)
            .config(&config("config-native.json"))
            .copy("plugd-example-ipam", &native_example(), 0o755)
            .dir("data")
            .dir("run/docker/plugins")
    };
    env.plugd_cli_cmd(p, ["create", name])
        .arg(bundle.path())
        .run()
        .assert_ok();
    env.plugd_cli(p, ["enable", name]).assert_ok();
    env.plugd_cli(p, ["inspect", "-f", "{{.Id}}", name])
        .assert_ok()
        .trimmed()
        .to_owned()
}

/// The example's state file, as the plugin left it on the host.
pub(crate) fn state(p: &Plugd, id: &str) -> serde_json::Value {
    let path = p
        .data_root()
        .join("plugins")
        .join(id)
        .join("propagated-mount")
        .join(STATE_FILE);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn roundtrip(wasm: bool) {
    harness::isolated_in_netns(|env| {
        let t0 = Instant::now();
        let d = env.dockerd();
        env.import_busybox(&d);
        let mut p = env.plugd(&[]);
        let id = create_example(env, &p, "ipam", wasm);
        let docker = |args: &[&str]| env.docker(Cli::Docker28, &d, args);

        let t = Instant::now();
        docker(&[
            "network",
            "create",
            "-d",
            "bridge",
            "--ipam-driver",
            "ipam",
            "--subnet",
            "10.66.0.0/24",
            "n1",
        ])
        .assert_ok();
        eprintln!("network create: {:?}", t.elapsed());
        let s = state(&p, &id);
        let pool = &s["pools"]["10.66.0.0/24"];
        assert_eq!(pool["pool"], "10.66.0.0/24", "{s}");
        let gateway = pool["gateway"].as_str().expect("a gateway").to_owned();
        assert_eq!(gateway, "10.66.0.1");
        assert_eq!(pool["addresses"], serde_json::json!(["10.66.0.1"]));

        let inspect = docker(&["network", "inspect", "n1"]).assert_ok().json();
        let ipam = &inspect[0]["IPAM"];
        assert_eq!(ipam["Driver"], "ipam", "{inspect}");
        assert_eq!(ipam["Config"][0]["Subnet"], pool["pool"], "{inspect}");
        // With --subnet, inspect shows the user's IPAM config, which has no gateway; the
        // gateway the plugin chose is on the bridge dockerd made for the network.
        assert_eq!(ipam["Config"][0]["Gateway"], serde_json::Value::Null);
        let bridge = format!("br-{}", &inspect[0]["Id"].as_str().unwrap()[..12]);
        let addr = env
            .cmd("ip")
            .args(["-o", "-4", "addr", "show", "dev", &bridge])
            .run();
        assert!(
            addr.assert_ok()
                .stdout
                .contains(&format!("inet {gateway}/24")),
            "{}",
            addr.stdout
        );

        // A driver error reaches the user as IPAM's own error reply (plugd-core's encoding,
        // the same in both packagings).
        let out = docker(&[
            "network",
            "create",
            "-d",
            "bridge",
            "--ipam-driver",
            "ipam",
            "--subnet",
            "10.66.0.0/16",
            "n3",
        ]);
        out.assert_failed();
        assert!(
            out.stderr
                .contains("IpamDriver.RequestPool: 10.66.0.0/16 overlaps pool 10.66.0.0/24"),
            "{}",
            out.stderr
        );

        // The allocations outlive the plugin's process or instance, and plugd itself.
        env.plugd_cli(&p, ["disable", "ipam"]).assert_ok();
        env.plugd_cli(&p, ["enable", "ipam"]).assert_ok();
        p.restart();
        harness::wait_for_socket(
            &std::path::Path::new(harness::PLUGIN_SOCKET_DIR).join("ipam.sock"),
            std::time::Duration::from_secs(30),
        );

        let t = Instant::now();
        let out = docker(&[
            "run",
            "--rm",
            "--network",
            "n1",
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            "ip addr; ip route",
        ]);
        out.assert_ok();
        assert!(
            out.stdout.contains(&format!("default via {gateway}")),
            "{}",
            out.stdout
        );
        eprintln!("run: {:?}", t.elapsed());
        assert!(
            out.stdout.contains("inet 10.66.0.2/24"),
            "the next address after the gateway:\n{}",
            out.stdout
        );
        // The container is gone: its address was released.
        let s = state(&p, &id);
        assert_eq!(
            s["pools"]["10.66.0.0/24"]["addresses"],
            serde_json::json!(["10.66.0.1"]),
            "{s}"
        );

        docker(&["network", "rm", "n1"]).assert_ok();
        let s = state(&p, &id);
        assert_eq!(s["pools"], serde_json::json!({}), "{s}");

        // Without --subnet, a /24 carved from POOLS.
        docker(&[
            "network",
            "create",
            "-d",
            "bridge",
            "--ipam-driver",
            "ipam",
            "n2",
        ])
        .assert_ok();
        let inspect = docker(&["network", "inspect", "n2"]).assert_ok().json();
        assert_eq!(inspect[0]["IPAM"]["Config"][0]["Subnet"], "10.77.0.0/24");
        assert_eq!(inspect[0]["IPAM"]["Config"][0]["Gateway"], "10.77.0.1");
        docker(&["network", "rm", "n2"]).assert_ok();
        eprintln!("total: {:?}", t0.elapsed());
    })
}

#[test]
fn wasm_example_allocates_from_state_on_disk() {
    roundtrip(true);
}

#[test]
fn native_example_allocates_from_state_on_disk() {
    roundtrip(false);
}

#[test]
fn a_trapping_wasm_ipam_guest_fails_that_call_only() {
    harness::isolated_in_netns(|env| {
        let d = env.dockerd();
        let p = env.plugd(&[]);
        let good = create_example(env, &p, "good", true);
        let bundle = env.bundle("faulty").config(&config("config.json")).copy(
            "plugin.wasm",
            &wasm_guest("plugd_fault_ipam_guest"),
            0o644,
        );
        env.plugd_cli_cmd(&p, ["create", "faulty"])
            .arg(bundle.path())
            .run()
            .assert_ok();
        env.plugd_cli(&p, ["enable", "faulty"]).assert_ok();
        let docker = |args: &[&str]| env.docker(Cli::Docker28, &d, args);
        let create = |ipam: &str, subnet: &str, name: &str, extra: &[&str]| {
            let mut args = vec![
                "network",
                "create",
                "-d",
                "bridge",
                "--ipam-driver",
                ipam,
                "--subnet",
                subnet,
            ];
            args.extend_from_slice(extra);
            args.push(name);
            docker(&args)
        };

        let out = create(
            "faulty",
            "10.68.0.0/24",
            "bad",
            &["--ipam-opt", "fault=trap"],
        );
        out.assert_failed();
        eprintln!("trap: {}", out.stderr.trim());
        assert!(
            out.stderr.contains("faulty") && out.stderr.contains("IpamDriver.RequestPool"),
            "{}",
            out.stderr
        );
        // The same plugin serves the next call (a fresh instance), the other one never noticed.
        create("faulty", "10.68.0.0/24", "f1", &[]).assert_ok();
        create("good", "10.69.0.0/24", "g1", &[]).assert_ok();
        let inspect = docker(&["network", "inspect", "f1", "g1"])
            .assert_ok()
            .json();
        assert_eq!(inspect[0]["IPAM"]["Config"][0]["Subnet"], "10.68.0.0/24");
        assert_eq!(inspect[1]["IPAM"]["Config"][0]["Subnet"], "10.69.0.0/24");
        assert_eq!(
            state(&p, &good)["pools"]["10.69.0.0/24"]["gateway"],
            "10.69.0.1"
        );
        docker(&["network", "rm", "f1", "g1"]).assert_ok();
        env.plugd_cli(&p, ["ls"]).assert_ok();
    })
}

#[test]
fn hostile_native_ipam_replies_are_refused() {
    harness::isolated_in_netns(|env| {
        let d = env.dockerd();
        let p = env.plugd(&[]);
        let (_, hostile) = env.hostile_static_plugin(&p, "hostile", &["docker.ipamdriver/1.0"]);
        env.plugd_cli(&p, ["enable", "hostile"]).assert_ok();
        let plant = |method: &str, body: &str| {
            std::fs::write(hostile.join(format!("IpamDriver.{method}")), body).unwrap()
        };
        plant("GetCapabilities", "{}");
        plant(
            "GetDefaultAddressSpaces",
            r#"{"LocalDefaultAddressSpace":"l","GlobalDefaultAddressSpace":"g"}"#,
        );
        plant(
            "RequestPool",
            r#"{"PoolID":"p","Pool":"10.67.0.0/24","Data":{}}"#,
        );
        plant("ReleasePool", "{}");
        plant("ReleaseAddress", "{}");
        let docker = |args: &[&str]| env.docker(Cli::Docker28, &d, args);
        let create = || {
            docker(&[
                "network",
                "create",
                "-d",
                "bridge",
                "--ipam-driver",
                "hostile",
                "--subnet",
                "10.67.0.0/24",
                "h1",
            ])
        };
        for (body, expect) in [
            // A plain IP where dockerd wants a CIDR.
            (r#"{"Address":"10.67.0.1"}"#, "refuses"),
            // Trailing data Go would read past.
            (
                r#"{"Address":"10.67.0.1/24"}{"Address":"0.0.0.0/0"}"#,
                "refuses",
            ),
            // Not an address at all.
            (r#"{"Address":"eth0/../x"}"#, "refuses"),
            // IPAM's in-band error on a 200: an error to dockerd, relayed as one.
            (
                r#"{"Address":"10.67.0.1/24","Error":"pool says no"}"#,
                "pool says no",
            ),
        ] {
            plant("RequestAddress", body);
            let out = create();
            out.assert_failed();
            eprintln!("{body} -> {}", out.stderr.trim());
            assert!(out.stderr.contains(expect), "{body}: {}", out.stderr);
            if expect == "refuses" {
                assert!(
                    out.stderr.contains("plugin hostile"),
                    "{body}: {}",
                    out.stderr
                );
            }
            let ls = docker(&["network", "ls", "--format", "{{.Name}}"]);
            assert!(!ls.assert_ok().stdout.contains("h1"), "{}", ls.stdout);
        }
        // Pools dockerd would put on a host bridge as given: a gateway outside the pool (or with
        // another prefix length: `/1` would route half the address space to the bridge), a pool
        // other than the --subnet asked for. Each is refused before dockerd sees it.
        plant("RequestAddress", r#"{"Address":"10.67.0.1/24"}"#);
        for body in [
            r#"{"PoolID":"p","Pool":"10.67.0.0/24","Data":{"com.docker.network.gateway":"10.67.0.1/1"}}"#,
            r#"{"PoolID":"p","Pool":"10.67.0.0/24","Data":{"com.docker.network.gateway":"192.168.7.1/24"}}"#,
            r#"{"PoolID":"p","Pool":"192.168.7.0/24","Data":{}}"#,
        ] {
            plant("RequestPool", body);
            let out = create();
            out.assert_failed();
            assert!(
                out.stderr.contains("plugin hostile") && out.stderr.contains("RequestPool"),
                "{body}: {}",
                out.stderr
            );
            let ls = docker(&["network", "ls", "--format", "{{.Name}}"]);
            assert!(!ls.assert_ok().stdout.contains("h1"), "{}", ls.stdout);
        }
        plant(
            "RequestPool",
            r#"{"PoolID":"p","Pool":"10.67.0.0/24","Data":{}}"#,
        );
        // A well-formed reply works, so the refusals were about the bodies.
        create().assert_ok();
        docker(&["network", "rm", "h1"]).assert_ok();
    })
}
