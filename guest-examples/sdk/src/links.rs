//! veth pairs for a network driver's Join, the same call in both packagings.
//!
//! * **wasm**: plugd's `docker:plugin/host-links` import. plugd names the pair (`pd<tag>c<id>` and
//!   `pd<tag>h<id>`, the tag from the plugin id), tracks it, and deletes it at disable at the
//!   latest; it works only when `config.json` declares `Network.Type` `host` and `CAP_NET_ADMIN`,
//!   and fails with `unsupported`, naming them, otherwise.
//! * **native**: rtnetlink from the plugin's own process (plugd-core's `links`, no `ip` binary),
//!   with the same names under the fixed tag [`NATIVE_TAG`]; it needs the same declaration, which
//!   puts the plugin in the host's network namespace where dockerd looks for Join's interface.
//!
//! `id` is 1-8 of `[a-z0-9]`, unique among the driver's live pairs (e.g. the first 8 hex digits
//! of the endpoint id).

use crate::Error;

/// A veth pair: `name` for Join's `src_name` (left down; dockerd moves it into the container),
/// `peer` stays in the host, up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veth {
    /// The end handed to dockerd.
    pub name: String,
    /// The end left in the host.
    pub peer: String,
}

/// The tag of native links' names (`pdnatvc<id>`), where wasm links carry 4 hex digits of the
/// plugin id.
pub const NATIVE_TAG: &str = "natv";

/// Makes the veth pair for `id`.
pub fn create_veth(id: &str) -> Result<Veth, Error> {
    imp::create_veth(id)
}

/// Deletes a pair made by [`create_veth`] (either end names it).
pub fn delete_link(name: &str) -> Result<(), Error> {
    imp::delete_link(name)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Veth;
    use crate::Error;
    use crate::network::wasm::{from_wit, host_links};

    pub fn create_veth(id: &str) -> Result<Veth, Error> {
        host_links::create_veth(id)
            .map(|v| Veth {
                name: v.name,
                peer: v.peer,
            })
            .map_err(from_wit)
    }

    pub fn delete_link(name: &str) -> Result<(), Error> {
        host_links::delete_link(name).map_err(from_wit)
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{NATIVE_TAG, Veth};
    use crate::Error;
    use plugd_core::links;

    fn prefix() -> String {
        format!("pd{NATIVE_TAG}")
    }

    pub fn create_veth(id: &str) -> Result<Veth, Error> {
        let valid = !id.is_empty()
            && id.len() <= 8
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid {
            return Err(Error::invalid_argument(format!(
                "link id {id:?} is not 1-8 of [a-z0-9]"
            )));
        }
        let (name, peer) = (format!("{}c{id}", prefix()), format!("{}h{id}", prefix()));
        links::create_veth(&name, &peer).map_err(|e| {
            let text = format!("cannot create veth {name:?}/{peer:?}: {e}");
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::conflict(text)
            } else {
                Error::internal(text)
            }
        })?;
        // The host end must not take IPv6 router advertisements from the container. In plugd's
        // (and dockerd's) native sandbox /proc/sys is read-only, so this is best effort: a
        // driver that can write it turns IPv6 off, as plugd does for a wasm driver's pairs.
        let _ = links::disable_ipv6(&peer);
        Ok(Veth { name, peer })
    }

    pub fn delete_link(name: &str) -> Result<(), Error> {
        if !name.starts_with(&prefix()) {
            return Err(Error::not_found(format!(
                "{name:?} is not a link this driver made"
            )));
        }
        // Through the host end when given the container end: that one may be in a container.
        let host_end = match name
            .strip_prefix(&prefix())
            .and_then(|r| r.strip_prefix('c'))
        {
            Some(id) => format!("{}h{id}", prefix()),
            None => name.to_string(),
        };
        links::delete(&host_end)
            .or_else(|e| match e.raw_os_error() {
                Some(19) if host_end != name => links::delete(name),
                _ => Err(e),
            })
            .map_err(|e| Error::internal(format!("cannot delete {name:?}: {e}")))
    }
}

#[cfg(not(any(target_arch = "wasm32", target_os = "linux")))]
mod imp {
    use super::Veth;
    use crate::Error;

    pub fn create_veth(_id: &str) -> Result<Veth, Error> {
        Err(Error::unsupported("links need Linux"))
    }

    pub fn delete_link(_name: &str) -> Result<(), Error> {
        Err(Error::unsupported("links need Linux"))
    }
}
