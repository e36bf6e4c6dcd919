//! `plugd install`, `plugd upgrade` and `plugd push`: the docker CLI's registry verbs, step for step.
//!
//! The steps, texts and statuses are docker CLI 28's (`cli/command/plugin/{install,upgrade,push}.go`
//! and the moby client's `PluginInstall`/`PluginUpgrade`/`PluginPush`):
//! - install: `GET /plugins/privileges?remote=REF` → unless `--grant-all-permissions` (or the list is
//!   empty) the list and `Do you grant the above permissions? [y/N] ` on stdout, one line read from
//!   stdin (`y`/`Y` after trimming grants; anything else or EOF refuses with
//!   `permission denied while installing plugin REF`, exit 1) → `POST /plugins/pull?name=&remote=`
//!   with the accepted list → the progress stream → `set KEY=VALUE…` → `enable?timeout=0` (unless
//!   `--disable`) → `Installed plugin REF`.
//! - upgrade: inspect (`error reading plugin data: …`), `Upgrading plugin NAME from OLD to NEW`, the
//!   `Plugin images do not match, are you sure? [y/N] ` prompt when the repositories differ (unless
//!   `--skip-remote-check`; a refusal prints nothing more and exits 0: docker's main treats the
//!   cancelled error as no error), the privileges prompt, `POST /plugins/{name}/upgrade`, the
//!   stream, `Upgraded plugin NAME to REMOTE`.
//! - push: `POST /plugins/{name}/push`, the stream (its `aux` result is not printed, as in docker).
//! - `X-Registry-Auth` goes with every registry request, `e30=` (`{}`) without credentials, as
//!   docker sends it.
//!
//! Checked byte for byte (stdout, stderr, exit status, requests and `X-Registry-Auth`) against
//! docker CLI 28.2.2 talking to the same fake daemon.
//!
//! Deliberate differences, and why:
//! - upgrade does not refuse an enabled plugin (docker: `the plugin must be disabled before
//!   upgrading`): plugd swaps an enabled plugin in place.
//! - When `set` or `enable` fails after the pull, the plugin is removed again. The docker client
//!   means to do this too, but its deferred check reads a return value already set to nil, so it
//!   never does; a half-installed plugin is what the user did not ask for.
//! - A stream that reports a failure stops there: nothing is set or enabled (docker's client may go
//!   on to set and enable in a goroutine that races its exit).
//! - `--disable-content-trust[=BOOL]` is accepted and ignored: plugd has no content trust (docker 28
//!   verifies signatures when it is false; docker 29 deprecated the flag).
//! - `-u/--username` with `--password-stdin` supply credentials for this one command (plugd has no
//!   `login`). Standard input then holds the password, so no prompt can be answered: install and
//!   upgrade require `--grant-all-permissions` with it, and an upgrade to another repository
//!   `--skip-remote-check`.
//! - No login prompt when the registry answers "unauthorized" (docker 28.2 asks for a user name and
//!   password there; 28.5 no longer does): credentials come from the config or the flags.
//! - Control characters in the privileges list and the progress stream are shown escaped
//!   (`\x1b`): they come from the plugin's config and the registry, and an escape sequence could
//!   erase a privilege line above the prompt. Docker prints them raw.
//! - Each prompt reads exactly one line. Docker's reads stdin through a fresh buffered scanner per
//!   prompt, so with piped input (`printf 'y\ny\n'`) the first prompt swallows both lines and the
//!   second sees EOF; on a terminal both behave alike.

use std::io::{BufRead, Write};

use hyper::Method;
use plugd_core::privileges::Privilege;
use plugd_core::reference::{Named, parse_normalized_named};

use super::auth::{self, AuthConfig, DockerConfig, Lookup};
use super::client::{ApiClient, ApiError, ReqBody, escape_path, escape_query, set_body};
use super::jsonmessage::{Display, display_stream, visible};
use super::{CredentialArgs, Failure, InstallArgs, PushArgs, UpgradeArgs};

