//! `plugd apply FILE`: converge this node's plugins to a declared set, all or nothing.
//!
//! A fleet stays uniform when every node is told the same set and each one makes itself so; this
//! verb is that step for one node (docs/deploy.md has the file format and the multi-node design).
//! It speaks only the Engine API, like every other verb, so it works against any plugd, local or
//! through a mounted socket.
//!
//! The run has three phases, so that a failure leaves the node as it was:
//! 1. **Plan**: the file is parsed strictly and compared with what the daemon lists.
//! 2. **Pre-flight**: everything that can fail without changing anything is tried first —
//!    every reference to pull resolves and asks for exactly the privileges the file grants, every
//!    reference a rollback would pull back resolves, every bundle reads and parses, every setting
//!    exists and is settable where the config is known.
//! 3. **Execute** with an undo log: each change is printed as it is made; on a failure the undo
//!    log is replayed in reverse and what was (and was not) rolled back is said.
//!
//! `--dry-run` stops after phase 2 and prints the plan.
//!
//! The daemon cannot tell which bundle a created plugin came from, so apply keeps its own record
//! beside the data root (`--state`): for each bundle plugin the id it created and the bundle's
//! content digest, and (in `<state>.d/`) a copy of that bundle, from which the plugin is created
//! and, when a failed run must undo its removal, created again. `<state>.lock` keeps two runs
//! from interleaving.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::{self, Read as _, Write};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use clap::Args;
use hyper::Method;
use plugd_core::config::{PluginConfig, PluginObject, Settings};
use plugd_core::privileges::{self, Privilege};
use plugd_core::reference::{Named, parse_normalized_named};
use plugd_core::settable;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::Failure;
use super::auth::{self, DockerConfig, Lookup};
use super::client::{ApiClient, ReqBody, escape_path, escape_query, set_body};
use super::create;
use super::jsonmessage::{Display, display_stream};

/// Where the record of bundle plugins lives unless `--state` says otherwise: in the daemon's
/// default data root, which the DaemonSet and the systemd unit both keep across restarts (the
/// daemon reads only its own `plugins/` and `tmp/` there).
pub const DEFAULT_STATE: &str = "/var/lib/plugd/apply-state.json";

/// The registry auth header (`registry.AuthHeader`).
const AUTH_HEADER: &str = "X-Registry-Auth";

/// `plugd apply` (plugd's own verb; docs/deploy.md).
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Print the plan after the pre-flight checks and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Where the digests of plugins created from local bundles are recorded
    #[arg(long, value_name = "FILE", default_value = DEFAULT_STATE)]
    pub state: PathBuf,
    /// The plugin set (TOML).
    #[arg(value_name = "FILE")]
    pub files: Vec<String>,
}

// ------------------------------------------------------------------------------ the file

/// The file as written; every table refuses keys it does not know, so a typo is an error, not a
/// silently ignored setting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    prune: bool,
    #[serde(default)]
    plugin: Vec<RawPlugin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: String,
    reference: Option<String>,
    bundle: Option<String>,
    enabled: Option<bool>,
    #[serde(default)]
    privileges: Vec<RawGrant>,
    #[serde(default)]
    settings: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    name: String,
    #[serde(default)]
    value: Vec<String>,
}

/// Where a plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A registry reference, in its full form (`docker.io/library/x:latest`), as dockerd records
    /// it in `PluginReference`.
    Registry(String),
    /// A local bundle directory (`config.json` + `rootfs/`), absolute.
    Bundle(PathBuf),
}

/// One plugin the file asks for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Want {
    /// The local name as the daemon stores it (`vol:latest`).
    pub name: String,
    pub source: Source,
    pub enabled: bool,
    pub privileges: Vec<Privilege>,
    /// `KEY=VALUE`, in key order.
    pub settings: Vec<String>,
}

/// The whole file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Desired {
    /// Remove plugins the file does not name.
    pub prune: bool,
    pub plugins: Vec<Want>,
}

