//! `plugd apply` against a real plugd and a real docker-registry: a node converges from empty to a
//! file, then to a changed file, and a third run of the same file changes nothing; a failing step
//! (a plugin that cannot start, a reference the registry does not have) leaves the node exactly
//! as it was, and says so.
//!
//! The plugins are the static fixture, pushed to the test's registry by plugd itself.

use std::path::PathBuf;

use crate::harness::{self, Bundle, Env, Output, Plugd, Registry};

/// `network: none` in the fixture's config is the one privilege it asks for.
const GRANTS: &str = r#"privileges = [{ name = "network", value = ["none"] }]"#;

/// Creates a plugin from a fixture bundle (distinct content per `bundle`), pushes it as
/// `repo:tag` and removes it again: the registry then holds a plugin this node never had.
fn publish(env: &Env, p: &Plugd, reg: &Registry, repo: &str, tag: &str, bundle: &str) -> String {
    let reference = reg.reference(repo, tag);
    let b = env.static_plugin_bundle(bundle);
    env.plugd_cli_cmd(p, ["create", &reference])
        .arg(b.path())
        .run()
        .assert_ok();
    env.plugd_cli(p, ["push", &reference]).assert_ok();
    env.plugd_cli(p, ["rm", &reference]).assert_ok();
    reference
}

/// A `[[plugin]]` table for a registry plugin granting the fixture's privilege; `extra` lines
/// (settings, enabled) follow.
fn from_registry(name: &str, reference: &str, extra: &str) -> String {
    format!("[[plugin]]\nname = \"{name}\"\nreference = \"{reference}\"\n{GRANTS}\n{extra}\n\n")
}

/// A `[[plugin]]` table for a bundle plugin granting the fixture's privilege.
fn from_bundle(name: &str, bundle: &Bundle) -> String {
    format!(
        "[[plugin]]\nname = \"{name}\"\nbundle = \"{}\"\n{GRANTS}\n\n",
        bundle.path().display()
    )
}

