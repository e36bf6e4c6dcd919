//! Log drivers (`docker.logdriver/1.0`): the [`LogDriver`] trait and its wasm packaging
//! ([`export_log_driver!`](crate::export_log_driver)); the native packaging is
//! [`run_log_driver`](crate::run_log_driver).
//!
//! A driver never touches dockerd's FIFO or the `ReadLogs` stream itself: whoever hosts it —
//! plugd's wasm host, or this SDK's native server inside the plugin — reads the FIFO, decodes the
//! frames and calls [`LogDriver::log`] with batches, and frames the pages of
//! [`LogDriver::read_logs`] for dockerd. So the same driver behaves alike in both packagings, and
//! the types are plugd-core's ([`plugd_core::protocol::logdriver`]).

use crate::Error;

/// One line a container wrote (or one fragment of a line over 16 KiB); mirrors WIT
/// `log-driver.log-entry`.
pub use plugd_core::protocol::logdriver::Entry;
/// The container a logger is for; mirrors WIT `log-driver.info`.
pub use plugd_core::protocol::logdriver::Info;
/// One page of [`LogDriver::read_logs`]; mirrors WIT `log-driver.log-page`.
pub use plugd_core::protocol::logdriver::Page;
/// Which fragment of a split line an entry is; mirrors WIT `log-driver.partial-metadata`.
pub use plugd_core::protocol::logdriver::Partial;
/// What `docker logs` asks for; mirrors WIT `log-driver.read-config`.
pub use plugd_core::protocol::logdriver::ReadConfig;
/// The FIFO's name in `/run/docker/logging` for a `file`: one plain file name, or an error.
pub use plugd_core::protocol::logdriver::fifo_name;
/// dockerd's frame format (`[u32 big-endian length][protobuf LogEntry]`), for drivers that keep
/// entries as dockerd wrote them.
pub use plugd_core::protocol::logdriver::frame;

/// A Docker log driver, written once for both packagings.
///
/// Calls never overlap. `file` (`/run/docker/logging/<id>`) names one container's stream from
/// [`start_logging`](Self::start_logging) to [`stop_logging`](Self::stop_logging). What the
/// driver keeps for `read_logs` belongs on disk: the host may replace a wasm instance after a
/// fault, and then calls `start_logging` again for every stream still open.
pub trait LogDriver {
    /// `Capabilities`: whether [`read_logs`](Self::read_logs) is implemented. Default: no, and
    /// dockerd serves `docker logs` from its own cache.
    fn read_logs_supported(&self) -> bool {
        false
    }

    /// `StartLogging`: a container starts writing to `file`.
    fn start_logging(&self, file: &str, info: &Info) -> Result<(), Error>;

    /// Entries of `file`, in order. An error drops this batch (the host counts it) and does not
    /// end the stream.
    fn log(&self, file: &str, entries: &[Entry]) -> Result<(), Error>;

    /// `StopLogging`: every entry of `file` has been handed over.
    fn stop_logging(&self, file: &str) -> Result<(), Error>;

    /// `ReadLogs`, one page of at most `max` entries starting at `cursor` (0 for the first page,
    /// where `config.tail` applies). Return `end` once nothing can follow; with `config.follow`,
    /// an empty page that is not the end makes the host wait for more and ask again.
    fn read_logs(
        &self,
        info: &Info,
        config: &ReadConfig,
        cursor: u64,
        max: u32,
    ) -> Result<Page, Error> {
        let _ = (info, config, cursor, max);
        Err(Error::new(
            crate::ErrorCode::Unsupported,
            "this log driver does not read logs back",
        ))
    }
}

