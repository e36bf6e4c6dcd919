//! The `plugd` command line: `docker plugin …` verbs against a plugd daemon.
//!
//! `plugd ls|inspect|create|enable|disable|rm|set|install|upgrade|push` take the flags of
//! `docker plugin …` (docker CLI 28) and print the same bytes on stdout and stderr with the same
//! exit statuses, so scripts written for `docker plugin` work unchanged with `plugd`. The daemon is reached at `-H/--host` (`PLUGD_HOST`,
//! default [`DEFAULT_HOST`]). The binary routes `plugd daemon …` itself and hands every other
//! invocation to [`main_from_args`].
//!
//! Deliberate differences from the docker CLI:
//! - Only `unix://` hosts; no contexts or TLS. `~/.docker/config.json` (or `$DOCKER_CONFIG`) is
//!   read only for registry credentials (see the `auth` module), not for `pluginsFormat`.
//! - `install`, `upgrade` and `push` talk to registries through the daemon as docker's do; their
//!   differences (an enabled plugin may be upgraded, a failed install is removed again, no content
//!   trust, `--username`/`--password-stdin` since there is no `plugd login`) are listed in the
//!   `distribution` module.
//! - No `HEAD /_ping` version negotiation: every request goes to `/v1.41/…`, the only API plugd serves.
//! - Messages say "plugd" where docker says "docker" (`Cannot connect to the plugd daemon at …`,
//!   `plugd: 'plugd ls' accepts no arguments`).
//! - Help texts are clap's. Exit statuses match docker's: 125 for flag errors (unknown flag, bad
//!   value), 1 for a wrong number of arguments and for failures, 64 for an `inspect --format` that
//!   does not parse, 0 for help.
//! - `Plugd-Warning` response headers (sent on create and inspect for config keys Docker ignores)
//!   are printed to stderr as `WARNING: <text>`; docker has no such header.
//! - Go templates are a reimplemented subset (see the `template` module); pointer-valued fields
//!   printed inside a struct show a fixed fake address where Go prints a real one.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod apply;
mod auth;
mod check;
mod client;
mod create;
mod distribution;
mod format;
mod jsonmessage;
mod observe;
mod tabwriter;
mod template;
mod value;

use std::ffi::OsString;
use std::io::{self, BufRead, IsTerminal as _, Write};
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory as _, Parser, Subcommand};
use hyper::Method;

use client::{ApiClient, ApiError, ReqBody, escape_path, escape_query, filters_json, set_body};
use format::{InspectFormat, Inspector, list_format, natural_cmp, render_list};

/// Where the daemon listens unless `-H`/`PLUGD_HOST` says otherwise.
pub const DEFAULT_HOST: &str = "unix:///run/plugd/plugd.sock";
pub(crate) const DEFAULT_SOCKET: &str = "/run/plugd/plugd.sock";

/// The `-H` default: [`DEFAULT_HOST`] for root; for anyone else the socket a rootless
/// `plugd daemon` makes, `$XDG_RUNTIME_DIR/plugd/plugd.sock`, so a user reaches their own daemon
/// without flags (root's socket is 0660 root-owned and would only answer "permission denied").
pub fn default_host() -> String {
    host_for(
        nix::unistd::geteuid().is_root(),
        std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
    )
}

/// [`default_host`] for a given user and `$XDG_RUNTIME_DIR`; a relative one is ignored, as the
/// daemon refuses it.
fn host_for(root: bool, runtime_dir: Option<&std::ffi::OsStr>) -> String {
    match runtime_dir {
        Some(dir) if !root && dir.as_encoded_bytes().starts_with(b"/") => format!(
            "unix://{}/plugd/plugd.sock",
            std::path::Path::new(dir).display()
        ),
        _ => DEFAULT_HOST.to_string(),
    }
}