/// Writes an apply file into the test dir.
fn write(env: &Env, name: &str, text: &str) -> PathBuf {
    let path = env.path(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn apply(env: &Env, p: &Plugd, file: &PathBuf, extra: &[&str]) -> Output {
    env.plugd_cli_cmd(p, ["apply", "--state"])
        .arg(env.path("apply-state.json"))
        .args(extra)
        .arg(file)
        .run()
}

/// The node as `plugd inspect` shows every plugin, sorted by name: what "unchanged" means.
fn node(env: &Env, p: &Plugd) -> String {
    let names = env
        .plugd_cli(p, ["ls", "--format", "{{.Name}}"])
        .assert_ok()
        .lines()
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>();
    if names.is_empty() {
        return String::new();
    }
    let mut sorted = names.clone();
    sorted.sort();
    env.plugd_cli_cmd(p, ["inspect"])
        .args(&sorted)
        .run()
        .assert_ok()
        .stdout
        .clone()
}

fn inspect(env: &Env, p: &Plugd, name: &str) -> serde_json::Value {
    env.plugd_cli(p, ["inspect", name]).assert_ok().json()[0].clone()
}

fn env_of(plugin: &serde_json::Value) -> Vec<String> {
    plugin["Settings"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn apply_converges_from_empty_then_to_a_changed_file_then_changes_nothing() {
    harness::isolated(|env| {
        let reg = env.registry();
        let p = env.plugd(&[]);
        let vol1 = publish(env, &p, &reg, "plugins/vol", "v1", "vol1");
        let vol2 = publish(env, &p, &reg, "plugins/vol", "v2", "vol2");
        let other = publish(env, &p, &reg, "plugins/other", "v1", "other1");
        let local = env.static_plugin_bundle("local");
        assert_eq!(node(env, &p), "", "the publishing left nothing installed");

        let first = write(
            env,
            "first.toml",
            &[
                from_registry("vol", &vol1, r#"settings = { DATA_DIR = "/data/a" }"#),
                from_registry("other", &other, "enabled = false"),
                from_bundle("local", &local),
            ]
            .concat(),
        );
        // A dry run plans and changes nothing.
        let dry = apply(env, &p, &first, &["--dry-run"]);
        dry.assert_ok();
        assert!(dry.stdout.contains("install vol:latest"), "{dry}");
        assert_eq!(node(env, &p), "", "a dry run changes nothing");

        apply(env, &p, &first, &[]).assert_ok();
        let vol = inspect(env, &p, "vol");
        assert_eq!(vol["PluginReference"], vol1.as_str());
        assert_eq!(vol["Enabled"], true);
        assert!(env_of(&vol).contains(&"DATA_DIR=/data/a".to_string()));
        assert_eq!(inspect(env, &p, "other")["Enabled"], false);
        assert_eq!(inspect(env, &p, "local")["Enabled"], true);

        // Changed: vol upgraded and set, other pruned, local kept as it is.
        let second = write(
            env,
            "second.toml",
            &[
                "prune = true\n\n".to_string(),
                from_registry("vol", &vol2, r#"settings = { DATA_DIR = "/data/b" }"#),
                from_bundle("local", &local),
            ]
            .concat(),
        );
        let local_id = inspect(env, &p, "local")["Id"].clone();
        let vol_id = vol["Id"].clone();
        let out = apply(env, &p, &second, &[]);
        out.assert_ok();
        let vol = inspect(env, &p, "vol");
        assert_eq!(vol["PluginReference"], vol2.as_str());
        assert_eq!(vol["Id"], vol_id, "upgraded in place");
        assert_eq!(vol["Enabled"], true);
        assert!(env_of(&vol).contains(&"DATA_DIR=/data/b".to_string()));
        assert_eq!(
            inspect(env, &p, "local")["Id"],
            local_id,
            "an unchanged bundle is not re-created"
        );
        let names = env
            .plugd_cli(&p, ["ls", "--format", "{{.Name}}"])
            .assert_ok()
            .stdout
            .clone();
        assert!(!names.contains("other"), "pruned: {names}");

        // The same file again: nothing to do, and the node is byte-for-byte what it was.
        let before = node(env, &p);
        let again = apply(env, &p, &second, &[]);
        again.assert_ok();
        assert!(again.stdout.contains("no changes"), "{again}");
        assert_eq!(node(env, &p), before);

        // A changed bundle is replaced.
        std::fs::write(local.rootfs().join("etc/plugd-bundle"), "changed\n").unwrap();
        apply(env, &p, &second, &[]).assert_ok();
        let replaced = inspect(env, &p, "local");
        assert_ne!(replaced["Id"], local_id);
        assert_eq!(replaced["Enabled"], true);
        let again = apply(env, &p, &second, &[]);
        again.assert_ok();
        assert!(again.stdout.contains("no changes"), "{again}");
    })
}

#[test]
fn a_failing_step_leaves_the_node_as_it_was_and_says_so() {
    harness::isolated(|env| {
        let reg = env.registry();
        let p = env.plugd(&["--enable-timeout", "5s"]);
        let vol1 = publish(env, &p, &reg, "plugins/vol", "v1", "vol1");
        let vol2 = publish(env, &p, &reg, "plugins/vol", "v2", "vol2");
        let local = env.static_plugin_bundle("local");
        let start = write(
            env,
            "start.toml",
            &[
                from_registry("vol", &vol1, r#"settings = { DATA_DIR = "/data/a" }"#),
                from_bundle("local", &local),
            ]
            .concat(),
        );
        apply(env, &p, &start, &[]).assert_ok();
        let vol_before = env
            .plugd_cli(&p, ["inspect", "vol"])
            .assert_ok()
            .stdout
            .clone();
        let local_before = inspect(env, &p, "local");

        // A plugin that exits at every start, after vol was upgraded and set and local replaced
        // by another bundle: its enable fails and everything done before it is undone.
        let local2 = env.static_plugin_bundle("local2");
        let mut config = harness::static_plugin_config();
        config["env"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "HOSTILE_DIR", "value": "/hostile"}));
        let crashy = env.static_plugin_bundle("crashy").config(&config).file(
            "hostile/exit-at-start",
            b"",
            0o644,
        );
        let failing = write(
            env,
            "failing.toml",
            &[
                from_registry("vol", &vol2, r#"settings = { DATA_DIR = "/data/b" }"#),
                from_bundle("local", &local2),
                from_bundle("crashy", &crashy),
            ]
            .concat(),
        );
        let out = apply(env, &p, &failing, &[]);
        out.assert_failed();
        // It changed vol first, then failed at the enable of crashy and undid it all.
        assert!(out.stdout.contains("upgrade vol:latest"), "{out}");
        assert!(out.stderr.contains("enable crashy:latest"), "{out}");
        assert!(
            out.stderr.contains("the node is as it was before the run"),
            "{out}"
        );
        assert_eq!(
            env.plugd_cli(&p, ["inspect", "vol"]).assert_ok().stdout,
            vol_before,
            "vol rolled back byte for byte"
        );
        assert!(
            !env.plugd_cli(&p, ["ls"])
                .assert_ok()
                .stdout
                .contains("crashy"),
            "crashy removed again"
        );
        // vol exactly as it was; local, removed on the way, created again from the snapshot of
        // its bundle: the same plugin under a new id.
        let mut local_after = inspect(env, &p, "local");
        assert_ne!(local_after["Id"], local_before["Id"]);
        local_after["Id"] = local_before["Id"].clone();
        assert_eq!(local_after, local_before);
        assert!(
            out.stderr
                .contains("local:latest removed and installed again"),
            "{out}"
        );
        // The record follows the new id: the starting file is again what the node is.
        let again = apply(env, &p, &start, &[]);
        again.assert_ok();
        assert!(again.stdout.contains("no changes"), "{again}");
        let before = node(env, &p);

        // A reference the registry does not have fails the pre-flight: nothing is touched.
        let missing = reg.reference("plugins/missing", "v1");
        let unknown = write(
            env,
            "unknown.toml",
            &[
                from_registry("vol", &vol2, ""),
                from_registry("new", &missing, ""),
            ]
            .concat(),
        );
        let out = apply(env, &p, &unknown, &[]);
        out.assert_failed();
        assert!(out.stderr.contains("plugin new:latest"), "{out}");
        assert!(out.stderr.contains(&missing), "{out}");
        assert_eq!(node(env, &p), before);

        // Privileges other than the plugin's are refused before anything changes.
        let wrong = write(
            env,
            "wrong.toml",
            &format!(
                "[[plugin]]\nname = \"vol\"\nreference = \"{vol2}\"\nprivileges = [{{ name = \"network\", value = [\"host\"] }}]\n"
            ),
        );
        let out = apply(env, &p, &wrong, &[]);
        out.assert_failed();
        assert!(out.stderr.contains("privileges"), "{out}");
        assert_eq!(node(env, &p), before);
    })
}
