//! `plugd install` as a user runs it, against a real registry holding a plugin a real dockerd
//! pushed: the privileges prompt on a terminal (no, then yes), and the non-interactive
//! `--grant-all-permissions` form a script uses.
//!
//! The plugin is the static fixture as dockerd pushes it (`registry::dockerd_push`); its config has
//! `network: none`, which dockerd lists as a privilege, so the prompt is always shown.

use std::time::Duration;

use crate::harness::{self, Env, Plugd, PtySession};
use crate::registry::dockerd_push;

const REPO: &str = "plugins/refvol";
const TAG: &str = "v1";
const PROMPT: &str = "Do you grant the above permissions? [y/N] ";
const WAIT: Duration = Duration::from_secs(120);

/// The pty turns `\n` into `\r\n` (ONLCR); compare in `\n`s.
fn lf(s: &str) -> String {
    s.replace("\r\n", "\n")
}

/// `plugd install …` with a docker config dir of the test's own (empty: anonymous pulls), so the
/// machine's `~/.docker/config.json` cannot leak in.
fn install_cmd(env: &Env, p: &Plugd, args: &[&str]) -> harness::Cmd {
    env.plugd_cli_cmd(p, ["install"])
        .args(args)
        .env("DOCKER_CONFIG", env.path(".docker"))
}

/// The plugin names plugd lists.
fn names(env: &Env, p: &Plugd) -> Vec<String> {
    env.plugd_cli(p, ["ls", "--format", "{{.Name}} {{.Enabled}}"])
        .assert_ok()
        .lines()
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[test]
fn install_prompt_refused_then_granted_on_a_terminal() {
    harness::isolated(|env| {
        let reg = env.registry();
        dockerd_push(env, &reg, REPO, TAG);
        let reference = reg.reference(REPO, TAG);
        let p = env.plugd(&[]);

        let mut s = PtySession::spawn(install_cmd(env, &p, &[&reference]));
        let screen = lf(&s.expect(PROMPT, WAIT));
        assert_eq!(
            screen,
            format!(
                "Plugin \"{reference}\" is requesting the following privileges:\n - network: [none]\n{PROMPT}"
            )
        );
        s.send("n\n");
        let out = s.wait(WAIT);
        assert_eq!(out.code, Some(1), "{out:?}");
        assert_eq!(
            out.stderr,
            format!("permission denied while installing plugin {reference}\n")
        );
        assert!(
            names(env, &p).is_empty(),
            "a refused install leaves nothing"
        );

        let mut s = PtySession::spawn(install_cmd(env, &p, &[&reference]));
        s.expect(PROMPT, WAIT);
        s.send("y\n");
        let out = s.wait(WAIT);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(
            lf(&out.screen).ends_with(&format!("Installed plugin {reference}\n")),
            "{out:?}"
        );
        assert_eq!(names(env, &p), [format!("{reference} true")]);
    })
}

#[test]
fn install_without_a_terminal_granted_up_front() {
    harness::isolated(|env| {
        let reg = env.registry();
        dockerd_push(env, &reg, REPO, TAG);
        let reference = reg.reference(REPO, TAG);
        let p = env.plugd(&[]);

        // No terminal and nothing on stdin: the prompt reads EOF, which refuses.
        let out = install_cmd(env, &p, &[&reference]).run();
        out.assert_code(1);
        assert!(out.stdout.ends_with(PROMPT), "{}", out.stdout);
        assert_eq!(
            out.stderr,
            format!("permission denied while installing plugin {reference}\n")
        );
        assert!(names(env, &p).is_empty());

        let out = env.plugd_cli(
            &p,
            [
                "install",
                "--grant-all-permissions",
                "--alias",
                "vol",
                &reference,
                "DATA_DIR=/data",
            ],
        );
        out.assert_ok();
        assert!(!out.stdout.contains("[y/N]"), "{}", out.stdout);
        assert!(
            !out.stdout.contains('\u{1b}'),
            "no terminal, no escape sequences: {:?}",
            out.stdout
        );
        assert!(
            out.stdout
                .ends_with(&format!("Installed plugin {reference}\n")),
            "{}",
            out.stdout
        );
        assert_eq!(names(env, &p), ["vol:latest true"]);
    })
}

/// The pty helper itself: the command sees a terminal on stdin and stdout, typed text arrives as
/// a line, stderr stays apart, and the exit code comes back.
#[test]
fn pty_session_is_a_terminal() {
    let script = r#"test -t 0 && test -t 1 || exit 9; printf 'Q? '; read a; echo "got $a"; echo oops >&2; exit 3"#;
    let mut s = PtySession::spawn(harness::Cmd::new("/bin/sh").args(["-c", script]));
    s.expect("Q? ", WAIT);
    s.send("n\n");
    let out = s.wait(WAIT);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(lf(&out.screen), "Q? n\ngot n\n", "the typed line is echoed");
    assert_eq!(out.stderr, "oops\n");
}

/// The plugd CLI's other registry verbs against the real daemon and a registry requiring basic
/// auth: push without credentials fails, with `--username/--password-stdin` and with the docker
/// config file it works; the pushed plugin installs, and an **enabled** plugin upgrades to another
/// tag (the repository check asks first; docker would refuse an enabled plugin outright).
#[test]
fn push_with_credentials_then_upgrade_an_enabled_plugin() {
    harness::isolated(|env| {
        let reg = env.registry_with_auth("alice", "s3cret");
        let v1 = reg.reference("cli", "v1");
        let v2 = reg.reference("cli", "v2");
        let p = env.plugd(&[]);
        for (name, remote) in [("cliv1", &v1), ("cliv2", &v2)] {
            let bundle = env.static_plugin_bundle(name);
            env.plugd_cli_cmd(&p, ["create", remote.as_str()])
                .arg(bundle.path())
                .run()
                .assert_ok();
        }
        let config = env.path(".docker");
        let cli = |args: &[&str]| env.plugd_cli_cmd(&p, args).env("DOCKER_CONFIG", &config);

        let out = cli(&["push", &v1]).run();
        out.assert_code(1);
        assert!(
            !out.stderr.trim().is_empty(),
            "an unauthenticated push says why"
        );

        let out = cli(&["push", "-u", "alice", "--password-stdin", &v1])
            .stdin("s3cret\n")
            .run();
        out.assert_ok()
            .assert_stdout_contains("v1: digest: sha256:");

        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(
            config.join("config.json"),
            format!(
                r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
                reg.addr,
                harness::base64(b"alice:s3cret")
            ),
        )
        .unwrap();
        cli(&["push", &v2])
            .run()
            .assert_ok()
            .assert_stdout_contains("v2: digest: sha256:");

        cli(&["install", "--grant-all-permissions", "--alias", "vol", &v1])
            .run()
            .assert_ok()
            .assert_stdout_contains(&format!("Installed plugin {v1}"));
        assert!(names(env, &p).contains(&"vol:latest true".to_string()));

        let out = cli(&["upgrade", "--grant-all-permissions", "vol", &v2])
            .stdin("y\n")
            .run();
        out.assert_ok();
        assert!(
            out.stdout.starts_with(&format!(
                "Upgrading plugin vol:latest from {v1} to {v2}\nPlugin images do not match, are you sure? [y/N] "
            )),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout
                .ends_with(&format!("Upgraded plugin vol:latest to {v2}\n")),
            "{}",
            out.stdout
        );
        let inspect = env.plugd_cli(&p, ["inspect", "vol"]).assert_ok().json();
        assert_eq!(inspect[0]["PluginReference"], v2.as_str(), "{inspect}");
        assert_eq!(inspect[0]["Enabled"], true, "{inspect}");
    })
}