/// The command line of every `plugd` invocation except `plugd daemon`.
#[derive(Debug, Parser)]
#[command(
    name = "plugd",
    version,
    about = "Manage plugins on a plugd daemon",
    after_help = "Run 'plugd daemon --help' for the daemon itself.",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Daemon socket to connect to
    #[arg(short = 'H', long = "host", env = "PLUGD_HOST", default_value_t = default_host(), global = true, value_name = "HOST")]
    pub host: String,
    /// The verb; without one, help is printed.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The plugin verbs, as `docker plugin` names them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a plugin from a rootfs and configuration. Plugin data directory must contain config.json and rootfs directory.
    #[command(override_usage = "plugd create [OPTIONS] PLUGIN PLUGIN-DATA-DIR")]
    Create(CreateArgs),
    /// Disable a plugin
    #[command(override_usage = "plugd disable [OPTIONS] PLUGIN")]
    Disable(DisableArgs),
    /// Enable a plugin
    #[command(override_usage = "plugd enable [OPTIONS] PLUGIN")]
    Enable(EnableArgs),
    /// Display detailed information on one or more plugins
    #[command(override_usage = "plugd inspect [OPTIONS] PLUGIN [PLUGIN...]")]
    Inspect(InspectArgs),
    /// List plugins
    #[command(visible_alias = "list", override_usage = "plugd ls [OPTIONS]")]
    Ls(LsArgs),
    /// Remove one or more plugins
    #[command(
        visible_alias = "remove",
        override_usage = "plugd rm [OPTIONS] PLUGIN [PLUGIN...]"
    )]
    Rm(RmArgs),
    /// Change settings for a plugin
    #[command(override_usage = "plugd set PLUGIN KEY=VALUE [KEY=VALUE...]")]
    Set(SetArgs),
    /// Install a plugin
    #[command(override_usage = "plugd install [OPTIONS] PLUGIN [KEY=VALUE...]")]
    Install(InstallArgs),
    /// Upgrade an existing plugin
    #[command(override_usage = "plugd upgrade [OPTIONS] PLUGIN [REMOTE]")]
    Upgrade(UpgradeArgs),
    /// Push a plugin to a registry
    #[command(override_usage = "plugd push [OPTIONS] PLUGIN[:TAG]")]
    Push(PushArgs),
    /// Show a log driver's streams and how many entries each received, delivered and dropped
    #[command(override_usage = "plugd logstreams [OPTIONS] PLUGIN")]
    Logstreams(LogstreamsArgs),
    /// Prove that a plugin's sandbox enforces exactly what its config.json declares
    #[command(override_usage = "plugd check [OPTIONS] PLUGIN")]
    Check(CheckArgs),
    /// Show what a plugin wrote (stdout, stderr) and plugd's notes about it
    #[command(override_usage = "plugd logs [OPTIONS] PLUGIN")]
    Logs(LogsArgs),
    /// Show every plugin's state, pid or instances, uptime, restarts and last error
    #[command(visible_alias = "status", override_usage = "plugd ps [OPTIONS]")]
    Ps(PsArgs),
    /// Converge this node's plugins to the set a file declares (plugd's addition; docs/deploy.md)
    #[command(override_usage = "plugd apply [OPTIONS] FILE")]
    Apply(apply::ApplyArgs),
}

/// `plugd logs` (plugd's own verb; docs/operate.md).
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs (default "all")
    #[arg(short = 'n', long, value_name = "string")]
    pub tail: Option<String>,
    /// Show logs since timestamp (e.g. "2026-12-04T10:00:00Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long, value_name = "string")]
    pub since: Option<String>,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// The plugin.
    #[arg(value_name = "PLUGIN")]
    pub names: Vec<String>,
}

/// `plugd ps` (plugd's own verb; docs/operate.md).
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Output format: 'table' (default) or 'json'
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Nothing: `plugd ps` accepts no arguments.
    #[arg(hide = true)]
    pub extra: Vec<String>,
}

/// `plugd check` (plugd's own verb; docs/check.md).
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Output format: 'table' (default) or 'json'
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Runtimes to probe: 'native', 'wasm' or 'both' (default: the plugin's own)
    #[arg(long, value_name = "string")]
    pub runtime: Option<String>,
    /// Also probe the same bundle under this dockerd (unix:///var/run/docker.sock)
    #[arg(long, value_name = "string")]
    pub docker_host: Option<String>,
    /// The plugin.
    #[arg(value_name = "PLUGIN")]
    pub names: Vec<String>,
}

/// `plugd logstreams` (plugd's own verb; docker has none).
#[derive(Debug, Args)]
pub struct LogstreamsArgs {
    /// Output format: 'table' (default) or 'json'
    #[arg(long, default_value = "table")]
    pub format: String,
    /// The log driver plugin.
    #[arg(value_name = "PLUGIN")]
    pub names: Vec<String>,
}

