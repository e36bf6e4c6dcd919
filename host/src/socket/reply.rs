//! What dockerd gets for a plugin's reply: only what plugd decoded and re-encoded.
//!
//! Every method dockerd calls has its reply type in `plugd_core::protocol::replies`. A 200 is
//! decoded into that type with `plugd_core::gojson` — which refuses any body Go's decoder would
//! read differently — and dockerd is sent the re-encoded value, never the plugin's bytes. Whether
//! the reply is a success is decided the way dockerd decides it (status 200 and an empty in-band
//! error, which is `Error` for IPAM and absent for AuthZ), so plugd acts (pins, counts mounts)
//! exactly when dockerd will. An error reply is rebuilt as `{"Err": message}` with the message
//! dockerd would have shown.

use plugd_core::Reply;
use plugd_core::gojson;
use plugd_core::protocol::replies::{self, ERR_ONLY, Shape};
use plugd_core::protocol::status;
use serde_json::{Value, json};

/// Longest error message passed on from a plugin (dockerd would show a whole body).
const MAX_MESSAGE: usize = 4096;

/// A plugin reply, judged as dockerd will judge it.
#[derive(Debug)]
pub(crate) enum Checked {
    /// A success: the decoded value, to act on and re-encode.
    Success(Value),
    /// dockerd will see an error: the reply to send it.
    Failure(Reply),
    /// Not something dockerd decodes (a log stream, a method outside the engine's subsystems):
    /// passed on as it is.
    Relay(Reply),
}

/// Judges `reply` from plugin `plugin` to `method`.
pub(crate) fn check(plugin: &str, method: &str, reply: Reply) -> Checked {
    let shape = match replies::shape(method) {
        Some(shape) => shape,
        None if replies::is_engine_method(method) => {
            return Checked::Failure(Reply::err(
                status::NOT_IMPLEMENTED,
                &format!(
                    "plugd does not forward {method}: it is not a plugin protocol method plugd knows"
                ),
            ));
        }
        None => return Checked::Relay(reply),
    };
    if reply.status != status::OK {
        return Checked::Failure(error_reply(&reply));
    }
    match shape {
        // Streams are re-framed by the gateway (`logstream`), never relayed as bytes.
        Shape::Stream => Checked::Failure(Reply::err(
            status::PLUGIN_ERROR,
            &format!("plugin {plugin}: {method} answers with a stream; plugd reads it only as one"),
        )),
        Shape::StatusOnly => Checked::Success(json!({})),
        Shape::Typed { kind, error } => match gojson::decode(&reply.body, kind) {
            Err(e) => Checked::Failure(Reply::err(
                status::PLUGIN_ERROR,
                &format!("plugin {plugin} sent a reply to {method} that plugd refuses: {e}"),
            )),
            Ok(value) => match error.key().map(|k| (k, &value[k])) {
                Some((key, Value::String(msg))) if !msg.is_empty() => {
                    Checked::Failure(encode(&json!({ key: msg })))
                }
                _ => Checked::Success(value),
            },
        },
    }
}

/// The reply dockerd gets for a value plugd decoded (and perhaps rewrote).
pub(crate) fn encode(value: &Value) -> Reply {
    Reply::ok(serde_json::to_vec(value).expect("a JSON value always serializes"))
}

/// A non-200 reply rebuilt: its status if it is an error status dockerd reads as one (4xx, 5xx;
/// anything else becomes 500), and `{"Err"}` with the message dockerd would show — the `Err` of a
/// `{"Err": string}` body, else the body's text.
fn error_reply(reply: &Reply) -> Reply {
    let code = if status::is_error(reply.status) {
        reply.status
    } else {
        status::PLUGIN_ERROR
    };
    let message = match gojson::decode(&reply.body, &ERR_ONLY) {
        Ok(Value::Object(o))
            if o.get("Err")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty()) =>
        {
            o["Err"].as_str().unwrap_or_default().to_string()
        }
        _ => String::from_utf8_lossy(&reply.body).into_owned(),
    };
    Reply::err(code, &truncate(message))
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.as_bytes().to_vec().into(),
        }
    }

    fn failure(c: Checked) -> (u16, Value) {
        match c {
            Checked::Failure(r) => (r.status, serde_json::from_slice(&r.body).unwrap()),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn success_is_decoded_and_error_fields_follow_the_subsystem() {
        let ok = check(
            "p",
            "VolumeDriver.Mount",
            reply(200, r#"{"mountpoint":"/d"}"#),
        );
        assert!(matches!(ok, Checked::Success(v) if v["Mountpoint"] == "/d"));
        let (s, b) = failure(check(
            "p",
            "VolumeDriver.Mount",
            reply(200, r#"{"Mountpoint":"/d","Err":"no"}"#),
        ));
        assert_eq!((s, b), (200, json!({"Err": "no"})));
        // IPAM's in-band error is `Error`; an `Err` there is ignored by dockerd.
        let ipam = check(
            "p",
            "IpamDriver.RequestAddress",
            reply(200, r#"{"Address":"10.0.0.2/24","Err":"x"}"#),
        );
        assert!(matches!(ipam, Checked::Success(_)));
        let (_, b) = failure(check(
            "p",
            "IpamDriver.RequestAddress",
            reply(200, r#"{"Error":"full"}"#),
        ));
        assert_eq!(b, json!({"Error": "full"}));
        // AuthZ decides by Allow: an Err on a 200 changes nothing.
        let authz = check(
            "p",
            "AuthZPlugin.AuthZReq",
            reply(200, r#"{"Allow":true,"Err":"x"}"#),
        );
        assert!(matches!(authz, Checked::Success(v) if v["Allow"] == true));
    }

    #[test]
    fn refused_bodies_become_errors_naming_the_plugin() {
        let (s, b) = failure(check(
            "evil",
            "VolumeDriver.Mount",
            reply(200, r#"{"Mountpoint":"/a"}{"Mountpoint":"/"}"#),
        ));
        assert_eq!(s, 500);
        let msg = b["Err"].as_str().unwrap();
        assert!(
            msg.contains("plugin evil")
                && msg.contains("VolumeDriver.Mount")
                && msg.contains("after the JSON value"),
            "{msg}"
        );
    }

    #[test]
    fn error_statuses_keep_their_message() {
        let (s, b) = failure(check(
            "p",
            "VolumeDriver.Get",
            reply(404, r#"{"Err":"nope"}"#),
        ));
        assert_eq!((s, b), (404, json!({"Err": "nope"})));
        let (s, b) = failure(check("p", "VolumeDriver.Get", reply(204, "plain text")));
        assert_eq!((s, b), (500, json!({"Err": "plain text"})));
        let (_, b) = failure(check(
            "p",
            "VolumeDriver.Get",
            reply(500, &"x".repeat(10_000)),
        ));
        assert!(b["Err"].as_str().unwrap().len() < 4200);
    }

    #[test]
    fn unknown_engine_methods_are_refused_and_private_ones_relayed() {
        let (s, _) = failure(check("p", "VolumeDriver.Frobnicate", reply(200, "{}")));
        assert_eq!(s, 404);
        assert!(matches!(
            check("p", "Probe.Report", reply(200, "raw")),
            Checked::Relay(_)
        ));
        assert!(matches!(
            check("p", "LogDriver.ReadLogs", reply(200, "\0\0\0\x01x")),
            Checked::Failure(_)
        ));
        assert!(
            matches!(check("p", "MetricsCollector.StartMetrics", reply(200, "junk")), Checked::Success(v) if v == json!({}))
        );
    }
}
