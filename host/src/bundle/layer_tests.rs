//! Layers of a pull (`LayerUnpacker`), whiteouts, the malicious corpus, and `write_layer`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::corpus;
use super::tests::{Tar, TempDir, gzip, sha256};
use super::*;

/// A fresh unpacker in `tmp`.
fn unpacker(tmp: &TempDir, limits: &Limits) -> (LayerUnpacker, PathBuf) {
    let dest = tmp.dest();
    (LayerUnpacker::new(&dest, limits).unwrap(), dest)
}

/// Applies `layers` in order and finishes; panics on any refusal.
fn apply_all(tmp: &TempDir, layers: &[Vec<u8>]) -> PathBuf {
    let (mut u, _) = unpacker(tmp, &Limits::default());
    for layer in layers {
        u.apply(&layer[..]).unwrap();
    }
    u.finish().unwrap()
}

/// Applies `layers` in order, expecting the last to be refused; checks the refusal names its layer
/// and `dest` is gone. Returns the refusal itself.
fn refused_at(layers: &[Vec<u8>], limits: &Limits) -> BundleError {
    let tmp = TempDir::new();
    let (mut u, dest) = unpacker(&tmp, limits);
    let (last, earlier) = layers.split_last().unwrap();
    for layer in earlier {
        u.apply(&layer[..]).unwrap();
    }
    let err = u.apply(&last[..]).expect_err("layer should be refused");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("layer {}: ", layers.len())),
        "{message}"
    );
    assert!(!dest.exists(), "dest left behind after: {message}");
    assert!(matches!(u.apply(&last[..]), Err(BundleError::Abandoned)));
    match err {
        BundleError::Layer { source, .. } => *source,
        other => panic!("not wrapped in its layer: {other}"),
    }
}