/// The registry auth header (`registry.AuthHeader`).
const AUTH_HEADER: &str = "X-Registry-Auth";

/// The streams a registry verb talks through, and whether stdout is a terminal (bars or lines).
pub(crate) struct Io<'a> {
    pub input: &'a mut dyn BufRead,
    pub out: &'a mut dyn Write,
    pub tty: bool,
    pub lookup: Lookup,
}

/// The privileges as docker lists them: `Plugin "REF" is requesting…`, then ` - name: [v1 v2]`.
pub(crate) fn privileges_text(remote: &str, privileges: &[Privilege]) -> String {
    let mut s = format!(
        "Plugin {} is requesting the following privileges:\n",
        plugd_core::gotext::go_quote(remote)
    );
    // The names and values come from the plugin's config: escaped, they cannot redraw the
    // screen to hide a privilege from the user deciding on it.
    for p in privileges {
        let values: Vec<_> = p.value.iter().map(|v| visible(v, false)).collect();
        s.push_str(&format!(
            " - {}: [{}]\n",
            visible(&p.name, false),
            values.join(" ")
        ));
    }
    s
}

/// `prompt.Confirm`: `MESSAGE [y/N] ` on `out`, one line from `input`; only `y` or `Y` (surrounding
/// white space ignored) confirms. EOF or a read error refuses.
pub(crate) fn confirm(input: &mut dyn BufRead, out: &mut dyn Write, message: &str) -> bool {
    let _ = write!(out, "{message} [y/N] ");
    let _ = out.flush();
    let mut line = Vec::new();
    match input.read_until(b'\n', &mut line) {
        Ok(0) | Err(_) => false,
        Ok(_) => {
            let text = String::from_utf8_lossy(&line);
            text.trim().eq_ignore_ascii_case("y")
        }
    }
}

/// The credentials for `named`'s registry: the flags' when given, else the docker config's.
fn credentials(named: &Named, creds: &CredentialArgs, io: &mut Io<'_>) -> Result<String, String> {
    let key = auth::config_key(&named.domain);
    if let Some(user) = &creds.username {
        let password = auth::password_from(io.input)?;
        return Ok(auth::from_flags(&key, user, &password).encode());
    }
    let config = DockerConfig::load(io.lookup.config_dir.as_deref())?;
    let a: AuthConfig = config.resolve(&key, io.lookup.path.as_ref())?;
    Ok(a.encode())
}

/// The flag combinations docker's `login` refuses, and the prompt `--password-stdin` rules out.
fn check_credential_flags(creds: &CredentialArgs, prompts_possible: bool) -> Result<(), String> {
    match (&creds.username, creds.password_stdin) {
        (None, true) => return Err("Must provide --username with --password-stdin".into()),
        (Some(_), false) => {
            return Err("--username needs --password-stdin: plugd has no password prompt".into());
        }
        _ => {}
    }
    if creds.password_stdin && prompts_possible {
        return Err("--password-stdin needs --grant-all-permissions: standard input carries the password, so the privileges prompt cannot be answered".into());
    }
    Ok(())
}

/// `GET /plugins/privileges`, and the prompt unless granted up front. Returns the body for the
/// pull: the list exactly as accepted.
fn accept_privileges(
    client: &ApiClient,
    remote_ref: &str,
    shown_name: &str,
    auth: &str,
    grant_all: bool,
    io: &mut Io<'_>,
) -> Result<String, Failure> {
    let path = format!("/plugins/privileges?remote={}", escape_query(remote_ref));
    let resp = client.request_with(
        Method::GET,
        &path,
        ReqBody::Empty,
        None,
        &[(AUTH_HEADER, auth)],
    )?;
    let privileges: Option<Vec<Privilege>> = serde_json::from_slice(&resp.body)
        .map_err(|e| format!("reading the privileges the daemon sent: {e}"))?;
    let list = privileges.as_deref().unwrap_or_default();
    if !grant_all && !list.is_empty() {
        let _ = io
            .out
            .write_all(privileges_text(shown_name, list).as_bytes());
        if !confirm(io.input, io.out, "Do you grant the above permissions?") {
            return Err(format!("permission denied while installing plugin {remote_ref}").into());
        }
    }
    // json.Encoder's trailing newline, as the docker client sends it.
    serde_json::to_string(&privileges)
        .map(|b| b + "\n")
        .map_err(|e| Failure::from(e.to_string()))
}

