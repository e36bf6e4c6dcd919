//! Write a Docker volume plugin once, ship it as a wasm component or as a native binary.
//!
//! An author implements [`VolumeDriver`] (or [`IpamDriver`], module [`ipam`], with
//! [`export_ipam_driver!`] and [`run_ipam_driver`]); the target chosen at build time picks the packaging:
//!
//! * **wasm component** (`--target wasm32-wasip2`, crate type `cdylib`):
//!   [`export_volume_driver!`] exports the driver as the `docker:plugin/volume-plugin` world
//!   (`wit/` in plugd's repository). plugd owns the socket and the HTTP; the component only
//!   answers typed calls, inside plugd's wasm sandbox.
//! * **native binary** (any unix target; `x86_64-unknown-linux-musl` for a static binary in a
//!   plugin rootfs): [`run_volume_driver`] or [`serve_volume_driver`] serve Docker's plugin
//!   protocol on a unix socket themselves, for plugd's native runtime or for dockerd.
//!
//! An authorization plugin (`docker.authz/1.0`) is written the same way: implement
//! [`Authorizer`], export it with [`export_authorizer!`] or serve it with [`run_authz_plugin`]
//! (module [`authz`]; the example is `guest-examples/authz`).
//! Network drivers follow the same pattern: [`NetworkDriver`], [`export_network_driver!`],
//! [`run_network_driver`], and [`links`] for the veth pairs Join hands dockerd (plugd's
//! `host-links` import in wasm, rtnetlink natively).
//!
//! A metrics collector (`docker.metricscollector/1.0`): [`MetricsCollector`],
//! [`export_metrics_collector!`], [`run_metrics_collector`], and [`scrape`] for the engine's
//! metrics (module [`metrics`]).
//!
//! The driver sees the same contract in both, so its code needs no `cfg`:
//!
//! * **No concurrent calls.** plugd serializes the calls to a wasm instance, and the native server
//!   runs driver calls one at a time on a single thread. State may live in `Cell`/`RefCell`; a
//!   driver need not be `Send` or `Sync`.
//! * **Plugin-internal paths.** Return paths as the plugin sees its own filesystem (`/data/v1`
//!   under a `PropagatedMount` of `/data`); plugd (or dockerd, for a dockerd-managed native
//!   plugin) maps them to host paths.
//! * **Typed errors.** An [`Error`]'s [`ErrorCode`] maps to the same HTTP reply either way:
//!   [`ErrorCode::Unsupported`] is a 404 (dockerd reads it as "optional endpoint absent"), every
//!   other code a 500; the body is `{"Err": message}` (for an [`IpamDriver`], whose replies
//!   carry IPAM's own error field, `{"Err": message, "Error": message}`).
//!
//! A driver and both packagings of it (each in its own crate, see the volume example):
//!
//! ```no_run
//! use plugd_plugin_sdk::{Error, Volume, VolumeDriver};
//!
//! /// Knows no volumes and makes none.
//! #[derive(Default)]
//! struct Empty;
//!
//! impl VolumeDriver for Empty {
//!     fn create(&self, _name: &str, _opts: &[(String, String)]) -> Result<(), Error> {
//!         Err(Error::invalid_argument("this driver makes no volumes"))
//!     }
//!     fn remove(&self, name: &str) -> Result<(), Error> {
//!         Err(Error::not_found(format!("no such volume {name:?}")))
//!     }
//!     fn mount(&self, name: &str, _id: &str) -> Result<String, Error> {
//!         Err(Error::not_found(format!("no such volume {name:?}")))
//!     }
//!     fn unmount(&self, name: &str, _id: &str) -> Result<(), Error> {
//!         Err(Error::not_found(format!("no such volume {name:?}")))
//!     }
//!     fn path(&self, name: &str) -> Result<String, Error> {
//!         Err(Error::not_found(format!("no such volume {name:?}")))
//!     }
//!     fn get(&self, name: &str) -> Result<Volume, Error> {
//!         Err(Error::not_found(format!("no such volume {name:?}")))
//!     }
//!     fn list(&self) -> Result<Vec<Volume>, Error> {
//!         Ok(Vec::new())
//!     }
//! }
//!
//! // The wasm packaging: the lib.rs of a `cdylib` crate built for wasm32-wasip2.
//! plugd_plugin_sdk::export_volume_driver!(Empty);
//!
//! // The native packaging: the main.rs of a binary; "empty.sock" is `Interface.Socket` of the
//! // plugin's config.json.
//! fn main() -> std::process::ExitCode {
//!     plugd_plugin_sdk::run_volume_driver(Empty, "empty.sock")
//! }
//! ```