/// Parses an apply file. `file` names it in errors; relative bundle paths are taken from `base`
/// (the file's directory), so a file and its bundles move together.
pub(crate) fn parse(file: &str, base: &Path, text: &str) -> Result<Desired, String> {
    let raw: RawFile = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    let mut plugins: Vec<Want> = Vec::new();
    for (i, p) in raw.plugin.into_iter().enumerate() {
        let at = |what: &str| format!("{file}: plugin {} ({:?}): {what}", i + 1, p.name);
        let named = parse_normalized_named(&p.name).map_err(|e| at(&format!("name: {e}")))?;
        if named.digest.is_some() {
            return Err(at(
                "name: a local name cannot have a digest (put it in `reference`)",
            ));
        }
        let name = named.tag_name_only().familiar();
        let source = match (p.reference, p.bundle) {
            (Some(r), None) => {
                let named =
                    parse_normalized_named(&r).map_err(|e| at(&format!("reference {r:?}: {e}")))?;
                Source::Registry(named.tag_name_only().to_string())
            }
            (None, Some(b)) if !b.is_empty() => Source::Bundle(base.join(b)),
            (None, Some(_)) => return Err(at("bundle: empty path")),
            _ => return Err(at("exactly one of `reference` and `bundle` must be given")),
        };
        let mut settings = Vec::new();
        for (k, v) in p.settings {
            if k.is_empty() || k.contains('=') {
                return Err(at(&format!(
                    "settings: {k:?} is not a setting name (<name>[.<field>], no `=`)"
                )));
            }
            settings.push(format!("{k}={v}"));
        }
        let privileges = p
            .privileges
            .into_iter()
            .map(|g| Privilege {
                name: g.name,
                description: String::new(),
                value: g.value,
            })
            .collect();
        if plugins.iter().any(|w| w.name == name) {
            return Err(at(&format!("name: {name} is named twice in the file")));
        }
        plugins.push(Want {
            name,
            source,
            enabled: p.enabled.unwrap_or(true),
            privileges,
            settings,
        });
    }
    Ok(Desired {
        prune: raw.prune,
        plugins,
    })
}

// ------------------------------------------------------------------------------ the record

/// What `apply` remembers about plugins it created from bundles: the plugin id it made and the
/// bundle digest it made it from. A bundle plugin is "the same" only when both still match, so
/// a plugin re-created by hand (a new id) is replaced rather than trusted.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Record {
    pub bundles: BTreeMap<String, BundleRecord>,
}

/// One bundle plugin in the [`Record`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BundleRecord {
    pub id: String,
    pub digest: String,
}

fn load_record(path: &Path) -> Result<Record, String> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not an apply record: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Record::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Temporary file, fsync, rename: a crash leaves the old record or the new one, never half.
fn save_record(path: &Path, record: &Record) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("apply")
    ));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(record).map_err(io::Error::other)?)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

/// A digest of a bundle's content: every entry under the directory (not following symlinks), in
/// byte order of its path, as type, permission bits, and content or link target. Times and
/// owners are left out, so a fresh checkout of the same bundle has the same digest.
pub(crate) fn bundle_digest(dir: &Path) -> io::Result<String> {
    fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for n in names {
            let r = rel.join(&n);
            out.push(r.clone());
            if fs::symlink_metadata(dir.join(&r))?.is_dir() {
                walk(dir, &r, out)?;
            }
        }
        Ok(())
    }
    let mut entries = Vec::new();
    walk(dir, Path::new(""), &mut entries)?;
    let mut h = Sha256::new();
    for rel in entries {
        let path = dir.join(&rel);
        let meta = fs::symlink_metadata(&path)?;
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update([0]);
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        if ft.is_dir() {
            h.update(format!("d {mode:o}\0"));
        } else if ft.is_symlink() {
            h.update(format!("l {mode:o}\0"));
            h.update(fs::read_link(&path)?.as_os_str().as_encoded_bytes());
            h.update([0]);
        } else if ft.is_file() {
            h.update(format!("f {mode:o} {}\0", meta.size()));
            let mut f = fs::File::open(&path)?;
            let mut buf = vec![0; 64 * 1024];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        } else {
            return Err(io::Error::other(format!(
                "{}: not a file, directory or symlink",
                path.display()
            )));
        }
    }
    Ok(format!("sha256:{:x}", h.finalize()))
}

/// Where the copies of created bundles live: beside the record, one directory per digest.
fn snapshots_dir(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".d");
    PathBuf::from(name)
}

/// The snapshot of the bundle with `digest` (`sha256:<hex>`).
fn snapshot_path(state: &Path, digest: &str) -> PathBuf {
    snapshots_dir(state).join(digest.replace(':', "-"))
}

/// Copies `dir` to the snapshot for `digest` (once) and checks the copy still has that digest:
/// the plugin is created from the copy, so what was planned is what is created, and a later run
/// can create it again to undo its removal.
fn snapshot(state: &Path, dir: &Path, digest: &str) -> Result<PathBuf, String> {
    let dst = snapshot_path(state, digest);
    if !dst.exists() {
        let tmp = dst.with_extension("tmp");
        let made = (|| {
            if tmp.exists() {
                fs::remove_dir_all(&tmp)?;
            }
            fs::create_dir_all(snapshots_dir(state))?;
            copy_tree(dir, &tmp)?;
            fs::rename(&tmp, &dst)
        })();
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&tmp);
            return Err(format!("copying the bundle to {}: {e}", dst.display()));
        }
    }
    let got = bundle_digest(&dst).map_err(|e| format!("{}: {e}", dst.display()))?;
    if got != digest {
        let _ = fs::remove_dir_all(&dst);
        return Err(format!(
            "the bundle {} changed during the run (planned {digest}, found {got})",
            dir.display()
        ));
    }
    Ok(dst)
}

