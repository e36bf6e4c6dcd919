//! Docker's plugin protocol for a volume driver, without the transport: a request (endpoint and
//! JSON body) in, a [`Reply`] (status and JSON body) out.
//!
//! It is public so a driver can be tested through the protocol without a socket
//! ([`handle`]). Replies take the shapes plugd's wasm host gives the same driver, so the two
//! packagings answer alike:
//!
//! | endpoint | success (200) |
//! |---|---|
//! | `Plugin.Activate` | `{"Implements": ["VolumeDriver"]}` |
//! | `Create`, `Remove`, `Unmount` | `{"Err": ""}` |
//! | `Mount`, `Path` | `{"Mountpoint": path, "Err": ""}` |
//! | `Get` | `{"Volume": {...}, "Err": ""}` |
//! | `List` | `{"Volumes": [...], "Err": ""}` |
//! | `Capabilities` | `{"Capabilities": {"Scope": "local"}}` |
//!
//! Failures are `{"Err": message}` with status 500 for driver errors, 404 for
//! [`ErrorCode::Unsupported`] and unknown endpoints, 400 for a body that is not a JSON object of
//! the expected fields (dockerd only treats 200 as success, so the status is for logs and people).
//!
//! Requests are read the way dockerd writes them and Go reads JSON: an empty body or `null` is
//! `{}`, `null` fields are absent ones (`"Opts": null`), field names match case-insensitively, and
//! unknown fields are ignored.

use crate::{Error, ErrorCode, Volume, VolumeDriver};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The media type of replies (go-plugins-helpers sends the same; nobody checks it).
pub const MEDIA_TYPE: &str = "application/vnd.docker.plugins.v1.1+json";

/// One protocol reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status; dockerd reads only 200 as success.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
}

impl Reply {
    fn json<T: Serialize>(value: &T) -> Reply {
        match serde_json::to_vec(value) {
            Ok(body) => Reply { status: 200, body },
            Err(e) => Reply::err(500, &format!("cannot encode the reply: {e}")),
        }
    }

    /// `{"Err": message}` with `status`.
    pub(crate) fn err(status: u16, message: &str) -> Reply {
        let body = serde_json::to_vec(&ErrReply { err: message })
            .unwrap_or_else(|_| br#"{"Err":"error"}"#.to_vec());
        Reply { status, body }
    }
}

/// Answers one call: `endpoint` is the request path with or without its leading `/`
/// (`VolumeDriver.Create`), `body` the request body as sent.
pub fn handle<D: VolumeDriver + ?Sized>(driver: &D, endpoint: &str, body: &[u8]) -> Reply {
    match Request::decode(endpoint, body) {
        Ok(request) => request.call(driver),
        Err(reply) => reply,
    }
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    Activate,
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
}

impl Request {
    /// Decodes a call, or gives the error reply (404 unknown endpoint, 400 bad body).
    pub(crate) fn decode(endpoint: &str, body: &[u8]) -> Result<Request, Reply> {
        let method = endpoint.strip_prefix('/').unwrap_or(endpoint);
        let known = [
            "Plugin.Activate",
            "VolumeDriver.Create",
            "VolumeDriver.Remove",
            "VolumeDriver.Mount",
            "VolumeDriver.Unmount",
            "VolumeDriver.Path",
            "VolumeDriver.Get",
            "VolumeDriver.List",
            "VolumeDriver.Capabilities",
        ];
        if !known.contains(&method) {
            return Err(Reply::err(
                404,
                &format!("{method} is not implemented (this plugin is a volume driver)"),
            ));
        }
        let fields = Fields::parse(method, body)?;
        Ok(match method {
            "Plugin.Activate" => Request::Activate,
            "VolumeDriver.Create" => Request::Create {
                name: fields.string("Name")?,
                opts: fields.options("Opts")?,
            },
            "VolumeDriver.Remove" => Request::Remove {
                name: fields.string("Name")?,
            },
            "VolumeDriver.Mount" => Request::Mount {
                name: fields.string("Name")?,
                id: fields.string("ID")?,
            },
            "VolumeDriver.Unmount" => Request::Unmount {
                name: fields.string("Name")?,
                id: fields.string("ID")?,
            },
            "VolumeDriver.Path" => Request::Path {
                name: fields.string("Name")?,
            },
            "VolumeDriver.Get" => Request::Get {
                name: fields.string("Name")?,
            },
            "VolumeDriver.List" => Request::List,
            _ => Request::Capabilities,
        })
    }