fn layer(build: impl FnOnce(&mut Tar)) -> Vec<u8> {
    let mut t = Tar::new();
    build(&mut t);
    gzip(&t.finish())
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn exists(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

#[test]
fn layers_stack_and_return_diff_ids() {
    let mut first = Tar::new();
    first
        .dir("./", 0o755)
        .dir("./bin/", 0o755)
        .file("./bin/tool", b"v1", 0o755)
        .file("etc/conf", b"a", 0o644)
        .dir("secret/", 0o500)
        .file("secret/key", b"k", 0o400);
    let first = first.finish();
    let mut second = Tar::new();
    second
        .file("bin/tool", b"v2", 0o6755)
        .hardlink("bin/tool2", "bin/tool")
        .hardlink("etc/conf2", "etc/conf")
        .symlink("etc/mtab", "/proc/mounts");
    let second = second.finish();

    let tmp = TempDir::new();
    let (mut u, dest) = unpacker(&tmp, &Limits::default());
    assert_eq!(u.apply(&gzip(&first)[..]).unwrap(), sha256(&first));
    assert_eq!(u.apply(&second[..]).unwrap(), sha256(&second));
    let root = u.finish().unwrap();
    assert_eq!(root, dest.join("rootfs"));
    assert_eq!(mode(&root), 0o755);
    assert_eq!(fs::read(root.join("bin/tool")).unwrap(), b"v2");
    assert_eq!(mode(&root.join("bin/tool")), 0o755, "set-id bits stripped");
    let ino = |p: &str| fs::metadata(root.join(p)).unwrap().ino();
    assert_eq!(ino("bin/tool"), ino("bin/tool2"));
    assert_eq!(
        ino("etc/conf"),
        ino("etc/conf2"),
        "hardlink to an earlier layer"
    );
    assert_eq!(
        fs::read_link(root.join("etc/mtab")).unwrap(),
        Path::new("/proc/mounts")
    );
    assert_eq!(mode(&root.join("secret")), 0o500, "applied at finish");
    assert_eq!(fs::read(root.join("secret/key")).unwrap(), b"k");
}

#[test]
fn whiteouts_remove_what_earlier_layers_left() {
    let lower = layer(|t| {
        t.file("a/x", b"x", 0o644)
            .file("a/y", b"y", 0o644)
            .file("b", b"b", 0o644)
            .dir("d/", 0o700)
            .file("d/old", b"o", 0o644)
            .dir("d/sub/", 0o755)
            .file("d/sub/old", b"o", 0o644)
            .dir("gone/", 0o500)
            .file("gone/deep/er/file", b"f", 0o644)
            .symlink("l", "/etc")
            .file("opq/lower", b"l", 0o644);
    });
    let upper = layer(|t| {
        t.file(".wh.b", b"", 0o644)
            .file("a/.wh.x", b"", 0o644)
            .file("d/new", b"n", 0o644)
            .file("d/sub/new", b"n", 0o644)
            .file("d/.wh..wh..opq", b"", 0o644)
            .file("d/later", b"l", 0o644)
            .file("./.wh.gone", b"", 0o644)
            .file(".wh.l", b"", 0o644)
            .file(".wh.never-existed", b"", 0o644)
            .file("missing/dir/.wh.x", b"", 0o644)
            .file("opq/.wh..wh..opq", b"", 0o644);
    });
    let tmp = TempDir::new();
    let root = apply_all(&tmp, &[lower, upper]);
    assert!(!exists(&root.join("b")));
    assert!(!exists(&root.join("a/x")));
    assert_eq!(fs::read(root.join("a/y")).unwrap(), b"y");
    assert!(!exists(&root.join("d/old")), "opaque removes lower entries");
    assert!(!exists(&root.join("d/sub/old")), "below kept dirs too");
    for kept in ["d/new", "d/sub/new", "d/later"] {
        assert!(
            exists(&root.join(kept)),
            "{kept}: this layer's entries stay"
        );
    }
    assert_eq!(mode(&root.join("d")), 0o700);
    assert!(
        !exists(&root.join("gone")),
        "a whole tree, its mode forgotten"
    );
    assert!(!exists(&root.join("l")), "the symlink itself");
    assert!(Path::new("/etc/passwd").exists());
    assert!(!exists(&root.join("missing")), "a whiteout creates nothing");
    assert!(exists(&root.join("opq")) && !exists(&root.join("opq/lower")));
    for marker in [".wh.b", "a/.wh.x", "d/.wh..wh..opq"] {
        assert!(!exists(&root.join(marker)), "{marker} is not written");
    }
}

#[test]
fn whiteouts_never_touch_their_own_layer() {
    let only = layer(|t| {
        t.file("f", b"f", 0o644)
            .file(".wh.f", b"", 0o644)
            .file("d/x", b"x", 0o644)
            .file("d/.wh..wh..opq", b"", 0o644)
            .file(".wh.d", b"", 0o644);
    });
    let tmp = TempDir::new();
    let root = apply_all(&tmp, &[only]);
    assert!(exists(&root.join("f")));
    assert!(exists(&root.join("d/x")));
}

#[test]
fn whiteout_then_recreate_takes_the_new_mode() {
    let lower = layer(|t| {
        t.dir("d/", 0o500).file("d/old", b"o", 0o644);
    });
    let upper = layer(|t| {
        t.file(".wh.d", b"", 0o644)
            .dir("d/", 0o750)
            .file("d/new", b"n", 0o644);
    });
    let tmp = TempDir::new();
    let root = apply_all(&tmp, &[lower, upper]);
    assert_eq!(mode(&root.join("d")), 0o750);
    assert!(!exists(&root.join("d/old")));
    assert!(exists(&root.join("d/new")));
}

#[test]
fn a_layer_may_replace_an_earlier_layers_directory() {
    let lower = layer(|t| {
        t.dir("d/", 0o500)
            .file("d/x", b"x", 0o644)
            .dir("e/", 0o755)
            .dir("f/", 0o755);
    });
    let upper = layer(|t| {
        t.file("d", b"now a file", 0o644)
            .symlink("e", "/etc")
            .file("g", b"g", 0o644)
            .hardlink("f", "g");
    });
    let tmp = TempDir::new();
    let root = apply_all(&tmp, &[lower, upper]);
    assert_eq!(fs::read(root.join("d")).unwrap(), b"now a file");
    assert_eq!(
        mode(&root.join("d")),
        0o644,
        "the old directory's mode is forgotten"
    );
    assert_eq!(fs::read_link(root.join("e")).unwrap(), Path::new("/etc"));
    assert_eq!(fs::read(root.join("f")).unwrap(), b"g");

    // Within one layer, as in a bundle, a directory is never replaced.
    let same = layer(|t| _ = t.dir("d/", 0o755).file("d", b"x", 0o644));
    let err = refused_at(&[same], &Limits::default());
    assert!(
        matches!(err, BundleError::ReplacesDirectory { .. }),
        "{err}"
    );
    let implied = layer(|t| _ = t.file("d/x", b"x", 0o644).file("d", b"x", 0o644));
    let lower = layer(|t| _ = t.dir("d/", 0o755));
    let err = refused_at(&[lower, implied], &Limits::default());
    assert!(
        matches!(err, BundleError::ReplacesDirectory { .. }),
        "{err}"
    );
}

#[test]
fn a_symlink_from_an_earlier_layer_is_never_written_through() {
    let outside = TempDir::new();
    let target = outside.path().to_str().unwrap().to_owned();
    let lower = layer(|t| {
        t.symlink("a", &target);
    });
    for upper in [
        layer(|t| _ = t.file("a/x", b"pwned", 0o644)),
        layer(|t| _ = t.file("a/.wh.x", b"", 0o644)),
        layer(|t| _ = t.file("a/.wh..wh..opq", b"", 0o644)),
    ] {
        fs::write(outside.path().join("x"), b"keep").unwrap();
        let err = refused_at(&[lower.clone(), upper], &Limits::default());
        assert!(
            matches!(&err, BundleError::ThroughSymlink { symlink, .. } if symlink == "a"),
            "{err}"
        );
        assert_eq!(fs::read(outside.path().join("x")).unwrap(), b"keep");
    }
}

#[test]
fn hardlinks_to_whited_out_files_are_refused() {
    let lower = layer(|t| _ = t.file("f", b"f", 0o644));
    let upper = layer(|t| _ = t.file(".wh.f", b"", 0o644).hardlink("h", "f"));
    let err = refused_at(&[lower, upper], &Limits::default());
    assert!(
        err.to_string()
            .contains("is not a regular file unpacked earlier in this or an earlier layer"),
        "{err}"
    );
}

#[test]
fn caps_are_totals_over_all_layers() {
    let limits = Limits {
        max_body_bytes: 8 * 1024,
        ..Limits::default()
    };
    let mut t = Tar::new();
    t.file("f", &[1; 2048], 0o644);
    let plain = t.finish();
    assert!(plain.len() < 4096);
    let err = refused_at(&[plain.clone(), plain.clone(), plain.clone()], &limits);
    assert!(
        matches!(err, BundleError::Oversize { limit: 8192, .. }),
        "{err}"
    );

    let limits = Limits {
        max_entries: 3,
        ..Limits::default()
    };
    let two = layer(|t| _ = t.file("a", b"", 0o644).file("b", b"", 0o644));
    let err = refused_at(&[two.clone(), two], &limits);
    assert!(
        matches!(err, BundleError::TooManyEntries { limit: 3, .. }),
        "{err}"
    );
}

#[test]
fn dropping_an_unfinished_unpacker_removes_dest() {
    let tmp = TempDir::new();
    let (mut u, dest) = unpacker(&tmp, &Limits::default());
    u.apply(&layer(|t| _ = t.file("f", b"f", 0o644))[..])
        .unwrap();
    assert!(dest.join("rootfs/f").exists());
    drop(u);
    assert!(!dest.exists());
    // An existing dest is never touched.
    fs::create_dir(&dest).unwrap();
    assert!(matches!(
        LayerUnpacker::new(&dest, &Limits::default()),
        Err(BundleError::DestExists(_))
    ));
    assert!(dest.exists());
}

#[test]
fn layer_unpacker_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<LayerUnpacker>();
}

/// The refusal each corpus case must meet.
fn expected(case: &str, err: &BundleError) -> bool {
    use BundleError as E;
    match case {
        "dotdot" | "dotdot-inside" | "whiteout-dotdot" | "whiteout-parent" => {
            matches!(err, E::ParentDirName { .. })
        }
        "absolute" | "absolute-etc" => matches!(err, E::AbsoluteName { .. }),
        "symlink-absolute-then-write"
        | "symlink-relative-then-write"
        | "symlink-then-directory"
        | "symlink-then-symlink"
        | "whiteout-through-symlink"
        | "opaque-through-symlink" => {
            matches!(err, E::ThroughSymlink { symlink, .. } if symlink == "a")
        }
        "hardlink-absolute" | "hardlink-dotdot" => {
            matches!(err, E::HardlinkOutsideRootfs { .. })
        }
        "hardlink-through-symlink"
        | "hardlink-to-symlink"
        | "hardlink-before-target"
        | "hardlink-to-directory" => matches!(err, E::HardlinkTarget { .. }),
        "character-device" => matches!(
            err,
            E::SpecialFile {
                kind: "character device",
                ..
            }
        ),
        "block-device" => matches!(
            err,
            E::SpecialFile {
                kind: "block device",
                ..
            }
        ),
        "fifo" => matches!(err, E::SpecialFile { kind: "fifo", .. }),
        "whiteout-empty" | "whiteout-dot" | "whiteout-reserved" | "whiteout-as-directory" => {
            matches!(err, E::Whiteout { .. })
        }
        "path-bomb" => matches!(err, E::NameTooLong { .. }),
        "truncated-data" => matches!(err, E::TruncatedEntry { .. }),
        "truncated-no-end-marker" => matches!(err, E::Truncated { .. }),
        "truncated-gzip" => matches!(err, E::Read { .. }),
        "empty-blob" => matches!(err, E::Empty),
        "zstd" => matches!(err, E::UnsupportedCompression { format: "zstd" }),
        "not-a-tar" => matches!(err, E::Read { .. }),
        "size-bomb" => matches!(
            err,
            E::Oversize {
                stream: "total of the uncompressed layers",
                ..
            }
        ),
        "too-many-entries" => matches!(err, E::TooManyEntries { .. }),
        other => panic!("corpus case {other} has no expected refusal here"),
    }
}

#[test]
fn the_malicious_corpus_is_refused_leaving_nothing() {
    let limits = Limits {
        max_body_bytes: 256 * 1024,
        max_entries: 100,
        ..Limits::default()
    };
    let escape = Path::new("/tmp").join(corpus::ESCAPE_NAME);
    for (case, blob) in corpus::corpus(limits.max_body_bytes, limits.max_entries) {
        let tmp = TempDir::new();
        let canary = tmp.path().join("canary");
        fs::create_dir(&canary).unwrap();
        let (mut u, dest) = unpacker(&tmp, &limits);
        let err = u.apply(&blob[..]).expect_err(case);
        assert!(
            matches!(err, BundleError::Layer { index: 1, .. }),
            "{case}: {err}"
        );
        assert!(expected(case, err.cause()), "{case}: unexpected {err}");
        assert!(!dest.exists(), "{case}: dest left behind");
        drop(u);
        let beside: Vec<_> = fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(beside.len(), 1, "{case}: written beside dest");
        assert_eq!(fs::read_dir(&canary).unwrap().count(), 0, "{case}");
        assert!(!exists(&escape), "{case}: escaped to {}", escape.display());
        let up = tmp.path().parent().unwrap().join(corpus::ESCAPE_NAME);
        assert!(!exists(&up), "{case}: escaped to {}", up.display());
    }
}

#[test]
fn the_neutralised_corpus_is_accepted_without_its_danger() {
    let passwd = fs::read("/etc/passwd").ok();
    for (case, blob) in corpus::neutralised() {
        let tmp = TempDir::new();
        let root = apply_all(&tmp, &[blob]);
        match case {
            "setuid" | "setgid" => assert_eq!(mode(&root.join("bin/tool")), 0o755, "{case}"),
            "absolute-symlink" => assert_eq!(
                fs::read_link(root.join("etc/mtab")).unwrap(),
                Path::new("/proc/mounts")
            ),
            "escaping-symlink" => assert_eq!(
                fs::read_link(root.join("up")).unwrap(),
                Path::new("../../../..")
            ),
            "symlink-replaced" => {
                let meta = fs::symlink_metadata(root.join("passwd")).unwrap();
                assert!(meta.is_file(), "{case}");
                assert_eq!(fs::read(root.join("passwd")).unwrap(), b"mine");
            }
            "whiteout-missing" => {
                assert!(exists(&root.join("kept")));
                assert!(!exists(&root.join(".wh.nothing")));
            }
            other => panic!("neutralised case {other} has no check here"),
        }
    }
    assert_eq!(fs::read("/etc/passwd").ok(), passwd);
}

/// Everything about a tree that a layer carries, keyed by rootfs-relative path; hardlinked paths
/// are named by the first path of their inode.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut first_of = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(root.join(&rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let rel = rel.join(name);
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let key = rel.to_string_lossy().into_owned();
            let what = if meta.is_dir() {
                stack.push(rel.clone());
                format!("dir {mode:o}")
            } else if meta.file_type().is_symlink() {
                format!("symlink -> {}", fs::read_link(&path).unwrap().display())
            } else {
                let first = first_of.entry(meta.ino()).or_insert_with(|| key.clone());
                format!(
                    "file {mode:o} {:?} same-as {first}",
                    String::from_utf8_lossy(&fs::read(&path).unwrap())
                )
            };
            out.insert(key, what);
        }
    }
    out
}

