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