    /// Calls the driver and encodes its answer.
    pub(crate) fn call<D: VolumeDriver + ?Sized>(&self, driver: &D) -> Reply {
        match self {
            Request::Activate => Reply::json(&Manifest {
                implements: ["VolumeDriver"],
            }),
            Request::Create { name, opts } => status_only(driver.create(name, opts)),
            Request::Remove { name } => status_only(driver.remove(name)),
            Request::Unmount { name, id } => status_only(driver.unmount(name, id)),
            Request::Mount { name, id } => mountpoint(driver.mount(name, id)),
            Request::Path { name } => mountpoint(driver.path(name)),
            Request::Get { name } => match driver.get(name) {
                Ok(v) => Reply::json(&GetReply {
                    volume: WireVolume::from(&v),
                    err: "",
                }),
                Err(e) => error(e),
            },
            Request::List => match driver.list() {
                Ok(vs) => Reply::json(&ListReply {
                    volumes: vs.iter().map(WireVolume::from).collect(),
                    err: "",
                }),
                Err(e) => error(e),
            },
            Request::Capabilities => Reply::json(&CapabilitiesReply {
                capabilities: Capability {
                    scope: driver.capabilities().as_str(),
                },
            }),
        }
    }
}

/// A request body's top-level object.
struct Fields<'m> {
    method: &'m str,
    map: Map<String, Value>,
}

impl<'m> Fields<'m> {
    fn parse(method: &'m str, body: &[u8]) -> Result<Fields<'m>, Reply> {
        let body = body.trim_ascii();
        let map = if body.is_empty() {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => map,
                Ok(Value::Null) => Map::new(),
                Ok(other) => {
                    return Err(bad_body(
                        method,
                        &format!("expected an object, got {other}"),
                    ));
                }
                Err(e) => return Err(bad_body(method, &e.to_string())),
            }
        };
        Ok(Fields { method, map })
    }

    /// The field named `key`, matched as Go's `encoding/json` does: the exact name first, then
    /// any case. `null` counts as absent.
    fn get(&self, key: &str) -> Option<&Value> {
        self.map
            .get(key)
            .or_else(|| {
                self.map
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v)
            })
            .filter(|v| !v.is_null())
    }

    /// A string field; absent is empty (the driver decides what an empty name means).
    fn string(&self, key: &str) -> Result<String, Reply> {
        match self.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(bad_body(
                self.method,
                &format!("{key} must be a string, got {other}"),
            )),
        }
    }

    /// A `{string: string}` field as pairs sorted by key (the order plugd gives a wasm driver).
    fn options(&self, key: &str) -> Result<Vec<(String, String)>, Reply> {
        let map = match self.get(key) {
            None => return Ok(Vec::new()),
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(bad_body(
                    self.method,
                    &format!("{key} must be an object of strings, got {other}"),
                ));
            }
        };
        let mut opts = Vec::with_capacity(map.len());
        for (k, v) in map {
            match v {
                Value::String(s) => opts.push((k.clone(), s.clone())),
                other => {
                    return Err(bad_body(
                        self.method,
                        &format!("{key}.{k} must be a string, got {other}"),
                    ));
                }
            }
        }
        opts.sort();
        Ok(opts)
    }
}

fn bad_body(method: &str, why: &str) -> Reply {
    Reply::err(400, &format!("{method}: invalid request body: {why}"))
}

/// A driver error as the protocol carries it (see the module docs).
fn error(e: Error) -> Reply {
    let status = match e.code {
        ErrorCode::Unsupported => 404,
        ErrorCode::NotFound
        | ErrorCode::InvalidArgument
        | ErrorCode::Conflict
        | ErrorCode::Internal => 500,
    };
    Reply::err(status, &e.to_string())
}

fn status_only(r: Result<(), Error>) -> Reply {
    match r {
        Ok(()) => Reply::json(&ErrReply { err: "" }),
        Err(e) => error(e),
    }
}

fn mountpoint(r: Result<String, Error>) -> Reply {
    match r {
        Ok(path) => Reply::json(&MountpointReply {
            mountpoint: &path,
            err: "",
        }),
        Err(e) => error(e),
    }
}

#[derive(Serialize)]
struct ErrReply<'a> {
    #[serde(rename = "Err")]
    err: &'a str,
}

#[derive(Serialize)]
struct Manifest {
    #[serde(rename = "Implements")]
    implements: [&'static str; 1],
}

#[derive(Serialize)]
struct MountpointReply<'a> {
    #[serde(rename = "Mountpoint")]
    mountpoint: &'a str,
    #[serde(rename = "Err")]
    err: &'a str,
}

#[derive(Serialize)]
struct GetReply<'a> {
    #[serde(rename = "Volume")]
    volume: WireVolume<'a>,
    #[serde(rename = "Err")]
    err: &'a str,
}

#[derive(Serialize)]
struct ListReply<'a> {
    #[serde(rename = "Volumes")]
    volumes: Vec<WireVolume<'a>>,
    #[serde(rename = "Err")]
    err: &'a str,
}