/// A copy of a bundle tree: directories, regular files and symlinks (never followed), with their
/// modes and owners, so the plugin created from it is the one created from the original.
fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
    } else if ft.is_dir() {
        fs::create_dir(dst)?;
        for entry in fs::read_dir(src)? {
            let name = entry?.file_name();
            copy_tree(&src.join(&name), &dst.join(&name))?;
        }
    } else if ft.is_file() {
        fs::copy(src, dst)?;
    } else {
        return Err(io::Error::other(format!(
            "{}: not a file, directory or symlink",
            src.display()
        )));
    }
    // Owner first: a chown clears set-id bits, which the mode then restores.
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    if !ft.is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

/// Removes the snapshots no plugin in `record` was created from.
fn prune_snapshots(state: &Path, record: &Record) {
    let Ok(entries) = fs::read_dir(snapshots_dir(state)) else {
        return;
    };
    for entry in entries.flatten() {
        let keep = record
            .bundles
            .values()
            .any(|b| snapshot_path(state, &b.digest) == entry.path());
        if !keep {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Holds an exclusive lock beside the record for the whole run: two runs (the sidecar and a
/// person, or two timers) never interleave their steps and undo logs.
fn lock(state: &Path) -> Result<nix::fcntl::Flock<fs::File>, String> {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| format!("{}: another plugd apply is running ({e})", path.display()))
}

// ------------------------------------------------------------------------------ the plan

/// One change to the node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Pull `reference` as `name`, left disabled.
    Install { name: String, reference: String },
    /// Create `name` from a bundle (from its snapshot, see [`snapshot`]), left disabled.
    Create {
        name: String,
        dir: PathBuf,
        digest: String,
    },
    /// Pull another reference into `name` (in place when enabled).
    Upgrade {
        name: String,
        from: String,
        to: String,
    },
    /// Remove a disabled plugin; `snapshot` is the digest of the bundle it was created from,
    /// when this file created it.
    Remove {
        plugin: Box<PluginObject>,
        snapshot: Option<String>,
    },
    /// Set the file's settings; done only where they change something (after an install or an
    /// upgrade the config is known only then). Leaves the plugin enabled if it was.
    Set { name: String, args: Vec<String> },
    /// Enable.
    Enable { name: String },
    /// Disable.
    Disable { name: String },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Install { name, reference } => write!(f, "install {name} from {reference}"),
            Step::Create { name, dir, .. } => {
                write!(f, "create {name} from bundle {}", dir.display())
            }
            Step::Upgrade { name, from, to } => write!(f, "upgrade {name} from {from} to {to}"),
            Step::Remove { plugin, .. } => write!(f, "remove {}", plugin.name),
            Step::Set { name, args } => write!(f, "set {name} {}", args.join(" ")),
            Step::Enable { name } => write!(f, "enable {name}"),
            Step::Disable { name } => write!(f, "disable {name}"),
        }
    }
}