#![deny(missing_docs)]

pub mod authz;
pub mod ipam;
#[cfg(all(unix, not(target_arch = "wasm32")))]
pub mod protocol;
#[cfg(all(unix, not(target_arch = "wasm32")))]
mod server;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wasm;

#[cfg(all(unix, not(target_arch = "wasm32")))]
pub use logdriver::native::{run_log_driver, serve_log_driver};
#[cfg(all(unix, not(target_arch = "wasm32")))]
pub use server::Answer;
#[cfg(all(unix, not(target_arch = "wasm32")))]
pub use server::{Handler, run, run_volume_driver, serve, serve_volume_driver, socket_path};
#[cfg(all(unix, not(target_arch = "wasm32")))]
pub use server::{run_network_driver, serve_network_driver};

pub mod links;
pub mod logdriver;
/// A Docker log driver (`docker.logdriver/1.0`); its types are in [`logdriver`].
pub use logdriver::LogDriver;
pub mod network;
pub use network::NetworkDriver;

pub mod metrics;
pub use metrics::{MetricsCollector, scrape};
#[cfg(all(unix, not(target_arch = "wasm32")))]
pub use metrics::{run_metrics_collector, serve_metrics_collector};

pub use authz::{ApiRequest, ApiResponse, Authorizer, Decision};
#[cfg(all(unix, not(target_arch = "wasm32")))]
pub use authz::{run_authz_plugin, serve_authz_plugin};
/// A Docker IPAM driver (`docker.ipamdriver/1.0`); its types are in [`ipam`].
pub use ipam::IpamDriver;
#[cfg(all(unix, not(target_arch = "wasm32")))]
pub use ipam::{run_ipam_driver, serve_ipam_driver};

/// A driver error: a code for the host and a message for the user (the type plugd's wasm host
/// maps a guest's WIT error to, so both packagings reply alike).
pub use plugd_core::protocol::DriverError as Error;
/// What kind of failure a driver reports; mirrors WIT `docker:plugin/types.error-code`.
pub use plugd_core::protocol::ErrorCode;
/// A volume as `Get` and `List` describe it; mirrors WIT `volume-driver.volume`.
pub use plugd_core::protocol::volume::Info as Volume;
/// Whether a driver's volumes are visible from one host or cluster-wide; mirrors WIT
/// `volume-driver.scope`.
pub use plugd_core::protocol::volume::Scope;

/// A Docker volume driver (`docker.volumedriver/1.0`), written once for both packagings.
///
/// Each method is one `VolumeDriver.*` endpoint; the SDK decodes the request and encodes the
/// reply. Calls never overlap (see the crate docs), hence `&self` without `Sync`.
pub trait VolumeDriver {
    /// `Create`: make volume `name` with the user's `-o key=value` options, sorted by key.
    /// dockerd calls it whenever `get` failed, so it should succeed if the volume already exists
    /// with compatible options.
    fn create(&self, name: &str, opts: &[(String, String)]) -> Result<(), Error>;

    /// `Remove`: delete volume `name` and its data.
    fn remove(&self, name: &str) -> Result<(), Error>;

    /// `Mount`: make the volume available for mount point `id` (a random 64-hex id, stable until
    /// the matching `unmount`; not a container id) and return its path.
    fn mount(&self, name: &str, id: &str) -> Result<String, Error>;

    /// `Unmount`: mount point `id` no longer uses the volume. dockerd sends no `Unmount` for a
    /// failed `Mount`.
    fn unmount(&self, name: &str, id: &str) -> Result<(), Error>;

    /// `Path`: where the volume is (or would be) mounted, without mounting it.
    fn path(&self, name: &str) -> Result<String, Error>;

    /// `Get`: describe one volume. Any error reads as "no such volume" to dockerd.
    fn get(&self, name: &str) -> Result<Volume, Error>;