/// Registry credentials on the command line: plugd has no `login` to store them first.
#[derive(Debug, Args)]
pub struct CredentialArgs {
    /// Registry username (plugd's addition; needs --password-stdin)
    #[arg(short = 'u', long, value_name = "string")]
    pub username: Option<String>,
    /// Take the registry password from stdin (plugd's addition)
    #[arg(long)]
    pub password_stdin: bool,
}

/// `plugd install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Local name for plugin
    #[arg(long, value_name = "string")]
    pub alias: Option<String>,
    /// Do not enable the plugin on install
    #[arg(long)]
    pub disable: bool,
    /// Grant all permissions necessary to run the plugin
    #[arg(long)]
    pub grant_all_permissions: bool,
    /// Accepted for docker's scripts and ignored: plugd has no content trust
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub disable_content_trust: Option<bool>,
    /// Registry credentials.
    #[command(flatten)]
    pub creds: CredentialArgs,
    /// The plugin reference, then settings.
    #[arg(value_name = "PLUGIN [KEY=VALUE...]")]
    pub args: Vec<String>,
}

/// `plugd upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Grant all permissions necessary to run the plugin
    #[arg(long)]
    pub grant_all_permissions: bool,
    /// Do not check if specified remote plugin matches existing plugin image
    #[arg(long)]
    pub skip_remote_check: bool,
    /// Accepted for docker's scripts and ignored: plugd has no content trust
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub disable_content_trust: Option<bool>,
    /// Registry credentials.
    #[command(flatten)]
    pub creds: CredentialArgs,
    /// The plugin, then the remote reference (default: the one it was installed from).
    #[arg(value_name = "PLUGIN [REMOTE]")]
    pub args: Vec<String>,
}

/// `plugd push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Accepted for docker's scripts and ignored: plugd has no content trust
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub disable_content_trust: Option<bool>,
    /// Registry credentials.
    #[command(flatten)]
    pub creds: CredentialArgs,
    /// The plugin to push.
    #[arg(value_name = "PLUGIN[:TAG]")]
    pub names: Vec<String>,
}

/// `plugd ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display plugin IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', 'raw' or a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Provide filter values (e.g. "enabled=true")
    #[arg(short, long, value_parser = parse_filter)]
    pub filter: Vec<String>,
    /// Not accepted; collected to report docker's "accepts no arguments".
    #[arg(hide = true)]
    pub extra: Vec<String>,
}

/// `plugd inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template: 'json' or a Go template
    #[arg(short, long, default_value = "")]
    pub format: String,
    /// Plugins to inspect.
    #[arg(value_name = "PLUGIN")]
    pub names: Vec<String>,
}

/// `plugd create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Compress the context using gzip
    #[arg(long)]
    pub compress: bool,
    /// The plugin name and its data directory (config.json and rootfs/).
    #[arg(value_name = "PLUGIN PLUGIN-DATA-DIR")]
    pub args: Vec<String>,
}

/// `plugd enable`.
#[derive(Debug, Args)]
pub struct EnableArgs {
    /// HTTP client timeout (in seconds)
    #[arg(long, default_value = "30", allow_negative_numbers = true, value_parser = parse_go_int)]
    pub timeout: i64,
    /// Probe the sandbox first and refuse to enable on any difference from the declaration (plugd's addition)
    #[arg(long)]
    pub check: bool,
    /// The plugin.
    #[arg(value_name = "PLUGIN")]
    pub names: Vec<String>,
}

/// `plugd disable`.
#[derive(Debug, Args)]
pub struct DisableArgs {
    /// Force the disable of an active plugin
    #[arg(short, long)]
    pub force: bool,
    /// The plugin.
    #[arg(value_name = "PLUGIN")]
    pub names: Vec<String>,
}

/// `plugd rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of an active plugin
    #[arg(short, long)]
    pub force: bool,
    /// Plugins to remove.
    #[arg(value_name = "PLUGIN")]
    pub names: Vec<String>,
}

/// `plugd set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The plugin, then its settings.
    #[arg(value_name = "PLUGIN KEY=VALUE")]
    pub args: Vec<String>,
}

/// `opts.FilterOpt.Set`: `name=value`; an empty value is accepted and ignored.
fn parse_filter(value: &str) -> Result<String, String> {
    if !value.is_empty() && !value.contains('=') {
        return Err("bad format of filter (expected name=value)".into());
    }
    Ok(value.to_string())
}

/// pflag's bool parsing (`strconv.ParseBool`), with Go's error text.
fn parse_go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing \"{value}\": invalid syntax"
        )),
    }
}

