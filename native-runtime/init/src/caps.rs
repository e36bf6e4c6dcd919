//! Capability names → bit masks, with runc's rules: only exact `CAP_*` upper-case names count
//! (dockerd passes a plugin's strings raw, so `sys_admin` silently grants nothing under Docker
//! either); unknown names and capabilities the kernel lacks (above `cap_last_cap`) are dropped
//! with a warning instead of failing the start.

use crate::spec::Capabilities;

/// Capability names by number (the kernel's order): the same table plugd validates configs with,
/// so a name accepted at create is a name the sandbox can grant.
pub use plugd_core::config::CAPABILITIES as NAMES;

/// The five sets as masks, already limited to what the running kernel knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapPlan {
    /// Bounding set: for a root process with no file caps, the real limit after exec.
    pub bounding: u64,
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
    /// Ambient set.
    pub ambient: u64,
    /// Highest capability number the kernel knows (`/proc/sys/kernel/cap_last_cap`).
    pub last_cap: u8,
}

/// The number of an exact capability name, if the table has it.
pub fn number(name: &str) -> Option<u8> {
    NAMES.iter().position(|n| *n == name).map(|i| i as u8)
}

/// One set's mask; each ignored name adds a warning.
fn mask(set: &str, names: &[String], last_cap: u8, warnings: &mut Vec<String>) -> u64 {
    let mut m = 0u64;
    for name in names {
        match number(name) {
            Some(n) if n <= last_cap => m |= 1 << n,
            Some(_) => warnings.push(format!(
                "capability {name} ({set}) is not supported by this kernel: ignored"
            )),
            None => warnings.push(format!(
                "unknown capability {name:?} ({set}): ignored, as runc does (names are exact CAP_* upper case)"
            )),
        }
    }
    m
}

impl CapPlan {
    /// Builds the masks from the spec's names; returns the plan and the warnings to log.
    pub fn new(caps: &Capabilities, last_cap: u8) -> (CapPlan, Vec<String>) {
        let mut w = Vec::new();
        let plan = CapPlan {
            bounding: mask("bounding", &caps.bounding, last_cap, &mut w),
            effective: mask("effective", &caps.effective, last_cap, &mut w),
            permitted: mask("permitted", &caps.permitted, last_cap, &mut w),
            inheritable: mask("inheritable", &caps.inheritable, last_cap, &mut w),
            ambient: mask("ambient", &caps.ambient, last_cap, &mut w),
            last_cap,
        };
        (plan, w)
    }
}

/// Parses `/proc/sys/kernel/cap_last_cap`. A kernel newer than [`NAMES`] may report more; those
/// capabilities are never in a mask, so they are dropped from the bounding set like any other.
pub fn parse_last_cap(text: &str) -> Option<u8> {
    let n: u8 = text.trim().parse().ok()?;
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    use crate::spec::DEFAULT_CAPABILITIES as DEFAULT_14;

    #[test]
    fn dockerd_default_set_is_a80425fb() {
        let caps = Capabilities {
            bounding: names(&DEFAULT_14),
            ..Default::default()
        };
        let (plan, w) = CapPlan::new(&caps, 40);
        assert_eq!(plan.bounding, 0xa804_25fb);
        assert!(w.is_empty());
    }

    #[test]
    fn sys_admin_adds_bit_21() {
        let mut v = names(&DEFAULT_14);
        v.push("CAP_SYS_ADMIN".into());
        let caps = Capabilities {
            bounding: v,
            inheritable: names(&["CAP_SYS_ADMIN"]),
            ..Default::default()
        };
        let (plan, _) = CapPlan::new(&caps, 40);
        assert_eq!(plan.bounding, 0xa824_25fb);
        assert_eq!(plan.inheritable, 0x20_0000);
    }

    #[test]
    fn inexact_and_unknown_names_are_ignored_with_a_warning() {
        let caps = Capabilities {
            bounding: names(&["sys_admin", "SYS_ADMIN", "CAP_NOPE", "CAP_KILL"]),
            ..Default::default()
        };
        let (plan, w) = CapPlan::new(&caps, 40);
        assert_eq!(plan.bounding, 1 << 5);
        assert_eq!(w.len(), 3, "{w:?}");
    }

    #[test]
    fn caps_above_cap_last_cap_are_dropped() {
        let caps = Capabilities {
            bounding: names(&["CAP_BPF", "CAP_PERFMON", "CAP_KILL"]),
            ..Default::default()
        };
        let (plan, w) = CapPlan::new(&caps, 38);
        assert_eq!(plan.bounding, (1 << 38) | (1 << 5));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("CAP_BPF"));
    }

    #[test]
    fn names_match_their_numbers() {
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(parse_last_cap("40\n"), Some(40));
    }
}
