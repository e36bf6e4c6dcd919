//! Property test: any tar stream, however hostile, either unpacks inside its staging directory or
//! is refused leaving nothing behind; never a panic, never a write outside, never a device node,
//! FIFO or set-id file in the rootfs. Entries are drawn from names and link targets that try to
//! leave the tree (`..`, absolute paths, links through links) and every entry type.
//! The same for a stack of image layers, with whiteouts of every kind among the names.
//! `PROPTEST_CASES` sets the case count (docs/reliability.md records a long run).

use super::tests::{Tar, TempDir};
use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
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
    "l",
    "a/b/../..",
];

fn entry(names: &'static [&'static str]) -> impl Strategy<Value = Generated> {
    (
        0u8..8,
        prop::sample::select(names),
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

/// A generated entry: kind, name, link target, data, mode.
type Generated = (u8, &'static str, &'static str, Vec<u8>, u32);

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// The archive for `entries`, cut in half and gzipped if asked.
fn archive(entries: &[Generated], truncate: bool, compress: bool) -> Vec<u8> {
    let mut t = Tar::new();
    for (k, name, target, data, mode) in entries {
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
    bytes
}

/// Nothing beside the staging directory `dest`, and after a refusal not even `dest`; after success
/// no device node, FIFO, socket or set-id file in `rootfs`.
fn check(dest: &Path, rootfs: Option<&Path>) -> Result<(), TestCaseError> {
    let parent = dest.parent().unwrap();
    let beside: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "staging")
        .collect();
    prop_assert!(beside.is_empty(), "written outside: {:?}", beside);
    let Some(rootfs) = rootfs else {
        prop_assert!(!dest.exists(), "a refused archive left its staging dir");
        return Ok(());
    };
    let mut stack = vec![rootfs.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let m = fs::symlink_metadata(e.path()).unwrap();
            let ft = m.file_type();
            prop_assert!(
                !(ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket()),
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
    Ok(())
}

#[test]
fn any_tar_unpacks_inside_or_leaves_nothing() {
    let strategy = (
        prop::collection::vec(entry(NAMES), 0..10),
        any::<bool>(),
        any::<bool>(),
    );
    runner()
        .run(&strategy, |(entries, truncate, compress)| {
            let dir = TempDir::new();
            let dest = dir.dest();
            let bytes = archive(&entries, truncate, compress);
            match unpack(&bytes[..], &dest, &Limits::default()) {
                Ok(u) => check(&dest, Some(&u.rootfs)),
                Err(_) => check(&dest, None),
            }
        })
        .unwrap();
}

/// Layer names: the same escapes, rootfs-relative, and whiteouts of every kind.
const LAYER_NAMES: &[&str] = &[
    "./",
    "a",
    "a/",
    "a/b",
    "l",
    "l/x",
    "../escape",
    "a/../../escape",
    "/abs",
    ".wh.a",
    ".wh.l",
    "a/.wh.b",
    ".wh..wh..opq",
    "a/.wh..wh..opq",
    "l/.wh..wh..opq",
    "l/.wh.x",
    ".wh...",
    ".wh..wh.plnk",
    ".wh.a/b",
];

#[test]
fn any_layers_apply_inside_or_leave_nothing() {
    let layer = (
        prop::collection::vec(entry(LAYER_NAMES), 0..8),
        any::<bool>(),
        any::<bool>(),
    );
    let strategy = prop::collection::vec(layer, 1..4);
    runner()
        .run(&strategy, |layers| {
            let dir = TempDir::new();
            let dest = dir.dest();
            let mut unpacker = LayerUnpacker::new(&dest, &Limits::default()).unwrap();
            for (entries, truncate, compress) in &layers {
                let bytes = archive(entries, *truncate, *compress);
                if unpacker.apply(&bytes[..]).is_err() {
                    return check(&dest, None);
                }
            }
            match unpacker.finish() {
                Ok(rootfs) => check(&dest, Some(&rootfs)),
                Err(_) => check(&dest, None),
            }
        })
        .unwrap();
}
