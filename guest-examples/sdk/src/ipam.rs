//! IPAM drivers (`docker.ipamdriver/1.0`): the [`IpamDriver`] trait, its native dispatch and
//! server entry points, and its wasm packaging ([`export_ipam_driver!`](crate::export_ipam_driver)).
//!
//! The request and answer types are plugd-core's ([`plugd_core::protocol::ipam`]), the ones plugd's
//! wasm host maps the WIT records to, so both packagings of a driver reply byte for byte alike,
//! errors included (`{"Err","Error"}` with the code's status: IPAM's own error encoding, not the
//! volume driver's).

use crate::Error;

/// `RequestAddress`'s answer; mirrors WIT `ipam-driver.address`.
pub use plugd_core::protocol::ipam::Address;
/// `RequestAddress`'s arguments; mirrors WIT `ipam-driver.address-request`.
pub use plugd_core::protocol::ipam::AddressRequest;
/// `GetDefaultAddressSpaces`' answer; mirrors WIT `ipam-driver.address-spaces`.
pub use plugd_core::protocol::ipam::AddressSpaces;
/// `GetCapabilities`' answer; mirrors WIT `ipam-driver.capabilities`.
pub use plugd_core::protocol::ipam::Capabilities;
/// `RequestPool`'s answer; mirrors WIT `ipam-driver.pool`.
pub use plugd_core::protocol::ipam::Pool;
/// `RequestPool`'s arguments; mirrors WIT `ipam-driver.pool-request`.
pub use plugd_core::protocol::ipam::PoolRequest;
/// Option keys and values dockerd uses (`RequestAddressType`, the gateway marker, the MAC).
pub use plugd_core::protocol::ipam::{GATEWAY, MAC_ADDRESS, REQUEST_ADDRESS_TYPE};

/// A Docker IPAM driver, written once for both packagings.
///
/// Each method is one `IpamDriver.*` endpoint. Calls never overlap (see the crate docs). dockerd
/// remembers pools and addresses across plugin restarts (and plugd replaces a wasm instance after
/// a fault), so a driver keeps its allocations on disk, not only in memory.
pub trait IpamDriver {
    /// `GetCapabilities`. The default asks for nothing (no MAC, no replay).
    fn get_capabilities(&self) -> Result<Capabilities, Error> {
        Ok(Capabilities::default())
    }

    /// `GetDefaultAddressSpaces`: called once, when dockerd first uses the driver. The default
    /// gives libnetwork's own names.
    fn get_default_address_spaces(&self) -> Result<AddressSpaces, Error> {
        Ok(AddressSpaces {
            local: "LocalDefault".into(),
            global: "GlobalDefault".into(),
        })
    }

    /// `RequestPool`: allocate the requested pool (`request.pool`, the user's `--subnet`) or one
    /// of the driver's choosing.
    fn request_pool(&self, request: &PoolRequest) -> Result<Pool, Error>;

    /// `ReleasePool`: the network is gone.
    fn release_pool(&self, pool_id: &str) -> Result<(), Error>;

    /// `RequestAddress`: an address in the pool, as a CIDR with the pool's prefix length. For
    /// the network's gateway, [`AddressRequest::is_gateway`] is true.
    fn request_address(&self, request: &AddressRequest) -> Result<Address, Error>;

    /// `ReleaseAddress`: `address` is a plain IP (no prefix).
    fn release_address(&self, pool_id: &str, address: &str) -> Result<(), Error>;
}