/// The steps that take the node from `current` to `desired`, in the order they run: the file's
/// plugins in file order, then removals (the one kind of change a rollback may have to pull back
/// from a registry, so it goes last). `digests` holds the digest of every bundle the file names.
/// Errors name the file, the plugin and the setting.
pub(crate) fn plan(
    file: &str,
    desired: &Desired,
    current: &[PluginObject],
    record: &Record,
    digests: &HashMap<String, String>,
) -> Result<Vec<Step>, String> {
    /// What happens to a plugin's image.
    #[derive(Clone, PartialEq)]
    enum Action {
        Keep,
        New,
        /// To this reference.
        Upgrade(String),
        Replace,
    }
    let mut steps = Vec::new();
    for w in &desired.plugins {
        let at = |what: String| format!("{file}: plugin {}: {what}", w.name);
        let cur = current.iter().find(|c| c.name == w.name);
        let action = match cur {
            None => Action::New,
            Some(c) => {
                let recorded = record.bundles.get(&w.name).filter(|r| r.id == c.id);
                match &w.source {
                    Source::Registry(r) if recorded.is_none() => {
                        if same_reference(&c.plugin_reference, r) {
                            Action::Keep
                        } else {
                            // A pulled plugin takes the new reference in place.
                            Action::Upgrade(r.clone())
                        }
                    }
                    // A bundle's content, or a change between bundle and registry: replaced.
                    Source::Registry(_) => Action::Replace,
                    Source::Bundle(_) if recorded.map(|r| &r.digest) == digests.get(&w.name) => {
                        Action::Keep
                    }
                    Source::Bundle(_) => Action::Replace,
                }
            }
        };
        let enabled_before = cur.is_some_and(|c| c.enabled);
        // Disabled first when the file says so (an upgrade then swaps a stopped plugin) or when
        // it is replaced (only a disabled plugin is removed).
        if enabled_before && (!w.enabled || action == Action::Replace) {
            steps.push(Step::Disable {
                name: w.name.clone(),
            });
        }
        let enabled = enabled_before && w.enabled && action != Action::Replace;
        let source_step = || -> Result<Step, String> {
            Ok(match &w.source {
                Source::Registry(r) => Step::Install {
                    name: w.name.clone(),
                    reference: r.clone(),
                },
                Source::Bundle(d) => Step::Create {
                    name: w.name.clone(),
                    dir: d.clone(),
                    digest: digests
                        .get(&w.name)
                        .cloned()
                        .ok_or_else(|| at("bundle: not read".into()))?,
                },
            })
        };
        let set = match (action.clone(), cur) {
            (Action::Keep, Some(c)) if !w.settings.is_empty() => {
                let mut config = c.config.clone();
                let mut settings = c.settings.clone();
                settable::apply(&mut config, &mut settings, &w.settings)
                    .map_err(|e| at(format!("settings: {e}")))?;
                settings != c.settings
            }
            (Action::Keep, _) => false,
            (Action::New, _) => {
                steps.push(source_step()?);
                !w.settings.is_empty()
            }
            (Action::Upgrade(to), c) => {
                steps.push(Step::Upgrade {
                    name: w.name.clone(),
                    from: c.map(|c| c.plugin_reference.clone()).unwrap_or_default(),
                    to,
                });
                !w.settings.is_empty()
            }
            (Action::Replace, c) => {
                if let Some(c) = c {
                    steps.push(remove_step(c, record));
                }
                steps.push(source_step()?);
                !w.settings.is_empty()
            }
        };
        if set {
            steps.push(Step::Set {
                name: w.name.clone(),
                args: w.settings.clone(),
            });
        }
        if w.enabled && !enabled {
            steps.push(Step::Enable {
                name: w.name.clone(),
            });
        }
    }
    if desired.prune {
        for c in current {
            if desired.plugins.iter().any(|w| w.name == c.name) {
                continue;
            }
            if c.enabled {
                steps.push(Step::Disable {
                    name: c.name.clone(),
                });
            }
            steps.push(remove_step(c, record));
        }
    }
    Ok(steps)
}

/// Removing `c`; a plugin this file created from a bundle can be created again from its snapshot.
fn remove_step(c: &PluginObject, record: &Record) -> Step {
    Step::Remove {
        plugin: Box::new(c.clone()),
        snapshot: record
            .bundles
            .get(&c.name)
            .filter(|r| r.id == c.id)
            .map(|r| r.digest.clone()),
    }
}

/// Whether two references name the same image once normalised (`x` is `docker.io/library/x:latest`).
fn same_reference(a: &str, b: &str) -> bool {
    let norm = |s: &str| parse_normalized_named(s).map(|n| n.tag_name_only().to_string());
    matches!((norm(a), norm(b)), (Ok(x), Ok(y)) if x == y)
}

/// The `set` arguments that take `now`'s settings back to `old`'s: one per env var, mount
/// source, device path or args that differ. Used to undo a `set` and to restore a re-installed
/// plugin, so it compares effective values, not what the file said.
pub(crate) fn restore_args(old: &Settings, now: &PluginObject) -> Vec<String> {
    let mut args = Vec::new();
    for e in &old.env {
        if !now.settings.env.contains(e) {
            args.push(e.clone());
        }
    }
    for m in &old.mounts {
        let differs = now
            .settings
            .mounts
            .iter()
            .any(|n| n.name == m.name && n.source != m.source);
        if let (false, true, Some(src)) = (m.name.is_empty(), differs, &m.source) {
            args.push(format!("{}.source={src}", m.name));
        }
    }
    for d in &old.devices {
        let differs = now
            .settings
            .devices
            .iter()
            .any(|n| n.name == d.name && n.path != d.path);
        if let (false, true, Some(path)) = (d.name.is_empty(), differs, &d.path) {
            args.push(format!("{}.path={path}", d.name));
        }
    }
    let args_name = &now.config.args.name;
    if !args_name.is_empty() && old.args != now.settings.args {
        args.push(format!("{args_name}={}", old.args.join(" ")));
    }
    args
}

