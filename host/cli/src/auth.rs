//! Registry credentials for `install`, `upgrade` and `push`, found where the docker CLI finds them.
//!
//! A user who ran `docker login` (or configured a credential helper) must not have to repeat it
//! for plugd, so the lookup is the docker CLI's (`cli/command/registry.go` `ResolveAuthConfig`,
//! `cli/config`): the file is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; the key
//! is the reference's registry host (`https://index.docker.io/v1/` for Docker Hub); a
//! `credHelpers[key]` entry, else `credsStore`, names a `docker-credential-<helper>` program that is
//! asked with `get` (the key on stdin); otherwise `auths[key]` (or an entry whose URL has that
//! host) gives `auth` (base64 `user:password`), `username`/`password` or `identitytoken`.
//! The result travels to the daemon as `X-Registry-Auth`, encoded as `registry.EncodeAuthConfig`,
//! with the fields docker CLI 28.2 sends (the entry's `email` included), checked byte for byte
//! against it.
//!
//! Deliberate differences: the docker CLI warns about an unreadable config file and ignores a
//! failing credential helper, then pulls anonymously, which ends in an "unauthorized" far from its
//! cause; here either is an error naming the file or the helper. No `DOCKER_AUTH_CONFIG` and no
//! default-store detection (`pass`/`secretservice` are used only when `credsStore` names them).
//! JSON keys match exactly (Go matches them case-insensitively).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

use crate::value::go_json_string;

/// The key Docker Hub's credentials are stored under (`registry.IndexServer`).
pub(crate) const INDEX_SERVER: &str = "https://index.docker.io/v1/";

/// What a credential helper prints when it has nothing for the server.
const NOT_FOUND: &str = "credentials not found in native keychain";

/// The user name a helper returns for an identity token instead of a password.
const TOKEN_USERNAME: &str = "<token>";

/// The Engine API's `AuthConfig`, as the docker CLI sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AuthConfig {
    pub username: String,
    pub password: String,
    pub auth: String,
    pub email: String,
    pub server_address: String,
    pub identity_token: String,
    pub registry_token: String,
}

impl AuthConfig {
    /// `registry.EncodeAuthConfig`: Go's `json.Marshal` (fields in declaration order, empty ones
    /// omitted) in base64url with padding; no credentials encode as `e30=` (`{}`).
    pub fn encode(&self) -> String {
        let fields = [
            ("username", &self.username),
            ("password", &self.password),
            ("auth", &self.auth),
            ("email", &self.email),
            ("serveraddress", &self.server_address),
            ("identitytoken", &self.identity_token),
            ("registrytoken", &self.registry_token),
        ];
        let body: Vec<String> = fields
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("\"{k}\":{}", go_json_string(v)))
            .collect();
        URL_SAFE.encode(format!("{{{}}}", body.join(",")))
    }
}

/// Where the lookup reads: the config directory and the `PATH` to find helpers in. Explicit so
/// that tests need not change the process environment.
#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    /// The directory holding `config.json` (`$DOCKER_CONFIG` or `~/.docker`); `None` when there
    /// is no home directory either.
    pub config_dir: Option<PathBuf>,
    /// The `PATH` to search for `docker-credential-*`.
    pub path: Option<OsString>,
}

impl Lookup {
    /// The docker CLI's `config.Dir()` and this process's `PATH`.
    pub fn from_env() -> Lookup {
        let config_dir = match std::env::var_os("DOCKER_CONFIG") {
            Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
            _ => home_dir().map(|h| h.join(".docker")),
        };
        Lookup {
            config_dir,
            path: std::env::var_os("PATH"),
        }
    }
}

fn home_dir() -> Option<PathBuf> {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Some(PathBuf::from(h)),
        _ => nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.dir),
    }
}

/// One `auths` entry after `LoadFromReader`: `auth` decoded into user and password.
#[derive(Debug, Clone, Default)]
struct FileAuth {
    username: String,
    password: String,
    email: String,
    identity_token: String,
    registry_token: String,
}

