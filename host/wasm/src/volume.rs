//! The `docker:plugin/volume-driver` WIT interface ↔ [`plugd_core::protocol::volume`]: the guest's
//! typed answers become the protocol's, which plugd-core encodes the same way for a native driver
//! built with the SDK. Paths are relayed as the guest gave them (plugin-internal); plugd's socket
//! layer translates them.

use crate::bindings::GuestError;
use crate::bindings::volume_driver::{Guest, Scope as GuestScope, Volume as GuestVolume};
use crate::drivers::driver_error;
use plugd_core::Reply;
use plugd_core::protocol::volume::{Info, Request, Response, Scope, encode};
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
        Request::Create { name, opts } => guest
            .call_create(s, name, opts)
            .await?
            .map(|()| Response::Done),
        Request::Remove { name } => guest.call_remove(s, name).await?.map(|()| Response::Done),
        Request::Unmount { name, id } => guest
            .call_unmount(s, name, id)
            .await?
            .map(|()| Response::Done),
        Request::Mount { name, id } => guest
            .call_mount(s, name, id)
            .await?
            .map(Response::Mountpoint),
        Request::Path { name } => guest.call_path(s, name).await?.map(Response::Mountpoint),
        Request::Get { name } => guest
            .call_get(s, name)
            .await?
            .map(|v| Response::Volume(info(v))),
        Request::List => guest
            .call_list(s)
            .await?
            .map(|vs| Response::Volumes(vs.into_iter().map(info).collect())),
        Request::Capabilities => Ok(Response::Capabilities(
            match guest.call_capabilities(s).await? {
                GuestScope::Local => Scope::Local,
                GuestScope::Global => Scope::Global,
            },
        )),
    };
    Ok(encode(answer.map_err(driver_error)))
}

fn info(v: GuestVolume) -> Info {
    Info {
        name: v.name,
        mountpoint: v.mountpoint,
        created_at: v.created_at,
        status: v.status,
    }
}