/// pflag's int parsing, with Go's error text.
fn parse_go_int(value: &str) -> Result<i64, String> {
    value.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        format!("strconv.ParseInt: parsing \"{value}\": {why}")
    })
}

/// Runs one `plugd` invocation (`args[0]` is the program name) and returns the exit status.
///
/// This is the entry point `main.rs` calls for everything but `plugd daemon`.
pub fn main_from_args(args: Vec<OsString>) -> ExitCode {
    let stdout = io::stdout();
    let stderr = io::stderr();
    let stdin = io::stdin();
    let tty = stdout.is_terminal();
    ExitCode::from(run_with(
        args,
        &mut stdin.lock(),
        &mut stdout.lock(),
        &mut stderr.lock(),
        tty,
        auth::Lookup::from_env(),
    ))
}

/// A failed verb: the text for stderr and the exit status.
#[derive(Debug)]
struct Failure {
    msg: String,
    code: u8,
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure {
            msg: e.to_string(),
            code: 1,
        }
    }
}

impl From<String> for Failure {
    fn from(msg: String) -> Self {
        Failure { msg, code: 1 }
    }
}

/// Parses and runs, writing to the given streams, with nothing on stdin.
#[cfg(test)]
fn run(args: Vec<OsString>, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let lookup = auth::Lookup {
        config_dir: None,
        path: None,
    };
    run_with(args, &mut io::empty(), out, err, false, lookup)
}

/// Parses and runs with the given streams; `tty` says whether `out` is a terminal (progress bars);
/// `lookup` is where registry credentials are looked for.
fn run_with(
    args: Vec<OsString>,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
    tty: bool,
    lookup: auth::Lookup,
) -> u8 {
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return report_parse_error(&e, &args, out, err),
    };
    let Some(command) = cli.command else {
        let _ = write!(err, "{}", Cli::command().render_help());
        return 0;
    };
    if let Err(msg) = check_arity(&command) {
        let _ = writeln!(err, "{msg}");
        return 1;
    }
    let result = match command {
        Command::Ls(a) => ls(&cli.host, a, out, err),
        Command::Inspect(a) => inspect(&cli.host, a, out, err),
        Command::Create(a) => create_plugin(&cli.host, a, out, err),
        Command::Enable(a) => enable(&cli.host, a, out),
        Command::Disable(a) => disable(&cli.host, a, out),
        Command::Rm(a) => remove(&cli.host, a, out),
        Command::Set(a) => set(&cli.host, a),
        Command::Logstreams(a) => logstreams(&cli.host, a, out),
        Command::Check(a) => check::check(&cli.host, &a, out),
        Command::Logs(a) => observe::logs(&cli.host, &a, out, err),
        Command::Ps(a) => observe::ps(&cli.host, &a, out),
        Command::Apply(a) => apply::apply(&cli.host, &a, out, &lookup),
        Command::Install(a) => {
            let mut io = distribution::Io {
                input,
                out,
                tty,
                lookup,
            };
            distribution::install(&cli.host, &a, &mut io)
        }
        Command::Upgrade(a) => {
            let mut io = distribution::Io {
                input,
                out,
                tty,
                lookup,
            };
            distribution::upgrade(&cli.host, &a, &mut io)
        }
        Command::Push(a) => {
            let mut io = distribution::Io {
                input,
                out,
                tty,
                lookup,
            };
            distribution::push(&cli.host, &a, &mut io)
        }
    };
    let _ = out.flush();
    match result {
        Ok(()) => 0,
        Err(f) => {
            if !f.msg.is_empty() {
                let _ = writeln!(err, "{}", f.msg);
            }
            f.code
        }
    }
}

/// The verb name as docker prints it, and its usage line.
fn usage_of(verb: &str) -> Option<(&'static str, &'static str)> {
    Some(match verb {
        "ls" | "list" => ("ls", "plugd ls [OPTIONS]"),
        "inspect" => ("inspect", "plugd inspect [OPTIONS] PLUGIN [PLUGIN...]"),
        "create" => ("create", "plugd create [OPTIONS] PLUGIN PLUGIN-DATA-DIR"),
        "enable" => ("enable", "plugd enable [OPTIONS] PLUGIN"),
        "disable" => ("disable", "plugd disable [OPTIONS] PLUGIN"),
        "rm" | "remove" => ("rm", "plugd rm [OPTIONS] PLUGIN [PLUGIN...]"),
        "set" => ("set", "plugd set PLUGIN KEY=VALUE [KEY=VALUE...]"),
        "logstreams" => ("logstreams", "plugd logstreams [OPTIONS] PLUGIN"),
        "check" => ("check", "plugd check [OPTIONS] PLUGIN"),
        "apply" => ("apply", "plugd apply [OPTIONS] FILE"),
        "install" => ("install", "plugd install [OPTIONS] PLUGIN [KEY=VALUE...]"),
        "upgrade" => ("upgrade", "plugd upgrade [OPTIONS] PLUGIN [REMOTE]"),
        "push" => ("push", "plugd push [OPTIONS] PLUGIN[:TAG]"),
        _ => return None,
    })
}

