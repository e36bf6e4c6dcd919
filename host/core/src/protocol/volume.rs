//! `VolumeDriver.*` (`docker.volumedriver/1.0`): the requests dockerd sends, the replies it
//! decodes, and the mapping between them and a driver's typed answers, used by the wasm host and
//! by the SDK's native server alike, so the two packagings of one driver answer byte for byte the
//! same.
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
//! Failures are `{"Err": message}`: 500 for driver errors, 404 for
//! [`ErrorCode::Unsupported`](super::ErrorCode::Unsupported) and unknown endpoints, 400 for a
//! body Go would not decode into the request type ([`super::request`]).

use super::request::{self, method_of};
use super::{DriverError, Manifest};
use crate::Reply;
use crate::gojson::{Field, Form, Kind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Endpoints of the volume subsystem, in dockerd's spelling.
pub const CREATE: &str = "VolumeDriver.Create";
/// See [`CREATE`].
pub const REMOVE: &str = "VolumeDriver.Remove";
/// See [`CREATE`].
pub const MOUNT: &str = "VolumeDriver.Mount";
/// See [`CREATE`].
pub const UNMOUNT: &str = "VolumeDriver.Unmount";
/// See [`CREATE`].
pub const PATH: &str = "VolumeDriver.Path";
/// See [`CREATE`].
pub const GET: &str = "VolumeDriver.Get";
/// See [`CREATE`].
pub const LIST: &str = "VolumeDriver.List";
/// See [`CREATE`].
pub const CAPABILITIES: &str = "VolumeDriver.Capabilities";

/// `{"Name", "Opts"}` (Create).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
struct CreateRequest {
    /// Volume name.
    #[serde(rename = "Name")]
    pub name: String,
    /// `-o` options; dockerd sends `null` when there are none.
    #[serde(rename = "Opts")]
    pub opts: Option<BTreeMap<String, String>>,
}

/// `{"Name"}` (Remove, Path, Get).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
struct NameRequest {
    /// Volume name.
    #[serde(rename = "Name")]
    pub name: String,
}

/// `{"Name", "ID"}` (Mount, Unmount). `ID` is per mount point, not the container id.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
struct MountRequest {
    /// Volume name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Caller id, stable between Mount and its Unmount.
    #[serde(rename = "ID")]
    pub id: String,
}

/// A volume as Get and List describe it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    /// Volume name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Host path (after plugd's translation).
    #[serde(
        rename = "Mountpoint",
        skip_serializing_if = "String::is_empty",
        default
    )]
    pub mountpoint: String,
    /// RFC 3339; must be absent rather than `""` or dockerd fails to decode it.
    #[serde(rename = "CreatedAt", skip_serializing_if = "Option::is_none", default)]
    pub created_at: Option<String>,
    /// Free-form status shown by `volume inspect`.
    #[serde(rename = "Status", skip_serializing_if = "Option::is_none", default)]
    pub status: Option<BTreeMap<String, serde_json::Value>>,
}

/// Reply carrying a path (Mount, Path).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MountpointReply {
    /// Host path.
    #[serde(rename = "Mountpoint")]
    pub mountpoint: String,
    /// Empty on success.
    #[serde(rename = "Err")]
    pub err: String,
}

/// Reply to Get.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GetReply {
    /// `null` with an empty `Err` means "no such volume".
    #[serde(rename = "Volume")]
    pub volume: Option<Volume>,
    /// Empty on success.
    #[serde(rename = "Err")]
    pub err: String,
}

/// Reply to List.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListReply {
    /// Every volume the driver knows.
    #[serde(rename = "Volumes")]
    pub volumes: Vec<Volume>,
    /// Empty on success.
    #[serde(rename = "Err")]
    pub err: String,
}

/// `{"Scope": "local"|"global"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capability {
    /// `local` or `global`.
    #[serde(rename = "Scope")]
    pub scope: String,
}

/// Reply to Capabilities.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CapabilitiesReply {
    /// The driver's scope.
    #[serde(rename = "Capabilities")]
    pub capabilities: Capability,
}

/// The `Implements` entry of a volume plugin.
pub const IMPLEMENTS: &str = "VolumeDriver";
const ACTIVATE: &str = "Plugin.Activate";

/// Go's `{Name string}` (Remove, Path, Get).
const NAME_REQUEST: Kind = Kind::Struct(&[Field::new("Name", Kind::Str(Form::Text))]);
/// Go's `{Name string; Opts map[string]string}` (Create).
const CREATE_REQUEST: Kind = Kind::Struct(&[
    Field::new("Name", Kind::Str(Form::Text)),
    Field::new("Opts", Kind::Map(&Kind::Str(Form::Text))),
]);
/// Go's `{Name string; ID string}` (Mount, Unmount).
const MOUNT_REQUEST: Kind = Kind::Struct(&[
    Field::new("Name", Kind::Str(Form::Text)),
    Field::new("ID", Kind::Str(Form::Text)),
]);