/// `plugd install`.
pub(crate) fn install(host: &str, a: &InstallArgs, io: &mut Io<'_>) -> Result<(), Failure> {
    check_credential_flags(&a.creds, !a.grant_all_permissions)?;
    let remote = &a.args[0];
    let settings = &a.args[1..];
    let local_name = match a.alias.as_deref() {
        None | Some("") => String::new(),
        Some(alias) => {
            let n = parse_normalized_named(alias).map_err(|e| e.to_string())?;
            if n.digest.is_some() {
                return Err(format!("invalid name: {alias}").into());
            }
            n.tag_name_only().familiar()
        }
    };
    let named = parse_normalized_named(remote).map_err(|e| e.to_string())?;
    let remote_ref = named.to_string();
    let auth = credentials(&named, &a.creds, io)?;
    let client = ApiClient::new(host)?;
    let body = accept_privileges(
        &client,
        &remote_ref,
        remote,
        &auth,
        a.grant_all_permissions,
        io,
    )?;
    let path = format!(
        "/plugins/pull?name={}&remote={}",
        escape_query(&local_name),
        escape_query(&remote_ref)
    );
    let mut stream = client
        .request_stream(
            Method::POST,
            &path,
            ReqBody::Full(Some(body.into())),
            Some("application/json"),
            &[(AUTH_HEADER, &auth)],
        )
        .map_err(|e| {
            // docker CLI 28.2's hint when the reference names an image, not a plugin.
            let msg = e.to_string();
            if msg.contains("(image) when fetching") {
                format!("{msg} - Use \"docker image pull\"")
            } else {
                msg
            }
        })?;
    let name = stream
        .headers
        .get("docker-plugin-name")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| {
            if local_name.is_empty() {
                named.clone().tag_name_only().familiar()
            } else {
                local_name.clone()
            }
        });
    {
        let mut display = Display::new(io.out, io.tty);
        display_stream(&mut stream, &mut display)?;
    }
    drop(stream);
    let after = || -> Result<(), ApiError> {
        if !settings.is_empty() {
            let path = format!("/plugins/{}/set", escape_path(&name));
            client.request(
                Method::POST,
                &path,
                ReqBody::Full(Some(set_body(settings).into())),
                Some("application/json"),
            )?;
        }
        if !a.disable {
            let path = format!("/plugins/{}/enable?timeout=0", escape_path(&name));
            client.request(Method::POST, &path, ReqBody::Empty, None)?;
        }
        Ok(())
    };
    if let Err(e) = after() {
        let mut msg = e.to_string();
        let path = format!("/plugins/{}", escape_path(&name));
        if let Err(rm) = client.request(Method::DELETE, &path, ReqBody::Empty, None) {
            msg.push_str(&format!(
                "\nremoving the half-installed plugin {name} failed too: {rm}"
            ));
        }
        return Err(msg.into());
    }
    let _ = writeln!(io.out, "Installed plugin {remote}");
    Ok(())
}

