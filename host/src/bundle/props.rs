//! Property test: any tar stream, however hostile, either unpacks inside its staging directory or
//! is refused leaving nothing behind; never a panic, never a write outside, never a device node,
//! FIFO or set-id file in the rootfs. Entries are drawn from names and link targets that try to
//! leave the tree (`..`, absolute paths, links through links) and every entry type.
//! `PROPTEST_CASES` sets the case count (docs/reliability.md records a long run).

use super::tests::{Tar, TempDir};
use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use tar::EntryType;

const NAMES: &[&str] = &[
    "config.json",
    "rootfs/",
    "rootfs/a",
    "rootfs/a/b",
    "rootfs/l",
    "rootfs/l/x",
    "rootfs/../escape",
    "rootfs/a/../../escape",
    "/abs",
    "rootfs//a//c",
    "other/file",
    "rootfs/dev",
    "../escape",
    "rootfs/.",
];
const TARGETS: &[&str] = &[
    "",
    "a",
    "/",
    "/etc",
    "../..",
    "rootfs/a",
    "rootfs/a/b",
    "l/x",
    "/proc/self/root",
];

fn entry() -> impl Strategy<Value = (u8, &'static str, &'static str, Vec<u8>, u32)> {
    (
        0u8..8,
        prop::sample::select(NAMES),
        prop::sample::select(TARGETS),
        prop::collection::vec(any::<u8>(), 0..16),
        prop::sample::select(&[0o644u32, 0o4755, 0o2755, 0o000, 0o777][..]),
    )
}

fn kind(n: u8) -> EntryType {
    match n {
        0 => EntryType::Regular,
        1 => EntryType::Directory,
        2 => EntryType::Symlink,
        3 => EntryType::Link,
        4 => EntryType::Char,
        5 => EntryType::Block,
        6 => EntryType::Fifo,
        _ => EntryType::Regular,
    }
}

#[test]
fn any_tar_unpacks_inside_or_leaves_nothing() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::collection::vec(entry(), 0..10),
        any::<bool>(),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(entries, truncate, compress)| {
            let dir = TempDir::new();
            let dest = dir.dest();
            let mut t = Tar::new();
            for (k, name, target, data, mode) in &entries {
                let data: &[u8] = if matches!(kind(*k), EntryType::Regular) {
                    data
                } else {
                    b""
                };
                t.raw(kind(*k), name, target, data, *mode);
            }
            let mut bytes = t.finish();
            if truncate {
                bytes.truncate(bytes.len() / 2);
            }
            if compress {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut gz, &bytes).unwrap();
                bytes = gz.finish().unwrap();
            }
            let parent = dest.parent().unwrap().to_path_buf();
            let result = unpack(&bytes[..], &dest, &Limits::default());
            // Nothing beside the staging directory, whatever happened.
            let beside: Vec<_> = fs::read_dir(&parent)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| n != "staging")
                .collect();
            prop_assert!(beside.is_empty(), "written outside: {:?}", beside);
            match result {
                Err(_) => prop_assert!(!dest.exists(), "a refused bundle left its staging dir"),
                Ok(u) => {
                    let mut stack = vec![u.rootfs.clone()];
                    while let Some(d) = stack.pop() {
                        for e in fs::read_dir(&d).unwrap().flatten() {
                            let m = fs::symlink_metadata(e.path()).unwrap();
                            let ft = m.file_type();
                            prop_assert!(
                                !(ft.is_block_device()
                                    || ft.is_char_device()
                                    || ft.is_fifo()
                                    || ft.is_socket()),
                                "special file {:?}",
                                e.path()
                            );
                            prop_assert!(
                                m.mode() & 0o6000 == 0 || ft.is_dir(),
                                "set-id {:?}",
                                e.path()
                            );
                            if ft.is_dir() {
                                stack.push(e.path());
                            }
                        }
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}
