//! The `docker:plugin/host-links` import: veth pairs plugd makes in the host's network namespace
//! on a wasm network driver's behalf, so that Join can hand dockerd an interface.
//!
//! What a guest can do with it is bounded by plugd, not by the guest:
//! - **only with the declaration**: the import works only for a `docker.networkdriver/*` plugin
//!   declaring `Network.Type` `host` and `CAP_NET_ADMIN` (`policy::host_links`), what a native
//!   driver needs for the same links; otherwise it is linked all the same (so such a component
//!   still instantiates and can serve everything but Join) and every call is `unsupported`,
//!   naming the missing declaration;
//! - **plugd names the links**: the guest picks only an id of 1–[`MAX_ID`] of `[a-z0-9]`; the
//!   names are `pd<tag>c<id>` (handed to dockerd) and `pd<tag>h<id>` (stays in the host, up), the
//!   tag being 4 hex digits unique among this plugd's plugins (the plugin id's first 4, or the next
//!   free ones), so they are valid interface names no other plugin gets and nothing outside plugd
//!   uses by convention; the host end has IPv6 off, so the container cannot advertise routes or
//!   addresses to the host through it;
//! - **plugd owns them**: the plugin's live links are tracked here, at most [`MAX_LINKS`];
//!   `delete-link` deletes only a tracked name, and every tracked link is deleted when the plugin
//!   stops (disable, plugd shutdown). The set is shared by the plugin's successive instances, so
//!   a trap does not lose track of them;
//! - nothing else: no addresses, routes, other link kinds, namespaces or lookups of other links.
//!
//! Join's `src-name` is checked against the same set (`network`): a wasm driver can hand dockerd
//! only an interface plugd made for it.

use crate::bindings::{ErrorCode, GuestError, host_links};
use crate::instance::HostState;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use wasmtime::component::{HasSelf, Linker};

/// Most live links (veth pairs) one plugin may have.
pub(crate) const MAX_LINKS: usize = 256;
/// Longest id a guest may give (`pd` + 4 + 1 + 8 = 15, the kernel's limit).
pub(crate) const MAX_ID: usize = 8;

/// One plugin's grant and its links.
pub(crate) struct HostLinks {
    /// `None` when granted, else why not (the message every call fails with).
    refused: Option<String>,
    /// `pd` + 4 hex digits of the plugin id.
    prefix: String,
    /// The container-side names of the live pairs.
    owned: Mutex<BTreeSet<String>>,
    /// Give the tag back when dropped: a `plugd check` probe's id is used once, and keeping its
    /// tag for the process's lifetime would leak one per check and, after 65536 of them, leave a
    /// plugin no tag of its own.
    once: bool,
}

fn error(code: ErrorCode, message: impl Into<String>) -> GuestError {
    GuestError {
        code,
        message: message.into(),
    }
}

/// The tags in use, by plugin id: two plugins whose ids share their first 4 hex digits must not
/// share link names (one could otherwise delete or hand dockerd the other's). Kept for the
/// process's lifetime, so a plugin keeps its tag across restarts (a check's probe gives its back:
/// [`HostLinks::for_check`]).
static TAGS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// Plugin `plugin_id`'s tag: its id's first 4 hex digits, or the next free 4.
fn tag_for(plugin_id: &str) -> String {
    let mut tags = TAGS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((tag, _)) = tags.iter().find(|(_, id)| id.as_str() == plugin_id) {
        return tag.clone();
    }
    let first: String = plugin_id
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(4)
        .collect();
    let start = u16::from_str_radix(&first, 16).unwrap_or(0);
    let tag = (0..=u16::MAX)
        .map(|k| format!("{:04x}", start.wrapping_add(k)))
        .find(|t| !tags.contains_key(t))
        .unwrap_or_else(|| format!("{start:04x}"));
    tags.insert(tag.clone(), plugin_id.to_string());
    tag
}

impl HostLinks {
    /// The links of plugin `id` (its 64-hex id), granted or not.
    pub(crate) fn new(plugin_id: &str, granted: bool) -> HostLinks {
        let tag = tag_for(plugin_id);
        HostLinks {
            refused: (!granted).then(|| {
                "host-links needs the plugin's config.json to declare network type \"host\" and \
                 the capability CAP_NET_ADMIN (a wasm plugin without them cannot create links)"
                    .to_string()
            }),
            prefix: format!("pd{tag}"),
            owned: Mutex::new(BTreeSet::new()),
            once: false,
        }
    }