/// cobra's `NoArgs`, `ExactArgs` and `RequiresMinArgs` checks, with their texts.
fn check_arity(command: &Command) -> Result<(), String> {
    let (verb, n, exact, min) = match command {
        Command::Ls(a) => ("ls", a.extra.len(), Some(0), 0),
        Command::Inspect(a) => ("inspect", a.names.len(), None, 1),
        Command::Create(a) => ("create", a.args.len(), None, 2),
        Command::Enable(a) => ("enable", a.names.len(), Some(1), 1),
        Command::Disable(a) => ("disable", a.names.len(), Some(1), 1),
        Command::Rm(a) => ("rm", a.names.len(), None, 1),
        Command::Set(a) => ("set", a.args.len(), None, 2),
        Command::Logstreams(a) => ("logstreams", a.names.len(), Some(1), 1),
        Command::Check(a) => ("check", a.names.len(), Some(1), 1),
        Command::Logs(a) => ("logs", a.names.len(), Some(1), 1),
        Command::Ps(a) => ("ps", a.extra.len(), Some(0), 0),
        Command::Apply(a) => ("apply", a.files.len(), Some(1), 1),
        Command::Install(a) => ("install", a.args.len(), None, 1),
        Command::Push(a) => ("push", a.names.len(), Some(1), 1),
        Command::Upgrade(a) => {
            let n = a.args.len();
            if (1..=2).contains(&n) {
                return Ok(());
            }
            let usage = usage_of("upgrade").map(|u| u.1).unwrap_or("");
            return Err(format!(
                "plugd: 'plugd upgrade' requires at least 1 and at most 2 arguments\n\nUsage:  {usage}\n\nRun 'plugd upgrade --help' for more information"
            ));
        }
    };
    let usage = usage_of(verb).map(|u| u.1).unwrap_or("");
    let plural = |k: usize| if k == 1 { "argument" } else { "arguments" };
    match exact {
        Some(0) if n > 0 => Err(format!(
            "plugd: 'plugd {verb}' accepts no arguments\n\nUsage:  {usage}\n\nRun 'plugd {verb} --help' for more information"
        )),
        Some(k) if k > 0 && n != k => Err(format!(
            "plugd: 'plugd {verb}' requires {k} {}\n\nUsage:  {usage}\n\nRun 'plugd {verb} --help' for more information",
            plural(k)
        )),
        None if n < min => Err(format!(
            "plugd: 'plugd {verb}' requires at least {min} {}\n\nUsage:  {usage}\n\nSee 'plugd {verb} --help' for more information",
            plural(min)
        )),
        _ => Ok(()),
    }
}

