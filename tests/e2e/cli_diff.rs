//! Differential CLI test: the same sequence of `docker plugin …` commands runs against a real dockerd
//! and against plugd, with each docker CLI (28.x and Debian's 20.10), and stdout, stderr and exit
//! code of every pair must be equal after a few targeted normalisations.
//!
//! Both sides get the same bundle: the static native fixture (`/static-plugin`, as
//! [`Env::static_plugin_bundle`] makes it) with this module's `config.json`, run by dockerd as a
//! managed plugin and by plugd in its native runtime. Each side has bundle dirs of its own, which
//! differ only in `/etc/plugd-bundle` (the bundle's name): dockerd 20.10 refuses a second plugin
//! whose layer it already has. The config is valid for both (plugd validates configs, Docker does
//! not; see docs/protocol.md §3).
//!
//! Normalisations (see [`SideState::normalise`]), all applied to both sides alike but the last:
//! - ids (64-hex plugin ids, 12-hex short ids) → `<ID>`: random per create;
//! - `rootfs.diff_ids` (`sha256:<64 hex>`) → `sha256:<ID>` by the same rule: dockerd digests a gzip
//!   it makes itself, plugd the uploaded tar (docs/architecture.md), and the two sides' rootfs
//!   differ in `/etc/plugd-bundle` anyway;
//! - in the ambiguous-prefix steps only, the quoted prefix (`"7"`) → `"<PREFIX>"`: the prefix is
//!   picked per side from that side's random ids;
//! - dockerd's side only: the exact line `"DockerVersion": "<dockerd's version>",`, which dockerd
//!   20.10 stamps into every config and plugd deliberately leaves out (docs/protocol.md §1).
//!
//! No timings appear in these outputs (plugin objects carry none), so none are normalised.
//! Volumes are out of scope here (other modules test them).
//!
//! On a mismatch every step still runs; the test fails at the end with one report listing every
//! differing step (command, exit codes, and a line diff of each differing stream).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use crate::harness::{self, Cli, Dockerd, Env, Output, Plugd, normalize_ids};

/// The plugin every step is about (`cdiff:latest` once normalised by either daemon).
const NAME: &str = "cdiff";
/// Both sides' bundle: the static native fixture, where [`Env::static_plugin_bundle`] puts it.
const ENTRYPOINT: &str = "/static-plugin";
/// Socket name in the config; the native plugin gets it as `argv[1]` (through `args`) and listens
/// in its `/run/docker/plugins`, so dockerd finds it at `/run/docker/plugins/<id>/cdiff.sock`;
/// plugd forwards its own engine-facing socket to it.
const SOCKET: &str = "cdiff.sock";
/// With 17 plugins, two ids share their first hex digit (pigeonhole): at most 16 extra creates.
const MAX_EXTRAS: usize = 16;

#[test]
fn docker28_same_output_from_dockerd_and_plugd() {
    harness::isolated(|env| differential(env, Cli::Docker28));
}

#[test]
fn docker20_same_output_from_dockerd_and_plugd() {
    harness::isolated(|env| differential(env, Cli::Docker20));
}

/// The config of every bundle on both sides. Valid for Docker and for plugd's validation:
/// `docker.volumedriver/1.0`, a socket name, network `none`, propagatedMount `/data`.
fn config() -> Value {
    json!({
        "description": "plugd cli_diff plugin: one config, the static native fixture on both daemons",
        "documentation": "https://example.invalid/plugd/tests/e2e/cli_diff",
        "entrypoint": [ENTRYPOINT],
        "workdir": "/",
        "interface": {
            "socket": SOCKET,
            "types": ["docker.volumedriver/1.0"]
        },
        "network": { "type": "none" },
        "propagatedMount": "/data",
        "args": {
            "name": "socket",
            "description": "socket name (the native plugin's argv[1])",
            "settable": ["value"],
            "value": [SOCKET]
        },
        "env": [
            {
                "name": "DATA_DIR",
                "description": "where the plugin keeps volumes",
                "settable": ["value"],
                "value": "/data"
            },
            {
                "name": "GREETING",
                "description": "not read by the plugin; the variable `plugin set` changes",
                "settable": ["value"],
                "value": "hello"
            },
            {
                "name": "FIXED",
                "description": "not settable",
                "value": "1"
            }
        ]
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Dockerd,
    Plugd,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Dockerd => "dockerd",
            Side::Plugd => "plugd",
        }
    }

    /// Prefix of this side's bundle dirs (`d-main`, `p-extra1`, ...).
    fn tag(self) -> &'static str {
        match self {
            Side::Dockerd => "d",
            Side::Plugd => "p",
        }
    }
}