    /// The links of a `plugd check` probe (`check-<nonce>`): the same grant and rules as
    /// [`HostLinks::new`], the tag given back once the probe is gone.
    pub(crate) fn for_check(check_id: &str, granted: bool) -> HostLinks {
        let mut links = HostLinks::new(check_id, granted);
        links.once = true;
        links
    }

    fn owned(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn granted(&self) -> Result<(), GuestError> {
        match &self.refused {
            None => Ok(()),
            Some(why) => Err(error(ErrorCode::Unsupported, why.clone())),
        }
    }

    /// `create-veth`: the pair for `id`, as `(name, peer)`.
    pub(crate) fn create_veth(&self, id: &str) -> Result<(String, String), GuestError> {
        self.granted()?;
        let valid = !id.is_empty()
            && id.len() <= MAX_ID
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid {
            return Err(error(
                ErrorCode::InvalidArgument,
                format!("link id {id:?} is not 1-{MAX_ID} of [a-z0-9]"),
            ));
        }
        let name = format!("{}c{id}", self.prefix);
        let peer = format!("{}h{id}", self.prefix);
        let mut owned = self.owned();
        if owned.contains(&name) {
            return Err(error(
                ErrorCode::Conflict,
                format!("link {name:?} exists already"),
            ));
        }
        if owned.len() >= MAX_LINKS {
            return Err(error(
                ErrorCode::Conflict,
                format!("the plugin has {MAX_LINKS} links already (plugd's limit)"),
            ));
        }
        plugd_core::links::create_veth(&name, &peer).map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::AlreadyExists {
                ErrorCode::Conflict
            } else {
                ErrorCode::Internal
            };
            error(code, format!("cannot create veth {name:?}/{peer:?}: {e}"))
        })?;
        if let Err(e) = plugd_core::links::disable_ipv6(&peer) {
            let _ = plugd_core::links::delete(&peer);
            return Err(error(
                ErrorCode::Internal,
                format!("cannot turn IPv6 off on {peer:?}, so the pair was deleted: {e}"),
            ));
        }
        owned.insert(name.clone());
        tracing::info!(link = %name, peer = %peer, "host-links: veth created");
        Ok((name, peer))
    }

    /// `delete-link`: either end of a pair this plugin made.
    pub(crate) fn delete_link(&self, name: &str) -> Result<(), GuestError> {
        self.granted()?;
        // One guard for the lookup and the delete: a stop releasing every link, or another
        // instance, cannot come in between.
        let mut owned = self.owned();
        let key = self
            .key_of(name)
            .filter(|k| owned.contains(k))
            .ok_or_else(|| {
                error(
                    ErrorCode::NotFound,
                    format!("{name:?} is not a link plugd made for this plugin"),
                )
            })?;
        self.delete_pair(&key)
            .map_err(|e| error(ErrorCode::Internal, format!("cannot delete {key:?}: {e}")))?;
        owned.remove(&key);
        Ok(())
    }

    /// Deletes the pair whose container end is `key`, through its host end only: the container
    /// end may be in a container's namespace, where plugd does not look, but the host end is
    /// always in plugd's (deleting either end deletes both). A host end already gone means the
    /// pair is gone (a veth dies with either end's namespace); then nothing is deleted by the
    /// container end's name, which may since name another plugin's or nobody's link.
    fn delete_pair(&self, key: &str) -> std::io::Result<()> {
        let peer = match key
            .strip_prefix(&self.prefix)
            .and_then(|r| r.strip_prefix('c'))
        {
            Some(id) => format!("{}h{id}", self.prefix),
            None => return Ok(()),
        };
        match plugd_core::links::delete(&peer) {
            Err(e) if e.raw_os_error() == Some(19) => Ok(()),
            other => other,
        }
    }

    /// The container-side name of the pair `name` would be an end of (tracked or not).
    fn key_of(&self, name: &str) -> Option<String> {
        let id = name.strip_prefix(&self.prefix)?;
        match id.as_bytes().first()? {
            b'c' | b'h' => Some(format!("{}c{}", self.prefix, &id[1..])),
            _ => None,
        }
    }

    /// Whether `name` is a container-side link plugd made for this plugin and still tracks.
    pub(crate) fn owns(&self, name: &str) -> bool {
        self.owned().contains(name)
    }

    /// Deletes every link of the plugin (at stop).
    pub(crate) fn release_all(&self) {
        let names = std::mem::take(&mut *self.owned());
        for name in names {
            match self.delete_pair(&name) {
                Ok(()) => tracing::info!(link = %name, "host-links: veth deleted at plugin stop"),
                Err(e) => tracing::warn!(link = %name, "host-links: cannot delete veth: {e}"),
            }
        }
    }
}

