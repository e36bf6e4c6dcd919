//! `AuthZPlugin.*` (`docker.authz/1.0`): the request dockerd sends before and after every Engine
//! API call, the decision it reads back, and the mapping between them and an authorizer's typed
//! answers, used by the wasm host and by the SDK's native server alike.
//!
//! | endpoint | success (200) |
//! |---|---|
//! | `Plugin.Activate` | `{"Implements": ["authz"]}` |
//! | `AuthZPlugin.AuthZReq`, `AuthZPlugin.AuthZRes` | `{"Allow": bool, "Msg": string, "Err": ""}` |
//!
//! Both calls carry moby's `authorization.Request` (`pkg/authorization/api.go`; docs/protocol.md
//! §5); `AuthZRes` has the response fields filled too. Go `[]byte` fields travel as standard
//! base64 and are handed to the authorizer decoded; a body that is not valid base64 is a 400, as
//! it is for a Go plugin. `RequestPeerCertificates` is accepted and not passed on (dockerd's own
//! TLS check has already run; no plugin of the suite's needs it).
//!
//! An authorizer's error is a 500 `{"Err": message}`, i.e. a failed call: plugd's gateway turns
//! that into a deny naming the plugin (`host/src/socket/authz.rs`) and dockerd, talking to a
//! native plugin directly, denies the API call with a 500 of its own. Either way it fails closed.

use super::request::{self, bad_body, method_of};
use super::{DriverError, Manifest};
use crate::Reply;
use crate::gojson::{Field, Form, Kind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The request phase: before dockerd runs the API call.
pub const REQUEST: &str = "AuthZPlugin.AuthZReq";
/// The response phase: after the API call ran, before its answer reaches the caller.
pub const RESPONSE: &str = "AuthZPlugin.AuthZRes";
/// The `Implements` entry of an authorization plugin.
pub const IMPLEMENTS: &str = "authz";
const ACTIVATE: &str = "Plugin.Activate";

const TEXT: Kind = Kind::Str(Form::Text);
const HEADERS: Kind = Kind::Map(&TEXT);

/// Go's `authorization.Request`, both phases (the JSON keys are the Go field names; the URI's is
/// `RequestUri`, spelled so in moby's `json:"RequestUri,omitempty"`).
const AUTHZ_REQUEST: Kind = Kind::Struct(&[
    Field::new("User", TEXT),
    Field::new("UserAuthNMethod", TEXT),
    Field::new("RequestMethod", TEXT),
    Field::new("RequestUri", TEXT),
    // []byte: base64, checked by `bytes` below.
    Field::new("RequestBody", TEXT),
    Field::new("RequestHeaders", HEADERS),
    // []*PeerCertificate: accepted, not passed on.
    Field::new("RequestPeerCertificates", Kind::Any),
    Field::new("ResponseStatusCode", Kind::Int),
    Field::new("ResponseBody", TEXT),
    Field::new("ResponseHeaders", HEADERS),
]);

/// The wire form of [`AUTHZ_REQUEST`] (serde names = its field names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WireRequest {
    /// The TLS client certificate's CN, if any.
    #[serde(rename = "User")]
    pub user: Option<String>,
    /// `TLS` when `User` is set.
    #[serde(rename = "UserAuthNMethod")]
    pub user_authn_method: Option<String>,
    /// HTTP method of the API call.
    #[serde(rename = "RequestMethod")]
    pub request_method: Option<String>,
    /// Raw request URI, query included (`/v1.41/volumes?filters=...`).
    #[serde(rename = "RequestUri")]
    pub request_uri: Option<String>,
    /// Base64 of the JSON request body, when dockerd sends one.
    #[serde(rename = "RequestBody")]
    pub request_body: Option<String>,
    /// Request headers, one value each.
    #[serde(rename = "RequestHeaders")]
    pub request_headers: Option<BTreeMap<String, String>>,
    /// Base64 of PEM client certificates; ignored.
    #[serde(rename = "RequestPeerCertificates")]
    pub request_peer_certificates: Option<serde_json::Value>,
    /// The API call's status (response phase).
    #[serde(rename = "ResponseStatusCode")]
    pub response_status_code: Option<i64>,
    /// Base64 of the API call's JSON answer (response phase).
    #[serde(rename = "ResponseBody")]
    pub response_body: Option<String>,
    /// The API call's answer headers (response phase).
    #[serde(rename = "ResponseHeaders")]
    pub response_headers: Option<BTreeMap<String, String>>,
}

/// The Engine API call being authorized; mirrors WIT `authz.api-request`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiRequest {
    /// The TLS client certificate's CN; empty without TLS client authentication.
    pub user: String,
    /// How `user` was authenticated (`TLS`), or empty.
    pub user_authn_method: String,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The raw URI with its query (`/v1.41/volumes?filters=...`), as the client sent it.
    pub uri: String,
    /// Headers, sorted by name (dockerd keeps the last of repeated ones and drops credentials).
    pub headers: Vec<(String, String)>,
    /// The JSON body, decoded; empty when dockerd sent none (not JSON, 1 MiB or more).
    pub body: Vec<u8>,
}

