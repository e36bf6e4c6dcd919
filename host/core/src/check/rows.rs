//! The check's matrix: for each privilege, what the declaration implies in each runtime, what the
//! probe there saw, and a verdict. The one place where "declared" meets "enforced": the
//! expectations are read from [`Effective`] (the value both runtimes build from) and dockerd's
//! defaults, never from a runtime's own code, so a runtime that drifts from the declaration shows
//! up as a mismatch instead of agreeing with itself.
//!
//! A column is `native` (plugd's sandbox), `wasm` (plugd's WASI grants) or `dockerd` (a live
//! dockerd's enforcement of the same bundle, judged by the native expectations: dockerd is the
//! reference the native sandbox copies). A cell is `ok`, `mismatch`, `n/a` (the privilege does not
//! exist there, with the reason) or `not run` (the column's probe did not run: the runtime refused
//! the declaration, has no probe, or failed).

use super::probe::{self, Attempt, Report};
use crate::config::{CAPABILITIES, PluginConfig};
use crate::effective::{DEFAULT_CAPABILITIES, DEFAULT_PATH_ENV, Effective};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Who enforced what a column shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Column {
    /// plugd's native sandbox.
    Native,
    /// plugd's wasm runtime.
    Wasm,
    /// A live dockerd.
    Dockerd,
}

impl Column {
    /// The lowercase name (`native`).
    pub fn name(self) -> &'static str {
        match self {
            Column::Native => "native",
            Column::Wasm => "wasm",
            Column::Dockerd => "dockerd",
        }
    }
}

/// How one column's probe went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The probe ran and reported (plus plugd's host-side `host:*` attempts).
    Ran(Report),
    /// The runtime refuses this declaration: it would not run the plugin either.
    Refused(String),
    /// This column could not be checked (no probe, no dockerd).
    Unavailable(String),
    /// The probe did not report (it failed to start, or its reply was not a report).
    Failed(String),
}

/// Host facts the judgement needs and only plugd can read (never from a probe).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostView {
    /// plugd's namespace inodes by name (`net`, `pid`, `ipc`).
    pub ns: BTreeMap<String, String>,
    /// The host's network interfaces but `lo`.
    pub interfaces: Vec<String>,
    /// Per mount destination, the source's [`probe::listing`] (directory) or `file <size>`, as
    /// plugd reads it on the host.
    pub identities: BTreeMap<String, String>,
    /// The nodes behind the effective device paths: `(type, major, minor)`.
    pub device_nodes: Vec<(char, u32, u32)>,
    /// The same by path, as a probe writes an opened node: `c 10:229`.
    pub device_by_path: BTreeMap<String, String>,
    /// Per bind destination, the source's `<major>:<minor>:<inode>` on the host.
    pub inodes: BTreeMap<String, String>,
    /// plugd was started with `--engine-metrics-socket` (the wasm import works).
    pub engine_metrics: bool,
    /// ... and that path is a socket now (the native sandbox binds it only then).
    pub engine_metrics_socket: bool,
    /// The host's first resolver is a loopback address (a private namespace's own loopback
    /// answers a connect to it, so a connect proves nothing there).
    pub resolver_on_loopback: bool,
    /// Whether plugd itself, on the host, can connect a UDP socket to that resolver (`None`: no
    /// resolver is configured): what a plugin sharing the host's network must see too.
    pub resolver_reachable: Option<bool>,
}

/// Ids of the attempts plugd itself adds to a report, after the probe answered, from the host.
pub mod host_ids {
    /// The file the probe made in the propagated mount is on the host, with the nonce.
    pub const PROPAGATED_WRITE: &str = "host:propagated:write";
    /// The tmpfs the probe mounted in the propagated mount is mounted on the host.
    pub const PROPAGATED_MOUNT: &str = "host:propagated:mount";
    /// A mount whose path holds the nonce appeared on the host outside the propagated mount.
    pub const LEAKED_MOUNT: &str = "host:leaked-mount";
}

