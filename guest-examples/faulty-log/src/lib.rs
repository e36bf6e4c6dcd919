//! A **test fixture** for plugd's wasm runtime, not an example to copy: the example log driver
//! (`guest-examples/log`), except that `log` traps (a panic, i.e. wasm `unreachable`) on a batch
//! holding a line `TRAP`, and computes forever (until plugd's call deadline) on one holding a line
//! `STALL`, without storing that batch either way.

#[path = "../../log/src/driver.rs"]
#[allow(dead_code)]
mod driver;

use driver::FileLogs;
use plugd_plugin_sdk::logdriver::{Entry, Info, Page, ReadConfig};
use plugd_plugin_sdk::{Error, LogDriver};

/// [`FileLogs`] with the two faults.
#[derive(Default)]
pub struct Faulty(FileLogs);

impl LogDriver for Faulty {
    fn read_logs_supported(&self) -> bool {
        true
    }

    fn start_logging(&self, file: &str, info: &Info) -> Result<(), Error> {
        self.0.start_logging(file, info)
    }

    fn log(&self, file: &str, entries: &[Entry]) -> Result<(), Error> {
        if entries.iter().any(|e| e.line == b"TRAP") {
            panic!("asked to trap");
        }
        if entries.iter().any(|e| e.line == b"STALL") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        self.0.log(file, entries)
    }

    fn stop_logging(&self, file: &str) -> Result<(), Error> {
        self.0.stop_logging(file)
    }

    fn read_logs(
        &self,
        info: &Info,
        config: &ReadConfig,
        cursor: u64,
        max: u32,
    ) -> Result<Page, Error> {
        self.0.read_logs(info, config, cursor, max)
    }
}

plugd_plugin_sdk::export_log_driver!(Faulty);
