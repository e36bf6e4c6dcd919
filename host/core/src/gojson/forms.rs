//! The string forms dockerd parses out of plugin replies (addresses, interface names, times).
//!
//! Where dockerd turns a string into an action (an address it assigns, an interface it moves), plugd
//! accepts only the plain form of it that Go's parser and Rust's agree on, and refuses the rest.
//! An empty string is always accepted: it is Go's zero value, which dockerd treats as "not set".

use std::net::IpAddr;

/// An IP address, as `net.ParseIP` reads it (no zone, no leading zeros).
pub fn ip(s: &str) -> Result<(), String> {
    s.parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| format!("{s:?} is not an IP address"))
}

/// `address/prefix`, as `net.ParseCIDR` reads it, the prefix in range for the family.
pub fn cidr(s: &str) -> Result<(), String> {
    let bad = || format!("{s:?} is not an address/prefix (CIDR)");
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let well_formed = !len.is_empty()
        && len.len() <= 3
        && len.bytes().all(|b| b.is_ascii_digit())
        && (len == "0" || !len.starts_with('0'));
    match len.parse::<u32>() {
        Ok(n) if well_formed && n <= max => Ok(()),
        _ => Err(bad()),
    }
}

/// A Linux interface name (`dev_valid_name`): 1–15 bytes, not `.`/`..`, no `/`, `:`, whitespace
/// or NUL. dockerd moves the interface of this name into a container.
pub fn ifname(s: &str) -> Result<(), String> {
    ifname_like(s, false)
}

/// An interface name prefix (`DstPrefix`): the kernel appends a number, so at most 14 bytes.
pub fn ifprefix(s: &str) -> Result<(), String> {
    ifname_like(s, true)
}

fn ifname_like(s: &str, prefix: bool) -> Result<(), String> {
    let max = if prefix { 14 } else { 15 };
    let ok = s.len() <= max
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace() || b >= 0x80);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid interface name{} (at most {max} ASCII bytes, no '/', ':' or space)",
            if prefix { " prefix" } else { "" }
        ))
    }
}

/// A 48-bit MAC, `aa:bb:cc:dd:ee:ff` or with `-` (the forms every `net.ParseMAC` reads alike).
pub fn mac(s: &str) -> Result<(), String> {
    let sep = if s.contains('-') { '-' } else { ':' };
    let parts: Vec<&str> = s.split(sep).collect();
    if parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Ok(())
    } else {
        Err(format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))
    }
}

/// RFC 3339 as Go's `time.Time.UnmarshalJSON` reads it: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`,
/// every field in range (the day for its month). dockerd fails the whole reply on a bad time.
pub fn rfc3339(s: &str) -> Result<(), String> {
    let bad = || format!("{s:?} is not an RFC 3339 time");
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let d = b.get(from..from + len)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0u32, |n, &c| n * 10 + u32::from(c - b'0')))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let (Some(year), Some(month), Some(day), Some(hour), Some(min), Some(sec)) = (
        num(0, 4),
        num(5, 2),
        num(8, 2),
        num(11, 2),
        num(14, 2),
        num(17, 2),
    ) else {
        return Err(bad());
    };
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return Err(bad());
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if day == 0 || day > days || hour > 23 || min > 59 || sec > 59 {
        return Err(bad());
    }
    let mut i = 19;
    if at(i, b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start || i - start > 9 {
            return Err(bad());
        }
    }
    let zone_ok = match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i + 6 == b.len()
                && at(i + 3, b':')
                && num(i + 1, 2).is_some_and(|h| h <= 23)
                && num(i + 4, 2).is_some_and(|m| m <= 59)
        }
        _ => false,
    };
    if zone_ok { Ok(()) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(ip("10.0.0.1").is_ok());
        assert!(ip("2001:db8::1").is_ok());
        assert!(ip("010.0.0.1").is_err(), "leading zeros (Go ≥1.17 refuses)");
        assert!(ip("fe80::1%eth0").is_err(), "zones");
        assert!(cidr("10.0.0.5/24").is_ok());
        assert!(cidr("2001:db8::/64").is_ok());
        assert!(cidr("0.0.0.0/0").is_ok());
        for bad in [
            "10.0.0.5",
            "10.0.0.5/33",
            "10.0.0.5/024",
            "10.0.0.5/+4",
            "/24",
            "x/8",
        ] {
            assert!(cidr(bad).is_err(), "{bad}");
        }
        assert!(cidr("::/129").is_err());
    }

    #[test]
    fn interface_names() {
        assert!(ifname("veth1234567890a").is_ok());
        for bad in ["", "veth1234567890ab", ".", "..", "a/b", "a:b", "a b", "é"] {
            assert!(ifname(bad).is_err() || bad.is_empty(), "{bad}");
        }
        assert!(ifprefix("eth").is_ok());
        assert!(ifprefix("abcdefghijklmno").is_err());
    }

    #[test]
    fn macs() {
        assert!(mac("02:42:ac:11:00:02").is_ok());
        assert!(mac("02-42-AC-11-00-02").is_ok());
        for bad in [
            "02:42:ac:11:00",
            "0242.ac11.0002",
            "02:42:ac:11:00:0g",
            "02:42-ac:11:00:02",
        ] {
            assert!(mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        for good in [
            "2024-02-29T23:59:59Z",
            "2024-01-01T00:00:00.123456789+01:00",
            "0001-01-01T00:00:00Z",
        ] {
            assert!(rfc3339(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01t00:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00Zjunk",
        ] {
            assert!(rfc3339(bad).is_err(), "{bad}");
        }
    }
}