/// Calls the driver for one decoded request.
#[cfg(all(unix, not(target_arch = "wasm32")))]
fn call<D: IpamDriver + ?Sized>(
    driver: &D,
    request: &plugd_core::protocol::ipam::Request,
) -> Result<plugd_core::protocol::ipam::Response, Error> {
    use plugd_core::protocol::ipam::{Request, Response};
    Ok(match request {
        Request::Activate => Response::Activate,
        Request::GetCapabilities => Response::Capabilities(driver.get_capabilities()?),
        Request::GetDefaultAddressSpaces => {
            Response::AddressSpaces(driver.get_default_address_spaces()?)
        }
        Request::RequestPool(r) => Response::Pool(driver.request_pool(r)?),
        Request::ReleasePool { pool_id } => {
            driver.release_pool(pool_id).map(|()| Response::Done)?
        }
        Request::RequestAddress(r) => Response::Address(driver.request_address(r)?),
        Request::ReleaseAddress { pool_id, address } => driver
            .release_address(pool_id, address)
            .map(|()| Response::Done)?,
    })
}

/// Answers one IPAM call: `endpoint` is the request path with or without its leading `/`
/// (`IpamDriver.RequestPool`), `body` the request body as sent. Public so a driver can be tested
/// through the protocol without a socket.
#[cfg(all(unix, not(target_arch = "wasm32")))]
pub fn handle<D: IpamDriver + ?Sized>(
    driver: &D,
    endpoint: &str,
    body: &[u8],
) -> crate::protocol::Reply {
    use plugd_core::protocol::ipam::{Request, encode};
    match Request::decode(endpoint, body) {
        Ok(request) => encode(call(driver, &request)),
        Err(reply) => reply,
    }
}

/// An [`IpamDriver`] as a [`Handler`](crate::Handler).
#[cfg(all(unix, not(target_arch = "wasm32")))]
struct Ipam<D>(D);

#[cfg(all(unix, not(target_arch = "wasm32")))]
impl<D: IpamDriver> crate::Handler for Ipam<D> {
    fn handle(&self, endpoint: &str, body: &[u8]) -> crate::protocol::Reply {
        handle(&self.0, endpoint, body)
    }
}

/// An IPAM plugin's `main`: [`run`](crate::run) for an [`IpamDriver`].
#[cfg(all(unix, not(target_arch = "wasm32")))]
pub fn run_ipam_driver<D: IpamDriver + 'static>(
    driver: D,
    default_socket: &str,
) -> std::process::ExitCode {
    crate::run(Ipam(driver), default_socket)
}

/// [`serve`](crate::serve) for an [`IpamDriver`].
#[cfg(all(unix, not(target_arch = "wasm32")))]
pub fn serve_ipam_driver<D: IpamDriver + 'static>(
    driver: D,
    socket: &std::path::Path,
) -> std::io::Result<()> {
    crate::serve(Ipam(driver), socket)
}

