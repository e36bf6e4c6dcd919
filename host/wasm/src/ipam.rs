//! The `docker:plugin/ipam-driver` WIT interface ↔ [`plugd_core::protocol::ipam`]: the guest's
//! typed answers become the protocol's, which plugd-core encodes (errors as `{"Err","Error"}`)
//! the same way for a native driver built with the SDK.

use crate::bindings::GuestError;
use crate::bindings::ipam_driver::{
    AddressRequest as GuestAddressRequest, Guest, PoolRequest as GuestPoolRequest,
};
use crate::drivers::driver_error;
use plugd_core::Reply;
use plugd_core::protocol::ipam::{
    Address, AddressSpaces, Capabilities, Pool, Request, Response, encode,
};
use wasmtime::Store;

/// Calls the guest for `req`. `Ok` carries the reply, guest-reported errors included; `Err` is a
/// fault of the instance itself (trap, interrupt), after which it must be discarded.
pub(crate) async fn invoke<T: Send>(
    req: &Request,
    guest: &Guest,
    store: &mut Store<T>,
) -> wasmtime::Result<Reply> {
    let s = &mut *store;
    let answer: Result<Response, GuestError> = match req {
        Request::Activate => Ok(Response::Activate),
        Request::GetCapabilities => guest.call_get_capabilities(s).await?.map(|c| {
            Response::Capabilities(Capabilities {
                requires_mac_address: c.requires_mac_address,
                requires_request_replay: c.requires_request_replay,
            })
        }),
        Request::GetDefaultAddressSpaces => {
            guest.call_get_default_address_spaces(s).await?.map(|a| {
                Response::AddressSpaces(AddressSpaces {
                    local: a.local,
                    global: a.global,
                })
            })
        }
        Request::RequestPool(r) => {
            let wit = GuestPoolRequest {
                address_space: r.address_space.clone(),
                pool: r.pool.clone(),
                sub_pool: r.sub_pool.clone(),
                options: r.options.clone(),
                v6: r.v6,
            };
            guest.call_request_pool(s, &wit).await?.map(|p| {
                Response::Pool(Pool {
                    pool_id: p.pool_id,
                    pool: p.pool,
                    data: p.data,
                })
            })
        }
        Request::ReleasePool { pool_id } => guest
            .call_release_pool(s, pool_id)
            .await?
            .map(|()| Response::Done),
        Request::RequestAddress(r) => {
            let wit = GuestAddressRequest {
                pool_id: r.pool_id.clone(),
                address: r.address.clone(),
                options: r.options.clone(),
            };
            guest.call_request_address(s, &wit).await?.map(|a| {
                Response::Address(Address {
                    address: a.address,
                    data: a.data,
                })
            })
        }
        Request::ReleaseAddress { pool_id, address } => guest
            .call_release_address(s, pool_id, address)
            .await?
            .map(|()| Response::Done),
    };
    Ok(encode(answer.map_err(driver_error)))
}
