//! Device cgroup rules: parsed from the spec's OCI-shaped [`DeviceRule`]s, written to a v1
//! `devices` cgroup, and emulated exactly as the v1 kernel controller would hold them, so the v2
//! eBPF program (`bpf.rs`) enforces the same thing.
//!
//! The v1 semantics being emulated (`security/device_cgroup.c`): a cgroup has a default (allow or
//! deny) and a list of exceptions. Writing `a` resets both. A rule that agrees with the default
//! takes its access bits away from the *identical* exception (same type, major, minor, wildcards
//! included); one that disagrees adds an exception, merging access into an identical one. A request
//! is allowed, in default-deny, when one exception matches it and holds every requested bit; in
//! default-allow, when no exception matches it and shares any requested bit.
//!
//! Both paths start from deny-all (v1 writes `a` to `devices.deny` first, as the brief and runc
//! do), so a rule list that does not begin with an `a` rule means the same on v1 and v2.

use super::CgroupError;
use plugd_init::spec::DeviceRule;

/// `BPF_DEVCG_ACC_MKNOD`, also the v1 controller's `DEVCG_ACC_MKNOD`.
pub const ACC_MKNOD: u8 = 1;
/// `BPF_DEVCG_ACC_READ`.
pub const ACC_READ: u8 = 2;
/// `BPF_DEVCG_ACC_WRITE`.
pub const ACC_WRITE: u8 = 4;
/// `rwm`.
pub const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// A device type a request or exception can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DevType {
    /// `b`; `BPF_DEVCG_DEV_BLOCK` = 1.
    Block = 1,
    /// `c`; `BPF_DEVCG_DEV_CHAR` = 2.
    Char = 2,
}

impl DevType {
    fn letter(self) -> char {
        match self {
            DevType::Block => 'b',
            DevType::Char => 'c',
        }
    }
}

/// One rule, typed. `kind: None` is `a` (every device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Allow or deny.
    pub allow: bool,
    /// `None` for `a`.
    pub kind: Option<DevType>,
    /// `None` for `*`.
    pub major: Option<u32>,
    /// `None` for `*`.
    pub minor: Option<u32>,
    /// `ACC_*` bits.
    pub access: u8,
}

impl Rule {
    /// The spec's rules, typed. FIFO rules (`p`, which `DevicesFromPath` yields for a FIFO) are
    /// dropped: the device controller only knows block and character devices, and opening a FIFO
    /// needs no device permission. Negative numbers mean `*`, as in OCI.
    pub fn parse_all(rules: &[DeviceRule]) -> Result<Vec<Rule>, CgroupError> {
        let mut out = Vec::with_capacity(rules.len());
        for (index, r) in rules.iter().enumerate() {
            let bad = |message: String| CgroupError::Rule { index, message };
            let kind = match r.kind.as_deref() {
                None | Some("a") => None,
                Some("c") => Some(DevType::Char),
                Some("b") => Some(DevType::Block),
                Some("p") => continue,
                Some(other) => return Err(bad(format!("unknown device type {other:?}"))),
            };
            let number = |n: Option<i64>, what: &str| -> Result<Option<u32>, CgroupError> {
                match n {
                    None => Ok(None),
                    Some(n) if n < 0 => Ok(None),
                    // The eBPF program compares against a sign-extended 32-bit immediate.
                    Some(n) => i32::try_from(n)
                        .map(|n| Some(n as u32))
                        .map_err(|_| bad(format!("{what} {n} is out of range"))),
                }
            };
            let major = number(r.major, "major")?;
            let minor = number(r.minor, "minor")?;
            let mut access = 0;
            for c in r.access.chars() {
                access |= match c {
                    'r' => ACC_READ,
                    'w' => ACC_WRITE,
                    'm' => ACC_MKNOD,
                    _ => return Err(bad(format!("access {:?} is not a subset of rwm", r.access))),
                };
            }
            if access == 0 {
                return Err(bad("access is empty".to_owned()));
            }
            out.push(Rule {
                allow: r.allow,
                kind,
                major,
                minor,
                access,
            });
        }
        Ok(out)
    }

    /// The line the v1 controller takes: `c 1:3 rwm`, `a *:* rwm`.
    pub fn v1_line(&self) -> String {
        let kind = self.kind.map_or('a', DevType::letter);
        format!(
            "{kind} {}:{} {}",
            number(self.major),
            number(self.minor),
            access_string(self.access)
        )
    }
}

/// runc's `specconv.AllowedDevices`, which runc appends to every container's device rules, so
/// dockerd's plugins get them too (the probes saw `mknod` succeed for a denied node): mknod of any
/// node, null, random, full, tty, zero, urandom, every pty (136:*), ptmx (5:2) and tun (10:200).
pub fn runc_allowed() -> Vec<Rule> {
    let c = |major: Option<u32>, minor: Option<u32>, access: u8| Rule {
        allow: true,
        kind: Some(DevType::Char),
        major,
        minor,
        access,
    };
    vec![
        c(None, None, ACC_MKNOD),
        Rule {
            kind: Some(DevType::Block),
            ..c(None, None, ACC_MKNOD)
        },
        c(Some(1), Some(3), ACC_ALL),
        c(Some(1), Some(8), ACC_ALL),
        c(Some(1), Some(7), ACC_ALL),
        c(Some(5), Some(0), ACC_ALL),
        c(Some(1), Some(5), ACC_ALL),
        c(Some(1), Some(9), ACC_ALL),
        c(Some(136), None, ACC_ALL),
        c(Some(5), Some(2), ACC_ALL),
        c(Some(10), Some(200), ACC_ALL),
    ]
}