/// What the API call answered (response phase); mirrors WIT `authz.api-response`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers, sorted by name.
    pub headers: Vec<(String, String)>,
    /// The answer's body, decoded; empty when dockerd sent none (not JSON, over 64 KiB).
    pub body: Vec<u8>,
}

/// One decoded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `Plugin.Activate` (plugd's gateway answers it itself; a native server must).
    Activate,
    /// `AuthZReq`: may this API call run?
    Authorize(ApiRequest),
    /// `AuthZRes`: may its answer reach the caller?
    AuthorizeResponse(ApiRequest, ApiResponse),
}

/// An authorizer's decision; mirrors WIT `authz.decision`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Whether the call (or its answer) may go on.
    pub allow: bool,
    /// Shown to the API caller after `authorization denied by plugin <name>: ` on a deny.
    pub msg: String,
}

impl Decision {
    /// Let it through.
    pub fn allow() -> Decision {
        Decision {
            allow: true,
            msg: String::new(),
        }
    }

    /// Refuse it, telling the caller why.
    pub fn deny(msg: impl Into<String>) -> Decision {
        Decision {
            allow: false,
            msg: msg.into(),
        }
    }
}

/// An authorizer's successful answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `Plugin.Activate`.
    Activate,
    /// `AuthZReq`, `AuthZRes`.
    Decision(Decision),
}

/// moby's `authorization.Response` (`{"Allow", "Msg", "Err"}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionReply {
    /// The decision.
    #[serde(rename = "Allow")]
    pub allow: bool,
    /// The message of a deny.
    #[serde(rename = "Msg")]
    pub msg: String,
    /// Always empty: dockerd ignores it on a 200, and failures are 500s.
    #[serde(rename = "Err")]
    pub err: String,
}

/// Standard base64 as Go's `encoding/json` reads a `[]byte`: padding required, `\r` and `\n`
/// skipped.
fn base64(text: &str) -> Result<Vec<u8>, String> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let chars: Vec<u8> = text
        .bytes()
        .filter(|c| !matches!(c, b'\r' | b'\n'))
        .collect();
    if !chars.len().is_multiple_of(4) {
        return Err("base64 length is not a multiple of 4".to_string());
    }
    let mut out = Vec::with_capacity(chars.len() / 4 * 3);
    let quads = chars.len() / 4;
    for (i, quad) in chars.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != quads) {
            return Err(format!("illegal base64 data at input byte {}", i * 4));
        }
        let mut n = 0u32;
        for (j, &c) in quad[..4 - pad].iter().enumerate() {
            let v = value(c)
                .ok_or_else(|| format!("illegal base64 data at input byte {}", i * 4 + j))?;
            n |= v << (18 - 6 * j);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Ok(out)
}

impl Request {
    /// Decodes a call (`endpoint` with or without its leading `/`), or gives the error reply:
    /// 404 for an unknown endpoint, 400 for a body Go would not decode (bad base64 included).
    pub fn decode(endpoint: &str, body: &[u8]) -> Result<Request, Reply> {
        let method = method_of(endpoint);
        if method == ACTIVATE {
            return Ok(Request::Activate);
        }
        if method != REQUEST && method != RESPONSE {
            return Err(request::unknown(method, "authorization plugin"));
        }
        let w: WireRequest = request::read(method, body, &AUTHZ_REQUEST)?;
        let bytes = |field: &str, b: Option<String>| {
            base64(&b.unwrap_or_default()).map_err(|e| bad_body(method, &format!("{field}: {e}")))
        };
        let api = ApiRequest {
            user: w.user.unwrap_or_default(),
            user_authn_method: w.user_authn_method.unwrap_or_default(),
            method: w.request_method.unwrap_or_default(),
            uri: w.request_uri.unwrap_or_default(),
            headers: request::pairs(w.request_headers),
            body: bytes("RequestBody", w.request_body)?,
        };
        if method == REQUEST {
            return Ok(Request::Authorize(api));
        }
        let code = w.response_status_code.unwrap_or_default();
        let status = u16::try_from(code).map_err(|_| {
            bad_body(
                method,
                &format!("ResponseStatusCode {code} is not an HTTP status"),
            )
        })?;
        let res = ApiResponse {
            status,
            headers: request::pairs(w.response_headers),
            body: bytes("ResponseBody", w.response_body)?,
        };
        Ok(Request::AuthorizeResponse(api, res))
    }
}

/// The reply dockerd gets for an authorizer's answer.
pub fn encode(answer: Result<Response, DriverError>) -> Reply {
    match answer {
        Err(e) => e.reply(),
        Ok(Response::Activate) => super::json(&Manifest {
            implements: vec![IMPLEMENTS.to_string()],
        }),
        Ok(Response::Decision(d)) => super::json(&DecisionReply {
            allow: d.allow,
            msg: d.msg,
            err: String::new(),
        }),
    }
}

#[cfg(test)]
mod tests;