impl Drop for HostLinks {
    fn drop(&mut self) {
        self.release_all();
        if self.once {
            let tag = self.prefix.trim_start_matches("pd");
            TAGS.lock().unwrap_or_else(|p| p.into_inner()).remove(tag);
        }
    }
}

/// Adds `host-links` to plugd's linker, for every plugin: the grant is decided per plugin by the
/// [`HostLinks`] its store carries.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host_links::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl host_links::Host for HostState {
    fn create_veth(&mut self, id: String) -> Result<host_links::Veth, GuestError> {
        let (name, peer) = self.links.create_veth(&id)?;
        Ok(host_links::Veth { name, peer })
    }

    fn delete_link(&mut self, name: String) -> Result<(), GuestError> {
        self.links.delete_link(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_plugins_whose_ids_start_alike_get_different_tags() {
        let a = tag_for("beef0000aaaa");
        let b = tag_for("beef0000bbbb");
        assert_eq!(a, "beef");
        assert_eq!(b, "bef0", "the next free tag");
        assert_eq!(tag_for("beef0000aaaa"), a, "a plugin keeps its tag");
    }

    #[test]
    fn a_check_gives_its_tag_back_and_a_plugin_keeps_its_own() {
        let check = HostLinks::for_check("check-f00d000000000001", true);
        // `c`, `e`, `c` of "check" are hex digits too.
        assert_eq!(check.prefix, "pdcecf");
        let held = |tag: &str| {
            TAGS.lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(tag)
        };
        assert!(held("cecf"));
        drop(check);
        assert!(!held("cecf"), "the check's tag is free again");
        let plugin = HostLinks::new(&"cecf".repeat(16), true);
        drop(plugin);
        assert!(held("cecf"), "a plugin's tag outlives its instance");
    }

    #[test]
    fn without_the_declaration_every_call_names_it() {
        let l = HostLinks::new(&"ab".repeat(32), false);
        let e = l.create_veth("x1").unwrap_err();
        assert!(matches!(e.code, ErrorCode::Unsupported));
        assert!(e.message.contains("CAP_NET_ADMIN") && e.message.contains("host"));
        assert!(matches!(
            l.delete_link("eth0").unwrap_err().code,
            ErrorCode::Unsupported
        ));
    }

    #[test]
    fn ids_are_checked_and_foreign_names_are_not_ours() {
        let l = HostLinks::new(&"ab".repeat(32), true);
        assert_eq!(l.prefix, "pdabab");
        for bad in ["", "UPPER", "a-b", "123456789", "a/b"] {
            assert!(matches!(
                l.create_veth(bad).unwrap_err().code,
                ErrorCode::InvalidArgument
            ));
        }
        for foreign in ["eth0", "lo", "pdababc1", "pdababh1", "pdabab", "docker0"] {
            assert!(matches!(
                l.delete_link(foreign).unwrap_err().code,
                ErrorCode::NotFound
            ));
            assert!(!l.owns(foreign));
        }
    }

    /// Needs root in a network namespace of its own:
    /// `unshare -n <plugd_wasm test binary> links --ignored` (the e2e network tests cover the rest).
    #[test]
    #[ignore]
    fn pairs_are_named_tracked_capped_and_released() {
        let l = HostLinks::new(&"cd".repeat(32), true);
        let (name, peer) = l.create_veth("e1").unwrap();
        assert_eq!((name.as_str(), peer.as_str()), ("pdcdcdce1", "pdcdcdhe1"));
        assert!(l.owns(&name) && !l.owns(&peer));
        assert!(matches!(
            l.create_veth("e1").unwrap_err().code,
            ErrorCode::Conflict
        ));
        // Another plugin with the same tag cannot touch them.
        let other = HostLinks::new(&"cd".repeat(32), true);
        assert!(matches!(
            other.delete_link(&name).unwrap_err().code,
            ErrorCode::NotFound
        ));
        l.delete_link(&peer).unwrap();
        assert!(!plugd_core::links::exists(&name).unwrap());
        for i in 0..MAX_LINKS {
            l.create_veth(&format!("{i}")).unwrap();
        }
        assert!(matches!(
            l.create_veth("over").unwrap_err().code,
            ErrorCode::Conflict
        ));
        l.release_all();
        assert!(!plugd_core::links::exists("pdcdcdh0").unwrap());
        assert!(!l.owns("pdcdcdc0"));
    }
}