/// One decoded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `Plugin.Activate` (plugd's gateway answers it itself; a native server must).
    Activate,
    /// Make volume `name` with the user's `-o` options, sorted by key.
    Create {
        /// Volume name.
        name: String,
        /// `-o key=value` pairs, sorted by key.
        opts: Vec<(String, String)>,
    },
    /// Delete volume `name`.
    Remove {
        /// Volume name.
        name: String,
    },
    /// Mount volume `name` for mount point `id`.
    Mount {
        /// Volume name.
        name: String,
        /// Per-mount id, stable until the matching Unmount.
        id: String,
    },
    /// Mount point `id` no longer uses volume `name`.
    Unmount {
        /// Volume name.
        name: String,
        /// The id its Mount had.
        id: String,
    },
    /// Where volume `name` is.
    Path {
        /// Volume name.
        name: String,
    },
    /// Describe volume `name`.
    Get {
        /// Volume name.
        name: String,
    },
    /// Every volume.
    List,
    /// The driver's scope.
    Capabilities,
}

impl Request {
    /// Decodes a call (`endpoint` with or without its leading `/`), or gives the error reply:
    /// 404 for an unknown endpoint, 400 for a body Go would not decode.
    pub fn decode(endpoint: &str, body: &[u8]) -> Result<Request, Reply> {
        let method = method_of(endpoint);
        let name = || request::read::<NameRequest>(method, body, &NAME_REQUEST).map(|r| r.name);
        let mount = || request::read::<MountRequest>(method, body, &MOUNT_REQUEST);
        Ok(match method {
            ACTIVATE => Request::Activate,
            CREATE => {
                let r: CreateRequest = request::read(method, body, &CREATE_REQUEST)?;
                Request::Create {
                    name: r.name,
                    opts: request::pairs(r.opts),
                }
            }
            REMOVE => Request::Remove { name: name()? },
            MOUNT => {
                let r = mount()?;
                Request::Mount {
                    name: r.name,
                    id: r.id,
                }
            }
            UNMOUNT => {
                let r = mount()?;
                Request::Unmount {
                    name: r.name,
                    id: r.id,
                }
            }
            PATH => Request::Path { name: name()? },
            GET => Request::Get { name: name()? },
            LIST => {
                request::no_arguments(method, body)?;
                Request::List
            }
            CAPABILITIES => {
                request::no_arguments(method, body)?;
                Request::Capabilities
            }
            _ => return Err(request::unknown(method, "volume driver")),
        })
    }
}

pub use super::Scope;

/// A volume as a driver describes it to `Get` and `List`; mirrors WIT `volume-driver.volume`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    /// The name dockerd knows the volume by.
    pub name: String,
    /// Where the data is, as a plugin-internal path; may be empty when not mounted yet.
    pub mountpoint: String,
    /// Creation time in RFC 3339 (`2026-11-23T10:00:00Z`). `None` (or `""`) leaves `CreatedAt`
    /// out of the reply: dockerd rejects an empty string but accepts an absent field.
    pub created_at: Option<String>,
    /// Free-form pairs `docker volume inspect` shows under `Status`.
    pub status: Vec<(String, String)>,
}

impl Info {
    /// A volume with no creation time and no status.
    pub fn new(name: impl Into<String>, mountpoint: impl Into<String>) -> Info {
        Info {
            name: name.into(),
            mountpoint: mountpoint.into(),
            created_at: None,
            status: Vec::new(),
        }
    }

    /// On the wire: empty fields left out (an empty `Status` shows as `{}` in dockerd anyway).
    fn wire(self) -> Volume {
        let status: BTreeMap<String, serde_json::Value> = self
            .status
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        Volume {
            name: self.name,
            mountpoint: self.mountpoint,
            created_at: self.created_at.filter(|c| !c.is_empty()),
            status: (!status.is_empty()).then_some(status),
        }
    }
}

/// A driver's successful answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `Plugin.Activate`.
    Activate,
    /// Create, Remove, Unmount.
    Done,
    /// Mount, Path.
    Mountpoint(String),
    /// Get.
    Volume(Info),
    /// List.
    Volumes(Vec<Info>),
    /// Capabilities.
    Capabilities(Scope),
}

/// The reply dockerd gets for a driver's answer.
pub fn encode(answer: Result<Response, DriverError>) -> Reply {
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return e.reply(),
    };
    let err = String::new;
    match answer {
        Response::Activate => super::json(&Manifest {
            implements: vec![IMPLEMENTS.to_string()],
        }),
        Response::Done => super::json(&super::ErrBody { err: err() }),
        Response::Mountpoint(mountpoint) => super::json(&MountpointReply {
            mountpoint,
            err: err(),
        }),
        Response::Volume(v) => super::json(&GetReply {
            volume: Some(v.wire()),
            err: err(),
        }),
        Response::Volumes(vs) => super::json(&ListReply {
            volumes: vs.into_iter().map(Info::wire).collect(),
            err: err(),
        }),
        Response::Capabilities(scope) => super::json(&CapabilitiesReply {
            capabilities: Capability {
                scope: scope.as_str().to_string(),
            },
        }),
    }
}

#[cfg(test)]
mod tests;
