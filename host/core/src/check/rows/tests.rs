use super::*;
use crate::config::{PluginConfig, Settings};

fn config(json: &str) -> PluginConfig {
    PluginConfig::parse(json.as_bytes())
        .expect("valid config")
        .0
}

const BASE: &str = r#"{"Description":"t","Documentation":"t","Entrypoint":["/p","-v"],
  "Interface":{"Socket":"p.sock","Types":["docker.volumedriver/1.0"]},
  "Network":{"Type":"none"}"#;

fn host() -> HostView {
    HostView {
        ns: [("net", "1"), ("pid", "2"), ("ipc", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        interfaces: vec!["eth0".into()],
        resolver_reachable: Some(true),
        ..HostView::default()
    }
}

/// What a perfect native sandbox would report for `cfg`: the expectations, written out
/// independently of `specs` (bits from the names, namespaces from the flags).
fn ideal_native(cfg: &PluginConfig, eff: &Effective, host: &HostView) -> Report {
    let mut caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    for c in &eff.capabilities {
        caps.push(c);
    }
    let bits = |names: &[&str]| {
        names
            .iter()
            .map(|n| 1u64 << CAPABILITIES.iter().position(|c| c == n).unwrap())
            .fold(0u64, |a, b| a | b)
    };
    let all = bits(&caps);
    let declared: Vec<&str> = eff.capabilities.iter().map(String::as_str).collect();
    let mut a = vec![
        Attempt::ok("status:CapEff", format!("{all:016x}")),
        Attempt::ok("status:CapPrm", format!("{all:016x}")),
        Attempt::ok("status:CapBnd", format!("{all:016x}")),
        Attempt::ok("status:CapInh", format!("{:016x}", bits(&declared))),
        Attempt::ok("status:CapAmb", "0000000000000000"),
        Attempt::ok("status:NoNewPrivs", "0"),
        Attempt::ok("status:Seccomp", "0"),
    ];
    for (cap, _) in probe::CAP_OPERATIONS {
        let granted = caps.contains(&cap);
        a.push(Attempt {
            id: format!("op:{cap}"),
            ok: granted,
            detail: if granted { "" } else { "EPERM" }.into(),
        });
    }
    let host_net = eff.host_network();
    let ns = |name: &str, shared: bool| {
        Attempt::ok(
            format!("ns:{name}"),
            if shared {
                host.ns[name].clone()
            } else {
                "99".into()
            },
        )
    };
    a.push(ns("net", host_net));
    a.push(ns("pid", eff.pid_host));
    a.push(ns("ipc", eff.ipc_host));
    a.push(Attempt::ok(
        "net:interfaces",
        if host_net { "eth0,lo" } else { "lo" },
    ));
    a.push(Attempt {
        id: "net:host-loopback".into(),
        ok: host_net,
        detail: String::new(),
    });
    a.push(Attempt::ok("net:bind", ""));
    a.push(Attempt {
        id: "net:lookup".into(),
        ok: host_net,
        detail: String::new(),
    });
    for m in &eff.mounts {
        a.push(Attempt::ok(probe::mount_id(&m.destination, "read"), ""));
        a.push(Attempt {
            id: probe::mount_id(&m.destination, "write"),
            ok: !m.read_only(),
            detail: String::new(),
        });
        if let Some(i) = host.identities.get(&m.destination) {
            a.push(Attempt::ok(
                probe::mount_id(&m.destination, "identity"),
                i.clone(),
            ));
        }
        a.push(Attempt::failed(
            probe::escape_mount_id(&m.destination),
            "ENOENT",
        ));
    }
    for id in ["escape:absolute", "escape:dotdot", "escape:symlink"] {
        a.push(Attempt::failed(id, "ENOENT"));
    }
    for id in ["sandbox:proc-sys-write", "sandbox:sys-write"] {
        a.push(Attempt::failed(id, "EROFS"));
    }
    for d in &eff.devices {
        a.push(Attempt::ok(
            probe::device_id(d.path.as_deref().unwrap()),
            "",
        ));
    }
    for (k, maj, min, _) in probe::UNDECLARED_DEVICES {
        let granted = eff.allow_all_devices || host.device_nodes.contains(&(k, maj, min));
        a.push(Attempt {
            id: probe::mknod_id(k, maj, min),
            ok: granted,
            detail: String::new(),
        });
    }
    a.push(Attempt {
        id: "proc:host-pid".into(),
        ok: eff.pid_host,
        detail: String::new(),
    });
    a.push(Attempt::ok(
        "env",
        serde_json::to_string(&native_env(eff)).unwrap(),
    ));
    a.push(Attempt::ok(
        "args",
        serde_json::to_string(&eff.args).unwrap(),
    ));
    a.push(Attempt::ok("cwd", "/"));
    a.push(Attempt::failed("import:engine-metrics", "ENOENT"));
    if !cfg.propagated_mount.is_empty() {
        a.push(Attempt::ok(host_ids::PROPAGATED_WRITE, ""));
        a.push(Attempt::ok(host_ids::PROPAGATED_MOUNT, ""));
    }
    a.push(Attempt::failed(host_ids::LEAKED_MOUNT, ""));
    Report {
        probe: "native test".into(),
        attempts: a,
    }
}

fn check(cfg_json: &str, tweak: impl Fn(&mut Report)) -> Matrix {
    let cfg = config(cfg_json);
    let eff = Effective::of(&cfg, &Settings::initial(&cfg));
    let host = host();
    let mut report = ideal_native(&cfg, &eff, &host);
    tweak(&mut report);
    let ctx = Context {
        config: &cfg,
        effective: &eff,
        host: &host,
    };
    matrix(
        &ctx,
        "p",
        "id",
        &[
            (Column::Native, Outcome::Ran(report)),
            (
                Column::Wasm,
                Outcome::Refused("wasm runtime cannot honour x".into()),
            ),
        ],
    )
}

fn row<'a>(m: &'a Matrix, privilege: &str) -> &'a Row {
    m.rows
        .iter()
        .find(|r| r.privilege == privilege)
        .unwrap_or_else(|| panic!("no row {privilege}"))
}