/// What a step must do on each side, checked on its own: two identical failures where a success
/// was due must not pass as "equal".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Ok,
    Fail,
}

/// Per-side values of the placeholders a step's arguments may contain (`<BUNDLE>`, `<PREFIX>`, ...).
struct SideState {
    side: Side,
    /// Exact lines (after trimming) removed from this side's output; see [`differential`].
    drop_lines: Vec<String>,
    vars: BTreeMap<&'static str, String>,
}

impl SideState {
    fn new(side: Side) -> SideState {
        SideState {
            side,
            drop_lines: Vec::new(),
            vars: BTreeMap::new(),
        }
    }

    fn args(&self, template: &[&str]) -> Vec<OsString> {
        template
            .iter()
            .map(|a| {
                self.vars
                    .get(a)
                    .map_or_else(|| OsString::from(a), OsString::from)
            })
            .collect()
    }

    /// The normalisations of the module docs, nothing else.
    fn normalise(&self, text: &str, prefix: bool) -> String {
        // Exact lines of one side only (DockerVersion on dockerd's side), before anything else.
        let kept: String = text
            .split_inclusive('\n')
            .filter(|l| !self.drop_lines.iter().any(|d| l.trim() == d))
            .collect();
        // Plugin ids and short ids are random; diff_ids are `sha256:<64 hex>` and covered too.
        let mut t = normalize_ids(&kept);
        if prefix {
            // The ambiguous prefix is picked from this side's own random ids.
            let p = &self.vars["<PREFIX>"];
            t = t.replace(&format!("\"{p}\""), "\"<PREFIX>\"");
        }
        t
    }
}

/// One compared step, as the report shows it.
struct Step {
    n: usize,
    display: String,
    expect: Expect,
    outs: [Output; 2],
    norm: [(String, String, Option<i32>); 2],
}

/// Runs steps on both daemons with one CLI, compares, and collects every problem.
struct Diff<'a> {
    env: &'a Env,
    cli: Cli,
    d: &'a Dockerd,
    p: &'a Plugd,
    sides: [SideState; 2],
    steps: usize,
    problems: Vec<String>,
}

impl Diff<'_> {
    fn run_side(&self, side: Side, args: Vec<OsString>) -> Output {
        match side {
            Side::Dockerd => self.env.docker(self.cli, self.d, args),
            Side::Plugd => self.env.docker(self.cli, self.p, args),
        }
    }

    /// Runs `docker plugin <args>` on both sides and compares.
    fn step(&mut self, expect: Expect, args: &[&str]) -> [Output; 2] {
        self.step_with(expect, args, false)
    }

    /// [`Diff::step`]; `prefix`: also normalise the quoted `<PREFIX>` (ambiguous-prefix steps).
    fn step_with(&mut self, expect: Expect, args: &[&str], prefix: bool) -> [Output; 2] {
        self.steps += 1;
        let template: Vec<&str> = std::iter::once("plugin")
            .chain(args.iter().copied())
            .collect();
        let outs = [0, 1].map(|i| {
            let side = &self.sides[i];
            self.run_side(side.side, side.args(&template))
        });
        let norm = [0, 1].map(|i| {
            let s = &self.sides[i];
            (
                s.normalise(&outs[i].stdout, prefix),
                s.normalise(&outs[i].stderr, prefix),
                outs[i].code,
            )
        });
        let step = Step {
            n: self.steps,
            display: format!("docker {}", shell_words(&template)),
            expect,
            outs: outs.clone(),
            norm,
        };
        let same = step.norm[0] == step.norm[1];
        // The progress log shows what a failing step said (normalised), to read along.
        let said = match step.norm[0].1.lines().last() {
            Some(l) if same && !outs[0].success() => format!(" ({l})"),
            _ => String::new(),
        };
        println!(
            "cli_diff[{:?}] [{}] {}: dockerd {} / plugd {}: {}{said}",
            self.cli,
            step.n,
            step.display,
            code(&outs[0]),
            code(&outs[1]),
            if same { "same" } else { "DIFFERENT" }
        );
        for (i, o) in outs.iter().enumerate() {
            let ok = match expect {
                Expect::Ok => o.success(),
                Expect::Fail => !o.success() && o.code.is_some(),
            };
            if !ok {
                self.problems.push(format!(
                    "[{}] {}: expected {} on {}, got {}:\n{}",
                    step.n,
                    step.display,
                    if expect == Expect::Ok {
                        "success"
                    } else {
                        "a failure"
                    },
                    self.sides[i].side.label(),
                    code(o),
                    indent(&o.to_string(), "    ")
                ));
            }
        }
        if !same {
            self.problems.push(report(&step));
        }
        outs
    }

    /// Full plugin ids on one side, outside the comparison.
    fn ids(&self, i: usize) -> Vec<String> {
        let out = self.run_side(
            self.sides[i].side,
            ["plugin", "ls", "-q", "--no-trunc"]
                .map(OsString::from)
                .to_vec(),
        );
        out.assert_ok();
        out.lines().iter().map(|s| s.to_string()).collect()
    }

    /// One side's plugin id of `name`, outside the comparison.
    fn id_of(&self, i: usize, name: &str) -> String {
        let out = self.run_side(
            self.sides[i].side,
            ["plugin", "inspect", "-f", "{{.Id}}", name]
                .map(OsString::from)
                .to_vec(),
        );
        out.assert_ok().trimmed().to_owned()
    }
}

