//! `VolumeDriver.*` JSON ↔ the `docker:plugin/volume-driver` WIT interface.
//!
//! Requests are decoded with [`plugd_core::protocol::volume`]'s types (an empty body or `null`
//! counts as `{}`; `"Opts": null` as no options), the guest is called, and its typed result is
//! encoded in the shape dockerd expects:
//!
//! | endpoint | success (200) | guest error |
//! |---|---|---|
//! | Create, Remove, Unmount | `{"Err":""}` | 500 `{"Err": msg}`; `unsupported` → 404 |
//! | Mount, Path | `{"Mountpoint": p, "Err":""}` | same |
//! | Get | `{"Volume": {...}, "Err":""}` | same (dockerd reads any Get error as "no such volume", as go-plugins-helpers does) |
//! | List | `{"Volumes": [...], "Err":""}` | same |
//! | Capabilities | `{"Capabilities": {"Scope": "local"}}` | (cannot fail) |
//!
//! Unknown endpoints get 404 and bodies that are not JSON objects 400, both with `{"Err"}`.
//! Paths are relayed as the guest gave them (plugin-internal); plugd's socket layer translates them.

use crate::bindings::{ErrorCode, GuestError, GuestVolume, Scope, VolumePlugin};
use plugd_core::Reply;
use plugd_core::protocol::volume::{
    self as proto, CapabilitiesReply, Capability, CreateRequest, GetReply, ListReply, MountRequest,
    MountpointReply, NameRequest,
};
use plugd_core::protocol::{ErrBody, Manifest, status};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use wasmtime::Store;

/// `/Plugin.Activate`: never sent to managed plugins by dockerd, answered for completeness.
const ACTIVATE: &str = "Plugin.Activate";

/// One decoded `VolumeDriver.*` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    Create {
        name: String,
        opts: Vec<(String, String)>,
    },
    Remove {
        name: String,
    },
    Mount {
        name: String,
        id: String,
    },
    Unmount {
        name: String,
        id: String,
    },
    Path {
        name: String,
    },
    Get {
        name: String,
    },
    List,
    Capabilities,
    Activate,
}

/// Decodes `method` + `body`, or gives the error reply (404 unknown method, 400 bad JSON).
pub(crate) fn decode(method: &str, body: &[u8]) -> Result<Request, Reply> {
    Ok(match method {
        proto::CREATE => {
            let r: CreateRequest = parse(method, body)?;
            Request::Create {
                name: r.name,
                opts: r.opts.unwrap_or_default().into_iter().collect(),
            }
        }
        proto::REMOVE => Request::Remove {
            name: parse::<NameRequest>(method, body)?.name,
        },
        proto::MOUNT => {
            let r: MountRequest = parse(method, body)?;
            Request::Mount {
                name: r.name,
                id: r.id,
            }
        }
        proto::UNMOUNT => {
            let r: MountRequest = parse(method, body)?;
            Request::Unmount {
                name: r.name,
                id: r.id,
            }
        }
        proto::PATH => Request::Path {
            name: parse::<NameRequest>(method, body)?.name,
        },
        proto::GET => Request::Get {
            name: parse::<NameRequest>(method, body)?.name,
        },
        proto::LIST => {
            parse::<serde_json::Map<String, serde_json::Value>>(method, body)?;
            Request::List
        }
        proto::CAPABILITIES => {
            parse::<serde_json::Map<String, serde_json::Value>>(method, body)?;
            Request::Capabilities
        }
        ACTIVATE => Request::Activate,
        _ => {
            return Err(Reply::err(
                status::NOT_IMPLEMENTED,
                &format!("{method} is not implemented (this plugin is a volume driver)"),
            ));
        }
    })
}

/// Parses a JSON object body; empty and `null` mean `{}`.
fn parse<T: DeserializeOwned + Default>(method: &str, body: &[u8]) -> Result<T, Reply> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return Ok(T::default());
    }
    serde_json::from_slice(trimmed).map_err(|e| {
        Reply::err(
            status::BAD_REQUEST,
            &format!("{method}: invalid request body: {e}"),
        )
    })
}

/// Calls the guest for `req`. `Ok` carries the reply, guest-reported errors included; `Err` is a
/// fault of the instance itself (trap, interrupt), after which it must be discarded.
pub(crate) async fn invoke<T: Send>(
    req: &Request,
    plugin: &VolumePlugin,
    store: &mut Store<T>,
) -> wasmtime::Result<Reply> {
    let guest = plugin.docker_plugin_volume_driver();
    Ok(match req {
        Request::Create { name, opts } => {
            status_only(guest.call_create(&mut *store, name, opts).await?)
        }
        Request::Remove { name } => status_only(guest.call_remove(&mut *store, name).await?),
        Request::Unmount { name, id } => {
            status_only(guest.call_unmount(&mut *store, name, id).await?)
        }
        Request::Mount { name, id } => mountpoint(guest.call_mount(&mut *store, name, id).await?),
        Request::Path { name } => mountpoint(guest.call_path(&mut *store, name).await?),
        Request::Get { name } => match guest.call_get(&mut *store, name).await? {
            Ok(v) => json(&GetReply {
                volume: Some(encode_volume(v)),
                err: String::new(),
            }),
            Err(e) => guest_error(e),
        },
        Request::List => match guest.call_list(&mut *store).await? {
            Ok(vs) => json(&ListReply {
                volumes: vs.into_iter().map(encode_volume).collect(),
                err: String::new(),
            }),
            Err(e) => guest_error(e),
        },
        Request::Capabilities => {
            let scope = match guest.call_capabilities(&mut *store).await? {
                Scope::Local => "local",
                Scope::Global => "global",
            };
            json(&CapabilitiesReply {
                capabilities: Capability {
                    scope: scope.to_string(),
                },
            })
        }
        Request::Activate => json(&Manifest {
            implements: vec!["VolumeDriver".to_string()],
        }),
    })
}