/// The parts of `config.json` the lookup uses.
#[derive(Debug, Default)]
pub(crate) struct DockerConfig {
    file: Option<PathBuf>,
    auths: BTreeMap<String, FileAuth>,
    creds_store: String,
    cred_helpers: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawAuth>,
    #[serde(default, rename = "credsStore")]
    creds_store: String,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct RawAuth {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    identitytoken: String,
    #[serde(default)]
    registrytoken: String,
}

impl DockerConfig {
    /// Reads `<dir>/config.json`; a missing file (or directory) is an empty config, as for docker.
    pub fn load(dir: Option<&Path>) -> Result<DockerConfig, String> {
        let Some(dir) = dir else {
            return Ok(DockerConfig::default());
        };
        let file = dir.join("config.json");
        let text = match std::fs::read(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DockerConfig::default());
            }
            Err(e) => return Err(format!("loading config file {}: {e}", file.display())),
        };
        let bad = |why: String| format!("parsing config file ({}): {why}", file.display());
        let raw: RawConfig = if text.iter().all(u8::is_ascii_whitespace) {
            RawConfig {
                auths: BTreeMap::new(),
                creds_store: String::new(),
                cred_helpers: BTreeMap::new(),
            }
        } else {
            serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?
        };
        let mut auths = BTreeMap::new();
        for (key, a) in raw.auths {
            let (username, password) = if a.auth.is_empty() {
                (a.username, a.password)
            } else {
                decode_auth(&a.auth).map_err(|why| bad(format!("auths[{key:?}]: {why}")))?
            };
            auths.insert(
                key,
                FileAuth {
                    username,
                    password,
                    email: a.email,
                    identity_token: a.identitytoken,
                    registry_token: a.registrytoken,
                },
            );
        }
        Ok(DockerConfig {
            file: Some(file),
            auths,
            creds_store: raw.creds_store,
            cred_helpers: raw.cred_helpers,
        })
    }

    fn file_name(&self) -> String {
        self.file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "config.json".into())
    }

    /// The file store's `Get`: the exact key, else the first entry (in key order) whose URL has
    /// that host (`https://127.0.0.1:5000/v2/` for `127.0.0.1:5000`).
    fn file_entry(&self, key: &str) -> Option<(&str, &FileAuth)> {
        if let Some((k, a)) = self.auths.get_key_value(key) {
            return Some((k, a));
        }
        self.auths
            .iter()
            .find(|(k, _)| convert_to_hostname(k) == key)
            .map(|(k, a)| (k.as_str(), a))
    }

    /// `ResolveAuthConfig` for the registry key `key` (see [`config_key`]).
    pub fn resolve(&self, key: &str, path: Option<&OsString>) -> Result<AuthConfig, String> {
        let (helper, origin) = match self.cred_helpers.get(key) {
            Some(h) => (h.as_str(), format!("credHelpers[{key:?}]")),
            None => (self.creds_store.as_str(), "credsStore".to_string()),
        };
        let entry = self.file_entry(key);
        if helper.is_empty() {
            let Some((addr, a)) = entry else {
                return Ok(AuthConfig::default());
            };
            return Ok(AuthConfig {
                username: a.username.clone(),
                password: a.password.clone(),
                email: a.email.clone(),
                server_address: addr.to_string(),
                identity_token: a.identity_token.clone(),
                registry_token: a.registry_token.clone(),
                ..AuthConfig::default()
            });
        }
        // The native store keeps the file entry's email and registry token; the helper decides
        // the rest.
        let creds = run_helper(helper, key, path, &origin, &self.file_name())?;
        let mut out = AuthConfig {
            email: entry.map(|(_, a)| a.email.clone()).unwrap_or_default(),
            registry_token: entry
                .map(|(_, a)| a.registry_token.clone())
                .unwrap_or_default(),
            ..AuthConfig::default()
        };
        if let Some((user, secret)) = creds {
            if user == TOKEN_USERNAME {
                out.identity_token = secret;
            } else {
                out.username = user;
                out.password = secret;
            }
            out.server_address = key.to_string();
        }
        Ok(out)
    }
}

/// The config key for a registry host: docker.io's is [`INDEX_SERVER`], any other is the host.
pub(crate) fn config_key(domain: &str) -> String {
    if domain == "docker.io" || domain == "index.docker.io" {
        INDEX_SERVER.to_string()
    } else {
        domain.to_string()
    }
}

/// `credentials.ConvertToHostname`: `https://host:port/v2/` → `host:port`.
fn convert_to_hostname(s: &str) -> &str {
    let rest = match s.split_once("://") {
        Some((_, rest)) => rest,
        None => s,
    };
    rest.split('/').next().unwrap_or(rest)
}