/// The wasm packaging: the guest side of world `ipam-plugin`, generated here in a module of its
/// own so its types never meet the volume world's (`crate::wasm`), and the conversions
/// [`export_ipam_driver!`](crate::export_ipam_driver) calls.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wasm {
    use super::{Address, AddressRequest, IpamDriver, Pool, PoolRequest};

    /// World `ipam-plugin`. The export macro is public and renamed so `export_ipam_driver!` can
    /// invoke it from the author's crate.
    pub mod bindings {
        wit_bindgen::generate!({
            world: "ipam-plugin",
            path: "../../wit",
            // One `types` for every world: one error type, converted in one place (`crate::wasm`).
            with: { "docker:plugin/types@0.1.0": crate::wasm::bindings::docker::plugin::types, },
            pub_export_macro: true,
            export_macro_name: "__export_ipam_plugin",
        });
    }

    use crate::wasm::bindings::docker::plugin::types as wit_types;
    use crate::wasm::error;
    use bindings::exports::docker::plugin::ipam_driver as wit;

    pub use wit::Guest;
    /// WIT `error`.
    pub type WitError = wit_types::Error;

    pub fn get_capabilities<D: IpamDriver>(d: &D) -> Result<wit::Capabilities, WitError> {
        d.get_capabilities()
            .map(|c| wit::Capabilities {
                requires_mac_address: c.requires_mac_address,
                requires_request_replay: c.requires_request_replay,
            })
            .map_err(error)
    }

    pub fn get_default_address_spaces<D: IpamDriver>(
        d: &D,
    ) -> Result<wit::AddressSpaces, WitError> {
        d.get_default_address_spaces()
            .map(|a| wit::AddressSpaces {
                local: a.local,
                global: a.global,
            })
            .map_err(error)
    }

    pub fn request_pool<D: IpamDriver>(d: &D, r: wit::PoolRequest) -> Result<wit::Pool, WitError> {
        let r = PoolRequest {
            address_space: r.address_space,
            pool: r.pool,
            sub_pool: r.sub_pool,
            options: r.options,
            v6: r.v6,
        };
        d.request_pool(&r)
            .map(|p: Pool| wit::Pool {
                pool_id: p.pool_id,
                pool: p.pool,
                data: p.data,
            })
            .map_err(error)
    }

    pub fn release_pool<D: IpamDriver>(d: &D, pool_id: &str) -> Result<(), WitError> {
        d.release_pool(pool_id).map_err(error)
    }

    pub fn request_address<D: IpamDriver>(
        d: &D,
        r: wit::AddressRequest,
    ) -> Result<wit::Address, WitError> {
        let r = AddressRequest {
            pool_id: r.pool_id,
            address: r.address,
            options: r.options,
        };
        d.request_address(&r)
            .map(|a: Address| wit::Address {
                address: a.address,
                data: a.data,
            })
            .map_err(error)
    }

    pub fn release_address<D: IpamDriver>(
        d: &D,
        pool_id: &str,
        address: &str,
    ) -> Result<(), WitError> {
        d.release_address(pool_id, address).map_err(error)
    }
}

/// Exports an [`IpamDriver`] as the component's `docker:plugin/ipam-driver` interface (world
/// `ipam-plugin`).
///
/// Invoke it once, at the root of a `cdylib` crate built for `wasm32-wasip2`:
/// `export_ipam_driver!(Type)` builds the driver with `Default`, `export_ipam_driver!(Type, expr)`
/// with `expr`, on the first call of each instance. On other targets it only checks that the type
/// implements [`IpamDriver`].
#[macro_export]
macro_rules! export_ipam_driver {
    ($driver:ty) => {
        $crate::export_ipam_driver!($driver, <$driver as ::core::default::Default>::default());
    };
    ($driver:ty, $init:expr) => {
        $crate::__export_ipam_driver_impl!($driver, $init);
    };
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_ipam_driver_impl {
    ($driver:ty, $init:expr) => {
        const _: () = {
            ::std::thread_local! {
                static DRIVER: $driver = $init;
            }

            struct Export;

            type W = $crate::ipam::wasm::bindings::exports::docker::plugin::ipam_driver::Capabilities;
            type S = $crate::ipam::wasm::bindings::exports::docker::plugin::ipam_driver::AddressSpaces;
            type PR = $crate::ipam::wasm::bindings::exports::docker::plugin::ipam_driver::PoolRequest;
            type P = $crate::ipam::wasm::bindings::exports::docker::plugin::ipam_driver::Pool;
            type AR = $crate::ipam::wasm::bindings::exports::docker::plugin::ipam_driver::AddressRequest;
            type A = $crate::ipam::wasm::bindings::exports::docker::plugin::ipam_driver::Address;
            type E = $crate::ipam::wasm::WitError;

            impl $crate::ipam::wasm::Guest for Export {
                fn get_capabilities() -> ::core::result::Result<W, E> {
                    DRIVER.with(|d| $crate::ipam::wasm::get_capabilities(d))
                }

                fn get_default_address_spaces() -> ::core::result::Result<S, E> {
                    DRIVER.with(|d| $crate::ipam::wasm::get_default_address_spaces(d))
                }

                fn request_pool(request: PR) -> ::core::result::Result<P, E> {
                    DRIVER.with(|d| $crate::ipam::wasm::request_pool(d, request))
                }

                fn release_pool(pool_id: ::std::string::String) -> ::core::result::Result<(), E> {
                    DRIVER.with(|d| $crate::ipam::wasm::release_pool(d, &pool_id))
                }

                fn request_address(request: AR) -> ::core::result::Result<A, E> {
                    DRIVER.with(|d| $crate::ipam::wasm::request_address(d, request))
                }

                fn release_address(
                    pool_id: ::std::string::String,
                    address: ::std::string::String,
                ) -> ::core::result::Result<(), E> {
                    DRIVER.with(|d| $crate::ipam::wasm::release_address(d, &pool_id, &address))
                }
            }

            $crate::ipam::wasm::bindings::__export_ipam_plugin!(Export with_types_in $crate::ipam::wasm::bindings);
        };
    };
}

#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_ipam_driver_impl {
    ($driver:ty, $init:expr) => {
        const _: () = {
            fn _check() -> impl $crate::IpamDriver {
                let driver: $driver = $init;
                driver
            }
        };
    };
}