/// The first argument naming a verb (skipping `-H`/`--host` and its value).
fn verb_in(args: &[OsString]) -> Option<String> {
    let mut it = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        if a == "-H" || a == "--host" {
            it.next();
            continue;
        }
        if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

/// Turns a clap error into docker's texts and statuses (pflag/cobra wording, exit 125 for flags).
fn report_parse_error(
    e: &clap::Error,
    args: &[OsString],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = write!(out, "{e}");
            return 0;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = write!(err, "{e}");
            return 0;
        }
        _ => {}
    }
    let ctx = |k: ContextKind| match e.get(k) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    if e.kind() == ErrorKind::InvalidSubcommand {
        let sub = ctx(ContextKind::InvalidSubcommand).unwrap_or_default();
        let _ = writeln!(
            err,
            "plugd: unknown command: plugd {sub}\n\nUsage:  plugd [OPTIONS] COMMAND\n\nRun 'plugd --help' for more information"
        );
        return 1;
    }
    let verb = verb_in(args).and_then(|v| usage_of(&v));
    let flag_name = |arg: &str| -> String {
        // clap shows "--timeout <TIMEOUT>"; docker shows "--timeout" or "-f, --filter".
        let long = arg.split([' ', '=', '[']).next().unwrap_or(arg).to_string();
        let cmd = Cli::command();
        let sub = verb.and_then(|(v, _)| cmd.find_subcommand(v).cloned());
        let short = sub.as_ref().and_then(|s| {
            s.get_arguments()
                .chain(cmd.get_arguments())
                .find(|a| a.get_long().is_some_and(|l| format!("--{l}") == long))
                .and_then(|a| a.get_short())
        });
        match short {
            Some(c) => format!("-{c}, {long}"),
            None => long,
        }
    };
    let msg = match e.kind() {
        ErrorKind::UnknownArgument => {
            let arg = ctx(ContextKind::InvalidArg).unwrap_or_default();
            if let Some(long) = arg.strip_prefix("--") {
                format!("unknown flag: --{}", long.split('=').next().unwrap_or(long))
            } else {
                let c = arg.trim_start_matches('-').chars().next().unwrap_or('?');
                format!("unknown shorthand flag: '{c}' in {arg}")
            }
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = ctx(ContextKind::InvalidArg).unwrap_or_default();
            let value = ctx(ContextKind::InvalidValue).unwrap_or_default();
            let flag = flag_name(&arg);
            if value.is_empty() && e.kind() == ErrorKind::InvalidValue {
                format!(
                    "flag needs an argument: {}",
                    flag.rsplit(", ").next().unwrap_or(&flag)
                )
            } else {
                let why = std::error::Error::source(e)
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                format!("invalid argument \"{value}\" for \"{flag}\" flag: {why}")
            }
        }
        _ => {
            let text = e.render().to_string();
            text.lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ")
                .to_string()
        }
    };
    let (usage, help) = match verb {
        Some((v, usage)) => (usage.to_string(), format!("plugd {v}")),
        None => ("plugd [OPTIONS] COMMAND".to_string(), "plugd".to_string()),
    };
    let _ = writeln!(
        err,
        "{msg}\n\nUsage:  {usage}\n\nRun '{help} --help' for more information"
    );
    125
}

fn print_warnings(err: &mut dyn Write, warnings: &[String]) {
    for w in warnings {
        let _ = writeln!(err, "WARNING: {w}");
    }
}

fn ls(host: &str, a: LsArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), Failure> {
    let client = ApiClient::new(host)?;
    let filters: Vec<(String, String)> = a
        .filter
        .iter()
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    let mut path = String::from("/plugins");
    if let Some(f) = filters_json(&filters) {
        path.push_str("?filters=");
        path.push_str(&escape_query(&f));
    }
    let resp = client.request(Method::GET, &path, ReqBody::Empty, None)?;
    print_warnings(err, &resp.warnings);
    let mut plugins: Vec<serde_json::Value> =
        serde_json::from_slice(&resp.body).map_err(|e| e.to_string())?;
    let name = |p: &serde_json::Value| {
        p.get("Name")
            .and_then(|n| n.as_str())
            .unwrap_or("")
            .to_string()
    };
    plugins.sort_by(|x, y| natural_cmp(&name(x), &name(y)));
    let format = list_format(a.format.as_deref(), a.quiet);
    let text = render_list(&format, &plugins, !a.no_trunc)?;
    let _ = out.write_all(text.as_bytes());
    Ok(())
}

/// `GET /plugins/{name}/logstreams`, as a table (counters per stream) or the JSON as is.
fn logstreams(host: &str, a: LogstreamsArgs, out: &mut dyn Write) -> Result<(), Failure> {
    if a.format != "table" && a.format != "json" {
        return Err(Failure {
            msg: format!("invalid --format {:?}: 'table' or 'json'", a.format),
            code: 64,
        });
    }
    let client = ApiClient::new(host)?;
    let path = format!("/plugins/{}/logstreams", escape_path(&a.names[0]));
    let resp = client
        .request(Method::GET, &path, ReqBody::Empty, None)
        .map_err(|e| e.to_string())?;
    if a.format == "json" {
        let _ = out.write_all(&resp.body);
        let _ = writeln!(out);
        return Ok(());
    }
    let streams: Vec<serde_json::Value> =
        serde_json::from_slice(&resp.body).map_err(|e| format!("reading the reply: {e}"))?;
    let _ = writeln!(
        out,
        "{:<14} {:<14} {:>10} {:>10} {:>10}  OPEN",
        "STREAM", "CONTAINER", "RECEIVED", "DELIVERED", "DROPPED"
    );
    for s in &streams {
        let short = |v: &serde_json::Value| {
            let t = v.as_str().unwrap_or_default();
            let t = t.rsplit('/').next().unwrap_or(t);
            t.chars().take(12).collect::<String>()
        };
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        let _ = writeln!(
            out,
            "{:<14} {:<14} {:>10} {:>10} {:>10}  {}",
            short(&s["File"]),
            short(&s["ContainerID"]),
            n("Received"),
            n("Delivered"),
            n("Dropped"),
            s["Open"].as_bool().unwrap_or(false)
        );
    }
    Ok(())
}