/// The v1 writes for these rules, in order: `(file, line)`; deny-all first.
pub fn v1_writes(rules: &[Rule]) -> Vec<(&'static str, String)> {
    let mut writes = vec![("devices.deny", "a".to_owned())];
    for r in rules {
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        writes.push((file, r.v1_line()));
    }
    writes
}

/// One exception of the emulated v1 state: always a block or character device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    /// Block or char.
    pub kind: DevType,
    /// `None` for `*`.
    pub major: Option<u32>,
    /// `None` for `*`.
    pub minor: Option<u32>,
    /// `ACC_*` bits, never 0.
    pub access: u8,
}

impl Exception {
    fn same_device(&self, other: &Exception) -> bool {
        (self.kind, self.major, self.minor) == (other.kind, other.major, other.minor)
    }

    fn matches(&self, kind: DevType, major: u32, minor: u32) -> bool {
        self.kind == kind
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
    }
}

/// What a v1 devices cgroup holds after the rules were written to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// The default for devices no exception names.
    pub default_allow: bool,
    /// In insertion order, as the kernel keeps them.
    pub exceptions: Vec<Exception>,
}

impl DeviceState {
    /// The state after `devices.deny a` and then each rule in order (see the module docs).
    pub fn from_rules(rules: &[Rule]) -> DeviceState {
        let mut state = DeviceState {
            default_allow: false,
            exceptions: Vec::new(),
        };
        for r in rules {
            let Some(kind) = r.kind else {
                state.default_allow = r.allow;
                state.exceptions.clear();
                continue;
            };
            let ex = Exception {
                kind,
                major: r.major,
                minor: r.minor,
                access: r.access,
            };
            if r.allow == state.default_allow {
                for e in state.exceptions.iter_mut().filter(|e| e.same_device(&ex)) {
                    e.access &= !ex.access;
                }
                state.exceptions.retain(|e| e.access != 0);
            } else if let Some(e) = state.exceptions.iter_mut().find(|e| e.same_device(&ex)) {
                e.access |= ex.access;
            } else {
                state.exceptions.push(ex);
            }
        }
        state
    }

    /// The kernel's answer for one request (`access`: `ACC_*` bits).
    pub fn allows(&self, kind: DevType, major: u32, minor: u32, access: u8) -> bool {
        let mut matching = self
            .exceptions
            .iter()
            .filter(|e| e.matches(kind, major, minor));
        if self.default_allow {
            !matching.any(|e| e.access & access != 0)
        } else {
            matching.any(|e| access & !e.access == 0)
        }
    }

    /// What the v1 `devices.list` file shows for this state (one line per exception in
    /// default-deny; `a *:* rwm` alone in default-allow).
    pub fn v1_list(&self) -> Vec<String> {
        if self.default_allow {
            return vec!["a *:* rwm".to_owned()];
        }
        self.exceptions
            .iter()
            .map(|e| {
                format!(
                    "{} {}:{} {}",
                    e.kind.letter(),
                    number(e.major),
                    number(e.minor),
                    access_string(e.access)
                )
            })
            .collect()
    }
}

fn number(n: Option<u32>) -> String {
    n.map_or_else(|| "*".to_owned(), |n| n.to_string())
}