// ------------------------------------------------------------------------------ the run

/// What undoes one change that was made.
#[derive(Debug)]
enum Undo {
    /// Remove the plugin this run installed or created.
    Uninstall { name: String },
    /// Pull the previous reference back in (privileges checked in the pre-flight).
    UpgradeBack { name: String, to: String },
    /// Set the settings back to these.
    SetBack { name: String, old: Settings },
    /// Disable what this run enabled.
    Disable { name: String },
    /// Enable what this run disabled.
    Enable { name: String },
    /// Install a removed plugin again from its reference, or create it again from its bundle's
    /// snapshot, with its settings.
    Reinstall {
        old: Box<PluginObject>,
        snapshot: Option<String>,
    },
}

impl fmt::Display for Undo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Undo::Uninstall { name } => write!(f, "remove {name} again"),
            Undo::UpgradeBack { name, to } => write!(f, "upgrade {name} back to {to}"),
            Undo::SetBack { name, .. } => write!(f, "set {name}'s settings back"),
            Undo::Disable { name } => write!(f, "disable {name} again"),
            Undo::Enable { name } => write!(f, "enable {name} again"),
            Undo::Reinstall {
                old,
                snapshot: None,
            } => write!(
                f,
                "install {} again from {}",
                old.name, old.plugin_reference
            ),
            Undo::Reinstall {
                old,
                snapshot: Some(_),
            } => write!(f, "create {} again from its bundle's snapshot", old.name),
        }
    }
}

/// The daemon connection and the registry credentials of one run.
struct Node<'a> {
    host: &'a str,
    /// The record's path; bundle snapshots live beside it.
    state: &'a Path,
    client: ApiClient,
    config: DockerConfig,
    lookup: &'a Lookup,
    /// Privileges (as the pull body) of every reference this run may pull, from the pre-flight.
    grants: HashMap<String, String>,
}