/// `plugd upgrade`.
pub(crate) fn upgrade(host: &str, a: &UpgradeArgs, io: &mut Io<'_>) -> Result<(), Failure> {
    check_credential_flags(&a.creds, !a.grant_all_permissions)?;
    let client = ApiClient::new(host)?;
    let path = format!("/plugins/{}/json", escape_path(&a.args[0]));
    let resp = client
        .request(Method::GET, &path, ReqBody::Empty, None)
        .map_err(|e| format!("error reading plugin data: {e}"))?;
    #[derive(serde::Deserialize)]
    struct Plugin {
        #[serde(rename = "Name", default)]
        name: String,
        #[serde(rename = "PluginReference", default)]
        reference: String,
    }
    let plugin: Plugin = serde_json::from_slice(&resp.body)
        .map_err(|e| format!("error reading plugin data: {e}"))?;
    let remote = a.args.get(1).cloned().unwrap_or(plugin.reference.clone());
    let new = parse_normalized_named(&remote)
        .map(Named::tag_name_only)
        .map_err(|e| format!("error parsing remote upgrade image reference: {e}"))?;
    let old = parse_normalized_named(&plugin.reference)
        .map(Named::tag_name_only)
        .map_err(|e| format!("error parsing current image reference: {e}"))?;
    let _ = writeln!(
        io.out,
        "Upgrading plugin {} from {} to {}",
        plugin.name,
        old.familiar(),
        new.familiar()
    );
    if !a.skip_remote_check && new.to_string() != old.to_string() {
        if a.creds.password_stdin {
            return Err("the plugin images do not match and standard input carries the password: pass --skip-remote-check to upgrade anyway".to_string().into());
        }
        if !confirm(
            io.input,
            io.out,
            "Plugin images do not match, are you sure?",
        ) {
            // Docker's cancelled error: its main prints nothing and exits 0.
            return Ok(());
        }
    }
    let named = parse_normalized_named(&remote).map_err(|e| e.to_string())?;
    let remote_ref = named.to_string();
    let auth = credentials(&named, &a.creds, io)?;
    let body = accept_privileges(
        &client,
        &remote_ref,
        &remote,
        &auth,
        a.grant_all_permissions,
        io,
    )?;
    let path = format!(
        "/plugins/{}/upgrade?remote={}",
        escape_path(&plugin.name),
        escape_query(&remote_ref)
    );
    let mut stream = client.request_stream(
        Method::POST,
        &path,
        ReqBody::Full(Some(body.into())),
        Some("application/json"),
        &[(AUTH_HEADER, &auth)],
    )?;
    {
        let mut display = Display::new(io.out, io.tty);
        display_stream(&mut stream, &mut display)?;
    }
    let _ = writeln!(io.out, "Upgraded plugin {} to {remote}", plugin.name);
    Ok(())
}