fn access_string(access: u8) -> String {
    [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')]
        .iter()
        .filter(|(bit, _)| access & bit != 0)
        .map(|(_, c)| c)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn rule(allow: bool, kind: Option<&str>, major: i64, minor: i64, access: &str) -> DeviceRule {
        DeviceRule {
            allow,
            kind: kind.map(str::to_owned),
            major: (major != -1).then_some(major),
            minor: (minor != -1).then_some(minor),
            access: access.to_owned(),
        }
    }

    /// dockerd's default rules plus an allowed /dev/fuse (the device-fuse probe).
    pub(crate) fn dockerd_rules_with_fuse() -> Vec<DeviceRule> {
        vec![
            rule(false, None, -1, -1, "rwm"),
            rule(true, Some("c"), 1, 5, "rwm"),
            rule(true, Some("c"), 1, 3, "rwm"),
            rule(true, Some("c"), 1, 9, "rwm"),
            rule(true, Some("c"), 1, 8, "rwm"),
            rule(true, Some("c"), 5, 0, "rwm"),
            rule(true, Some("c"), 5, 1, "rwm"),
            rule(false, Some("c"), 10, 229, "rwm"),
            rule(true, Some("c"), 10, 229, "rwm"),
        ]
    }

    #[test]
    fn v1_writes_start_with_deny_all_and_keep_rule_order() {
        let rules = Rule::parse_all(&dockerd_rules_with_fuse()).unwrap();
        let writes = v1_writes(&rules);
        let lines: Vec<String> = writes.iter().map(|(f, l)| format!("{f}: {l}")).collect();
        assert_eq!(
            lines,
            [
                "devices.deny: a",
                "devices.deny: a *:* rwm",
                "devices.allow: c 1:5 rwm",
                "devices.allow: c 1:3 rwm",
                "devices.allow: c 1:9 rwm",
                "devices.allow: c 1:8 rwm",
                "devices.allow: c 5:0 rwm",
                "devices.allow: c 5:1 rwm",
                "devices.deny: c 10:229 rwm",
                "devices.allow: c 10:229 rwm",
            ]
        );
        let all = Rule::parse_all(&[rule(true, None, -1, -1, "rwm")]).unwrap();
        assert_eq!(
            v1_writes(&all)[1],
            ("devices.allow", "a *:* rwm".to_owned())
        );
    }

    #[test]
    fn emulated_state_of_dockerd_rules() {
        let rules = Rule::parse_all(&dockerd_rules_with_fuse()).unwrap();
        let state = DeviceState::from_rules(&rules);
        assert_eq!(
            state.v1_list(),
            [
                "c 1:5 rwm",
                "c 1:3 rwm",
                "c 1:9 rwm",
                "c 1:8 rwm",
                "c 5:0 rwm",
                "c 5:1 rwm",
                "c 10:229 rwm"
            ]
        );
        assert!(state.allows(DevType::Char, 10, 229, ACC_READ | ACC_WRITE));
        assert!(!state.allows(DevType::Block, 1, 3, ACC_READ));
        assert!(!state.allows(DevType::Char, 7, 0, ACC_READ));

        // Without the fuse allow, the deny leaves nothing behind.
        let state = DeviceState::from_rules(&rules[..8]);
        assert_eq!(state.exceptions.len(), 6);
        assert!(!state.allows(DevType::Char, 10, 229, ACC_READ));
    }

    #[test]
    fn emulation_follows_the_kernel_corner_cases() {
        let parse = |rs: &[DeviceRule]| DeviceState::from_rules(&Rule::parse_all(rs).unwrap());
        // Access merges into an identical exception, and a disagreeing rule subtracts bits.
        let s = parse(&[
            rule(true, Some("c"), 1, 3, "r"),
            rule(true, Some("c"), 1, 3, "w"),
            rule(false, Some("c"), 1, 3, "r"),
        ]);
        assert_eq!(s.v1_list(), ["c 1:3 w"]);
        // A request must fit one exception whole: r from one and w from another is not rw.
        let s = parse(&[
            rule(true, Some("c"), 1, -1, "r"),
            rule(true, Some("c"), 1, 3, "w"),
        ]);
        assert!(s.allows(DevType::Char, 1, 3, ACC_WRITE));
        assert!(s.allows(DevType::Char, 1, 9, ACC_READ));
        assert!(!s.allows(DevType::Char, 1, 3, ACC_READ | ACC_WRITE));
        // A deny only removes the identical exception, not a wildcard one covering it.
        let s = parse(&[
            rule(true, Some("c"), 1, -1, "rwm"),
            rule(false, Some("c"), 1, 3, "rwm"),
        ]);
        assert!(s.allows(DevType::Char, 1, 3, ACC_READ));
        // Default-allow: a deny exception blocks on any shared bit; `a` resets everything.
        let s = parse(&[
            rule(true, None, -1, -1, "rwm"),
            rule(false, Some("b"), 7, -1, "w"),
        ]);
        assert!(s.default_allow);
        assert!(!s.allows(DevType::Block, 7, 0, ACC_READ | ACC_WRITE));
        assert!(s.allows(DevType::Block, 7, 0, ACC_READ));
        assert!(s.allows(DevType::Char, 7, 0, ACC_WRITE));
        assert_eq!(s.v1_list(), ["a *:* rwm"]);
        let s = parse(&[
            rule(true, None, -1, -1, "rwm"),
            rule(false, None, -1, -1, "rwm"),
        ]);
        assert!(!s.default_allow && s.exceptions.is_empty());
    }

    #[test]
    fn parse_rejects_what_the_controller_would() {
        let err = |r: DeviceRule| Rule::parse_all(&[r]).unwrap_err().to_string();
        assert_eq!(
            err(rule(true, Some("x"), 1, 1, "rwm")),
            "device rule 0: unknown device type \"x\""
        );
        assert!(err(rule(true, Some("c"), 1, 1, "rwx")).contains("not a subset of rwm"));
        assert!(err(rule(true, Some("c"), 1, 1, "")).contains("empty"));
        assert!(err(rule(true, Some("c"), 1 << 40, 1, "r")).contains("out of range"));
        // FIFOs have no device cgroup rule.
        assert!(
            Rule::parse_all(&[rule(true, Some("p"), 0, 0, "rwm")])
                .unwrap()
                .is_empty()
        );
        let neg = Rule::parse_all(&[rule(true, Some("c"), -1, -1, "m")]).unwrap();
        assert_eq!(neg[0].v1_line(), "c *:* m");
    }
}
