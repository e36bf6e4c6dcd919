//! `plugd-probe`: plugd check's native probe. It runs where a plugin's entrypoint would, in that
//! plugin's sandbox (the native runtime execs it from a sealed memfd, dockerd from a bundle), and
//! answers on `/run/docker/plugins/<PROBE_SOCKET>`: `Probe.Check` with a plan runs every attempt
//! and returns the report (see `plugd_core::check::probe`). It judges nothing.
//!
//! As PID 1 of its pid namespace it handles SIGTERM itself (exit 0).

mod caps;
mod check;
mod devices;
mod escape;
mod mounts;
mod net;
mod process;
mod sandbox;
mod server;
mod sys;

use plugd_core::check::probe::PROBE_SOCKET;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;

const SOCKET_DIR: &str = "/run/docker/plugins";

fn main() {
    // SAFETY: installs a handler that only calls the async-signal-safe `_exit`.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    let path = Path::new(SOCKET_DIR).join(PROBE_SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("plugd-probe: bind {}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let volumes = Arc::new(server::Volumes::default());
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let volumes = volumes.clone();
                let spawned = std::thread::Builder::new()
                    .name("conn".into())
                    .spawn(move || {
                        match server::serve(&stream, &volumes) {
                            // The runtime's readiness check connects and goes away.
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::BrokenPipe
                                        | std::io::ErrorKind::ConnectionReset
                                        | std::io::ErrorKind::UnexpectedEof
                                ) => {}
                            Err(e) => eprintln!("plugd-probe: connection: {e}"),
                            Ok(()) => {}
                        }
                    });
                if let Err(e) = spawned {
                    eprintln!("plugd-probe: cannot serve a connection: {e}");
                }
            }
            Err(e) => eprintln!("plugd-probe: accept: {e}"),
        }
    }
}

extern "C" fn on_sigterm(_: libc::c_int) {
    // SAFETY: `_exit` is async-signal-safe.
    unsafe { libc::_exit(0) }
}