fn status_only(r: Result<(), GuestError>) -> Reply {
    match r {
        Ok(()) => json(&ErrBody { err: String::new() }),
        Err(e) => guest_error(e),
    }
}

fn mountpoint(r: Result<String, GuestError>) -> Reply {
    match r {
        Ok(mountpoint) => json(&MountpointReply {
            mountpoint,
            err: String::new(),
        }),
        Err(e) => guest_error(e),
    }
}

/// A guest error as the protocol carries it: `unsupported` → [`status::NOT_IMPLEMENTED`] (dockerd
/// treats optional endpoints answering so as absent), everything else → [`status::PLUGIN_ERROR`];
/// both `{"Err": message}`.
pub(crate) fn guest_error(e: GuestError) -> Reply {
    let code = match e.code {
        ErrorCode::Unsupported => status::NOT_IMPLEMENTED,
        ErrorCode::NotFound
        | ErrorCode::InvalidArgument
        | ErrorCode::Conflict
        | ErrorCode::Internal => status::PLUGIN_ERROR,
    };
    let message = if e.message.is_empty() {
        format!("{:?}", e.code)
    } else {
        e.message
    };
    Reply::err(code, &message)
}

/// Guest volume → protocol volume: status tuples become a JSON object of strings (omitted when
/// empty), `created-at` is omitted when none (dockerd cannot decode `""`).
pub(crate) fn encode_volume(v: GuestVolume) -> proto::Volume {
    let status: BTreeMap<String, serde_json::Value> = v
        .status
        .into_iter()
        .map(|(k, val)| (k, serde_json::Value::String(val)))
        .collect();
    proto::Volume {
        name: v.name,
        mountpoint: v.mountpoint,
        created_at: v.created_at.filter(|c| !c.is_empty()),
        status: (!status.is_empty()).then_some(status),
    }
}

fn json<T: Serialize>(value: &T) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => Reply::ok(body),
        Err(e) => Reply::err(
            status::PLUGIN_ERROR,
            &format!("cannot encode the reply: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Reply) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn decodes_dockerd_bodies() {
        let r = decode(proto::CREATE, br#"{"Name":"v1","Opts":null}"#).unwrap();
        assert_eq!(
            r,
            Request::Create {
                name: "v1".into(),
                opts: vec![]
            }
        );
        let r = decode(proto::CREATE, br#"{"Name":"v1","Opts":{"b":"2","a":"1"}}"#).unwrap();
        let opts = vec![("a".into(), "1".into()), ("b".into(), "2".into())];
        assert_eq!(
            r,
            Request::Create {
                name: "v1".into(),
                opts
            }
        );
        let r = decode(proto::MOUNT, b"{\"Name\":\"v\",\"ID\":\"abc\"}\n").unwrap();
        assert_eq!(
            r,
            Request::Mount {
                name: "v".into(),
                id: "abc".into()
            }
        );
        assert_eq!(decode(proto::LIST, b"").unwrap(), Request::List);
        assert_eq!(decode(proto::LIST, b"{}").unwrap(), Request::List);
        assert_eq!(
            decode(proto::CAPABILITIES, b"{}\n").unwrap(),
            Request::Capabilities
        );
        assert_eq!(
            decode(proto::GET, b"null").unwrap(),
            Request::Get {
                name: String::new()
            }
        );
    }

    #[test]
    fn bad_json_is_400_and_unknown_method_404() {
        let r = decode(proto::GET, b"{not json").unwrap_err();
        assert_eq!(r.status, 400);
        assert!(
            body(&r)["Err"]
                .as_str()
                .unwrap()
                .contains("invalid request body")
        );
        assert_eq!(decode(proto::LIST, b"[1]").unwrap_err().status, 400);
        let r = decode("NetworkDriver.CreateNetwork", b"{}").unwrap_err();
        assert_eq!(r.status, 404);
        assert!(
            body(&r)["Err"]
                .as_str()
                .unwrap()
                .contains("not implemented")
        );
    }

    #[test]
    fn guest_errors_map_to_status() {
        let e = |code| GuestError {
            code,
            message: "boom".into(),
        };
        assert_eq!(guest_error(e(ErrorCode::Unsupported)).status, 404);
        for code in [
            ErrorCode::NotFound,
            ErrorCode::InvalidArgument,
            ErrorCode::Conflict,
            ErrorCode::Internal,
        ] {
            let r = guest_error(e(code));
            assert_eq!(
                (r.status, body(&r)),
                (500, serde_json::json!({"Err": "boom"}))
            );
        }
    }

    #[test]
    fn volumes_encode_like_dockerd_expects() {
        let v = encode_volume(GuestVolume {
            name: "v".into(),
            mountpoint: "/data/v".into(),
            created_at: None,
            status: vec![("calls".into(), "3".into())],
        });
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"Name":"v","Mountpoint":"/data/v","Status":{"calls":"3"}})
        );
        let v = encode_volume(GuestVolume {
            name: "v".into(),
            mountpoint: String::new(),
            created_at: Some("2026-11-23T10:00:00Z".into()),
            status: vec![],
        });
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"Name":"v","CreatedAt":"2026-11-23T10:00:00Z"})
        );
    }
}