#[cfg(all(test, unix, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// One pool, `10.1.0.0/24`; every address its `.1`; releases always fail.
    struct One;

    impl IpamDriver for One {
        fn request_pool(&self, r: &PoolRequest) -> Result<Pool, Error> {
            Ok(Pool {
                pool_id: "p".into(),
                pool: if r.pool.is_empty() {
                    "10.1.0.0/24".into()
                } else {
                    r.pool.clone()
                },
                data: vec![],
            })
        }
        fn release_pool(&self, _: &str) -> Result<(), Error> {
            Err(Error::not_found("no pool"))
        }
        fn request_address(&self, r: &AddressRequest) -> Result<Address, Error> {
            assert!(r.is_gateway());
            Ok(Address {
                address: "10.1.0.1/24".into(),
                data: vec![],
            })
        }
        fn release_address(&self, _: &str, _: &str) -> Result<(), Error> {
            Err(Error::unsupported(""))
        }
    }

    fn call(endpoint: &str, body: &str) -> (u16, Value) {
        let r = handle(&One, endpoint, body.as_bytes());
        (r.status, serde_json::from_slice(&r.body).unwrap())
    }

    #[test]
    fn replies_and_errors_have_ipam_shapes() {
        assert_eq!(
            call("/Plugin.Activate", ""),
            (200, json!({"Implements": ["IpamDriver"]}))
        );
        assert_eq!(
            call("/IpamDriver.GetCapabilities", ""),
            (
                200,
                json!({"RequiresMACAddress": false, "RequiresRequestReplay": false})
            )
        );
        assert_eq!(
            call("/IpamDriver.GetDefaultAddressSpaces", "null"),
            (
                200,
                json!({"LocalDefaultAddressSpace": "LocalDefault", "GlobalDefaultAddressSpace": "GlobalDefault"})
            )
        );
        assert_eq!(
            call(
                "/IpamDriver.RequestPool",
                r#"{"AddressSpace":"LocalDefault","Pool":"","SubPool":"","Options":{},"V6":false}"#
            ),
            (
                200,
                json!({"PoolID": "p", "Pool": "10.1.0.0/24", "Data": {}})
            )
        );
        assert_eq!(
            call(
                "/IpamDriver.RequestAddress",
                r#"{"PoolID":"p","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}"#
            ),
            (200, json!({"Address": "10.1.0.1/24", "Data": {}}))
        );
        assert_eq!(
            call("/IpamDriver.ReleasePool", r#"{"PoolID":"p"}"#),
            (500, json!({"Err": "no pool", "Error": "no pool"}))
        );
        assert_eq!(
            call(
                "/IpamDriver.ReleaseAddress",
                r#"{"PoolID":"p","Address":"10.1.0.1"}"#
            ),
            (404, json!({"Err": "unsupported", "Error": "unsupported"}))
        );
        assert_eq!(call("/VolumeDriver.List", "").0, 404);
    }
}