/// The whole check of one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matrix {
    /// The plugin's name.
    pub plugin: String,
    /// The plugin's id.
    pub id: String,
    /// Each column that was asked for, in order, and how its probe went.
    pub columns: Vec<ColumnState>,
    /// One row per privilege tried.
    pub rows: Vec<Row>,
    /// Rows whose verdict is `mismatch`.
    pub mismatches: usize,
}

/// How one column went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnState {
    /// The column.
    pub column: Column,
    /// Whether its probe ran, and if not why not.
    pub state: State,
    /// The probe's name and version, or why it did not run.
    pub detail: String,
}

/// Whether a column's probe ran (the [`Outcome`] without its payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The probe reported.
    Ran,
    /// The runtime refuses the declaration: an answer, not a failure.
    Refused,
    /// Nothing to probe with (no probe, no dockerd).
    Unavailable,
    /// The probe did not report.
    Failed,
}

impl State {
    /// The lowercase name (`ran`).
    pub fn name(self) -> &'static str {
        match self {
            State::Ran => "ran",
            State::Refused => "refused",
            State::Unavailable => "unavailable",
            State::Failed => "failed",
        }
    }
}

/// One privilege.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The privilege class (`capability`, `network`, `mount`, `device`, `namespace`, `process`,
    /// `import`, `escape`, `propagated-mount`).
    pub class: String,
    /// What is tried (`CAP_SYS_ADMIN`, `/data: write`).
    pub privilege: String,
    /// What the declaration says about it.
    pub declared: String,
    /// One cell per column asked for.
    pub cells: BTreeMap<Column, Cell>,
    /// `ok` or `mismatch`.
    pub verdict: Verdict,
}

/// One privilege in one column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// What the declaration implies here.
    pub expected: String,
    /// What the probe saw.
    pub observed: String,
    /// How they compare.
    pub status: CellStatus,
}

/// How a cell compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellStatus {
    /// Observed equals expected.
    Ok,
    /// They differ: the sandbox gives more or less than declared.
    Mismatch,
    /// The privilege does not exist in this runtime.
    NotApplicable,
    /// The column's probe did not run.
    NotRun,
}

/// A row's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No column disagrees with the declaration.
    Ok,
    /// At least one column does.
    Mismatch,
}

/// Everything a row's judgement reads.
pub struct Context<'a> {
    /// The declaration.
    pub config: &'a PluginConfig,
    /// Config and settings, read once.
    pub effective: &'a Effective,
    /// Host facts.
    pub host: &'a HostView,
}

/// The attempts of one report, by id (the last of an id wins; a probe has no reason to repeat
/// one).
struct Attempts<'a>(HashMap<&'a str, &'a Attempt>);

impl<'a> Attempts<'a> {
    fn of(report: &'a Report) -> Self {
        Attempts(report.attempts.iter().map(|a| (a.id.as_str(), a)).collect())
    }

    fn get(&self, id: &str) -> Option<&'a Attempt> {
        self.0.get(id).copied()
    }
}