/// `plugd push`.
pub(crate) fn push(host: &str, a: &PushArgs, io: &mut Io<'_>) -> Result<(), Failure> {
    check_credential_flags(&a.creds, false)?;
    let name = &a.names[0];
    let named = parse_normalized_named(name).map_err(|e| e.to_string())?;
    if named.digest.is_some() {
        return Err(format!("invalid name: {name}").into());
    }
    let named = named.tag_name_only();
    let auth = credentials(&named, &a.creds, io)?;
    let client = ApiClient::new(host)?;
    let path = format!("/plugins/{}/push", escape_path(&named.familiar()));
    let mut stream = client.request_stream(
        Method::POST,
        &path,
        ReqBody::Empty,
        None,
        &[(AUTH_HEADER, &auth)],
    )?;
    let mut display = Display::new(io.out, io.tty);
    display_stream(&mut stream, &mut display)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(s: &str) -> Named {
        parse_normalized_named(s).unwrap()
    }

    #[test]
    fn names_as_the_reference_package_prints_them() {
        assert_eq!(named("vieux/sshfs").to_string(), "docker.io/vieux/sshfs");
        assert_eq!(
            named("busybox:1").to_string(),
            "docker.io/library/busybox:1"
        );
        assert_eq!(
            named("127.0.0.1:5000/x:latest").to_string(),
            "127.0.0.1:5000/x:latest"
        );
        let d = format!("r:1/x@sha256:{}", "a".repeat(64));
        assert_eq!(named(&d).to_string(), d);
        assert_eq!(
            named("busybox").tag_name_only().familiar(),
            "busybox:latest"
        );
        assert_eq!(
            named("docker.io/library/a/b").tag_name_only().familiar(),
            "library/a/b:latest"
        );
        assert_eq!(
            named("index.docker.io/vieux/sshfs:v2")
                .tag_name_only()
                .familiar(),
            "vieux/sshfs:v2"
        );
        assert_eq!(
            named("localhost:5000/p").tag_name_only().familiar(),
            "localhost:5000/p:latest"
        );
    }

    #[test]
    fn privileges_are_listed_as_docker_lists_them() {
        let p = |name: &str, value: &[&str]| Privilege {
            name: name.into(),
            description: "ignored".into(),
            value: value.iter().map(|s| s.to_string()).collect(),
        };
        let text = privileges_text(
            "vieux/sshfs",
            &[
                p("network", &["host"]),
                p("mount", &["/var/lib/docker/plugins/"]),
                p("device", &["/dev/fuse"]),
                p("capabilities", &["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]),
                p("allow-all-devices", &[]),
            ],
        );
        assert_eq!(
            text,
            "Plugin \"vieux/sshfs\" is requesting the following privileges:\n - network: [host]\n \
             - mount: [/var/lib/docker/plugins/]\n - device: [/dev/fuse]\n \
             - capabilities: [CAP_SYS_ADMIN CAP_NET_ADMIN]\n - allow-all-devices: []\n"
        );
        assert!(privileges_text("a\"b", &[]).starts_with("Plugin \"a\\\"b\" is"));
        let hidden = privileges_text("x", &[p("mount", &["/\u{1b}[1A\u{1b}[2K\r"])]);
        assert!(
            hidden.ends_with(" - mount: [/\\x1b[1A\\x1b[2K\\x0d]\n"),
            "{hidden}"
        );
    }

    #[test]
    fn only_y_confirms() {
        let ask = |answer: &[u8]| {
            let mut out = Vec::new();
            let yes = confirm(&mut &answer[..], &mut out, "Sure?");
            assert_eq!(out, b"Sure? [y/N] ");
            yes
        };
        assert!(ask(b"y\n"));
        assert!(ask(b"Y\n"));
        assert!(ask(b"  y \r\n"));
        assert!(ask(b"y"), "a last line without newline counts");
        // docker's prompt.Confirm compares with "y" only: "yes" refuses.
        assert!(!ask(b"yes\n"));
        assert!(!ask(b"n\n"));
        assert!(!ask(b"\n"));
        assert!(!ask(b""), "EOF refuses");
        assert!(!ask(b"N\ny\n"), "only the first line is read");
    }

    #[test]
    fn confirm_reads_exactly_one_line() {
        let mut input: &[u8] = b"y\nrest";
        let mut out = Vec::new();
        assert!(confirm(&mut input, &mut out, "Q?"));
        assert_eq!(input, b"rest");
    }

    #[test]
    fn credential_flag_rules() {
        let c = |u: Option<&str>, p: bool| CredentialArgs {
            username: u.map(str::to_string),
            password_stdin: p,
        };
        assert!(check_credential_flags(&c(None, false), true).is_ok());
        assert!(check_credential_flags(&c(Some("u"), true), false).is_ok());
        assert_eq!(
            check_credential_flags(&c(None, true), false).unwrap_err(),
            "Must provide --username with --password-stdin"
        );
        assert!(
            check_credential_flags(&c(Some("u"), false), false)
                .unwrap_err()
                .contains("--password-stdin")
        );
        assert!(
            check_credential_flags(&c(Some("u"), true), true)
                .unwrap_err()
                .contains("--grant-all-permissions")
        );
    }
}