#[test]
fn write_layer_round_trips_and_is_deterministic() {
    let long_dir = "l".repeat(120);
    let long_target = format!("/{}", "t".repeat(150));
    let source = layer(|t| {
        t.dir("bin/", 0o755)
            .file("bin/tool", b"#!/bin/sh\n", 0o755)
            .hardlink("bin/tool2", "bin/tool")
            .hardlink("zz-last", "bin/tool")
            .file("etc/conf", b"conf", 0o600)
            .symlink("etc/mtab", "/proc/mounts")
            .symlink("etc/rel", "../bin//tool/")
            .dir("locked/", 0o500)
            .file("locked/inside", b"i", 0o444)
            .pax_file(&format!("{long_dir}/{long_dir}"), b"long")
            .symlink("long-link", &long_target[..100])
            .file("empty", b"", 0o644);
    });
    let tmp = TempDir::new();
    let root = apply_all(&tmp, &[source]);
    // A symlink target longer than a ustar header holds.
    std::os::unix::fs::symlink(&long_target, root.join("longer-link")).unwrap();

    let mut blob = Vec::new();
    let (digest, size) = write_layer(&root, &mut blob).unwrap();
    assert_eq!(digest, sha256(&blob));
    assert_eq!(size, blob.len() as u64);
    let mut again = Vec::new();
    assert_eq!(write_layer(&root, &mut again).unwrap().0, digest);
    assert_eq!(again, blob);

    let copy_tmp = TempDir::new();
    let copy = apply_all(&copy_tmp, &[blob.clone()]);
    assert_eq!(snapshot(&copy), snapshot(&root));
    assert!(snapshot(&root).len() >= 14);

    // Names are rootfs-relative without `./`, parents before children, root not listed.
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        names.push(String::from_utf8_lossy(&entry.path_bytes()).into_owned());
        if &*entry.path_bytes() == b"zz-last" {
            assert_eq!(entry.header().entry_type(), EntryType::Link);
            assert_eq!(&*entry.link_name_bytes().unwrap(), b"bin/tool");
        }
    }
    assert_eq!(names.first().map(String::as_str), Some("bin"));
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("./") && !n.starts_with('/'))
    );
    let bin = names.iter().position(|n| n == "bin").unwrap();
    let tool = names.iter().position(|n| n == "bin/tool").unwrap();
    assert!(bin < tool);
}

#[test]
fn write_layer_refuses_special_files() {
    let tmp = TempDir::new();
    let root = tmp.path().join("rootfs");
    fs::create_dir_all(root.join("run")).unwrap();
    nix::unistd::mkfifo(
        &root.join("run/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let err = write_layer(&root, std::io::sink()).unwrap_err();
    assert!(
        err.to_string().contains("`run/fifo` is a device node"),
        "{err}"
    );
}

#[test]
fn write_layer_does_not_follow_a_symlinked_root() {
    let tmp = TempDir::new();
    let real = tmp.path().join("real");
    fs::create_dir(&real).unwrap();
    fs::File::create(real.join("f"))
        .unwrap()
        .write_all(b"x")
        .unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert!(write_layer(&link, std::io::sink()).is_err());
}
