//! `net:*`: which interfaces the sandbox has, whether the host's loopback is reachable (plugd
//! listens on it for the check and writes the nonce), whether the probe can listen, and whether a
//! name server could be asked.

use crate::sys::err_name;
use plugd_core::check::probe::Attempt;
use std::io::Read as _;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// Connect and read timeout for the host's loopback listener.
const LOOPBACK_TIMEOUT: Duration = Duration::from_secs(2);

/// `net:interfaces`: the sorted names in `/sys/class/net`.
pub fn interfaces() -> Attempt {
    const ID: &str = "net:interfaces";
    match std::fs::read_dir("/sys/class/net") {
        Ok(dir) => {
            let mut names: Vec<String> = dir
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            Attempt::ok(ID, names.join(","))
        }
        Err(e) => Attempt::failed(ID, err_name(&e)),
    }
}

/// `net:host-loopback`: connect to `127.0.0.1:port` and read the nonce.
pub fn host_loopback(port: u16, nonce: &str) -> Attempt {
    const ID: &str = "net:host-loopback";
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = match TcpStream::connect_timeout(&addr, LOOPBACK_TIMEOUT) {
        Ok(s) => s,
        Err(e) if timed_out(&e) => return Attempt::failed(ID, timeout_detail("connect")),
        Err(e) => return Attempt::failed(ID, format!("connect: {}", err_name(&e))),
    };
    let _ = stream.set_read_timeout(Some(LOOPBACK_TIMEOUT));
    let mut got = Vec::new();
    match (&mut stream).take(256).read_to_end(&mut got) {
        Err(e) if got.is_empty() && timed_out(&e) => Attempt::failed(ID, timeout_detail("read")),
        _ => judge_nonce(ID, &got, nonce),
    }
}

/// Whether an I/O error is a time limit running out (a dropped packet or a silent peer: the
/// attempt was not answered, which is no denial).
fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

fn timeout_detail(step: &str) -> String {
    crate::sys::untried(format!(
        "{step}: time limit of {}s hit",
        LOOPBACK_TIMEOUT.as_secs()
    ))
}

/// `ok` when `got` is the nonce (surrounding whitespace aside): something else answering on that
/// port is not plugd's listener.
pub fn judge_nonce(id: &str, got: &[u8], nonce: &str) -> Attempt {
    let text = String::from_utf8_lossy(got);
    if !nonce.is_empty() && text.trim() == nonce {
        Attempt::ok(id, "read the nonce")
    } else if got.is_empty() {
        Attempt::failed(id, "read nothing")
    } else {
        Attempt::failed(
            id,
            format!("read {} bytes that are not the nonce", got.len()),
        )
    }
}

/// `net:bind`: listen on `127.0.0.1:0`.
pub fn bind() -> Attempt {
    const ID: &str = "net:bind";
    match std::net::TcpListener::bind(("127.0.0.1", 0)) {
        Ok(l) => Attempt::ok(
            ID,
            l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        ),
        Err(e) => Attempt::failed(ID, err_name(&e)),
    }
}

/// `net:lookup`: a UDP socket connected to the first `nameserver` of `/etc/resolv.conf`.
pub fn lookup() -> Attempt {
    const ID: &str = "net:lookup";
    let conf = match crate::sys::read_capped(std::path::Path::new("/etc/resolv.conf"), 64 * 1024) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => return Attempt::failed(ID, format!("/etc/resolv.conf: {}", err_name(&e))),
    };
    let Some(server) = first_nameserver(&conf) else {
        return Attempt::failed(ID, "no nameserver in /etc/resolv.conf");
    };
    let addr = SocketAddr::new(server, 53);
    let socket = match UdpSocket::bind(if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }) {
        Ok(s) => s,
        Err(e) => return Attempt::failed(ID, format!("socket: {}", err_name(&e))),
    };
    match socket.connect(addr) {
        Ok(()) => Attempt::ok(ID, addr.to_string()),
        Err(e) => Attempt::failed(ID, format!("{addr}: {}", err_name(&e))),
    }
}

/// The first parseable `nameserver` address of a resolv.conf text.
pub fn first_nameserver(conf: &str) -> Option<std::net::IpAddr> {
    conf.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next())
        // A link-local address may carry a zone (`fe80::1%eth0`), which IpAddr does not parse.
        .find_map(|a| a.split('%').next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_peer_is_untried_not_refused() {
        use std::io::{Error, ErrorKind};
        assert!(timed_out(&Error::from(ErrorKind::TimedOut)));
        assert!(timed_out(&Error::from_raw_os_error(libc::EAGAIN)));
        assert!(!timed_out(&Error::from_raw_os_error(libc::ECONNREFUSED)));
        assert_eq!(
            timeout_detail("connect"),
            "untried: connect: time limit of 2s hit"
        );
        // A listener that accepts and says nothing: the read runs out of time.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let a = host_loopback(port, "n5");
        assert_eq!(
            a,
            Attempt::failed("net:host-loopback", timeout_detail("read"))
        );
        drop(l);
    }

    #[test]
    fn the_first_valid_nameserver_is_used() {
        let conf = "# x\nsearch lan\nnameserver bogus\nnameserver 10.0.0.2\nnameserver 1.1.1.1\n";
        assert_eq!(first_nameserver(conf), Some([10, 0, 0, 2].into()));
        assert_eq!(first_nameserver("search lan\n"), None);
    }

    #[test]
    fn only_the_nonce_counts() {
        assert!(judge_nonce("x", b"abc\n", "abc").ok);
        assert!(!judge_nonce("x", b"abcd", "abc").ok);
        assert!(!judge_nonce("x", b"", "").ok);
        assert_eq!(judge_nonce("x", b"", "abc").detail, "read nothing");
    }

    #[test]
    fn a_listener_that_writes_the_nonce_is_reached() {
        use std::io::Write as _;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"n0nce").unwrap();
        });
        assert!(host_loopback(port, "n0nce").ok);
        t.join().unwrap();
    }
}
