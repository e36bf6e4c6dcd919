//! Property test: any JSON built from config.json's own keys (in any case, nested anywhere, with
//! values of every type) either parses or is refused with an error; never a panic. What parses is
//! stable: its canonical form (what inspect shows and the store writes) parses back to itself.
//! `PROPTEST_CASES` sets the case count (docs/reliability.md records a long run).

use super::PluginConfig;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};

const KEYS: &[&str] = &[
    "description",
    "documentation",
    "entrypoint",
    "workdir",
    "interface",
    "types",
    "socket",
    "protocolscheme",
    "network",
    "type",
    "mounts",
    "source",
    "destination",
    "options",
    "name",
    "settable",
    "value",
    "env",
    "args",
    "linux",
    "capabilities",
    "devices",
    "path",
    "allowalldevices",
    "propagatedmount",
    "ipchost",
    "pidhost",
    "user",
    "uid",
    "gid",
    "rootfs",
    "diff_ids",
    "Interface",
    "TYPES",
    "Mounts",
    "dockerversion",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| Value::Number(n.into())),
        prop::sample::select(
            &[
                "",
                "/",
                "/data",
                "docker.volumedriver/1.0",
                "p.sock",
                "CAP_SYS_ADMIN",
                "sys_admin",
                "host",
                "none",
                "bind",
                "rbind",
                "value",
                "source",
                "/dev/fuse",
                "a b",
                "moby.plugins.http/v1",
            ][..]
        )
        .prop_map(|s| Value::String(s.into())),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// A key in one of the cases Go's decoder accepts.
fn cased(key: &'static str) -> impl Strategy<Value = String> {
    prop::sample::select(&[0u8, 1, 2][..]).prop_map(move |c| match c {
        0 => key.to_string(),
        1 => key.to_ascii_lowercase(),
        _ => key.to_ascii_uppercase(),
    })
}

fn obj(kv: Vec<(String, Value)>) -> Value {
    Value::Object(kv.into_iter().collect::<Map<_, _>>())
}

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::sample::select(items).prop_map(|s| Value::String(s.into()))
}

/// Configs shaped like real ones (most of them valid), every key in a random case, plus noise.
fn config_like() -> impl Strategy<Value = Value> {
    let mount = (
        cased("Source"),
        pick(&["/tmp", "", "/var/lib/x", "rel"]),
        cased("Destination"),
        pick(&["/data", "/mnt", "", "rel"]),
        cased("Type"),
        pick(&["bind", "tmpfs", ""]),
        cased("Options"),
        prop::collection::vec(pick(&["rbind", "ro", "rw", "nosuid"]), 0..3),
    )
        .prop_map(|(ks, s, kd, d, kt, t, ko, o)| {
            obj(vec![(ks, s), (kd, d), (kt, t), (ko, Value::Array(o))])
        });
    let env = (
        cased("Name"),
        pick(&["A", "PATH", "", "B"]),
        cased("Value"),
        pick(&["1", "", "x y"]),
    )
        .prop_map(|(kn, n, kv, v)| obj(vec![(kn, n), (kv, v)]));
    (
        (cased("Description"), pick(&["d", ""])),
        (
            cased("Entrypoint"),
            prop::collection::vec(pick(&["/p", "/p", "/p", "p", ""]), 1..3),
        ),
        (
            cased("Interface"),
            cased("Types"),
            prop::collection::vec(
                pick(&["docker.volumedriver/1.0", "docker.authz/1.0", "x"]),
                0..3,
            ),
            cased("Socket"),
            pick(&["p.sock", "p.sock", "p.sock", "", "a/b.sock"]),
        ),
        (
            cased("Network"),
            cased("Type"),
            pick(&["host", "none", "", "bridge"]),
        ),
        (cased("Mounts"), prop::collection::vec(mount, 0..3)),
        (cased("Env"), prop::collection::vec(env, 0..3)),
        (
            cased("Linux"),
            cased("Capabilities"),
            prop::collection::vec(pick(&["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "sys_admin"]), 0..3),
        ),
        (cased("PropagatedMount"), pick(&["/data", "", "/mnt"])),
        prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec((prop::sample::select(KEYS), value()), 1..2)],
    )
        .prop_map(
            |(
                desc,
                ep,
                (ki, kt, types, ks, sock),
                (kn, knt, net),
                mounts,
                env,
                (kl, kc, caps),
                pm,
                noise,
            )| {
                let mut kv = vec![
                    desc,
                    (ep.0, Value::Array(ep.1)),
                    (ki, obj(vec![(kt, Value::Array(types)), (ks, sock)])),
                    (kn, obj(vec![(knt, net)])),
                    (mounts.0, Value::Array(mounts.1)),
                    (env.0, Value::Array(env.1)),
                    (kl, obj(vec![(kc, Value::Array(caps))])),
                    pm,
                ];
                kv.extend(noise.into_iter().map(|(k, v)| (k.to_string(), v)));
                obj(kv)
            },
        )
}

#[test]
fn any_config_parses_or_is_refused_and_round_trips() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let (ok, refused) = (std::cell::Cell::new(0u64), std::cell::Cell::new(0u64));
    runner
        .run(&prop_oneof![1 => value(), 3 => config_like()], |v| {
            let bytes = serde_json::to_vec(&v).unwrap();
            let parsed = PluginConfig::parse(&bytes);
            if let Err(e) = &parsed
                && std::env::var_os("PROPS_DEBUG").is_some()
            {
                eprintln!("refused: {e}");
            }
            let counter = if parsed.is_ok() { &ok } else { &refused };
            counter.set(counter.get() + 1);
            if let Ok((config, _warnings)) = parsed {
                let canonical = serde_json::to_vec(&config).unwrap();
                let (again, _) = PluginConfig::parse(&canonical)
                    .map_err(|e| TestCaseError::fail(format!("canonical form refused: {e}")))?;
                prop_assert_eq!(again, config);
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "config property: {} parsed and round-tripped, {} refused, 0 panics",
        ok.get(),
        refused.get()
    );
}