/// How one row judges one column.
enum Expect {
    /// The attempt succeeds (`true`) or fails.
    Access(String, bool),
    /// The attempt's detail, through `view`, equals the value.
    Value(String, String, fn(&str) -> String),
    /// Judged by a function of the attempts: `(expected, observed, ok)`.
    Custom(Judge),
    /// The privilege does not exist in this column.
    NotApplicable(&'static str),
}

/// A custom judgement: `(expected, observed, ok)` from the attempts.
type Judge = Box<dyn Fn(&Attempts) -> (String, String, bool)>;

struct RowSpec {
    class: &'static str,
    privilege: String,
    declared: String,
    expect: Box<dyn Fn(Column) -> Expect>,
}

/// Builds the matrix from the declaration and each column's outcome.
pub fn matrix(ctx: &Context, plugin: &str, id: &str, columns: &[(Column, Outcome)]) -> Matrix {
    let specs = specs(ctx);
    let states = columns
        .iter()
        .map(|(c, o)| {
            let (state, detail) = match o {
                Outcome::Ran(r) => (State::Ran, r.probe.clone()),
                Outcome::Refused(why) => (State::Refused, why.clone()),
                Outcome::Unavailable(why) => (State::Unavailable, why.clone()),
                Outcome::Failed(why) => (State::Failed, why.clone()),
            };
            ColumnState {
                column: *c,
                state,
                detail,
            }
        })
        .collect();
    let indexed: Vec<(Column, Option<Attempts>)> = columns
        .iter()
        .map(|(c, o)| {
            (
                *c,
                match o {
                    Outcome::Ran(r) => Some(Attempts::of(r)),
                    _ => None,
                },
            )
        })
        .collect();
    let rows: Vec<Row> = specs
        .into_iter()
        .map(|spec| {
            let cells: BTreeMap<Column, Cell> = indexed
                .iter()
                .map(|(column, attempts)| {
                    (*column, judge(&(spec.expect)(*column), attempts.as_ref()))
                })
                .collect();
            let verdict = if cells.values().any(|c| c.status == CellStatus::Mismatch) {
                Verdict::Mismatch
            } else {
                Verdict::Ok
            };
            Row {
                class: spec.class.to_string(),
                privilege: spec.privilege,
                declared: spec.declared,
                cells,
                verdict,
            }
        })
        .collect();
    let mismatches = rows
        .iter()
        .filter(|r| r.verdict == Verdict::Mismatch)
        .count();
    Matrix {
        plugin: plugin.to_string(),
        id: id.to_string(),
        columns: states,
        rows,
        mismatches,
    }
}

fn judge(expect: &Expect, attempts: Option<&Attempts>) -> Cell {
    let expected_text = |e: &Expect| match e {
        Expect::Access(_, true) => "granted".to_string(),
        Expect::Access(_, false) => "denied".to_string(),
        Expect::Value(_, v, _) => v.clone(),
        Expect::Custom(_) => String::new(),
        Expect::NotApplicable(why) => format!("n/a: {why}"),
    };
    if let Expect::NotApplicable(why) = expect {
        return Cell {
            expected: "n/a".to_string(),
            observed: format!("n/a: {why}"),
            status: CellStatus::NotApplicable,
        };
    }
    let Some(attempts) = attempts else {
        return Cell {
            expected: expected_text(expect),
            observed: "not run".to_string(),
            status: CellStatus::NotRun,
        };
    };
    let (expected, observed, ok) = match expect {
        Expect::Access(id, want) => match attempts.get(id) {
            None => (expected_text(expect), "not reported".to_string(), false),
            Some(a) if !a.ok && a.detail.starts_with(probe::UNTRIED) => (
                expected_text(expect),
                format!("could not try: {}", &a.detail[probe::UNTRIED.len()..]),
                false,
            ),
            Some(a) => {
                let seen = if a.ok {
                    "granted".to_string()
                } else if a.detail.is_empty() {
                    "denied".to_string()
                } else {
                    format!("denied ({})", a.detail)
                };
                (expected_text(expect), seen, a.ok == *want)
            }
        },
        Expect::Value(id, want, view) => match attempts.get(id) {
            None => (want.clone(), "not reported".to_string(), false),
            Some(a) => {
                let seen = view(&a.detail);
                let ok = &seen == want;
                (want.clone(), seen, ok)
            }
        },
        Expect::Custom(f) => f(attempts),
        Expect::NotApplicable(_) => unreachable!("handled above"),
    };
    Cell {
        expected,
        observed,
        status: if ok {
            CellStatus::Ok
        } else {
            CellStatus::Mismatch
        },
    }
}

/// The environment a native sandbox (and dockerd's runc) gives: dockerd's `PATH` first, then the
/// settings, a repeated name keeping the first one's place and the last one's value.
pub fn native_env(effective: &Effective) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for kv in std::iter::once(DEFAULT_PATH_ENV).chain(effective.env.iter().map(String::as_str)) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match out.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => out.push((k.to_string(), v.to_string())),
        }
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The capability names whose bits are set in a `/proc/self/status` hex mask.
fn cap_names(mask: u64) -> Vec<&'static str> {
    CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, n)| *n)
        .collect()
}

fn mask(attempts: &Attempts, field: &str) -> Option<u64> {
    let a = attempts.get(&format!("status:{field}"))?;
    u64::from_str_radix(a.detail.trim(), 16).ok()
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(",")
    }
}

