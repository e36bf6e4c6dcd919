//! Authorization plugins (`docker.authz/1.0`): the [`Authorizer`] trait, its protocol handler for
//! the native packaging, and the wasm packaging ([`export_authorizer!`](crate::export_authorizer)).
//!
//! dockerd started with `--authorization-plugin=<name>` asks the plugin before every Engine API
//! call ([`Authorizer::authorize_request`]) and again before the call's answer reaches the
//! caller ([`Authorizer::authorize_response`]). Decoding and encoding are plugd-core's
//! ([`plugd_core::protocol::authz`]), shared with plugd's wasm host, so both packagings answer
//! alike. An [`crate::Error`] fails the call; plugd (and dockerd itself, for a plugin it
//! talks to directly) then denies the API call: an authorizer fails closed.

use crate::Error;

/// The Engine API call being authorized; mirrors WIT `authz.api-request`.
pub use plugd_core::protocol::authz::ApiRequest;
/// What the API call answered; mirrors WIT `authz.api-response`.
pub use plugd_core::protocol::authz::ApiResponse;
/// An allow, or a deny with the message the API caller sees; mirrors WIT `authz.decision`.
pub use plugd_core::protocol::authz::Decision;

/// A Docker authorization plugin, written once for both packagings. Both methods allow by
/// default, so a policy implements the phase it cares about. Calls never overlap (see the crate
/// docs), hence `&self` without `Sync`.
pub trait Authorizer {
    /// `AuthZPlugin.AuthZReq`: may `req` run? A deny refuses the API call with a 403 showing
    /// [`Decision::msg`]; nothing is done.
    fn authorize_request(&self, req: &ApiRequest) -> Result<Decision, Error> {
        let _ = req;
        Ok(Decision::allow())
    }

    /// `AuthZPlugin.AuthZRes`: `req` ran and answered `res`; may the answer reach the caller? A
    /// deny withholds the answer (what the call did stays done).
    fn authorize_response(&self, req: &ApiRequest, res: &ApiResponse) -> Result<Decision, Error> {
        let _ = (req, res);
        Ok(Decision::allow())
    }
}

/// Answers one call of the authz protocol: `endpoint` is the request path with or without its
/// leading `/` (`AuthZPlugin.AuthZReq`), `body` the request body as sent.
#[cfg(all(unix, not(target_arch = "wasm32")))]
pub fn handle<A: Authorizer + ?Sized>(
    authorizer: &A,
    endpoint: &str,
    body: &[u8],
) -> crate::protocol::Reply {
    use plugd_core::protocol::authz::{Request, Response, encode};
    let request = match Request::decode(endpoint, body) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    encode(match &request {
        Request::Activate => Ok(Response::Activate),
        Request::Authorize(req) => authorizer.authorize_request(req).map(Response::Decision),
        Request::AuthorizeResponse(req, res) => authorizer
            .authorize_response(req, res)
            .map(Response::Decision),
    })
}

#[cfg(all(unix, not(target_arch = "wasm32")))]
mod native {
    use super::{Authorizer, handle};
    use crate::protocol::Reply;
    use crate::server::{Handler, run, serve};
    use std::path::Path;
    use std::process::ExitCode;

    /// An [`Authorizer`] as a [`Handler`].
    struct Authz<A>(A);

    impl<A: Authorizer> Handler for Authz<A> {
        fn handle(&self, endpoint: &str, body: &[u8]) -> Reply {
            handle(&self.0, endpoint, body)
        }
    }

    /// An authorization plugin's `main`: [`run`] for an [`Authorizer`].
    pub fn run_authz_plugin<A: Authorizer + 'static>(
        authorizer: A,
        default_socket: &str,
    ) -> ExitCode {
        run(Authz(authorizer), default_socket)
    }

    /// [`serve`] for an [`Authorizer`].
    pub fn serve_authz_plugin<A: Authorizer + 'static>(
        authorizer: A,
        socket: &Path,
    ) -> std::io::Result<()> {
        serve(Authz(authorizer), socket)
    }
}