/// The wasm packaging: the guest side of world `log-plugin`, generated in a module of its own,
/// and the conversions [`export_log_driver!`](crate::export_log_driver) calls.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wasm {
    use super::{Entry, Info, LogDriver, Page, Partial, ReadConfig};

    /// World `log-plugin`.
    pub mod bindings {
        wit_bindgen::generate!({
            world: "log-plugin",
            path: "../../wit",
            with: { "docker:plugin/types@0.1.0": crate::wasm::bindings::docker::plugin::types, },
            pub_export_macro: true,
            export_macro_name: "__export_log_plugin",
        });
    }

    use crate::wasm::bindings::docker::plugin::types as wit_types;
    use crate::wasm::error;
    use bindings::exports::docker::plugin::log_driver as wit;

    pub use wit::Guest;
    /// WIT `error`.
    pub type WitError = wit_types::Error;
    /// WIT `capabilities`.
    pub type WitCapabilities = wit::DriverCapabilities;
    /// WIT `info`.
    pub type WitInfo = wit::Info;
    /// WIT `log-entry`.
    pub type WitEntry = wit::LogEntry;
    /// WIT `read-config`.
    pub type WitReadConfig = wit::ReadConfig;
    /// WIT `log-page`.
    pub type WitPage = wit::LogPage;

    fn info(i: WitInfo) -> Info {
        Info {
            config: i.config,
            container_id: i.container_id,
            container_name: i.container_name,
            container_entrypoint: i.container_entrypoint,
            container_args: i.container_args,
            container_image_id: i.container_image_id,
            container_image_name: i.container_image_name,
            container_created: i.container_created,
            container_env: i.container_env,
            container_labels: i.container_labels,
            log_path: String::new(),
            daemon_name: i.daemon_name,
        }
    }

    fn entry_in(e: WitEntry) -> Entry {
        Entry {
            source: e.source,
            time_nano: e.time_nano,
            line: e.line,
            partial: e.partial.map(|p| Partial {
                last: p.last,
                id: p.id,
                ordinal: p.ordinal,
            }),
        }
    }

    fn entry_out(e: Entry) -> WitEntry {
        WitEntry {
            source: e.source,
            time_nano: e.time_nano,
            line: e.line,
            partial: e.partial.map(|p| wit::PartialMetadata {
                last: p.last,
                id: p.id,
                ordinal: p.ordinal,
            }),
        }
    }

    pub fn capabilities<D: LogDriver>(d: &D) -> Result<WitCapabilities, WitError> {
        Ok(WitCapabilities {
            read_logs: d.read_logs_supported(),
        })
    }

    pub fn start_logging<D: LogDriver>(d: &D, file: &str, i: WitInfo) -> Result<(), WitError> {
        d.start_logging(file, &info(i)).map_err(error)
    }

    pub fn log<D: LogDriver>(d: &D, file: &str, entries: Vec<WitEntry>) -> Result<(), WitError> {
        let entries: Vec<Entry> = entries.into_iter().map(entry_in).collect();
        d.log(file, &entries).map_err(error)
    }

    pub fn stop_logging<D: LogDriver>(d: &D, file: &str) -> Result<(), WitError> {
        d.stop_logging(file).map_err(error)
    }

    pub fn read_logs<D: LogDriver>(
        d: &D,
        i: WitInfo,
        c: WitReadConfig,
        cursor: u64,
        max: u32,
    ) -> Result<WitPage, WitError> {
        let config = ReadConfig {
            since: c.since,
            until: c.until,
            tail: c.tail,
            follow: c.follow,
        };
        d.read_logs(&info(i), &config, cursor, max)
            .map(|p: Page| WitPage {
                entries: p.entries.into_iter().map(entry_out).collect(),
                cursor: p.cursor,
                end: p.end,
            })
            .map_err(error)
    }
}

/// Exports a [`LogDriver`] as the component's `docker:plugin/log-driver` interface (world
/// `log-plugin`); used like [`export_volume_driver!`](crate::export_volume_driver). On other
/// targets it only checks the trait.
#[macro_export]
macro_rules! export_log_driver {
    ($driver:ty) => {
        $crate::export_log_driver!($driver, <$driver as ::core::default::Default>::default());
    };
    ($driver:ty, $init:expr) => {
        $crate::__export_log_driver_impl!($driver, $init);
    };
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_log_driver_impl {
    ($driver:ty, $init:expr) => {
        const _: () = {
            ::std::thread_local! {
                static DRIVER: $driver = $init;
            }

            struct Export;

            use $crate::logdriver::wasm as w;
            use ::std::string::String;
            use ::std::vec::Vec;

            impl w::Guest for Export {
                fn capabilities() -> Result<w::WitCapabilities, w::WitError> {
                    DRIVER.with(|d| w::capabilities(d))
                }
                fn start_logging(file: String, info: w::WitInfo) -> Result<(), w::WitError> {
                    DRIVER.with(|d| w::start_logging(d, &file, info))
                }
                fn log(file: String, entries: Vec<w::WitEntry>) -> Result<(), w::WitError> {
                    DRIVER.with(|d| w::log(d, &file, entries))
                }
                fn stop_logging(file: String) -> Result<(), w::WitError> {
                    DRIVER.with(|d| w::stop_logging(d, &file))
                }
                fn read_logs(
                    info: w::WitInfo,
                    config: w::WitReadConfig,
                    cursor: u64,
                    max: u32,
                ) -> Result<w::WitPage, w::WitError> {
                    DRIVER.with(|d| w::read_logs(d, info, config, cursor, max))
                }
            }

            $crate::logdriver::wasm::bindings::__export_log_plugin!(Export with_types_in $crate::logdriver::wasm::bindings);
        };
    };
}

#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_log_driver_impl {
    ($driver:ty, $init:expr) => {
        const _: () = {
            fn _check() -> impl $crate::LogDriver {
                let driver: $driver = $init;
                driver
            }
        };
    };
}