/// `decodeAuth`: strict standard base64 of `user:password`, a user required.
fn decode_auth(auth: &str) -> Result<(String, String), String> {
    let bytes = STANDARD
        .decode(auth)
        .map_err(|e| format!("bad base64 in auth: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    match text.split_once(':') {
        Some((user, pass)) if !user.is_empty() => {
            Ok((user.to_string(), pass.trim_matches('\0').to_string()))
        }
        _ => Err("Invalid auth configuration file".into()),
    }
}

/// Runs `docker-credential-<helper> get` with the key on stdin. `Ok(None)` when the helper has no
/// credentials for it.
fn run_helper(
    helper: &str,
    key: &str,
    path: Option<&OsString>,
    origin: &str,
    file: &str,
) -> Result<Option<(String, String)>, String> {
    let program = format!("docker-credential-{helper}");
    if helper.contains('/') || helper.contains('\0') {
        return Err(format!(
            "invalid credential helper name {helper:?} ({origin} in {file})"
        ));
    }
    let found = path.and_then(|p| {
        std::env::split_paths(p)
            .map(|d| d.join(&program))
            .find(|c| is_executable(c))
    });
    let Some(exe) = found else {
        return Err(format!(
            "credential helper {program} ({origin} in {file}) is not installed: not found in $PATH"
        ));
    };
    let fail = |why: String| format!("credential helper {program} ({origin} in {file}): {why}");
    let mut child = Command::new(&exe)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", exe.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading makes this fail; its status tells the story.
        let _ = stdin.write_all(key.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for it: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.trim() == NOT_FOUND {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = if stdout.trim().is_empty() {
            stderr.trim()
        } else {
            stdout.trim()
        };
        return Err(fail(format!("get {key} failed ({}): {text}", out.status)));
    }
    #[derive(serde::Deserialize)]
    struct Creds {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let creds: Creds = serde_json::from_slice(&out.stdout)
        .map_err(|e| fail(format!("unreadable answer for {key}: {e}")))?;
    Ok(Some((creds.username, creds.secret)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Credentials from the command line (`--username` with `--password-stdin`): they replace the
/// config file's for this one command, as `docker login` would have stored them.
pub(crate) fn from_flags(key: &str, username: &str, password: &str) -> AuthConfig {
    AuthConfig {
        username: username.to_string(),
        password: password.to_string(),
        server_address: key.to_string(),
        ..AuthConfig::default()
    }
}

/// `docker login --password-stdin`'s reading: everything, minus one trailing `\n` and then `\r`.
pub(crate) fn password_from(input: &mut dyn std::io::Read) -> Result<String, String> {
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the password from standard input: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| "the password on standard input is not UTF-8".to_string())?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err("the password on standard input is empty".into());
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn config(dir: &Path, text: &str) -> DockerConfig {
        std::fs::write(dir.join("config.json"), text).unwrap();
        DockerConfig::load(Some(dir)).unwrap()
    }

    fn decode(s: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE.decode(s).unwrap()).unwrap()
    }

    /// A helper script answering `get` from a table, logging what it was asked.
    fn helper(bin: &Path, name: &str, script: &str) {
        let p = bin.join(format!("docker-credential-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn encodes_like_encode_auth_config() {
        assert_eq!(AuthConfig::default().encode(), "e30=");
        let a = from_flags("127.0.0.1:5000", "u", "p<w>");
        assert_eq!(
            decode(&a.encode()),
            serde_json::json!({"username":"u","password":"p<w>","serveraddress":"127.0.0.1:5000"})
        );
        // base64url: '-' and '_', with padding.
        let a = from_flags("h", "??>", "~~~~");
        let e = a.encode();
        assert!(!e.contains('+') && !e.contains('/'), "{e}");
        assert_eq!(e.len() % 4, 0);
    }

    #[test]
    fn keys_per_registry() {
        assert_eq!(config_key("docker.io"), INDEX_SERVER);
        assert_eq!(config_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(convert_to_hostname("https://reg:5000/v2/"), "reg:5000");
        assert_eq!(convert_to_hostname("reg:5000/v1/"), "reg:5000");
    }

    #[test]
    fn auths_entry_is_decoded() {
        let d = tempfile::tempdir().unwrap();
        // "alice:s3cret" and a token entry under a URL-form key.
        let c = config(
            d.path(),
            r#"{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6czNjcmV0","email":"a@b"},
                "https://tok.example:443/v2/":{"identitytoken":"IDT"},
                "https://index.docker.io/v1/":{"username":"hub","password":"pw"}}}"#,
        );
        let a = c.resolve("127.0.0.1:5000", None).unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str()),
            ("alice", "s3cret")
        );
        assert_eq!(a.server_address, "127.0.0.1:5000");
        assert_eq!(a.auth, "", "the decoded auth is not sent again");
        assert_eq!(a.email, "a@b");
        let t = c.resolve("tok.example:443", None).unwrap();
        assert_eq!(t.identity_token, "IDT");
        assert_eq!(t.server_address, "https://tok.example:443/v2/");
        let h = c.resolve(INDEX_SERVER, None).unwrap();
        assert_eq!(h.username, "hub");
        assert_eq!(c.resolve("other:1", None).unwrap(), AuthConfig::default());
    }

    #[test]
    fn missing_config_is_anonymous_and_broken_config_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let c = DockerConfig::load(Some(d.path())).unwrap();
        assert_eq!(c.resolve("x:1", None).unwrap(), AuthConfig::default());
        std::fs::write(d.path().join("config.json"), "{\"auths\":").unwrap();
        let e = DockerConfig::load(Some(d.path())).unwrap_err();
        assert!(
            e.contains("parsing config file (") && e.contains("config.json"),
            "{e}"
        );
        std::fs::write(
            d.path().join("config.json"),
            r#"{"auths":{"r:1":{"auth":"bm9jb2xvbg=="}}}"#,
        )
        .unwrap();
        let e = DockerConfig::load(Some(d.path())).unwrap_err();
        assert!(e.contains("Invalid auth configuration file"), "{e}");
        std::fs::write(
            d.path().join("config.json"),
            r#"{"auths":{"r:1":{"auth":"YWxpY2U6czNjcmV0"x}}}"#,
        )
        .unwrap();
        assert!(DockerConfig::load(Some(d.path())).is_err());
        std::fs::write(
            d.path().join("config.json"),
            r#"{"auths":{"r:1":{"auth":"YWxpY2U6czNjcmV0"}}}"#,
        )
        .unwrap();
        assert!(DockerConfig::load(Some(d.path())).is_ok());
        // Unpadded base64 is refused, as Go's StdEncoding refuses it.
        std::fs::write(
            d.path().join("config.json"),
            r#"{"auths":{"r:1":{"auth":"YWxpY2U6czNjcmV0cw"}}}"#,
        )
        .unwrap();
        assert!(DockerConfig::load(Some(d.path())).is_err());
    }

    #[test]
    fn helpers_are_asked_per_registry_then_store() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = d.path().join("asked");
        helper(
            &bin,
            "fake",
            &format!(
                r#"[ "$1" = get ] || exit 3
read -r server || true
echo "$server" >> {log}
case "$server" in
  127.0.0.1:5000) echo '{{"ServerURL":"127.0.0.1:5000","Username":"bob","Secret":"pw1"}}' ;;
  tok:1) echo '{{"ServerURL":"tok:1","Username":"<token>","Secret":"T0K"}}' ;;
  bad:1) echo 'not json' ;;
  boom:1) echo 'keychain locked'; exit 1 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac"#,
                log = log.display()
            ),
        );
        helper(
            &bin,
            "other",
            r#"echo '{"ServerURL":"x","Username":"carol","Secret":"pw2"}'"#,
        );
        let c = config(
            d.path(),
            r#"{"credsStore":"fake","credHelpers":{"special:1":"other","gone:1":"missing"},
                "auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6czNjcmV0"}}}"#,
        );
        let path = Some(bin.clone().into_os_string());
        let a = c.resolve("127.0.0.1:5000", path.as_ref()).unwrap();
        assert_eq!(
            (
                a.username.as_str(),
                a.password.as_str(),
                a.server_address.as_str()
            ),
            ("bob", "pw1", "127.0.0.1:5000"),
            "the store wins over the auths entry"
        );
        let t = c.resolve("tok:1", path.as_ref()).unwrap();
        assert_eq!(
            (t.username.as_str(), t.identity_token.as_str()),
            ("", "T0K")
        );
        let s = c.resolve("special:1", path.as_ref()).unwrap();
        assert_eq!(s.username, "carol");
        assert_eq!(
            c.resolve("none:1", path.as_ref()).unwrap(),
            AuthConfig::default()
        );
        let e = c.resolve("bad:1", path.as_ref()).unwrap_err();
        assert!(
            e.contains("docker-credential-fake") && e.contains("unreadable"),
            "{e}"
        );
        let e = c.resolve("boom:1", path.as_ref()).unwrap_err();
        assert!(
            e.contains("keychain locked") && e.contains("credsStore"),
            "{e}"
        );
        let e = c.resolve("gone:1", path.as_ref()).unwrap_err();
        assert!(
            e.contains("docker-credential-missing")
                && e.contains("not installed")
                && e.contains("config.json"),
            "{e}"
        );
        let asked = std::fs::read_to_string(&log).unwrap();
        assert_eq!(asked, "127.0.0.1:5000\ntok:1\nnone:1\nbad:1\nboom:1\n");
        // No PATH at all: the helper cannot be found.
        assert!(
            c.resolve("x:1", None)
                .unwrap_err()
                .contains("not installed")
        );
    }

    #[test]
    fn password_from_stdin_drops_one_newline() {
        let p = |s: &str| password_from(&mut s.as_bytes());
        assert_eq!(p("pw\n").unwrap(), "pw");
        assert_eq!(p("pw\r\n").unwrap(), "pw");
        assert_eq!(p("pw\n\n").unwrap(), "pw\n");
        assert_eq!(p(" pw ").unwrap(), " pw ");
        assert!(p("\n").is_err());
        assert!(p("").is_err());
    }
}
