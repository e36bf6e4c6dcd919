//! Write a Docker volume plugin once, ship it as a wasm component or as a native binary.
//!
//! An author implements [`VolumeDriver`]; the target chosen at build time picks the packaging:
//!
//! * **wasm component** (`--target wasm32-wasip2`, crate type `cdylib`):
//!   [`export_volume_driver!`] exports the driver as the `docker:plugin/volume-plugin` world
//!   (`wit/` in plugd's repository). plugd owns the socket and the HTTP; the component only
//!   answers typed calls, inside plugd's wasm sandbox.
//! * **native binary** (any unix target; `x86_64-unknown-linux-musl` for a static binary in a
//!   plugin rootfs): [`run_volume_driver`] or [`serve_volume_driver`] serve Docker's plugin
//!   protocol on a unix socket themselves, for plugd's native runtime or for dockerd.
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
//!   other code a 500; the body is always `{"Err": message}`.
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

use std::fmt;

#[cfg(all(unix, not(target_arch = "wasm32")))]
pub mod protocol;
#[cfg(all(unix, not(target_arch = "wasm32")))]
mod server;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wasm;

#[cfg(all(unix, not(target_arch = "wasm32")))]
pub use server::{run_volume_driver, serve_volume_driver, socket_path};

/// What kind of failure a driver reports; mirrors WIT `docker:plugin/types.error-code`.
///
/// dockerd does not tell 500 bodies apart, so only [`Unsupported`](Self::Unsupported) changes the
/// reply; the other codes exist so plugd's logs and metrics can tell user errors from bugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The named volume does not exist. For `Get` this is how "no such volume" is said, which
    /// makes dockerd call `create` next when a volume is being created.
    NotFound,
    /// The request is malformed (a bad volume name, an unknown option).
    InvalidArgument,
    /// The request clashes with existing state (in use, exists with other options).
    Conflict,
    /// The driver does not implement this call: HTTP 404, which dockerd treats as "absent" for
    /// optional endpoints.
    Unsupported,
    /// Anything else: an I/O error, a bug.
    Internal,
}

impl ErrorCode {
    /// The WIT spelling, used as the message when a driver gives none.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not-found",
            ErrorCode::InvalidArgument => "invalid-argument",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A driver error: a code for the host and a message for the user.
///
/// The message is what dockerd prints after `<Method>: `, so keep it short and free of host
/// details the user cannot act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// How the failure is reported (see [`ErrorCode`]).
    pub code: ErrorCode,
    /// Human-readable text, relayed as is.
    pub message: String,
}

impl Error {
    /// An error with any code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    /// [`ErrorCode::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::NotFound, message)
    }

    /// [`ErrorCode::InvalidArgument`].
    pub fn invalid_argument(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidArgument, message)
    }

    /// [`ErrorCode::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Conflict, message)
    }

    /// [`ErrorCode::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Unsupported, message)
    }

    /// [`ErrorCode::Internal`].
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(self.code.as_str())
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for Error {}

/// Whether a driver's volumes are visible from one host or cluster-wide; mirrors WIT
/// `volume-driver.scope`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Scope {
    /// This host only; what dockerd assumes when `Capabilities` fails or is absent.
    #[default]
    Local,
    /// Shared by every host of a swarm.
    Global,
}

impl Scope {
    /// The protocol's spelling (`{"Scope": "local"}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Global => "global",
        }
    }
}

/// A volume as `Get` and `List` describe it; mirrors WIT `volume-driver.volume`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Volume {
    /// The name dockerd knows the volume by.
    pub name: String,
    /// Where the data is, as a plugin-internal path; may be empty when not mounted yet.
    pub mountpoint: String,
    /// Creation time in RFC 3339 (`2026-11-23T10:00:00Z`). `None` leaves `CreatedAt` out of the
    /// reply: dockerd rejects an empty string but accepts an absent field.
    pub created_at: Option<String>,
    /// Free-form pairs `docker volume inspect` shows under `Status`.
    pub status: Vec<(String, String)>,
}

impl Volume {
    /// A volume with no creation time and no status.
    pub fn new(name: impl Into<String>, mountpoint: impl Into<String>) -> Volume {
        Volume {
            name: name.into(),
            mountpoint: mountpoint.into(),
            created_at: None,
            status: Vec::new(),
        }
    }
}

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
