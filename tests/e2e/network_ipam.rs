//! A network driver and an IPAM driver, both served by plugd, used together by a real dockerd —
//! the issue's own sentence: `docker network create -d <net> --ipam-driver <ipam> --subnet …`
//! succeeds, `network inspect` shows the pool the IPAM plugin chose, `docker run --network` gets
//! the network driver's veth with the IPAM plugin's address, and `network rm` releases the pool
//! (the IPAM plugin's state file shows it). Once with both examples as wasm components, once
//! with both as native binaries; each in a network namespace of the test's own.

use crate::harness::{self, BUSYBOX_IMAGE, Cli};
use crate::{ipam, network};

fn together(native: bool) {
    harness::isolated_in_netns(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&[]);
        network::create_enable(env, &p, "net", &network::example_config(native), native);
        let ipam_id = ipam::create_example(env, &p, "ipam", !native);
        let docker = |args: &[&str]| env.docker(Cli::Docker28, &d, args);

        docker(&[
            "network",
            "create",
            "-d",
            "net",
            "--ipam-driver",
            "ipam",
            "--subnet",
            "10.57.0.0/24",
            "n1",
        ])
        .assert_ok();
        let s = ipam::state(&p, &ipam_id);
        let pool = &s["pools"]["10.57.0.0/24"];
        assert_eq!(pool["gateway"], "10.57.0.1", "{s}");
        assert_eq!(pool["addresses"], serde_json::json!(["10.57.0.1"]), "{s}");
        let inspect = docker(&["network", "inspect", "n1"]).assert_ok().json();
        assert_eq!(inspect[0]["Driver"], "net", "{inspect}");
        assert_eq!(inspect[0]["IPAM"]["Driver"], "ipam", "{inspect}");
        assert_eq!(inspect[0]["IPAM"]["Config"][0]["Subnet"], "10.57.0.0/24");

        // The container's eth0: the network driver's veth, the IPAM driver's next address, the
        // gateway it chose as the default route.
        let out = docker(&[
            "run",
            "--rm",
            "--network",
            "n1",
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            "ip addr show eth0; ip route",
        ]);
        let text = out.assert_ok().stdout.clone();
        assert!(
            text.contains("inet 10.57.0.2/24") && text.contains("default via 10.57.0.1"),
            "eth0 with example-ipam's address and gateway:\n{text}"
        );
        let s = ipam::state(&p, &ipam_id);
        assert_eq!(
            s["pools"]["10.57.0.0/24"]["addresses"],
            serde_json::json!(["10.57.0.1"]),
            "the container's address was released when it exited: {s}"
        );
        assert_eq!(
            network::plugd_links(env),
            Vec::<String>::new(),
            "veths left behind"
        );

        docker(&["network", "rm", "n1"]).assert_ok();
        let s = ipam::state(&p, &ipam_id);
        assert_eq!(
            s["pools"],
            serde_json::json!({}),
            "network rm released the pool: {s}"
        );
    });
}

#[test]
fn wasm_network_and_ipam_plugins_serve_one_network() {
    together(false);
}

#[test]
fn native_network_and_ipam_plugins_serve_one_network() {
    together(true);
}
