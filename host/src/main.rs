//! The `plugd` binary: `plugd daemon ...` runs the daemon; every other verb is the CLI client.
#![forbid(unsafe_code)]

use std::process::ExitCode;

#[derive(clap::Parser)]
#[command(name = "plugd daemon", about = "Run the plugd daemon")]
struct DaemonCli {
    #[command(flatten)]
    args: plugd::daemon::DaemonArgs,
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "daemon") {
        use clap::Parser;
        let cli = DaemonCli::parse_from(
            std::iter::once("plugd daemon".into()).chain(args.into_iter().skip(2)),
        );
        return match plugd::daemon::run(cli.args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("plugd daemon: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    plugd_cli::main_from_args(args)
}
