//! Test-only weakenings of a sandbox, so the tests can show that `plugd check` reports each as a
//! mismatch in the row that names it. Read once, by the daemon, from its hidden `--test-fault` flag or
//! `PLUGD_TEST_FAULT` (a comma-separated list); plugd logs a warning for each at start. Nothing else sets them.
//!
//! They are runtime switches rather than a cargo feature so CI builds plugd once (one test
//! binary, one daemon): only root starts plugd, and root needs no switch to weaken a sandbox.

/// The environment variable the daemon reads.
pub const ENV: &str = "PLUGD_TEST_FAULT";

/// One deliberate weakening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestFault {
    /// `native-bounding-cap`: `CAP_SYS_ADMIN` left in the bounding set of every native sandbox,
    /// as if the capability step forgot to drop it. The plugin runs as root, so its `execve`
    /// makes it permitted and effective too: the probe finds it usable.
    NativeBoundingCap,
    /// `native-device-rule`: declared devices get their node but no device-cgroup allow rule.
    NativeDeviceRule,
    /// `wasm-wide-preopen`: each bind mount of a wasm plugin is preopened from its source's parent
    /// directory instead of the source.
    WasmWidePreopen,
}

impl TestFault {
    /// Every fault, with its name.
    pub const ALL: [(TestFault, &'static str); 3] = [
        (TestFault::NativeBoundingCap, "native-bounding-cap"),
        (TestFault::NativeDeviceRule, "native-device-rule"),
        (TestFault::WasmWidePreopen, "wasm-wide-preopen"),
    ];

    /// The faults a `PLUGD_TEST_FAULT` value names; an unknown name is an error naming it.
    pub fn parse_list(value: &str) -> Result<Vec<TestFault>, String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|name| {
                Self::ALL
                    .iter()
                    .find(|(_, n)| *n == name)
                    .map(|(f, _)| *f)
                    .ok_or_else(|| {
                        let known: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
                        format!(
                            "{ENV}: unknown fault {name:?} (known: {})",
                            known.join(", ")
                        )
                    })
            })
            .collect()
    }

    /// The name `PLUGD_TEST_FAULT` uses.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(f, _)| *f == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_unknown_names_are_named() {
        assert_eq!(
            TestFault::parse_list("native-bounding-cap, wasm-wide-preopen").unwrap(),
            [TestFault::NativeBoundingCap, TestFault::WasmWidePreopen]
        );
        assert_eq!(TestFault::parse_list("").unwrap(), []);
        let e = TestFault::parse_list("nope").unwrap_err();
        assert!(
            e.contains("\"nope\"") && e.contains("native-device-rule"),
            "{e}"
        );
    }
}