/// A JSON array of strings from a probe, `[1..]` when `skip_first`; a detail that is not one is
/// shown as it came.
fn json_list(detail: &str, skip_first: bool, drop_home: bool) -> String {
    match serde_json::from_str::<Vec<String>>(detail) {
        Ok(v) => {
            let v: Vec<String> = v
                .into_iter()
                .skip(usize::from(skip_first))
                .filter(|e| !(drop_home && e.starts_with("HOME=")))
                .collect();
            serde_json::to_string(&v).unwrap_or_default()
        }
        Err(_) => format!("unreadable: {detail}"),
    }
}

fn specs(ctx: &Context) -> Vec<RowSpec> {
    let mut rows = Vec::new();
    capabilities(ctx, &mut rows);
    network(ctx, &mut rows);
    mounts(ctx, &mut rows);
    escapes(ctx, &mut rows);
    propagated(ctx, &mut rows);
    devices(ctx, &mut rows);
    namespaces(ctx, &mut rows);
    sandbox(ctx, &mut rows);
    process(ctx, &mut rows);
    imports(ctx, &mut rows);
    rows
}

const NO_CAPS: &str = "a component has no capabilities, only WASI grants";

fn row(
    class: &'static str,
    privilege: impl Into<String>,
    declared: impl Into<String>,
    expect: impl Fn(Column) -> Expect + 'static,
) -> RowSpec {
    RowSpec {
        class,
        privilege: privilege.into(),
        declared: declared.into(),
        expect: Box::new(expect),
    }
}

fn capabilities(ctx: &Context, rows: &mut Vec<RowSpec>) {
    let declared: Vec<String> = ctx.effective.capabilities.clone();
    for cap in CAPABILITIES {
        let is_declared = declared.iter().any(|d| d == cap);
        let is_default = DEFAULT_CAPABILITIES.contains(&cap);
        let granted = is_declared || is_default;
        let said = match (is_declared, is_default) {
            (true, _) => "declared",
            (false, true) => "dockerd default",
            (false, false) => "not declared",
        };
        let bit = CAPABILITIES.iter().position(|c| *c == cap).unwrap_or(0);
        let op = probe::CAP_OPERATIONS.iter().any(|(c, _)| *c == cap);
        rows.push(row("capability", cap, said, move |column| {
            if column == Column::Wasm {
                return Expect::NotApplicable(NO_CAPS);
            }
            Expect::Custom(Box::new(move |a: &Attempts| {
                let sets: Vec<(&str, Option<u64>)> = ["CapEff", "CapPrm", "CapBnd"]
                    .iter()
                    .map(|f| (*f, mask(a, f)))
                    .collect();
                if sets.iter().any(|(_, m)| m.is_none()) {
                    return (
                        "granted".into(),
                        "capability sets not reported".into(),
                        false,
                    );
                }
                let has: Vec<&str> = sets
                    .iter()
                    .filter(|(_, m)| m.is_some_and(|m| m & (1u64 << bit) != 0))
                    .map(|(f, _)| match *f {
                        "CapEff" => "effective",
                        "CapPrm" => "permitted",
                        _ => "bounding",
                    })
                    .collect();
                let mut observed = match has.len() {
                    3 => "effective".to_string(),
                    0 => "absent".to_string(),
                    _ => format!("{} only", has.join("+")),
                };
                let mut ok = if granted {
                    has.len() == 3
                } else {
                    has.is_empty()
                };
                if op {
                    match a.get(&format!("op:{cap}")) {
                        Some(o) if o.ok => observed.push_str("; operation succeeded"),
                        Some(o) => observed.push_str(&format!("; operation failed ({})", o.detail)),
                        None => observed.push_str("; operation not reported"),
                    }
                    ok &= a
                        .get(&format!("op:{cap}"))
                        .is_some_and(|o| o.ok == granted && !o.detail.starts_with(probe::UNTRIED));
                }
                let expected = if granted { "effective" } else { "absent" };
                (expected.to_string(), observed, ok)
            }))
        }));
    }
    let inheritable = {
        let mut d: Vec<&str> = CAPABILITIES
            .iter()
            .copied()
            .filter(|c| declared.iter().any(|x| x == c))
            .collect();
        d.dedup();
        list_or_none(&d)
    };
    let declared_text = if declared.is_empty() {
        "none declared".to_string()
    } else {
        declared.join(",")
    };
    let set_row = |name: &'static str, field: &'static str, want: String, declared: String| {
        row("capability", name, declared, move |column| {
            if column == Column::Wasm {
                return Expect::NotApplicable(NO_CAPS);
            }
            let want = want.clone();
            Expect::Custom(Box::new(move |a: &Attempts| {
                let seen = match mask(a, field) {
                    Some(m) => list_or_none(&cap_names(m)),
                    None => "not reported".to_string(),
                };
                let ok = seen == want;
                (want.clone(), seen, ok)
            }))
        })
    };
    rows.push(set_row(
        "inheritable set",
        "CapInh",
        inheritable,
        format!("{declared_text} (dockerd: the declared ones)"),
    ));
    rows.push(set_row(
        "ambient set",
        "CapAmb",
        "none".to_string(),
        "never".to_string(),
    ));
    for (name, field) in [("no_new_privs", "NoNewPrivs"), ("seccomp", "Seccomp")] {
        rows.push(row(
            "capability",
            name,
            "dockerd sets none for plugins",
            move |column| {
                if column == Column::Wasm {
                    return Expect::NotApplicable(NO_CAPS);
                }
                Expect::Value(format!("status:{field}"), "0".to_string(), |d| {
                    d.trim().to_string()
                })
            },
        ));
    }
}