fn inspect(
    host: &str,
    a: InspectArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let format = InspectFormat::parse(&a.format).map_err(|msg| Failure { msg, code: 64 })?;
    let client = ApiClient::new(host)?;
    let mut inspector = Inspector::new(format);
    let mut errors = Vec::new();
    for name in &a.names {
        let path = format!("/plugins/{}/json", escape_path(name));
        match client.request(Method::GET, &path, ReqBody::Empty, None) {
            Ok(resp) => {
                print_warnings(err, &resp.warnings);
                if let Err(e) = inspector.add(&resp.body) {
                    errors.push(e);
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    match inspector.finish() {
        Ok(text) => {
            let _ = out.write_all(text.as_bytes());
        }
        // The docker CLI only logs a failed flush.
        Err(e) => {
            let _ = writeln!(err, "ERRO[0000] {e}");
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n").into())
    }
}

fn create_plugin(
    host: &str,
    a: CreateArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let (name, dir) = (&a.args[0], &a.args[1]);
    plugd_core::reference::parse_normalized_named(name).map_err(|e| e.to_string())?;
    let abs = create::validate_context_dir(dir)?;
    create::validate_config(dir)?;
    let resp = create::upload(host, name, abs, a.compress)?;
    print_warnings(err, &resp.warnings);
    let _ = writeln!(out, "{name}");
    Ok(())
}

fn enable(host: &str, a: EnableArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let name = &a.names[0];
    if a.timeout < 0 {
        return Err(format!("negative timeout {} is invalid", a.timeout).into());
    }
    let client = ApiClient::new(host)?;
    let check = if a.check { "&check=1" } else { "" };
    let path = format!(
        "/plugins/{}/enable?timeout={}{check}",
        escape_path(name),
        a.timeout
    );
    client.request(Method::POST, &path, ReqBody::Empty, None)?;
    let _ = writeln!(out, "{name}");
    Ok(())
}

fn disable(host: &str, a: DisableArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let name = &a.names[0];
    let client = ApiClient::new(host)?;
    let force = if a.force { "?force=1" } else { "" };
    let path = format!("/plugins/{}/disable{force}", escape_path(name));
    client.request(Method::POST, &path, ReqBody::Empty, None)?;
    let _ = writeln!(out, "{name}");
    Ok(())
}

fn remove(host: &str, a: RmArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let client = ApiClient::new(host)?;
    let force = if a.force { "?force=1" } else { "" };
    let mut errors = Vec::new();
    for name in &a.names {
        let path = format!("/plugins/{}{force}", escape_path(name));
        match client.request(Method::DELETE, &path, ReqBody::Empty, None) {
            Ok(_) => {
                let _ = writeln!(out, "{name}");
                let _ = out.flush();
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n").into())
    }
}

fn set(host: &str, a: SetArgs) -> Result<(), Failure> {
    let client = ApiClient::new(host)?;
    let path = format!("/plugins/{}/set", escape_path(&a.args[0]));
    let body = bytes::Bytes::from(set_body(&a.args[1..]));
    client.request(
        Method::POST,
        &path,
        ReqBody::Full(Some(body)),
        Some("application/json"),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod host_tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn rootless_users_default_to_their_runtime_dir() {
        let run = Some(OsStr::new("/run/user/1000"));
        assert_eq!(host_for(true, run), DEFAULT_HOST);
        assert_eq!(
            host_for(false, run),
            "unix:///run/user/1000/plugd/plugd.sock"
        );
        assert_eq!(host_for(false, None), DEFAULT_HOST);
        assert_eq!(host_for(false, Some(OsStr::new("rel"))), DEFAULT_HOST);
    }
}