    /// `List`: every volume the driver knows (`docker volume ls` uses their mountpoints as is).
    fn list(&self) -> Result<Vec<Volume>, Error>;

    /// `Capabilities`: the driver's scope. The default is dockerd's own default.
    fn capabilities(&self) -> Scope {
        Scope::Local
    }
}

/// Exports a [`VolumeDriver`] as the component's `docker:plugin/volume-driver` interface.
///
/// Invoke it once, at the root of a `cdylib` crate built for `wasm32-wasip2`:
/// `export_volume_driver!(Type)` builds the driver with `Default`, `export_volume_driver!(Type,
/// expr)` with `expr`. The driver is built on the first call of each instance (plugd makes a
/// fresh instance at enable and after a fault) and kept for the instance's lifetime.
///
/// On other targets it exports nothing and only checks that the driver type implements
/// [`VolumeDriver`], so the same crate still builds (and unit-tests) on the host.
#[macro_export]
macro_rules! export_volume_driver {
    ($driver:ty) => {
        $crate::export_volume_driver!($driver, <$driver as ::core::default::Default>::default());
    };
    ($driver:ty, $init:expr) => {
        $crate::__export_volume_driver_impl!($driver, $init);
    };
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_volume_driver_impl {
    ($driver:ty, $init:expr) => {
        const _: () = {
            ::std::thread_local! {
                static DRIVER: $driver = $init;
            }

            struct Export;

            impl $crate::wasm::Guest for Export {
                fn create(
                    name: ::std::string::String,
                    opts: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), $crate::wasm::WitError> {
                    DRIVER.with(|d| $crate::wasm::create(d, &name, &opts))
                }

                fn remove(
                    name: ::std::string::String,
                ) -> ::core::result::Result<(), $crate::wasm::WitError> {
                    DRIVER.with(|d| $crate::wasm::remove(d, &name))
                }

                fn mount(
                    name: ::std::string::String,
                    id: ::std::string::String,
                ) -> ::core::result::Result<::std::string::String, $crate::wasm::WitError> {
                    DRIVER.with(|d| $crate::wasm::mount(d, &name, &id))
                }

                fn unmount(
                    name: ::std::string::String,
                    id: ::std::string::String,
                ) -> ::core::result::Result<(), $crate::wasm::WitError> {
                    DRIVER.with(|d| $crate::wasm::unmount(d, &name, &id))
                }

                fn path(
                    name: ::std::string::String,
                ) -> ::core::result::Result<::std::string::String, $crate::wasm::WitError> {
                    DRIVER.with(|d| $crate::wasm::path(d, &name))
                }

                fn get(
                    name: ::std::string::String,
                ) -> ::core::result::Result<$crate::wasm::WitVolume, $crate::wasm::WitError> {
                    DRIVER.with(|d| $crate::wasm::get(d, &name))
                }

                fn list() -> ::core::result::Result<
                    ::std::vec::Vec<$crate::wasm::WitVolume>,
                    $crate::wasm::WitError,
                > {
                    DRIVER.with(|d| $crate::wasm::list(d))
                }

                fn capabilities() -> $crate::wasm::WitScope {
                    DRIVER.with(|d| $crate::wasm::capabilities(d))
                }
            }

            $crate::wasm::bindings::__export_volume_plugin!(Export with_types_in $crate::wasm::bindings);
        };
    };
}

#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_volume_driver_impl {
    ($driver:ty, $init:expr) => {
        const _: () = {
            fn _check() -> impl $crate::VolumeDriver {
                let driver: $driver = $init;
                driver
            }
        };
    };
}