fn network(ctx: &Context, rows: &mut Vec<RowSpec>) {
    let host = ctx.effective.host_network();
    let declared = match ctx.effective.network.as_str() {
        "" => "network \"\" (a private namespace)".to_string(),
        t => format!("network {t:?}"),
    };
    let host_net = ctx.host.ns.get("net").cloned();
    rows.push(row(
        "network",
        "network namespace",
        declared.clone(),
        move |column| {
            if column == Column::Wasm {
                return Expect::NotApplicable("no namespaces: WASI sockets are not granted");
            }
            let host_net = host_net.clone();
            Expect::Custom(Box::new(move |a: &Attempts| {
                let want = if host { "the host's" } else { "its own" };
                let Some(seen) = a.get("ns:net") else {
                    return (want.into(), "not reported".into(), false);
                };
                let shared = host_net.as_deref() == Some(seen.detail.as_str());
                let observed = if shared { "the host's" } else { "its own" };
                (want.into(), observed.into(), shared == host)
            }))
        },
    ));
    let interfaces = ctx.host.interfaces.clone();
    rows.push(row(
        "network",
        "host interfaces visible",
        declared.clone(),
        move |column| {
            if column == Column::Wasm {
                return Expect::NotApplicable("no interfaces: WASI sockets are not granted");
            }
            if interfaces.is_empty() {
                return Expect::NotApplicable("the host has no interface but lo");
            }
            let interfaces = interfaces.clone();
            Expect::Custom(Box::new(move |a: &Attempts| {
                let want = if host { "visible" } else { "hidden" };
                let Some(seen) = a.get("net:interfaces") else {
                    return (want.into(), "not reported".into(), false);
                };
                let names: Vec<&str> = seen.detail.split(',').filter(|s| !s.is_empty()).collect();
                let visible = interfaces.iter().any(|i| names.contains(&i.as_str()));
                let observed = if visible {
                    format!("visible ({})", names.join(","))
                } else {
                    format!("hidden (sees {})", list_or_none(&names))
                };
                (want.into(), observed, visible == host)
            }))
        },
    ));
    rows.push(row(
        "network",
        "host loopback listener reachable",
        declared.clone(),
        move |column| Expect::Access("net:host-loopback".into(), host && column != Column::Wasm),
    ));
    rows.push(row(
        "network",
        "bind a socket",
        declared.clone(),
        move |column| {
            // A native sandbox always has a loopback of its own (dockerd's `none` too).
            Expect::Access("net:bind".into(), column != Column::Wasm)
        },
    ));
    let loopback_resolver = ctx.host.resolver_on_loopback;
    let reachable = ctx.host.resolver_reachable;
    rows.push(row("network", "name lookup", declared, move |column| {
        if column == Column::Wasm {
            return Expect::Access("net:lookup".into(), false);
        }
        match reachable {
            None => Expect::NotApplicable("the host has no resolver in /etc/resolv.conf"),
            Some(_) if loopback_resolver && !host => Expect::NotApplicable(
                "the host's resolver is on loopback, which a private namespace has too",
            ),
            // Sharing the host's network, the plugin reaches the resolver exactly when plugd does.
            Some(from_host) => Expect::Access("net:lookup".into(), host && from_host),
        }
    }));
}

