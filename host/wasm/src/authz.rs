//! The `docker:plugin/authz` WIT interface ↔ [`plugd_core::protocol::authz`]. A guest's `error`
//! becomes a 500 like any driver error, and a trap or a timeout fails the call in `instance`;
//! the gateway (`host/src/socket/authz.rs`) turns each of these into a deny naming the plugin,
//! so every way an authz guest can fail denies.

use crate::bindings::authz::{ApiRequest as GuestRequest, ApiResponse as GuestResponse, Guest};
use crate::drivers::driver_error;
use plugd_core::Reply;
use plugd_core::protocol::authz::{ApiRequest, Decision, Request, Response, encode};
use wasmtime::Store;

/// Calls the guest for `req`. `Ok` carries the reply, guest-reported errors included; `Err` is a
/// fault of the instance itself (trap, interrupt), after which it must be discarded.
pub(crate) async fn invoke<T: Send>(
    req: &Request,
    guest: &Guest,
    store: &mut Store<T>,
) -> wasmtime::Result<Reply> {
    let answer = match req {
        Request::Activate => Ok(Response::Activate),
        Request::Authorize(api) => guest
            .call_authorize_request(&mut *store, &request(api))
            .await?
            .map(decision),
        Request::AuthorizeResponse(api, res) => {
            let res = GuestResponse {
                status: res.status,
                headers: res.headers.clone(),
                body: res.body.clone(),
            };
            guest
                .call_authorize_response(&mut *store, &request(api), &res)
                .await?
                .map(decision)
        }
    };
    Ok(encode(answer.map_err(driver_error)))
}

fn request(r: &ApiRequest) -> GuestRequest {
    GuestRequest {
        user: r.user.clone(),
        user_authn_method: r.user_authn_method.clone(),
        method: r.method.clone(),
        uri: r.uri.clone(),
        headers: r.headers.clone(),
        body: r.body.clone(),
    }
}

fn decision(d: crate::bindings::authz::Decision) -> Response {
    Response::Decision(Decision {
        allow: d.allow,
        msg: d.msg,
    })
}
