//! veth pairs over rtnetlink, with no netlink crate: what a network driver needs to hand dockerd
//! an interface in Join. Used by plugd's wasm host (the `host-links` import, which adds its own
//! naming and ownership rules on top) and by the SDK's native packaging, so both create links the
//! same way and neither needs an `ip` binary in a plugin rootfs.
//!
//! Every operation names its link (never an ifindex looked up first), so there is no window in
//! which the index could come to name another interface. Links are made in the calling thread's
//! network namespace.

use std::io::{Error, ErrorKind, Result};

// The rtnetlink ABI (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/veth.h).
const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFF_UP: u32 = 0x1;

/// Checks `name` is an interface name the kernel accepts (`dev_valid_name`) and that plugd's
/// reply check lets through: 1–15 bytes of `[A-Za-z0-9_.-]`, not `.` or `..`.
pub fn valid_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{name:?} is not a valid interface name (1-15 of [A-Za-z0-9_.-])"),
        ))
    }
}

/// One rtnetlink request being built: a header, an `ifinfomsg`, attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16) -> Msg {
        let mut m = Msg(vec![0; NLMSG_HDR]);
        m.0[4..6].copy_from_slice(&kind.to_ne_bytes());
        m.0[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        m.0[8..12].copy_from_slice(&1u32.to_ne_bytes());
        m
    }

    /// `struct ifinfomsg { u8 family, pad; u16 type; i32 index; u32 flags, change; }`, family
    /// `AF_UNSPEC` and index 0: the link is named by an attribute.
    fn ifinfo(&mut self, flags: u32, change: u32) {
        self.0.extend_from_slice(&[0; 8]);
        self.0.extend_from_slice(&flags.to_ne_bytes());
        self.0.extend_from_slice(&change.to_ne_bytes());
    }

    fn attr(&mut self, kind: u16, data: &[u8]) {
        self.0
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    fn name(&mut self, name: &str) {
        let mut b = name.as_bytes().to_vec();
        b.push(0);
        self.attr(IFLA_IFNAME, &b);
    }

    /// Opens a nested attribute; [`Msg::end`] writes its length once its children are in.
    fn begin(&mut self, kind: u16) -> usize {
        let at = self.0.len();
        self.attr(kind, &[]);
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.0.len() - at) as u16;
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// Sends the request and reads the first message of the answer: `Ok(None)` for the
    /// acknowledgement, `Ok(Some(type))` for a message of another type, `Err` for `-errno`.
    fn send(mut self) -> Result<Option<u16>> {
        use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        // NETLINK_ROUTE is protocol 0. Unbound and unconnected, a netlink socket sends to the
        // kernel and gets an automatic port for the answer.
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None,
        )?;
        // Connected to the kernel (port 0): the kernel then refuses datagrams to this socket from
        // any other port, so another process with CAP_NET_ADMIN (a native plugin on the host
        // network) cannot forge the acknowledgement plugd acts on.
        rustix::net::connect(&fd, &rustix::net::netlink::SocketAddrNetlink::new(0, 0))?;
        rustix::net::send(&fd, &self.0, SendFlags::empty())?;
        let mut buf = [0u8; 8192];
        let (_, n) = rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty())?;
        if n < NLMSG_HDR {
            return Err(Error::other("short rtnetlink reply"));
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if buf[8..12] != self.0[8..12] {
            return Err(Error::other("rtnetlink reply to another request"));
        }
        if kind != NLMSG_ERROR {
            return Ok(Some(kind));
        }
        if n < NLMSG_HDR + 4 {
            return Err(Error::other("short rtnetlink error"));
        }
        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if code == 0 {
            Ok(None)
        } else {
            Err(Error::from_raw_os_error(code.saturating_neg()))
        }
    }

    /// [`Msg::send`] for a request that is only acknowledged.
    fn ack(self) -> Result<()> {
        match self.send()? {
            None => Ok(()),
            Some(kind) => Err(Error::other(format!(
                "unexpected rtnetlink reply of type {kind}"
            ))),
        }
    }
}