fn mounts(ctx: &Context, rows: &mut Vec<RowSpec>) {
    for m in &ctx.effective.mounts {
        let dest = m.destination.clone();
        let ro = m.read_only();
        let source = m.source.clone().unwrap_or_default();
        let opts = m.options.clone().unwrap_or_default().join(",");
        let declared = format!(
            "{} {} -> {dest} [{opts}]",
            if m.kind.is_empty() { "bind" } else { &m.kind },
            if source.is_empty() {
                "(no source)"
            } else {
                &source
            }
        );
        let d = dest.clone();
        rows.push(row(
            "mount",
            format!("{dest}: read"),
            declared.clone(),
            move |_| Expect::Access(probe::mount_id(&d, "read"), true),
        ));
        let d = dest.clone();
        rows.push(row(
            "mount",
            format!("{dest}: write"),
            declared.clone(),
            move |_| Expect::Access(probe::mount_id(&d, "write"), !ro),
        ));
        if let Some(identity) = ctx
            .host
            .identities
            .get(&dest)
            .cloned()
            .filter(|_| m.is_bind())
        {
            let d = dest.clone();
            rows.push(row(
                "mount",
                format!("{dest}: shows exactly its source"),
                declared.clone(),
                move |_| {
                    Expect::Value(probe::mount_id(&d, "identity"), identity.clone(), |s| {
                        s.to_string()
                    })
                },
            ));
        }
        if let Some(inode) = ctx.host.inodes.get(&dest).cloned().filter(|_| m.is_bind()) {
            let d = dest.clone();
            rows.push(row(
                "mount",
                format!("{dest}: is its source (device and inode)"),
                declared.clone(),
                move |column| {
                    if column == Column::Wasm {
                        return Expect::NotApplicable("WASI shows no inode numbers");
                    }
                    Expect::Value(probe::mount_id(&d, "inode"), inode.clone(), |s| {
                        s.to_string()
                    })
                },
            ));
        }
        let d = dest.clone();
        rows.push(row(
            "escape",
            format!("{dest}/../..: host file outside every mount"),
            declared,
            move |_| Expect::Access(probe::escape_mount_id(&d), false),
        ));
    }
}

fn escapes(_ctx: &Context, rows: &mut Vec<RowSpec>) {
    for (id, what) in [
        ("escape:absolute", "host file by its absolute path"),
        ("escape:dotdot", "host file by /../../.. and its path"),
        ("escape:symlink", "host file through a symlink made inside"),
    ] {
        rows.push(row(
            "escape",
            what,
            "nothing outside the declared mounts",
            move |_| Expect::Access(id.into(), false),
        ));
    }
}

fn propagated(ctx: &Context, rows: &mut Vec<RowSpec>) {
    let sys_admin = ctx
        .effective
        .capabilities
        .iter()
        .any(|c| c == "CAP_SYS_ADMIN");
    rows.push(row(
        "propagated-mount",
        "a mount made inside / or a writable mount reaches the host",
        match ctx.config.propagated_mount.as_str() {
            "" => "no PropagatedMount".to_string(),
            d => format!("only PropagatedMount {d} propagates"),
        },
        move |column| {
            if column == Column::Wasm {
                return Expect::NotApplicable("a component cannot mount");
            }
            if !sys_admin {
                return Expect::NotApplicable("it cannot mount without CAP_SYS_ADMIN");
            }
            Expect::Access(host_ids::LEAKED_MOUNT.into(), false)
        },
    ));
    match ctx.config.propagated_mount.as_str() {
        "" => {}
        dest => {
            let declared = format!("PropagatedMount {dest}");
            rows.push(row(
                "propagated-mount",
                "a file made inside is on the host",
                declared.clone(),
                |_| Expect::Access(host_ids::PROPAGATED_WRITE.into(), true),
            ));
            rows.push(row(
                "propagated-mount",
                "a mount made inside is on the host",
                declared,
                move |column| {
                    if column == Column::Wasm {
                        return Expect::NotApplicable("a component cannot mount");
                    }
                    if !sys_admin {
                        return Expect::NotApplicable("it cannot mount without CAP_SYS_ADMIN");
                    }
                    Expect::Access(host_ids::PROPAGATED_MOUNT.into(), true)
                },
            ));
        }
    }
}