#[cfg(all(unix, not(target_arch = "wasm32")))]
pub use native::{run_authz_plugin, serve_authz_plugin};

/// The wasm packaging: the guest side of world `authz-plugin`, generated here in a module of its
/// own (its `types` are its own copy, distinct from the volume world's), and the conversions
/// [`export_authorizer!`](crate::export_authorizer) calls.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wasm {
    use super::{ApiRequest, ApiResponse, Authorizer, Decision};

    /// The guest side of `wit/authz.wit`; its export macro is renamed for the same reason as the
    /// volume world's (`crate::wasm::bindings`).
    pub mod bindings {
        wit_bindgen::generate!({
            world: "authz-plugin",
            path: "../../wit",
            // One `types` for every world: one error type, converted in one place (`crate::wasm`).
            with: { "docker:plugin/types@0.1.0": crate::wasm::bindings::docker::plugin::types, },
            pub_export_macro: true,
            export_macro_name: "__export_authz_plugin",
        });
    }

    use crate::wasm::bindings::docker::plugin::types as wit_types;
    use crate::wasm::error;
    use bindings::exports::docker::plugin::authz as wit;

    pub use wit::Guest;
    /// WIT `error`.
    pub type WitError = wit_types::Error;
    /// WIT `api-request`.
    pub type WitRequest = wit::ApiRequest;
    /// WIT `api-response`.
    pub type WitResponse = wit::ApiResponse;
    /// WIT `decision`.
    pub type WitDecision = wit::Decision;

    fn request(r: WitRequest) -> ApiRequest {
        ApiRequest {
            user: r.user,
            user_authn_method: r.user_authn_method,
            method: r.method,
            uri: r.uri,
            headers: r.headers,
            body: r.body,
        }
    }

    fn decision(d: Decision) -> WitDecision {
        WitDecision {
            allow: d.allow,
            msg: d.msg,
        }
    }

    pub fn authorize_request<A: Authorizer>(
        a: &A,
        req: WitRequest,
    ) -> Result<WitDecision, WitError> {
        a.authorize_request(&request(req))
            .map(decision)
            .map_err(error)
    }

    pub fn authorize_response<A: Authorizer>(
        a: &A,
        req: WitRequest,
        res: WitResponse,
    ) -> Result<WitDecision, WitError> {
        let res = ApiResponse {
            status: res.status,
            headers: res.headers,
            body: res.body,
        };
        a.authorize_response(&request(req), &res)
            .map(decision)
            .map_err(error)
    }
}

/// Exports an [`Authorizer`] as the component's `docker:plugin/authz` interface.
///
/// Invoke it once, at the root of a `cdylib` crate built for `wasm32-wasip2`:
/// `export_authorizer!(Type)` builds the authorizer with `Default`, `export_authorizer!(Type,
/// expr)` with `expr`, on the first call of each instance (plugd makes a fresh instance at enable
/// and after a fault), kept for the instance's lifetime. On other targets it only checks that the
/// type implements [`Authorizer`].
#[macro_export]
macro_rules! export_authorizer {
    ($authorizer:ty) => {
        $crate::export_authorizer!(
            $authorizer,
            <$authorizer as ::core::default::Default>::default()
        );
    };
    ($authorizer:ty, $init:expr) => {
        $crate::__export_authorizer_impl!($authorizer, $init);
    };
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_authorizer_impl {
    ($authorizer:ty, $init:expr) => {
        const _: () = {
            ::std::thread_local! {
                static AUTHORIZER: $authorizer = $init;
            }

            struct Export;

            impl $crate::authz::wasm::Guest for Export {
                fn authorize_request(
                    req: $crate::authz::wasm::WitRequest,
                ) -> ::core::result::Result<
                    $crate::authz::wasm::WitDecision,
                    $crate::authz::wasm::WitError,
                > {
                    AUTHORIZER.with(|a| $crate::authz::wasm::authorize_request(a, req))
                }

                fn authorize_response(
                    req: $crate::authz::wasm::WitRequest,
                    res: $crate::authz::wasm::WitResponse,
                ) -> ::core::result::Result<
                    $crate::authz::wasm::WitDecision,
                    $crate::authz::wasm::WitError,
                > {
                    AUTHORIZER.with(|a| $crate::authz::wasm::authorize_response(a, req, res))
                }
            }

            $crate::authz::wasm::bindings::__export_authz_plugin!(
                Export with_types_in $crate::authz::wasm::bindings
            );
        };
    };
}

#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_authorizer_impl {
    ($authorizer:ty, $init:expr) => {
        const _: () = {
            fn _check() -> impl $crate::authz::Authorizer {
                let authorizer: $authorizer = $init;
                authorizer
            }
        };
    };
}