fn mismatches(m: &Matrix) -> Vec<&str> {
    m.rows
        .iter()
        .filter(|r| r.verdict == Verdict::Mismatch)
        .map(|r| r.privilege.as_str())
        .collect()
}

#[test]
fn a_sandbox_that_gives_what_is_declared_has_no_mismatch() {
    for cfg in [
        format!("{BASE}}}"),
        format!(
            r#"{BASE},"Linux":{{"Capabilities":["CAP_SYS_ADMIN"]}},"PropagatedMount":"/pm","PidHost":true}}"#
        ),
        format!(
            r#"{BASE},"Network":{{"Type":"host"}},"IpcHost":true,"Linux":{{"AllowAllDevices":true}}}}"#
        ),
        format!(
            r#"{BASE},"Mounts":[{{"Name":"d","Source":"/srv","Destination":"/d","Type":"bind","Options":["rbind","ro"]}}],"Env":[{{"Name":"A","Value":"1"}}],"Args":{{"Name":"a","Value":["x"]}}}}"#
        ),
    ] {
        let m = check(&cfg, |_| {});
        assert_eq!(mismatches(&m), Vec::<&str>::new(), "{cfg}");
        assert_eq!(m.mismatches, 0);
        // The wasm column refused: its cells did not run, and that is not a mismatch.
        assert_eq!(m.columns[1].state, State::Refused);
        assert!(m.rows.iter().all(|r| matches!(
            r.cells[&Column::Wasm].status,
            CellStatus::NotRun | CellStatus::NotApplicable
        )));
    }
}

#[test]
fn declared_and_undeclared_privileges_expect_opposite_rows() {
    let without = check(&format!("{BASE}}}"), |_| {});
    let with = check(
        &format!(
            r#"{BASE},"Linux":{{"Capabilities":["CAP_SYS_ADMIN"]}},"Network":{{"Type":"host"}},"PidHost":true}}"#
        ),
        |_| {},
    );
    for (privilege, denied, granted) in [
        ("CAP_SYS_ADMIN", "absent", "effective"),
        ("network namespace", "its own", "the host's"),
        ("pid namespace", "its own", "the host's"),
        ("host loopback listener reachable", "denied", "granted"),
    ] {
        assert_eq!(
            row(&without, privilege).cells[&Column::Native].expected,
            denied
        );
        assert_eq!(
            row(&with, privilege).cells[&Column::Native].expected,
            granted
        );
    }
}