/// Creates the veth pair `name`/`peer` (both must be new: `EEXIST` otherwise) and sets `peer` up;
/// `name` is left down, for dockerd to move into a container.
pub fn create_veth(name: &str, peer: &str) -> Result<()> {
    valid_name(name)?;
    valid_name(peer)?;
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    m.ifinfo(0, 0);
    m.name(name);
    let info = m.begin(IFLA_LINKINFO);
    m.attr(IFLA_INFO_KIND, b"veth\0");
    let data = m.begin(IFLA_INFO_DATA);
    let p = m.begin(VETH_INFO_PEER);
    m.ifinfo(0, 0);
    m.name(peer);
    m.end(p);
    m.end(data);
    m.end(info);
    m.ack()?;
    if let Err(e) = set_up(peer) {
        let _ = delete(name);
        return Err(e);
    }
    Ok(())
}

/// Turns IPv6 off on link `name` (`net.ipv6.conf.<name>.disable_ipv6 = 1`): the host end of a
/// pair must not take router advertisements, addresses or routes from the container at the other
/// end (the CVE-2020-13401 class), nor give it a link-local path to host services on `[::]`.
/// `Ok` when this kernel has no IPv6 at all.
pub fn disable_ipv6(name: &str) -> Result<()> {
    valid_name(name)?;
    let path = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    match std::fs::write(&path, b"1") {
        Err(e)
            if e.kind() == ErrorKind::NotFound
                && !std::path::Path::new("/proc/sys/net/ipv6").exists() =>
        {
            Ok(())
        }
        other => other.map_err(|e| Error::new(e.kind(), format!("{path}: {e}"))),
    }
}

/// Sets link `name` up.
pub fn set_up(name: &str) -> Result<()> {
    valid_name(name)?;
    let mut m = Msg::new(RTM_NEWLINK, 0);
    m.ifinfo(IFF_UP, IFF_UP);
    m.name(name);
    m.ack()
}

/// Deletes link `name` (for a veth, both ends). `ENODEV` when there is none.
pub fn delete(name: &str) -> Result<()> {
    valid_name(name)?;
    let mut m = Msg::new(RTM_DELLINK, 0);
    m.ifinfo(0, 0);
    m.name(name);
    m.ack()
}

/// Whether a link `name` exists in this network namespace (asked by name, as the rest).
pub fn exists(name: &str) -> Result<bool> {
    valid_name(name)?;
    let mut m = Msg::new(RTM_GETLINK, 0);
    m.ifinfo(0, 0);
    m.name(name);
    match m.send() {
        Ok(Some(RTM_NEWLINK)) => Ok(true),
        Ok(other) => Err(Error::other(format!(
            "unexpected rtnetlink reply {other:?}"
        ))),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_the_kernel_sees_them() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "eth0:1",
            "sixteen_chars_xx",
            "é",
        ] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
            assert_eq!(
                delete(bad).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
        for good in ["eth0", "pd1a2bc12345678", "veth-a.b_c"] {
            valid_name(good).unwrap();
        }
    }

    /// Needs root in a network namespace of its own: `unshare -n cargo test -p plugd-core --lib
    /// links -- --ignored` (the e2e network tests cover it against dockerd).
    #[test]
    #[ignore]
    fn veth_create_up_and_delete() {
        let _ = delete("pdtesta");
        create_veth("pdtesta", "pdtestb").unwrap();
        assert!(exists("pdtesta").unwrap() && exists("pdtestb").unwrap());
        let e = create_veth("pdtesta", "pdtestc").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        delete("pdtestb").unwrap();
        assert!(!exists("pdtesta").unwrap());
        assert_eq!(delete("pdtesta").unwrap_err().raw_os_error(), Some(19));
    }
}