impl Node<'_> {
    fn auth(&self, reference: &str) -> Result<String, String> {
        let named: Named = parse_normalized_named(reference).map_err(|e| e.to_string())?;
        let key = auth::config_key(&named.domain);
        Ok(self
            .config
            .resolve(&key, self.lookup.path.as_ref())?
            .encode())
    }

    fn list(&self) -> Result<Vec<PluginObject>, String> {
        let resp = self
            .client
            .request(Method::GET, "/plugins", ReqBody::Empty, None)
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&resp.body)
            .map_err(|e| format!("reading the plugins the daemon listed: {e}"))
    }

    fn inspect(&self, name: &str) -> Result<PluginObject, String> {
        let path = format!("/plugins/{}/json", escape_path(name));
        let resp = self
            .client
            .request(Method::GET, &path, ReqBody::Empty, None)
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&resp.body).map_err(|e| format!("reading plugin {name}: {e}"))
    }

    /// `GET /plugins/privileges` for `reference`.
    fn privileges(&self, reference: &str) -> Result<Vec<Privilege>, String> {
        let auth = self.auth(reference)?;
        let path = format!("/plugins/privileges?remote={}", escape_query(reference));
        let resp = self
            .client
            .request_with(
                Method::GET,
                &path,
                ReqBody::Empty,
                None,
                &[(AUTH_HEADER, &auth)],
            )
            .map_err(|e| e.to_string())?;
        let list: Option<Vec<Privilege>> = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("reading the privileges of {reference}: {e}"))?;
        Ok(list.unwrap_or_default())
    }

    /// Records the privileges to send with a pull of `reference`, checked with the registry.
    fn grant(&mut self, reference: &str) -> Result<Vec<Privilege>, String> {
        let list = self.privileges(reference)?;
        let body = serde_json::to_string(&list).map_err(|e| e.to_string())? + "\n";
        self.grants.insert(reference.to_string(), body);
        Ok(list)
    }

    /// A pull or upgrade request and its progress stream, which is read to the end (and not
    /// shown: apply prints changes, not layers).
    fn pull(&self, path: &str, reference: &str) -> Result<(), String> {
        let auth = self.auth(reference)?;
        let body = self
            .grants
            .get(reference)
            .cloned()
            .ok_or_else(|| format!("{reference}: privileges not checked"))?;
        let mut stream = self
            .client
            .request_stream(
                Method::POST,
                path,
                ReqBody::Full(Some(body.into())),
                Some("application/json"),
                &[(AUTH_HEADER, &auth)],
            )
            .map_err(|e| e.to_string())?;
        let mut sink = io::sink();
        let mut display = Display::new(&mut sink, false);
        display_stream(&mut stream, &mut display)
    }

    fn install(&self, name: &str, reference: &str) -> Result<(), String> {
        let path = format!(
            "/plugins/pull?name={}&remote={}",
            escape_query(name),
            escape_query(reference)
        );
        self.pull(&path, reference)
    }

    fn upgrade(&self, name: &str, reference: &str) -> Result<(), String> {
        let path = format!(
            "/plugins/{}/upgrade?remote={}",
            escape_path(name),
            escape_query(reference)
        );
        self.pull(&path, reference)
    }

    fn create(&self, name: &str, dir: &Path) -> Result<(), String> {
        create::upload(self.host, name, dir.to_path_buf(), false)
            .map(drop)
            .map_err(|f| f.msg)
    }

    fn post(&self, path: &str, body: Option<String>) -> Result<(), String> {
        let (body, ct) = match body {
            Some(b) => (ReqBody::Full(Some(b.into())), Some("application/json")),
            None => (ReqBody::Empty, None),
        };
        self.client
            .request(Method::POST, path, body, ct)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn enable(&self, name: &str) -> Result<(), String> {
        self.post(
            &format!("/plugins/{}/enable?timeout=0", escape_path(name)),
            None,
        )
    }

    fn disable(&self, name: &str) -> Result<(), String> {
        self.post(&format!("/plugins/{}/disable", escape_path(name)), None)
    }

    fn set(&self, name: &str, args: &[String]) -> Result<(), String> {
        self.post(
            &format!("/plugins/{}/set", escape_path(name)),
            Some(set_body(args)),
        )
    }

    fn remove(&self, name: &str, force: bool) -> Result<(), String> {
        let force = if force { "?force=1" } else { "" };
        self.client
            .request(
                Method::DELETE,
                &format!("/plugins/{}{force}", escape_path(name)),
                ReqBody::Empty,
                None,
            )
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Sets `args` with the plugin disabled, as the daemon requires, enabling it again if it was.
    fn set_disabled(&self, name: &str, args: &[String], enabled: bool) -> Result<(), String> {
        if enabled {
            self.disable(name)?;
        }
        let set = self.set(name, args);
        if enabled {
            let again = self.enable(name);
            set?;
            again
        } else {
            set
        }
    }

    /// Runs one step; returns the undo entries it needs (in the order they were made) and whether
    /// it changed anything. A step that fails half-way returns the undo of its done half with
    /// the error.
    fn run(&self, step: &Step) -> Result<(Vec<Undo>, bool), (Vec<Undo>, String)> {
        let fail = |e: String| (Vec::new(), e);
        match step {
            Step::Install { name, reference } => {
                // A failed pull leaves nothing (docs/distribution.md); a plugin of that name that
                // exists now is someone else's (`plugin … already exists`), never removed here.
                self.install(name, reference).map_err(fail)?;
                Ok((vec![Undo::Uninstall { name: name.clone() }], true))
            }
            Step::Create { name, dir, digest } => {
                let copy = snapshot(self.state, dir, digest).map_err(fail)?;
                self.create(name, &copy).map_err(fail)?;
                Ok((vec![Undo::Uninstall { name: name.clone() }], true))
            }
            Step::Upgrade { name, from, to } => {
                self.upgrade(name, to).map_err(fail)?;
                Ok((
                    vec![Undo::UpgradeBack {
                        name: name.clone(),
                        to: from.clone(),
                    }],
                    true,
                ))
            }
            Step::Remove { plugin, snapshot } => {
                self.remove(&plugin.name, false).map_err(fail)?;
                Ok((
                    vec![Undo::Reinstall {
                        old: plugin.clone(),
                        snapshot: snapshot.clone(),
                    }],
                    true,
                ))
            }
            Step::Set { name, args } => {
                let before = self.inspect(name).map_err(fail)?;
                let mut config = before.config.clone();
                let mut settings = before.settings.clone();
                settable::apply(&mut config, &mut settings, args)
                    .map_err(|e| fail(format!("settings: {e}")))?;
                if settings == before.settings {
                    return Ok((Vec::new(), false));
                }
                self.set_disabled(name, args, before.enabled)
                    .map_err(fail)?;
                Ok((
                    vec![Undo::SetBack {
                        name: name.clone(),
                        old: before.settings,
                    }],
                    true,
                ))
            }
            Step::Enable { name } => {
                self.enable(name).map_err(fail)?;
                Ok((vec![Undo::Disable { name: name.clone() }], true))
            }
            Step::Disable { name } => {
                self.disable(name).map_err(fail)?;
                Ok((vec![Undo::Enable { name: name.clone() }], true))
            }
        }
    }

    fn undo(&self, u: &Undo) -> Result<(), String> {
        match u {
            Undo::Uninstall { name } => self.remove(name, true),
            Undo::UpgradeBack { name, to } => self.upgrade(name, to),
            Undo::SetBack { name, old } => {
                let now = self.inspect(name)?;
                let args = restore_args(old, &now);
                if args.is_empty() {
                    return Ok(());
                }
                self.set_disabled(name, &args, now.enabled)
            }
            Undo::Disable { name } => self.disable(name),
            Undo::Enable { name } => self.enable(name),
            Undo::Reinstall { old, snapshot } => {
                match snapshot {
                    Some(digest) => self.create(&old.name, &snapshot_path(self.state, digest))?,
                    None => self.install(&old.name, &old.plugin_reference)?,
                }
                let now = self.inspect(&old.name)?;
                let args = restore_args(&old.settings, &now);
                if !args.is_empty() {
                    self.set(&old.name, &args)?;
                }
                // Not enabled here: a removal is always preceded by a disable, whose own undo
                // (replayed next) enables it again.
                Ok(())
            }
        }
    }
}

/// `plugd apply`.
pub(crate) fn apply(
    host: &str,
    a: &ApplyArgs,
    out: &mut dyn Write,
    lookup: &Lookup,
) -> Result<(), Failure> {
    let file = &a.files[0];
    let text = fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let base = Path::new(file)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let base = fs::canonicalize(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    let desired = parse(file, &base, &text)?;
    let _lock = if a.dry_run {
        None
    } else {
        Some(lock(&a.state)?)
    };
    let record = load_record(&a.state)?;
    let mut node = Node {
        host,
        state: &a.state,
        client: ApiClient::new(host)?,
        config: DockerConfig::load(lookup.config_dir.as_deref())?,
        lookup,
        grants: HashMap::new(),
    };
    let current = node.list()?;

    // Bundles: readable, a valid config asking exactly what the file grants, settings that exist.
    let mut digests = HashMap::new();
    for w in &desired.plugins {
        if let Source::Bundle(dir) = &w.source {
            let at = |what: String| format!("{file}: plugin {}: {what}", w.name);
            let config_path = dir.join("config.json");
            let bytes = fs::read(&config_path)
                .map_err(|e| at(format!("bundle: {}: {e}", config_path.display())))?;
            let (config, _) = PluginConfig::parse(&bytes)
                .map_err(|e| at(format!("bundle: {}: {e}", config_path.display())))?;
            check_grants(
                &at,
                &w.privileges,
                &privileges::compute(&config),
                "the bundle",
            )?;
            let mut cfg = config.clone();
            let mut settings = Settings::initial(&config);
            settable::apply(&mut cfg, &mut settings, &w.settings)
                .map_err(|e| at(format!("settings: {e}")))?;
            let digest =
                bundle_digest(dir).map_err(|e| at(format!("bundle: {}: {e}", dir.display())))?;
            digests.insert(w.name.clone(), digest);
        }
    }
    let steps = plan(file, &desired, &current, &record, &digests)?;

    // References: every one to pull resolves and asks for what the file grants; every one a
    // rollback would pull back resolves too.
    for step in &steps {
        match step {
            Step::Install { name, reference }
            | Step::Upgrade {
                name,
                to: reference,
                ..
            } => {
                let w = desired.plugins.iter().find(|w| &w.name == name);
                let at = |what: String| format!("{file}: plugin {name}: {what}");
                let wanted = node
                    .grant(reference)
                    .map_err(|e| at(format!("reference {reference}: {e}")))?;
                if let Some(w) = w {
                    check_grants(&at, &w.privileges, &wanted, reference)?;
                }
                if let Step::Upgrade { from, .. } = step {
                    node.grant(from).map_err(|e| {
                        at(format!(
                            "the current reference {from} does not resolve, so a failed run could not go back to it: {e}"
                        ))
                    })?;
                }
            }
            Step::Remove { plugin, snapshot } => {
                let lost = match snapshot {
                    Some(digest) => (!snapshot_path(&a.state, digest).is_dir())
                        .then(|| "the snapshot of its bundle is gone".to_string()),
                    None => node.grant(&plugin.plugin_reference).err().map(|e| {
                        format!(
                            "it cannot be installed again from {} ({e})",
                            plugin.plugin_reference
                        )
                    }),
                };
                if let Some(why) = lost {
                    let _ = writeln!(
                        out,
                        "warning: {}: {why}: if a later step fails, it stays removed",
                        plugin.name
                    );
                }
            }
            _ => {}
        }
    }

    if a.dry_run {
        if steps.is_empty() {
            let _ = writeln!(out, "no changes: the node is as {file} says");
        } else {
            let _ = writeln!(out, "plan ({} steps, nothing changed):", steps.len());
            for s in &steps {
                let _ = writeln!(out, "  {s}");
            }
        }
        return Ok(());
    }

    let mut undo: Vec<Undo> = Vec::new();
    let mut changes = 0;
    for step in &steps {
        match node.run(step) {
            Ok((u, changed)) => {
                undo.extend(u);
                if changed {
                    changes += 1;
                    let _ = writeln!(out, "{step}");
                    let _ = out.flush();
                }
            }
            Err((u, e)) => {
                undo.extend(u);
                let _ = writeln!(out, "FAILED: {step}: {e}");
                let mut record = record;
                let before = record.clone();
                let mut msg = rollback(&node, undo, out, step, &e, &mut record);
                if record != before
                    && let Err(e) = save_record(&a.state, &record)
                {
                    msg.push_str(&format!(
                        "\nthe record {} could not be updated ({e}): the next run will replace the re-created bundle plugins",
                        a.state.display()
                    ));
                }
                prune_snapshots(&a.state, &record);
                return Err(msg.into());
            }
        }
    }

    // Record the bundle plugins as they now are.
    let mut new_record = Record::default();
    for w in &desired.plugins {
        if let (Source::Bundle(_), Some(d)) = (&w.source, digests.get(&w.name)) {
            let id = node
                .inspect(&w.name)
                .map(|p| p.id)
                .map_err(|e| format!("{e} (after the run: the node has converged)"))?;
            new_record.bundles.insert(
                w.name.clone(),
                BundleRecord {
                    id,
                    digest: d.clone(),
                },
            );
        }
    }
    if new_record != record && (a.state.exists() || !new_record.bundles.is_empty()) {
        save_record(&a.state, &new_record).map_err(|e| {
            format!(
                "the node has converged, but the record {} could not be written ({e}): the next run will replace the bundle plugins",
                a.state.display()
            )
        })?;
    }
    prune_snapshots(&a.state, &new_record);
    if changes == 0 {
        let _ = writeln!(out, "no changes: the node is as {file} says");
    } else {
        let _ = writeln!(out, "{changes} changes: the node is as {file} says");
    }
    Ok(())
}

/// The file's grants must be exactly what the plugin asks for (compared as the daemon compares
/// them): more would grant what nobody asked, fewer would fail the pull half-way.
fn check_grants(
    at: &dyn Fn(String) -> String,
    granted: &[Privilege],
    wanted: &[Privilege],
    what: &str,
) -> Result<(), String> {
    if privileges::same(granted, wanted) {
        return Ok(());
    }
    let show = |l: &[Privilege]| {
        let items: Vec<String> = l
            .iter()
            .map(|p| format!("{} = {:?}", p.name, p.value))
            .collect();
        format!("[{}]", items.join(", "))
    };
    Err(at(format!(
        "privileges: the file grants {} but {what} asks for {}",
        show(granted),
        show(wanted)
    )))
}

/// Replays `undo` in reverse and says what the node is left as. A bundle plugin created again
/// from its snapshot has a new id, which `record` is updated with, so the next run knows it.
fn rollback(
    node: &Node<'_>,
    undo: Vec<Undo>,
    out: &mut dyn Write,
    failed: &Step,
    error: &str,
    record: &mut Record,
) -> String {
    let mut left = Vec::new();
    let mut recreated = Vec::new();
    for u in undo.iter().rev() {
        match node.undo(u) {
            Ok(()) => {
                let _ = writeln!(out, "rolled back: {u}");
                if let Undo::Reinstall { old, .. } = u {
                    recreated.push(old.name.clone());
                }
                if let Undo::Reinstall {
                    old,
                    snapshot: Some(_),
                } = u
                    && let (Some(entry), Ok(now)) =
                        (record.bundles.get_mut(&old.name), node.inspect(&old.name))
                {
                    entry.id = now.id;
                }
            }
            Err(e) => {
                let _ = writeln!(out, "NOT rolled back: {u}: {e}");
                left.push(format!("{u}: {e}"));
            }
        }
    }
    // A removed plugin comes back equal but not identical: a new id, an empty propagated mount.
    let recreated = if recreated.is_empty() {
        String::new()
    } else {
        format!(
            "; {} removed and installed again (new id, propagated-mount data not kept)",
            recreated.join(", ")
        )
    };
    if left.is_empty() {
        format!(
            "apply failed at \"{failed}\": {error}\nthe node is as it was before the run ({} changes rolled back{recreated})",
            undo.len()
        )
    } else {
        format!(
            "apply failed at \"{failed}\": {error}\nthe node is NOT as it was before the run: {} of {} changes could not be rolled back:\n  {}",
            left.len(),
            undo.len(),
            left.join("\n  ")
        )
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
