//! Docker's plugin protocol for a volume driver, without the transport: a request (endpoint and
//! JSON body) in, a [`Reply`] (status and JSON body) out.
//!
//! It is public so a driver can be tested through the protocol without a socket ([`handle`]).
//! Decoding the request and encoding the answer are plugd-core's
//! ([`plugd_core::protocol::volume`], whose docs tabulate the replies), the very code plugd's wasm
//! host answers a wasm packaging of the same driver with: the two packagings cannot drift apart.
//! Requests are read the way dockerd writes them and Go reads JSON: an empty body or `null` is
//! `{}`, `null` fields are absent ones (`"Opts": null`), field names match case-insensitively
//! (the last match winning), and unknown fields are ignored.

use crate::VolumeDriver;
use plugd_core::protocol::volume::{Request, Response, encode};

/// One protocol reply: an HTTP status (dockerd reads only 200 as success) and a JSON body.
pub use plugd_core::Reply;
/// The media type of replies (go-plugins-helpers sends the same; nobody checks it).
pub use plugd_core::protocol::MEDIA_TYPE;

/// Answers one call: `endpoint` is the request path with or without its leading `/`
/// (`VolumeDriver.Create`), `body` the request body as sent.
pub fn handle<D: VolumeDriver + ?Sized>(driver: &D, endpoint: &str, body: &[u8]) -> Reply {
    match Request::decode(endpoint, body) {
        Ok(request) => encode(call(driver, &request)),
        Err(reply) => reply,
    }
}

/// Calls the driver for one decoded request.
fn call<D: VolumeDriver + ?Sized>(driver: &D, request: &Request) -> Result<Response, crate::Error> {
    Ok(match request {
        Request::Activate => Response::Activate,
        Request::Create { name, opts } => driver.create(name, opts).map(|()| Response::Done)?,
        Request::Remove { name } => driver.remove(name).map(|()| Response::Done)?,
        Request::Unmount { name, id } => driver.unmount(name, id).map(|()| Response::Done)?,
        Request::Mount { name, id } => Response::Mountpoint(driver.mount(name, id)?),
        Request::Path { name } => Response::Mountpoint(driver.path(name)?),
        Request::Get { name } => Response::Volume(driver.get(name)?),
        Request::List => Response::Volumes(driver.list()?),
        Request::Capabilities => Response::Capabilities(driver.capabilities()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Volume};
    use serde_json::Value;
    use std::cell::RefCell;

    fn json(r: &Reply) -> Value {
        serde_json::from_slice(&r.body).unwrap()
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
