//! AuthZ calls fail closed, within plugd's deadline.
//!
//! dockerd calls an authorization plugin before and after **every** Engine API request and waits
//! for it without any deadline of its own (plugd's sockets are legacy plugins to dockerd: their
//! client has no timeout), retrying a failed connection for ≈15 s. A failed call is a 500
//! `plugin X failed with error: ...` for the API caller; only `{"Allow": false}` is a 403.
//! So for a plugin whose `Interface.Types` has `docker.authz/*`, plugd answers every
//! `AuthZPlugin.AuthZReq`/`AuthZRes` itself with a 200 within its AuthZ deadline, whatever the
//! plugin does: the plugin's decoded reply re-encoded (an allow, or its own deny), or — when the
//! call fails (crash, socket gone, the deadline, a non-200, a reply plugd refuses) — a deny
//! `{"Allow":false,"Msg":"plugin <name>: <what went wrong>"}`. dockerd then answers the API
//! caller 403 `authorization denied by plugin <dockerd's name>: plugin <name>: ...` at once.
//! See docs/protocol.md §5.

use super::reply::{self, Checked};
use plugd_core::Reply;
use plugd_core::gojson;
use plugd_core::protocol::replies::ERR_ONLY;
use serde_json::Value;
use std::time::Duration;

use plugd_core::protocol::authz::{Decision, IMPLEMENTS, Response, encode};
pub(crate) use plugd_core::protocol::authz::{REQUEST, RESPONSE};

/// Default deadline of one AuthZ call (`plugd daemon --authz-timeout`). Every API call of the
/// engine waits for it, twice; dockerd itself would wait forever.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Whether a plugin with these `Interface.Types` is an authorization plugin.
pub(crate) fn declared(types: &[String]) -> bool {
    types
        .iter()
        .any(|t| plugd_core::protocol::implements_for_type(t) == Some(IMPLEMENTS))
}

/// Whether `method` is one of the two AuthZ calls.
pub(crate) fn is_call(method: &str) -> bool {
    method == REQUEST || method == RESPONSE
}

/// The deny plugd answers when the call failed: `Msg` names the plugin and what went wrong.
pub(crate) fn deny(plugin: &str, what: &str) -> Reply {
    let msg = if what.starts_with(&format!("plugin {plugin}")) {
        what.to_string()
    } else {
        format!("plugin {plugin}: {what}")
    };
    encode(Ok(Response::Decision(Decision::deny(msg))))
}

/// The deny for a call the plugin did not answer within `deadline`.
pub(crate) fn timed_out(plugin: &str, method: &str, deadline: Duration) -> Reply {
    deny(
        plugin,
        &format!(
            "no reply to {method} within {}s (plugd's AuthZ deadline); denied",
            deadline.as_secs_f64()
        ),
    )
}

/// What dockerd gets for the plugin's `reply` to `method`: always a 200. An allow or the
/// plugin's own deny is passed on as plugd decoded it; anything dockerd would read as a failed
/// call becomes a deny naming the plugin.
pub(crate) fn answer(plugin: &str, method: &str, reply: Reply) -> Reply {
    match reply::check(plugin, method, reply) {
        Checked::Success(value) => reply::encode(&value),
        Checked::Failure(r) => {
            let why = failure_message(plugin, method, &r);
            tracing::warn!(plugin, method, "AuthZ call failed: {why}");
            deny(plugin, &why)
        }
        // Not reached: both AuthZ calls have a typed reply. Never pass raw bytes on.
        Checked::Relay(_) => deny(plugin, &format!("{method}: reply not understood; denied")),
    }
}

/// The message of a failed call (an `{"Err"}` reply from the runtime or from [`reply::check`];
/// those already name the plugin and say what failed).
fn failure_message(plugin: &str, method: &str, r: &Reply) -> String {
    let err = match gojson::decode(&r.body, &ERR_ONLY) {
        Ok(Value::Object(o)) => o
            .get("Err")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    };
    if err.starts_with(&format!("plugin {plugin}")) {
        return format!("{err}; denied");
    }
    // The wasm runtime's own faults (trap, interrupt, memory cap) name the plugin quoted and the
    // call: say that once, without the status of a reply no plugin wrote.
    if let Some(fault) = err.strip_prefix(&format!("plugin {plugin:?}: ")) {
        return format!("{fault}; denied");
    }
    let err = if err.is_empty() { "no message" } else { &err };
    format!("{method} failed (status {}): {err}; denied", r.status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.as_bytes().to_vec().into(),
        }
    }

    fn decoded(r: &Reply) -> Value {
        assert_eq!(r.status, 200, "AuthZ answers are always 200");
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn only_authz_types_are_authz_plugins() {
        assert!(declared(&["docker.authz/1.0".to_string()]));
        assert!(!declared(&["docker.volumedriver/1.0".to_string()]));
        assert!(is_call(REQUEST) && is_call(RESPONSE) && !is_call("AuthZPlugin.Other"));
    }

    #[test]
    fn allows_and_deliberate_denies_pass_as_decoded() {
        let v = decoded(&answer("a", REQUEST, reply(200, r#"{"allow":true}"#)));
        assert_eq!(v["Allow"], true);
        let v = decoded(&answer(
            "a",
            RESPONSE,
            reply(200, r#"{"Allow":false,"Msg":"no volumes for you"}"#),
        ));
        assert_eq!(
            (&v["Allow"], &v["Msg"]),
            (&json!(false), &json!("no volumes for you"))
        );
        // dockerd ignores Err on a 200: so does plugd (it is no failure).
        let v = decoded(&answer(
            "a",
            REQUEST,
            reply(200, r#"{"Allow":true,"Err":"x"}"#),
        ));
        assert_eq!(v["Allow"], true);
    }

    #[test]
    fn every_failure_denies_naming_the_plugin() {
        let cases = [
            reply(200, r#"{"Allow":true} trailing"#),
            reply(200, r#"{"Allow":true,"allow":false}"#),
            reply(200, ""),
            reply(200, r#"{"Allow":"yes"}"#),
            reply(
                500,
                r#"{"Err":"plugin authz is not reachable: connection refused"}"#,
            ),
            reply(500, r#"{"Err":"boom"}"#),
            reply(404, "not here"),
            reply(204, ""),
        ];
        for c in cases {
            let body = String::from_utf8_lossy(&c.body).into_owned();
            let v = decoded(&answer("authz", REQUEST, c));
            assert_eq!(v["Allow"], false, "{body}");
            let msg = v["Msg"].as_str().unwrap();
            assert!(msg.starts_with("plugin authz"), "{body}: {msg}");
            assert!(!msg.starts_with("plugin authz: plugin authz"), "{msg}");
        }
        let v = decoded(&answer(
            "authz:latest",
            REQUEST,
            reply(
                500,
                r#"{"Err":"plugin \"authz:latest\": call AuthZPlugin.AuthZReq trapped (wasm trap)"}"#,
            ),
        ));
        assert_eq!(
            v["Msg"],
            "plugin authz:latest: call AuthZPlugin.AuthZReq trapped (wasm trap); denied"
        );
        let v = decoded(&timed_out("authz", RESPONSE, Duration::from_millis(1500)));
        assert_eq!(v["Allow"], false);
        assert_eq!(
            v["Msg"],
            "plugin authz: no reply to AuthZPlugin.AuthZRes within 1.5s (plugd's AuthZ deadline); denied"
        );
    }
}
