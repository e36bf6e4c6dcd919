//! plugd restarts: enabled plugins are enabled again and their sockets recreated; a kill -9 leaves
//! stale sockets that the next start removes (its own only); volumes and their data survive.

use std::path::Path;

use crate::harness::{self, Cli, PLUGIN_SOCKET_DIR};
use crate::volume::create_example;

#[test]
fn enabled_plugins_come_back_after_sigterm_and_sigkill() {
    harness::isolated(|env| {
        let d = env.dockerd();
        let mut p = env.plugd(&[]);
        let id = create_example(env, &p, "keep");
        create_example(env, &p, "idle");
        env.plugd_cli(&p, ["enable", "keep"]).assert_ok();
        env.docker(Cli::Docker28, &d, ["volume", "create", "-d", "keep", "v1"])
            .assert_ok();
        let data = p
            .data_root()
            .join("plugins")
            .join(&id)
            .join("propagated-mount/v1/data");
        std::fs::write(&data, "kept").unwrap();
        let sock = Path::new(PLUGIN_SOCKET_DIR).join("keep.sock");
        let listing = |p: &harness::Plugd| {
            env.plugd_cli(p, ["ls", "--format", "{{.Name}} {{.Enabled}}"])
                .assert_ok()
                .lines()
                .join(",")
        };

        // Graceful stop: the socket goes with plugd, and comes back with it.
        p.stop();
        assert!(!sock.exists(), "SIGTERM removes plugd's sockets");
        p.start();
        assert!(sock.exists());
        assert_eq!(listing(&p), "idle:latest false,keep:latest true");

        // kill -9: the socket file stays behind, stale; the next start replaces it.
        p.kill();
        assert!(sock.exists(), "a killed plugd cannot remove its socket");
        assert!(
            std::os::unix::net::UnixStream::connect(&sock).is_err(),
            "nobody listens on the stale socket"
        );
        p.start();
        let activate =
            harness::http(&sock, "POST", "/Plugin.Activate", None).expect("socket recreated");
        assert_eq!(activate.status, 200);
        assert_eq!(listing(&p), "idle:latest false,keep:latest true");

        // dockerd, which kept running, still reaches the volume and its data through the new socket.
        let inspect = env
            .docker(Cli::Docker28, &d, ["volume", "inspect", "v1"])
            .assert_ok()
            .json();
        assert_eq!(inspect[0]["Name"], "v1");
        assert_eq!(std::fs::read_to_string(&data).unwrap(), "kept");
        env.docker(Cli::Docker28, &d, ["volume", "rm", "v1"])
            .assert_ok();
    })
}

#[test]
fn volumes_in_use_stay_in_use_across_a_plugd_restart() {
    harness::isolated(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let mut p = env.plugd(&[]);
        create_example(env, &p, "held");
        env.plugd_cli(&p, ["enable", "held"]).assert_ok();
        env.docker(Cli::Docker28, &d, ["volume", "create", "-d", "held", "hv"])
            .assert_ok();
        env.docker(
            Cli::Docker28,
            &d,
            [
                "run",
                "-d",
                "--name",
                "holder",
                "-v",
                "hv:/data",
                harness::BUSYBOX_IMAGE,
                "sleep",
                "300",
            ],
        )
        .assert_ok();
        p.kill();
        p.start();
        // The container still holds hv; the restarted plugd knows it from the mount table it kept.
        env.plugd_cli(&p, ["disable", "held"])
            .assert_failed()
            .assert_stderr_contains("plugin held:latest is in use");
        env.docker(Cli::Docker28, &d, ["rm", "-f", "holder"])
            .assert_ok();
        env.plugd_cli(&p, ["disable", "held"]).assert_ok();
        // A user-requested disable forgets the table: enabling again starts with nothing in use.
        env.plugd_cli(&p, ["enable", "held"]).assert_ok();
        env.plugd_cli(&p, ["disable", "held"]).assert_ok();
    })
}