fn code(o: &Output) -> String {
    match (o.code, o.signal) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "no status".to_owned(),
    }
}

fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"{}$\\".contains(c)) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                (*a).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| format!("{by}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The report of one differing step: exit codes, and a line diff of each differing stream.
fn report(step: &Step) -> String {
    let [(d_out, d_err, d_code), (p_out, p_err, p_code)] = &step.norm;
    let mut r = format!(
        "[{}] {} (expected {}):\n",
        step.n,
        step.display,
        if step.expect == Expect::Ok {
            "success"
        } else {
            "failure"
        }
    );
    if d_code == p_code {
        r.push_str(&format!("  exit: both {}\n", code(&step.outs[0])));
    } else {
        r.push_str(&format!(
            "  exit: dockerd {} | plugd {}\n",
            code(&step.outs[0]),
            code(&step.outs[1])
        ));
    }
    for (what, d, p) in [("stdout", d_out, p_out), ("stderr", d_err, p_err)] {
        if d == p {
            r.push_str(&format!(
                "  {what}: same{}\n",
                if d.is_empty() { " (empty)" } else { "" }
            ));
        } else {
            r.push_str(&format!(
                "  {what} differs (normalised; '-' dockerd only, '+' plugd only):\n"
            ));
            r.push_str(&line_diff(d, p));
        }
    }
    r
}

/// A minimal LCS line diff, every line shown (`  ` both, `- ` dockerd, `+ ` plugd).
fn line_diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push_str(&format!("      {}\n", a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("    - {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("    + {}\n", b[j]));
            j += 1;
        }
    }
    if out.is_empty() || a.is_empty() != b.is_empty() {
        out.push_str(&format!("    (dockerd: {} lines, plugd: {} lines)\n", n, m));
    }
    out
}

/// A hex digit that starts at least two of `ids`, if any.
fn shared_first_digit(ids: &[String]) -> Option<String> {
    let mut count: BTreeMap<char, usize> = BTreeMap::new();
    for id in ids {
        if let Some(c) = id.chars().next() {
            *count.entry(c).or_default() += 1;
        }
    }
    count
        .into_iter()
        .find(|&(_, n)| n >= 2)
        .map(|(c, _)| c.to_string())
}

fn differential(env: &Env, cli: Cli) {
    let started = Instant::now();
    let d = env.dockerd();
    let p = env.plugd(&[]);

    let path = |p: &Path| p.display().to_string();
    let mut sides = [SideState::new(Side::Dockerd), SideState::new(Side::Plugd)];
    // dockerd 20.10 stamps its own version into every plugin config it creates
    // (`"DockerVersion": "20.10.24+dfsg1"`); plugd deliberately has none (docs/protocol.md: the
    // field is engine-set, `omitempty` in API 1.41, gone from current moby's plugin.Config). That
    // exact line is dropped from dockerd's output only, so plugd printing any DockerVersion would
    // still show up as a difference.
    let server_version = env
        .docker(cli, &d, ["version", "--format", "{{.Server.Version}}"])
        .assert_ok()
        .trimmed()
        .to_owned();
    sides[0].drop_lines.push(format!(
        "\"DockerVersion\": {},",
        serde_json::to_string(&server_version).expect("string to JSON")
    ));
    // The same bundle for both, in a dir of each side's own (`d-main`, `p-main`).
    for s in &mut sides {
        let bundle = env
            .static_plugin_bundle(&format!("{}-main", s.side.tag()))
            .config(&config());
        s.vars.insert("<BUNDLE>", path(bundle.path()));
    }
    let mut t = Diff {
        env,
        cli,
        d: &d,
        p: &p,
        sides,
        steps: 0,
        problems: Vec::new(),
    };
    use Expect::{Fail, Ok};
    let name_enabled = "{{.Name}} {{.Enabled}}";

    // Create and look at it, disabled.
    t.step(Ok, &["create", NAME, "<BUNDLE>"]);
    t.step(Ok, &["ls"]);
    t.step(Ok, &["ls", "--no-trunc"]);
    t.step(Ok, &["ls", "-q"]);
    t.step(Ok, &["ls", "--format", name_enabled]);
    t.step(Ok, &["ls", "--filter", "enabled=false"]);
    t.step(Ok, &["ls", "--filter", "enabled=true"]);
    t.step(Ok, &["inspect", NAME]);
    t.step(Ok, &["inspect", "-f", "{{.Settings.Env}}", NAME]);
    // Lookup by full id and by a unique id prefix (the 12-hex short id).
    for i in 0..2 {
        let id = t.id_of(i, NAME);
        t.sides[i].vars.insert("<SHORT_ID>", id[..12].to_owned());
        t.sides[i].vars.insert("<ID>", id);
    }
    t.step(Ok, &["inspect", "-f", name_enabled, "<ID>"]);
    t.step(Ok, &["inspect", "-f", name_enabled, "<SHORT_ID>"]);

    // set while disabled, and its error cases.
    t.step(Ok, &["set", NAME, "GREETING=bonjour"]);
    t.step(Ok, &["inspect", NAME]);
    t.step(Ok, &["inspect", "-f", "{{.Settings.Env}}", NAME]);
    t.step(Fail, &["set", NAME, "NOSUCH=1"]);
    t.step(Fail, &["set", NAME, "FIXED=2"]);

    // enable, and what an enabled plugin refuses.
    t.step(Ok, &["enable", NAME]);
    t.step(Ok, &["ls", "--format", name_enabled]);
    t.step(Fail, &["enable", NAME]);
    t.step(Fail, &["set", NAME, "GREETING=again"]);
    t.step(Fail, &["rm", NAME]);
    t.step(Ok, &["ls", "--filter", "enabled=true"]);
    t.step(Ok, &["ls", "--filter", "enabled=false"]);
    t.step(
        Ok,
        &["inspect", "-f", "{{.Enabled}} {{.Settings.Env}}", NAME],
    );
    t.step(Ok, &["disable", NAME]);
    t.step(Fail, &["disable", NAME]);
    t.step(Ok, &["ls", "--format", name_enabled]);

    // Unknown names.
    t.step(Fail, &["inspect", "nosuch"]);
    t.step(Fail, &["enable", "nosuch"]);
    t.step(Fail, &["disable", "nosuch"]);
    t.step(Fail, &["set", "nosuch", "GREETING=x"]);

    // An ambiguous id prefix: create extra plugins in lockstep on both sides (so both list the
    // same names) until, on each side, two ids share their first hex digit.
    let mut extras = 0;
    while t.sides.iter().any(|s| !s.vars.contains_key("<PREFIX>")) {
        assert!(
            extras < MAX_EXTRAS,
            "no two of 17 ids share a first hex digit?"
        );
        extras += 1;
        let extra = format!("extra{extras}");
        // The same bundle as the main one: plugd checks at create that a native entrypoint
        // exists in the rootfs (its runtime's `prepare`), dockerd only at enable.
        for s in &mut t.sides {
            let bundle = env
                .static_plugin_bundle(&format!("{}-{extra}", s.side.tag()))
                .config(&config());
            s.vars.insert("<EXTRA_BUNDLE>", path(bundle.path()));
        }
        t.step(Ok, &["create", &extra, "<EXTRA_BUNDLE>"]);
        for i in 0..2 {
            if !t.sides[i].vars.contains_key("<PREFIX>")
                && let Some(prefix) = shared_first_digit(&t.ids(i))
            {
                t.sides[i].vars.insert("<PREFIX>", prefix);
            }
        }
    }
    println!(
        "cli_diff[{cli:?}] ambiguous prefixes after {extras} extra plugins: dockerd {:?}, plugd {:?}",
        t.sides[0].vars["<PREFIX>"], t.sides[1].vars["<PREFIX>"]
    );
    t.step(Ok, &["ls", "--format", name_enabled]);
    t.step_with(Fail, &["inspect", "<PREFIX>"], true);
    t.step_with(Fail, &["enable", "<PREFIX>"], true);
    t.step_with(Fail, &["rm", "<PREFIX>"], true);

    // rm, and what is left.
    t.step(Ok, &["rm", NAME]);
    t.step(Fail, &["rm", NAME]);
    t.step(Fail, &["rm", "nosuch"]);
    // An existing name, uploading a tiny bundle (the config, an empty rootfs) on both sides:
    // dockerd refuses the name before reading the upload, and Go's HTTP server then drains at most
    // 256 KB of it before closing the connection; with a larger rootfs (the 6.8 MB native bundle)
    // the CLI may also log "Can't add file ... to tar: io: read/write on closed pipe", depending
    // on how far the upload got when the connection closed, not on what the daemon said.
    for s in &mut t.sides {
        let tiny = env
            .bundle(&format!("{}-tiny", s.side.tag()))
            .config(&config());
        s.vars.insert("<TINY_BUNDLE>", path(tiny.path()));
    }
    t.step(Fail, &["create", "extra1", "<TINY_BUNDLE>"]);
    t.step(Ok, &["ls", "--format", name_enabled]);

    let elapsed = started.elapsed();
    if t.problems.is_empty() {
        println!(
            "cli_diff[{cli:?}]: {} steps, dockerd and plugd agree ({elapsed:?})",
            t.steps
        );
        return;
    }
    panic!(
        "docker CLI {cli:?} ({}): {} problem(s) in {} steps run against dockerd and plugd ({elapsed:?}):\n\n{}",
        cli.path().display(),
        t.problems.len(),
        t.steps,
        t.problems.join("\n")
    );
}

/// The normalisations touch only what they are meant to (no daemons needed): whatever they leave
/// alone still makes the two sides differ.
#[test]
fn normalisations_are_targeted() {
    let mut side = SideState::new(Side::Dockerd);
    side.drop_lines
        .push("\"DockerVersion\": \"20.10.24+dfsg1\",".to_owned());
    side.vars.insert("<PREFIX>", "7".to_owned());
    let id = "3943f174f463aab93acccf721b8887ece5dc354665d9a2c967a9336a60751b25";
    let text = format!(
        "{{\n  \"DockerVersion\": \"20.10.24+dfsg1\",\n  \"Description\": \"\\\"DockerVersion\\\": x\",\n  \"Entrypoint\": [\n    \"/static-plugin\"\n  ],\n  \"Id\": \"{id}\",\n  \"diff_ids\": [\"sha256:{id}\"]\n}}\nmultiple plugins found for \"7\" (7)\n"
    );
    assert_eq!(
        side.normalise(&text, true),
        "{\n  \"Description\": \"\\\"DockerVersion\\\": x\",\n  \"Entrypoint\": [\n    \"/static-plugin\"\n  ],\n  \"Id\": \"<ID>\",\n  \"diff_ids\": [\"sha256:<ID>\"]\n}\nmultiple plugins found for \"<PREFIX>\" (7)\n"
    );
    // Without `prefix`, the prefix stays.
    assert!(side.normalise(&text, false).contains("for \"7\""));
    // plugd's side drops no line: a DockerVersion from plugd would show up as a difference.
    let plugd = SideState::new(Side::Plugd);
    let p = plugd.normalise(&text, false);
    assert!(p.contains("\"DockerVersion\": \"20.10.24+dfsg1\","), "{p}");
    // Only dockerd's exact version line is dropped, not another version.
    let other = "  \"DockerVersion\": \"28.0.0\",\n";
    assert_eq!(side.normalise(other, false), other);
    // The entrypoint is no longer normalised: another entrypoint on one side is a difference.
    let wasm = text.replace("/static-plugin", "/plugin.wasm");
    assert_ne!(side.normalise(&text, true), side.normalise(&wasm, true));
    // Only 64- and 12-hex runs are ids: a 63-hex digest or a 13-hex prefix still differs.
    for not_id in [&id[1..], &id[..13]] {
        assert_eq!(side.normalise(not_id, false), not_id);
    }
    assert_eq!(
        shared_first_digit(&["ab".into(), "cd".into(), "a0".into()]),
        Some("a".into())
    );
    assert_eq!(shared_first_digit(&["ab".into(), "cd".into()]), None);
    assert_eq!(
        line_diff("a\nb\nc\n", "a\nx\nc\n"),
        "      a\n    - b\n    + x\n      c\n"
    );
}