#[test]
fn a_capability_left_in_the_bounding_set_is_a_mismatch_in_its_row() {
    let m = check(&format!("{BASE}}}"), |r| {
        let bnd = r
            .attempts
            .iter_mut()
            .find(|a| a.id == "status:CapBnd")
            .unwrap();
        let v = u64::from_str_radix(&bnd.detail, 16).unwrap() | (1 << 21);
        bnd.detail = format!("{v:016x}");
    });
    assert_eq!(mismatches(&m), ["CAP_SYS_ADMIN"]);
    let cell = &row(&m, "CAP_SYS_ADMIN").cells[&Column::Native];
    assert_eq!(cell.observed, "bounding only; operation failed (EPERM)");
    assert_eq!(cell.expected, "absent");
}

#[test]
fn an_operation_that_disagrees_with_the_bits_is_a_mismatch() {
    let m = check(&format!("{BASE}}}"), |r| {
        let op = r
            .attempts
            .iter_mut()
            .find(|a| a.id == "op:CAP_CHOWN")
            .unwrap();
        op.ok = false;
        op.detail = "EPERM".into();
    });
    assert_eq!(mismatches(&m), ["CAP_CHOWN"]);
}

#[test]
fn a_missing_device_rule_and_a_leak_are_named() {
    let cfg = format!(
        r#"{BASE},"Linux":{{"Devices":[{{"Name":"f","Path":"/dev/fuse"}}]}},"Mounts":[{{"Name":"d","Source":"/srv","Destination":"/d","Type":"bind","Options":["rbind","rw"]}}]}}"#
    );
    let m = check(&cfg, |r| {
        for a in &mut r.attempts {
            if a.id == "device:/dev/fuse" {
                a.ok = false;
                a.detail = "EPERM".into();
            }
            if a.id == "escape:mount:/d" {
                a.ok = true;
            }
        }
    });
    assert_eq!(
        mismatches(&m),
        ["/d/../..: host file outside every mount", "/dev/fuse: open"]
    );
}

#[test]
fn a_missing_attempt_is_a_mismatch_not_a_pass() {
    let m = check(&format!("{BASE}}}"), |r| {
        r.attempts.retain(|a| a.id != "escape:dotdot")
    });
    assert_eq!(mismatches(&m), ["host file by /../../.. and its path"]);
    assert_eq!(
        row(&m, "host file by /../../.. and its path").cells[&Column::Native].observed,
        "not reported"
    );
}

#[test]
fn the_native_environment_puts_path_first_and_keeps_the_last_value() {
    let cfg = config(&format!(
        r#"{BASE},"Env":[{{"Name":"PATH","Value":"/mine"}},{{"Name":"A","Value":"1"}},{{"Name":"A","Value":"2"}}]}}"#
    ));
    let eff = Effective::of(&cfg, &Settings::initial(&cfg));
    assert_eq!(native_env(&eff), ["PATH=/mine", "A=2"]);
}

#[test]
fn an_attempt_that_could_not_be_made_is_a_mismatch_not_a_denial() {
    let m = check(&format!("{BASE}}}"), |r| {
        let a = r
            .attempts
            .iter_mut()
            .find(|a| a.id == "escape:absolute")
            .unwrap();
        a.detail = format!("{}timed out after 5s", probe::UNTRIED);
    });
    assert_eq!(mismatches(&m), ["host file by its absolute path"]);
    assert_eq!(
        row(&m, "host file by its absolute path").cells[&Column::Native].observed,
        "could not try: timed out after 5s"
    );
}

#[test]
fn a_declared_device_must_open_as_the_hosts_node() {
    let cfg = config(&format!(
        r#"{BASE},"Linux":{{"Devices":[{{"Name":"f","Path":"/dev/fuse"}}]}}}}"#
    ));
    let eff = Effective::of(&cfg, &Settings::initial(&cfg));
    let mut host = host();
    host.device_by_path
        .insert("/dev/fuse".into(), "c 10:229".into());
    let judge = |detail: &str| {
        let mut report = ideal_native(&cfg, &eff, &host);
        for a in &mut report.attempts {
            if a.id == "device:/dev/fuse" {
                a.detail = detail.into();
            }
        }
        let ctx = Context {
            config: &cfg,
            effective: &eff,
            host: &host,
        };
        matrix(&ctx, "p", "id", &[(Column::Native, Outcome::Ran(report))])
    };
    assert_eq!(mismatches(&judge("c 10:229")), Vec::<&str>::new());
    assert_eq!(mismatches(&judge("c 1:3")), ["/dev/fuse: open"]);
}