/// Exports a [`NetworkDriver`] as the component's `docker:plugin/network-driver` interface (world
/// `network-plugin`, which imports plugd's `host-links` for [`links`]); used like
/// [`export_volume_driver!`]. On other targets it only checks the trait.
#[macro_export]
macro_rules! export_network_driver {
    ($driver:ty) => {
        $crate::export_network_driver!($driver, <$driver as ::core::default::Default>::default());
    };
    ($driver:ty, $init:expr) => {
        $crate::__export_network_driver_impl!($driver, $init);
    };
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_network_driver_impl {
    ($driver:ty, $init:expr) => {
        const _: () = {
            ::std::thread_local! {
                static DRIVER: $driver = $init;
            }

            struct Export;

            use $crate::network::wasm as w;
            use ::std::string::String;
            use ::std::vec::Vec;

            impl w::Guest for Export {
                fn get_capabilities() -> w::WitCapabilities {
                    DRIVER.with(|d| w::capabilities(d))
                }
                fn create_network(req: w::WitCreateNetwork) -> Result<(), w::WitError> {
                    DRIVER.with(|d| w::create_network(d, req))
                }
                fn delete_network(network_id: String) -> Result<(), w::WitError> {
                    DRIVER.with(|d| w::delete_network(d, &network_id))
                }
                fn create_endpoint(
                    req: w::WitCreateEndpoint,
                ) -> Result<Option<w::WitEndpointInterface>, w::WitError> {
                    DRIVER.with(|d| w::create_endpoint(d, req))
                }
                fn endpoint_oper_info(
                    network_id: String,
                    endpoint_id: String,
                ) -> Result<Vec<(String, String)>, w::WitError> {
                    DRIVER.with(|d| w::endpoint_oper_info(d, &network_id, &endpoint_id))
                }
                fn delete_endpoint(network_id: String, endpoint_id: String) -> Result<(), w::WitError> {
                    DRIVER.with(|d| w::delete_endpoint(d, &network_id, &endpoint_id))
                }
                fn join(req: w::WitJoin) -> Result<w::WitJoinResponse, w::WitError> {
                    DRIVER.with(|d| w::join(d, req))
                }
                fn leave(network_id: String, endpoint_id: String) -> Result<(), w::WitError> {
                    DRIVER.with(|d| w::leave(d, &network_id, &endpoint_id))
                }
                fn program_external_connectivity(
                    network_id: String,
                    endpoint_id: String,
                    options: Vec<(String, String)>,
                ) -> Result<(), w::WitError> {
                    DRIVER.with(|d| {
                        w::program_external_connectivity(d, &network_id, &endpoint_id, &options)
                    })
                }
                fn revoke_external_connectivity(
                    network_id: String,
                    endpoint_id: String,
                ) -> Result<(), w::WitError> {
                    DRIVER.with(|d| w::revoke_external_connectivity(d, &network_id, &endpoint_id))
                }
            }

            $crate::network::wasm::bindings::__export_network_plugin!(Export with_types_in $crate::network::wasm::bindings);
        };
    };
}

#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_network_driver_impl {
    ($driver:ty, $init:expr) => {
        const _: () = {
            fn _check() -> impl $crate::NetworkDriver {
                let driver: $driver = $init;
                driver
            }
        };
    };
}

/// Exports a [`MetricsCollector`] as the component's `docker:plugin/metrics-collector` interface
/// (world `metrics-plugin`, which imports plugd's `engine-metrics` for [`scrape`]); used like
/// [`export_volume_driver!`]. On other targets it only checks the trait.
#[macro_export]
macro_rules! export_metrics_collector {
    ($collector:ty) => {
        $crate::export_metrics_collector!(
            $collector,
            <$collector as ::core::default::Default>::default()
        );
    };
    ($collector:ty, $init:expr) => {
        $crate::__export_metrics_collector_impl!($collector, $init);
    };
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_metrics_collector_impl {
    ($collector:ty, $init:expr) => {
        const _: () = {
            ::std::thread_local! {
                static COLLECTOR: $collector = $init;
            }

            struct Export;

            use $crate::metrics::wasm as w;

            impl w::Guest for Export {
                fn start_metrics() -> ::core::result::Result<u32, w::WitError> {
                    COLLECTOR.with(|c| w::start(c))
                }
                fn stop_metrics() -> ::core::result::Result<(), w::WitError> {
                    COLLECTOR.with(|c| w::stop(c))
                }
                fn tick() -> ::core::result::Result<(), w::WitError> {
                    COLLECTOR.with(|c| w::tick(c))
                }
            }

            $crate::metrics::wasm::bindings::__export_metrics_plugin!(Export with_types_in $crate::metrics::wasm::bindings);
        };
    };
}

#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_metrics_collector_impl {
    ($collector:ty, $init:expr) => {
        const _: () = {
            fn _check() -> impl $crate::MetricsCollector {
                let collector: $collector = $init;
                collector
            }
        };
    };
}