fn devices(ctx: &Context, rows: &mut Vec<RowSpec>) {
    for d in &ctx.effective.devices {
        let Some(path) = d.path.clone().filter(|p| !p.is_empty()) else {
            continue;
        };
        let id = probe::device_id(&path);
        let node = ctx.host.device_by_path.get(&path).cloned();
        rows.push(row(
            "device",
            format!("{path}: open"),
            format!("device {path}"),
            move |_| {
                let Some(node) = node.clone() else {
                    return Expect::Access(id.clone(), true);
                };
                let id = id.clone();
                // Granted, and the node is the host's: a node of another device is no grant.
                Expect::Custom(Box::new(move |a: &Attempts| {
                    let want = format!("granted ({node})");
                    match a.get(&id) {
                        None => (want, "not reported".into(), false),
                        Some(x) if x.ok => {
                            let seen = format!("granted ({})", x.detail);
                            let ok = seen == want;
                            (want, seen, ok)
                        }
                        Some(x) => (want, format!("denied ({})", x.detail), false),
                    }
                }))
            },
        ));
    }
    let all = ctx.effective.allow_all_devices;
    for (kind, major, minor, what) in probe::UNDECLARED_DEVICES {
        let declared_node = ctx.host.device_nodes.contains(&(kind, major, minor));
        let granted = all || declared_node;
        let declared = if all {
            "AllowAllDevices".to_string()
        } else if declared_node {
            format!("a declared device is {kind} {major}:{minor}")
        } else {
            "not declared".to_string()
        };
        let id = probe::mknod_id(kind, major, minor);
        rows.push(row(
            "device",
            format!("{kind} {major}:{minor} ({what}) made with mknod: open"),
            declared,
            move |column| Expect::Access(id.clone(), granted && column != Column::Wasm),
        ));
    }
}

fn sandbox(_ctx: &Context, rows: &mut Vec<RowSpec>) {
    for (id, what) in [
        (
            "sandbox:proc-sys-write",
            "/proc/sys writable (kernel tunables)",
        ),
        ("sandbox:sys-write", "/sys writable"),
    ] {
        rows.push(row(
            "sandbox",
            what,
            "never (dockerd mounts both read-only)",
            move |column| {
                if column == Column::Wasm {
                    return Expect::NotApplicable("no /proc or /sys: nothing is preopened there");
                }
                Expect::Access(id.into(), false)
            },
        ));
    }
}

fn namespaces(ctx: &Context, rows: &mut Vec<RowSpec>) {
    for (name, shared) in [
        ("pid", ctx.effective.pid_host),
        ("ipc", ctx.effective.ipc_host),
    ] {
        let host_ns = ctx.host.ns.get(name).cloned();
        let field = if name == "pid" { "PidHost" } else { "IpcHost" };
        rows.push(row(
            "namespace",
            format!("{name} namespace"),
            format!("{field} {shared}"),
            move |column| {
                if column == Column::Wasm {
                    return Expect::NotApplicable("no namespaces: a component sees no processes");
                }
                let host_ns = host_ns.clone();
                Expect::Custom(Box::new(move |a: &Attempts| {
                    let want = if shared { "the host's" } else { "its own" };
                    let Some(seen) = a.get(&format!("ns:{name}")) else {
                        return (want.into(), "not reported".into(), false);
                    };
                    let is_host = host_ns.as_deref() == Some(seen.detail.as_str());
                    let observed = if is_host { "the host's" } else { "its own" };
                    (want.into(), observed.into(), is_host == shared)
                }))
            },
        ));
    }
    let pid_host = ctx.effective.pid_host;
    rows.push(row(
        "namespace",
        "host processes visible (plugd's /proc entry)",
        format!("PidHost {pid_host}"),
        move |column| {
            if column == Column::Wasm {
                return Expect::NotApplicable("no /proc: a component sees no processes");
            }
            Expect::Access("proc:host-pid".into(), pid_host)
        },
    ));
}

