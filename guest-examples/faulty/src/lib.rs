//! A **test fixture** for plugd's wasm runtime, not an example to copy: a volume driver whose
//! behaviour is chosen by the volume name passed to `get` or `create`:
//!
//! | name    | behaviour                                                                   |
//! |---------|-----------------------------------------------------------------------------|
//! | `spin`  | an infinite loop (only epoch interruption can stop it)                      |
//! | `trap`  | a panic, i.e. a wasm trap (`unreachable`)                                   |
//! | `bomb`  | allocates memory until an allocation fails (the host's memory cap)          |
//! | `sleep` | sleeps for an hour: the guest is blocked in a host call (WASI `poll` on a   |
//! |         | monotonic-clock subscription), where epochs cannot interrupt it             |
//! | `nap`   | sleeps for half a second, then answers normally: a slow call, to show which   |
//! |         | instance serves the calls made meanwhile                                    |
//! | `say`   | writes one line to stdout and one to stderr, then answers normally: what     |
//! |         | `plugd logs` must show as the plugin's own output                           |
//! | `read:<path>` (`get` only) | opens `<path>` and reads up to 4 KiB: `get` reports the  |
//! |         | bytes read as status `read`, or fails with the I/O error. For device nodes, |
//! |         | procfs files and FIFOs in a declared bind                                   |
//! | other   | normal: `get` returns a volume of that name at `/data/<name>`               |
//!
//! Every export increments a per-instance call counter (a static), which `get` reports as status
//! `calls`; a test uses it to prove that a fault was followed by a fresh instance.

wit_bindgen::generate!({ world: "volume-plugin", path: "../../wit" });

use docker::plugin::types::{Error, ErrorCode};
use exports::docker::plugin::volume_driver::{Guest, Scope, Volume};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Calls served by this instance, this one included.
static CALLS: AtomicU64 = AtomicU64::new(0);

fn count() -> u64 {
    CALLS.fetch_add(1, Ordering::SeqCst) + 1
}

/// Misbehaves as `name` asks; returns for names that ask for nothing.
fn fault(name: &str) {
    match name {
        "spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "trap" => panic!("fault guest: trap requested"),
        "bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Touch every page so the memory is really committed, then keep it alive.
                hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
            }
        }
        "sleep" => std::thread::sleep(Duration::from_secs(3600)),
        "nap" => std::thread::sleep(Duration::from_millis(500)),
        "say" => {
            println!("fault guest says hello on stdout");
            eprintln!("fault guest says hello on stderr");
        }
        _ => {}
    }
}

/// Opens `path` and reads at most 4 KiB of it: enough to prove a device or a procfs file is
/// readable without reading a disk whole.
fn read_head(path: &str) -> std::io::Result<usize> {
    let mut buf = vec![0u8; 4096];
    let mut file = std::fs::File::open(path)?;
    let mut total = 0;
    while total < buf.len() {
        match file.read(&mut buf[total..])? {
            0 => break,
            n => total += n,
        }
    }
    Ok(total)
}

fn volume(name: String, calls: u64) -> Volume {
    Volume {
        mountpoint: format!("/data/{name}"),
        name,
        created_at: None,
        status: vec![("calls".to_string(), calls.to_string())],
    }
}

struct Fixture;

impl Guest for Fixture {
    fn create(name: String, _opts: Vec<(String, String)>) -> Result<(), Error> {
        count();
        fault(&name);
        Ok(())
    }

    fn remove(_name: String) -> Result<(), Error> {
        count();
        Ok(())
    }

    fn mount(name: String, _id: String) -> Result<String, Error> {
        count();
        Ok(format!("/data/{name}"))
    }

    fn unmount(_name: String, _id: String) -> Result<(), Error> {
        count();
        Ok(())
    }

    fn path(name: String) -> Result<String, Error> {
        count();
        Ok(format!("/data/{name}"))
    }

    fn get(name: String) -> Result<Volume, Error> {
        let calls = count();
        if let Some(path) = name.strip_prefix("read:") {
            let n = read_head(path).map_err(|e| Error {
                code: ErrorCode::Internal,
                message: format!("read {path}: {e}"),
            })?;
            let mut v = volume(name.clone(), calls);
            v.status.push(("read".to_string(), n.to_string()));
            return Ok(v);
        }
        fault(&name);
        if name == "missing" {
            return Err(Error {
                code: ErrorCode::NotFound,
                message: "no such volume".into(),
            });
        }
        Ok(volume(name, calls))
    }

    fn list() -> Result<Vec<Volume>, Error> {
        let calls = count();
        Ok(vec![volume("fixture".to_string(), calls)])
    }

    fn capabilities() -> Scope {
        count();
        Scope::Local
    }
}

export!(Fixture);