#[cfg(all(test, unix, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Denies `DELETE`s; fails on `/boom`; denies answers with a 500.
    struct Policy;

    impl Authorizer for Policy {
        fn authorize_request(&self, req: &ApiRequest) -> Result<Decision, Error> {
            if req.uri.contains("/boom") {
                return Err(Error::internal("policy store unreachable"));
            }
            Ok(if req.method == "DELETE" {
                Decision::deny(format!("no DELETE of {}", req.uri))
            } else {
                Decision::allow()
            })
        }

        fn authorize_response(&self, _: &ApiRequest, res: &ApiResponse) -> Result<Decision, Error> {
            Ok(if res.status >= 500 {
                Decision::deny("hidden")
            } else {
                Decision::allow()
            })
        }
    }

    /// Allows everything (both defaults).
    struct Open;
    impl Authorizer for Open {}

    fn call<A: Authorizer>(a: &A, endpoint: &str, body: &str) -> (u16, Value) {
        let r = handle(a, endpoint, body.as_bytes());
        (r.status, serde_json::from_slice(&r.body).unwrap())
    }

    #[test]
    fn decisions_have_dockerd_shape() {
        let allow = json!({"Allow": true, "Msg": "", "Err": ""});
        assert_eq!(
            call(&Policy, "/Plugin.Activate", ""),
            (200, json!({"Implements": ["authz"]}))
        );
        assert_eq!(
            call(
                &Policy,
                "/AuthZPlugin.AuthZReq",
                r#"{"RequestMethod":"GET","RequestUri":"/v1.41/volumes"}"#
            ),
            (200, allow.clone())
        );
        assert_eq!(
            call(
                &Policy,
                "/AuthZPlugin.AuthZReq",
                r#"{"RequestMethod":"DELETE","RequestUri":"/v1.41/volumes/v"}"#
            ),
            (
                200,
                json!({"Allow": false, "Msg": "no DELETE of /v1.41/volumes/v", "Err": ""})
            )
        );
        assert_eq!(
            call(
                &Policy,
                "AuthZPlugin.AuthZRes",
                r#"{"ResponseStatusCode":500}"#
            ),
            (200, json!({"Allow": false, "Msg": "hidden", "Err": ""}))
        );
        for m in ["AuthZPlugin.AuthZReq", "AuthZPlugin.AuthZRes"] {
            assert_eq!(call(&Open, m, "{}"), (200, allow.clone()), "{m}");
        }
    }

    #[test]
    fn errors_and_bad_bodies_fail_the_call() {
        assert_eq!(
            call(&Policy, "AuthZPlugin.AuthZReq", r#"{"RequestUri":"/boom"}"#),
            (500, json!({"Err": "policy store unreachable"}))
        );
        assert_eq!(
            call(&Policy, "AuthZPlugin.AuthZReq", r#"{"RequestBody":"%%"}"#).0,
            400
        );
        assert_eq!(call(&Policy, "VolumeDriver.List", "{}").0, 404);
    }
}