fn process(ctx: &Context, rows: &mut Vec<RowSpec>) {
    let native_env = native_env(ctx.effective);
    let wasm_env = ctx.effective.env.clone();
    let keeps_home = native_env.iter().any(|e| e.starts_with("HOME="));
    let declared_env = if ctx.effective.env.is_empty() {
        "none".to_string()
    } else {
        ctx.effective.env.join(" ")
    };
    rows.push(row("process", "environment", declared_env, move |column| {
        let (want, drop_home): (&Vec<String>, fn(&str) -> String) = match column {
            Column::Wasm => (&wasm_env, |d| json_list(d, false, false)),
            // runc and plugd-init add HOME from the rootfs' passwd when the env has none.
            _ if keeps_home => (&native_env, |d| json_list(d, false, false)),
            _ => (&native_env, |d| json_list(d, false, true)),
        };
        Expect::Value(
            "env".into(),
            serde_json::to_string(want).unwrap_or_default(),
            drop_home,
        )
    }));
    let args: Vec<String> = ctx.effective.args.iter().skip(1).cloned().collect();
    let want_args = serde_json::to_string(&args).unwrap_or_default();
    rows.push(row(
        "process",
        "arguments after argv[0]",
        if args.is_empty() {
            "none".to_string()
        } else {
            args.join(" ")
        },
        move |_| {
            Expect::Value("args".into(), want_args.clone(), |d| {
                json_list(d, true, false)
            })
        },
    ));
    let cwd = match ctx.config.work_dir.as_str() {
        "" => "/".to_string(),
        w => w.to_string(),
    };
    rows.push(row(
        "process",
        "working directory",
        format!("WorkDir {cwd}"),
        move |_| Expect::Value("cwd".into(), cwd.clone(), |d| d.to_string()),
    ));
}

fn imports(ctx: &Context, rows: &mut Vec<RowSpec>) {
    let types: Vec<String> = ctx
        .config
        .interface
        .types
        .iter()
        .flatten()
        .cloned()
        .collect();
    let metrics = types
        .iter()
        .any(|t| t.starts_with("docker.metricscollector/"));
    let (flag, socket) = (ctx.host.engine_metrics, ctx.host.engine_metrics_socket);
    rows.push(row(
        "import",
        "engine metrics socket",
        if metrics {
            "docker.metricscollector type"
        } else {
            "not a metrics collector"
        },
        move |column| {
            // dockerd binds its own metrics socket into every collector; plugd's native sandbox
            // the one `--engine-metrics-socket` names if it is a socket at the start, and its wasm
            // runtime gives the import whenever the flag is given.
            let granted = metrics
                && match column {
                    Column::Dockerd => true,
                    Column::Native => socket,
                    Column::Wasm => flag,
                };
            Expect::Access("import:engine-metrics".into(), granted)
        },
    ));
    let links = types.iter().any(|t| t.starts_with("docker.networkdriver/"))
        && ctx.effective.host_network()
        && ctx.effective.capabilities == ["CAP_NET_ADMIN"];
    rows.push(row(
        "import",
        "host-links (veth pairs made by plugd)",
        if links {
            "network driver, network host, CAP_NET_ADMIN"
        } else {
            "not a host-network driver with exactly CAP_NET_ADMIN"
        },
        move |column| {
            if column != Column::Wasm {
                return Expect::NotApplicable("a native plugin makes links itself (CAP_NET_ADMIN)");
            }
            Expect::Access("import:host-links".into(), links)
        },
    ));
}

#[cfg(test)]
mod tests;