#[derive(Serialize)]
struct CapabilitiesReply {
    #[serde(rename = "Capabilities")]
    capabilities: Capability,
}

#[derive(Serialize)]
struct Capability {
    #[serde(rename = "Scope")]
    scope: &'static str,
}

/// A volume on the wire: empty fields are left out, because dockerd cannot decode
/// `"CreatedAt": ""` and shows an empty `Status` as `{}` anyway.
#[derive(Serialize)]
struct WireVolume<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Mountpoint", skip_serializing_if = "str::is_empty")]
    mountpoint: &'a str,
    #[serde(rename = "CreatedAt", skip_serializing_if = "Option::is_none")]
    created_at: Option<&'a str>,
    #[serde(rename = "Status", skip_serializing_if = "BTreeMap::is_empty")]
    status: BTreeMap<&'a str, &'a str>,
}

impl<'a> From<&'a Volume> for WireVolume<'a> {
    fn from(v: &'a Volume) -> WireVolume<'a> {
        WireVolume {
            name: &v.name,
            mountpoint: &v.mountpoint,
            created_at: v.created_at.as_deref().filter(|c| !c.is_empty()),
            status: v
                .status
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn json(r: &Reply) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn empty_null_and_braces_are_all_no_arguments() {
        for body in [&b""[..], b"  \n", b"null", b"{}", b"{}\n"] {
            assert_eq!(
                Request::decode("/VolumeDriver.List", body),
                Ok(Request::List)
            );
            assert_eq!(
                Request::decode("Plugin.Activate", body),
                Ok(Request::Activate)
            );
            assert_eq!(
                Request::decode("VolumeDriver.Get", body),
                Ok(Request::Get {
                    name: String::new()
                })
            );
        }
    }

    #[test]
    fn create_reads_null_opts_and_sorts_options() {
        let r = Request::decode("VolumeDriver.Create", br#"{"Name":"v1","Opts":null}"#);
        assert_eq!(
            r,
            Ok(Request::Create {
                name: "v1".into(),
                opts: vec![]
            })
        );
        let r = Request::decode(
            "VolumeDriver.Create",
            br#"{"Name":"v1","Opts":{"b":"2","a":"1"}}"#,
        );
        assert_eq!(
            r,
            Ok(Request::Create {
                name: "v1".into(),
                opts: vec![("a".into(), "1".into()), ("b".into(), "2".into())]
            })
        );
    }

    #[test]
    fn field_names_match_any_case_exact_first_and_unknown_fields_are_ignored() {
        let r = Request::decode("VolumeDriver.Mount", br#"{"name":"v1","Id":"x","Extra":1}"#);
        assert_eq!(
            r,
            Ok(Request::Mount {
                name: "v1".into(),
                id: "x".into()
            })
        );
        let r = Request::decode("VolumeDriver.Path", br#"{"NAME":"other","Name":"v1"}"#);
        assert_eq!(r, Ok(Request::Path { name: "v1".into() }));
        let r = Request::decode("VolumeDriver.Remove", br#"{"Name":null}"#);
        assert_eq!(r, Ok(Request::Remove { name: "".into() }));
    }

    #[test]
    fn malformed_bodies_are_400_and_unknown_endpoints_404() {
        for (method, body) in [
            ("VolumeDriver.Get", &br#"{oops"#[..]),
            ("VolumeDriver.Get", br#"[]"#),
            ("VolumeDriver.Get", br#"{"Name": 7}"#),
            ("VolumeDriver.List", br#""x""#),
            ("VolumeDriver.Create", br#"{"Name":"v","Opts":["a"]}"#),
            ("VolumeDriver.Create", br#"{"Name":"v","Opts":{"a":1}}"#),
        ] {
            let reply = Request::decode(method, body).unwrap_err();
            assert_eq!(reply.status, 400, "{method} {body:?}");
            let err = json(&reply)["Err"].as_str().unwrap().to_string();
            assert!(
                err.starts_with(&format!("{method}: invalid request body")),
                "{err}"
            );
        }
        for method in [
            "NetworkDriver.GetCapabilities",
            "VolumeDriver.Frobnicate",
            "volumedriver.get",
            "",
        ] {
            let reply = Request::decode(method, b"{}").unwrap_err();
            assert_eq!(reply.status, 404, "{method}");
            assert!(
                json(&reply)["Err"]
                    .as_str()
                    .unwrap()
                    .contains("not implemented")
            );
        }
    }

    /// Records the calls it gets; volumes `missing`, `nope` and `busy` fail with `not-found`,
    /// `unsupported` (and no message) and `conflict`.
    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<String>>,
    }

    impl Recorder {
        fn check(&self, call: String, name: &str) -> Result<(), Error> {
            self.calls.borrow_mut().push(call);
            match name {
                "missing" => Err(Error::not_found("no such volume")),
                "nope" => Err(Error::unsupported("")),
                "busy" => Err(Error::conflict("volume \"busy\" is in use")),
                _ => Ok(()),
            }
        }
    }

    impl VolumeDriver for Recorder {
        fn create(&self, name: &str, opts: &[(String, String)]) -> Result<(), Error> {
            self.check(format!("create {name} {opts:?}"), name)
        }
        fn remove(&self, name: &str) -> Result<(), Error> {
            self.check(format!("remove {name}"), name)
        }
        fn mount(&self, name: &str, id: &str) -> Result<String, Error> {
            self.check(format!("mount {name} {id}"), name)?;
            Ok(format!("/data/{name}"))
        }
        fn unmount(&self, name: &str, id: &str) -> Result<(), Error> {
            self.check(format!("unmount {name} {id}"), name)
        }
        fn path(&self, name: &str) -> Result<String, Error> {
            self.check(format!("path {name}"), name)?;
            Ok(format!("/data/{name}"))
        }
        fn get(&self, name: &str) -> Result<Volume, Error> {
            self.check(format!("get {name}"), name)?;
            Ok(Volume {
                name: name.into(),
                mountpoint: String::new(),
                created_at: Some(String::new()),
                status: vec![("k".into(), "v".into())],
            })
        }
        fn list(&self) -> Result<Vec<Volume>, Error> {
            self.calls.borrow_mut().push("list".into());
            Ok(vec![
                Volume::new("a", "/data/a"),
                Volume {
                    created_at: Some("2026-11-23T10:00:00Z".into()),
                    ..Volume::new("b", "/data/b")
                },
            ])
        }
        fn capabilities(&self) -> crate::Scope {
            crate::Scope::Global
        }
    }

    #[test]
    fn replies_have_dockerd_shapes() {
        let d = Recorder::default();
        let call = |m: &str, b: &str| {
            let r = handle(&d, m, b.as_bytes());
            (r.status, json(&r))
        };
        assert_eq!(
            call("/Plugin.Activate", ""),
            (200, serde_json::json!({"Implements": ["VolumeDriver"]}))
        );
        assert_eq!(
            call("/VolumeDriver.Create", r#"{"Name":"v","Opts":{"o":"1"}}"#),
            (200, serde_json::json!({"Err": ""}))
        );
        assert_eq!(
            call("/VolumeDriver.Mount", r#"{"Name":"v","ID":"i"}"#),
            (200, serde_json::json!({"Mountpoint": "/data/v", "Err": ""}))
        );
        assert_eq!(
            call("/VolumeDriver.Get", r#"{"Name":"v"}"#),
            (
                200,
                serde_json::json!({"Volume": {"Name": "v", "Status": {"k": "v"}}, "Err": ""})
            ),
            "empty Mountpoint and CreatedAt are left out"
        );
        assert_eq!(
            call("/VolumeDriver.List", "{}"),
            (
                200,
                serde_json::json!({"Volumes": [
                    {"Name": "a", "Mountpoint": "/data/a"},
                    {"Name": "b", "Mountpoint": "/data/b", "CreatedAt": "2026-11-23T10:00:00Z"},
                ], "Err": ""})
            )
        );
        assert_eq!(
            call("/VolumeDriver.Capabilities", ""),
            (
                200,
                serde_json::json!({"Capabilities": {"Scope": "global"}})
            )
        );
        assert_eq!(
            *d.calls.borrow(),
            ["create v [(\"o\", \"1\")]", "mount v i", "get v", "list"]
        );
    }

    #[test]
    fn driver_errors_map_to_500_or_404_with_err() {
        let d = Recorder::default();
        let r = handle(&d, "VolumeDriver.Get", br#"{"Name":"missing"}"#);
        assert_eq!(
            (r.status, json(&r)),
            (500, serde_json::json!({"Err": "no such volume"}))
        );
        let r = handle(&d, "VolumeDriver.Remove", br#"{"Name":"busy"}"#);
        assert_eq!(
            (r.status, json(&r)),
            (500, serde_json::json!({"Err": "volume \"busy\" is in use"}))
        );
        let r = handle(&d, "VolumeDriver.Path", br#"{"Name":"nope"}"#);
        assert_eq!(
            (r.status, json(&r)),
            (404, serde_json::json!({"Err": "unsupported"})),
            "unsupported is a 404 and an empty message is replaced by the code"
        );
        let r = handle(&d, "VolumeDriver.Get", br#"{"Name":7}"#);
        assert_eq!(r.status, 400);
        assert_eq!(
            d.calls.borrow().len(),
            3,
            "a bad body never reaches the driver"
        );
    }
}
