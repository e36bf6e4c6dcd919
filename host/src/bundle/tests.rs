//! Bundles built in memory, well-formed and hostile. Hostile names go straight into header bytes,
//! because `tar::Builder`'s path setters refuse them.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use super::*;

const CONFIG: &[u8] = br#"{"description":"test","interface":{"types":["docker.volumedriver/1.0"],"socket":"p.sock"}}"#;

/// A fresh directory under the system temp dir, removed on drop.
pub(super) struct TempDir(tempfile::TempDir);

impl TempDir {
    pub(super) fn new() -> Self {
        TempDir(
            tempfile::Builder::new()
                .prefix("plugd-bundle-test-")
                .tempdir()
                .unwrap(),
        )
    }

    pub(super) fn path(&self) -> &Path {
        self.0.path()
    }

    /// A path inside that does not exist yet, as `unpack` wants its `dest`.
    pub(super) fn dest(&self) -> PathBuf {
        self.0.path().join("staging")
    }
}

/// Builds archives entry by entry with raw header bytes: the malicious layer corpus's builder.
pub(super) use super::corpus::{Layer as Tar, gzip};

impl Tar {
    /// The usual start: `config.json` and the `rootfs/` directory, as `docker plugin create` sends them.
    fn bundle() -> Self {
        let mut t = Tar::new();
        t.file("config.json", CONFIG, 0o644).dir("rootfs/", 0o755);
        t
    }

    /// A file whose name is carried in a GNU `L` entry (what `tar::Builder` does for long names),
    /// with blank uid/gid fields, which Go's archive/tar reads as 0.
    fn gnu_file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, name, data).unwrap();
        self
    }
}

pub(super) fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// Unpacks a body expected to be refused; checks the message names `needle` and `dest` is gone.
fn refused(body: &[u8], limits: &Limits, needle: &str) -> BundleError {
    let tmp = TempDir::new();
    let dest = tmp.dest();
    let err = unpack(body, &dest, limits).expect_err("bundle should be refused");
    let message = err.to_string();
    assert!(
        message.contains(needle),
        "message {message:?} does not name {needle:?}"
    );
    assert!(!dest.exists(), "dest left behind after: {message}");
    err
}

fn long_name(prefix: &str) -> String {
    format!("{prefix}{}/file.txt", "d".repeat(150))
}

#[test]
fn happy_path() {
    let pax_name = long_name("rootfs/pax/");
    let gnu_name = long_name("rootfs/gnu/");
    let mut t = Tar::new();
    t.dir("./rootfs/", 0o750)
        .file("./config.json", CONFIG, 0o600)
        .file("README.md", b"ignored", 0o644)
        .dir("./rootfs/bin/", 0o755)
        .file("./rootfs/bin/tool", b"#!/bin/sh\necho hi\n", 0o6755)
        .hardlink("./rootfs/bin/tool2", "rootfs/bin/tool")
        .symlink("rootfs/etc/mtab", "/proc/mounts")
        .dir("rootfs/secret/", 0o500)
        .file("rootfs/secret/key", b"k", 0o400)
        .pax_file(&pax_name, b"pax")
        .gnu_file(&gnu_name, b"gnu");
    let mut body = t.finish();
    body.extend_from_slice(b"trailing garbage after the end-of-archive blocks");

    let tmp = TempDir::new();
    let dest = tmp.dest();
    let out = unpack(&body[..], &dest, &Limits::default()).unwrap();
    assert_eq!(out.config_json, CONFIG);
    assert_eq!(out.rootfs, dest.join("rootfs"));
    assert_eq!(out.digest, sha256(&body));
    let root = &out.rootfs;

    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(root), 0o750);
    assert_eq!(
        fs::read(root.join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        mode(&root.join("bin/tool")),
        0o755,
        "setuid/setgid stripped"
    );
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_eq!(ino(&root.join("bin/tool")), ino(&root.join("bin/tool2")));
    assert_eq!(
        fs::read_link(root.join("etc/mtab")).unwrap(),
        Path::new("/proc/mounts")
    );
    assert_eq!(mode(&root.join("etc")), 0o755, "implied parent");
    assert_eq!(
        mode(&root.join("secret")),
        0o500,
        "applied after its contents"
    );
    assert_eq!(fs::read(root.join("secret/key")).unwrap(), b"k");
    assert_eq!(
        fs::read(root.join(pax_name.strip_prefix("rootfs/").unwrap())).unwrap(),
        b"pax"
    );
    assert_eq!(
        fs::read(root.join(gnu_name.strip_prefix("rootfs/").unwrap())).unwrap(),
        b"gnu"
    );
    assert!(!root.join("truncated-ustar-name").exists());
    assert!(!dest.join("README.md").exists() && !root.join("README.md").exists());
}

#[test]
fn ownership_is_kept_when_root() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let mut t = Tar::bundle();
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(1234);
    h.set_gid(4321);
    h.set_size(1);
    t.0.append_data(&mut h, "rootfs/owned", &b"x"[..]).unwrap();
    let tmp = TempDir::new();
    let out = unpack(&t.finish()[..], &tmp.dest(), &Limits::default()).unwrap();
    let meta = fs::metadata(out.rootfs.join("owned")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 4321));
}

#[test]
fn gzip_body() {
    let mut t = Tar::bundle();
    t.file("rootfs/hello", b"world", 0o644);
    let tar = t.finish();
    let tmp = TempDir::new();
    let out = unpack(&gzip(&tar)[..], &tmp.dest(), &Limits::default()).unwrap();
    assert_eq!(
        out.digest,
        sha256(&tar),
        "digest is of the decompressed stream"
    );
    assert_eq!(fs::read(out.rootfs.join("hello")).unwrap(), b"world");
}

#[test]
fn refuses_missing_rootfs() {
    let mut t = Tar::new();
    t.file("config.json", CONFIG, 0o644)
        .file("other/file", b"x", 0o644);
    refused(&t.finish(), &Limits::default(), "no rootfs found");
}

#[test]
fn refuses_missing_config() {
    let mut t = Tar::new();
    t.dir("rootfs/", 0o755)
        .file("rootfs/config.json", CONFIG, 0o644);
    refused(&t.finish(), &Limits::default(), "config not found");
}

#[test]
fn refuses_duplicate_config() {
    let mut t = Tar::bundle();
    t.file("./config.json", CONFIG, 0o644);
    refused(
        &t.finish(),
        &Limits::default(),
        "duplicate config.json: entry `./config.json`",
    );
}

#[test]
fn refuses_config_that_is_not_a_file_or_too_large() {
    let mut t = Tar::new();
    t.symlink("config.json", "/etc/shadow")
        .dir("rootfs/", 0o755);
    refused(
        &t.finish(),
        &Limits::default(),
        "config.json entry `config.json` is a symlink",
    );
    let limits = Limits {
        max_config_bytes: 10,
        ..Limits::default()
    };
    refused(
        &Tar::bundle().finish(),
        &limits,
        "config.json entry `config.json` is",
    );
}

#[test]
fn refuses_parent_dir_names() {
    let mut t = Tar::bundle();
    t.file("../evil", b"x", 0o644);
    refused(&t.finish(), &Limits::default(), "entry `../evil`: `..`");
    let mut t = Tar::bundle();
    t.file("rootfs/../x", b"x", 0o644);
    refused(&t.finish(), &Limits::default(), "entry `rootfs/../x`: `..`");
}

#[test]
fn refuses_absolute_names() {
    let mut t = Tar::bundle();
    t.file("/etc/passwd", b"x", 0o644);
    refused(
        &t.finish(),
        &Limits::default(),
        "entry `/etc/passwd`: absolute",
    );
}

#[test]
fn refuses_hardlinks_out_of_rootfs() {
    for target in [
        "config.json",
        "/etc/passwd",
        "rootfs/../config.json",
        "../etc/passwd",
    ] {
        let mut t = Tar::bundle();
        t.hardlink("rootfs/link", target);
        let needle = format!("hardlink `rootfs/link`: target `{target}` is outside rootfs/");
        refused(&t.finish(), &Limits::default(), &needle);
    }
}

#[test]
fn refuses_hardlinks_to_missing_or_special_targets() {
    let mut t = Tar::bundle();
    t.hardlink("rootfs/early", "rootfs/late")
        .file("rootfs/late", b"x", 0o644);
    refused(
        &t.finish(),
        &Limits::default(),
        "hardlink `rootfs/early`: target `rootfs/late` is not a regular file",
    );
    let mut t = Tar::bundle();
    t.dir("rootfs/d/", 0o755)
        .hardlink("rootfs/link", "rootfs/d");
    refused(
        &t.finish(),
        &Limits::default(),
        "hardlink `rootfs/link`: target `rootfs/d`",
    );
    let mut t = Tar::bundle();
    t.symlink("rootfs/s", "/etc/passwd")
        .hardlink("rootfs/link", "rootfs/s");
    refused(
        &t.finish(),
        &Limits::default(),
        "hardlink `rootfs/link`: target `rootfs/s`",
    );
}

#[test]
fn refuses_writing_through_a_symlinked_directory() {
    let outside = TempDir::new();
    let target = outside.0.path().to_str().unwrap();
    for victim in ["rootfs/a/passwd", "rootfs/a/sub/passwd"] {
        let mut t = Tar::bundle();
        t.symlink("rootfs/a", target).file(victim, b"pwned", 0o644);
        let needle = format!("entry `{victim}`: `rootfs/a` is a symlink");
        refused(&t.finish(), &Limits::default(), &needle);
        assert_eq!(
            fs::read_dir(&outside.0).unwrap().count(),
            0,
            "wrote outside dest"
        );
    }
    // The same through a directory entry, a symlink entry and a hardlink entry.
    let mut t = Tar::bundle();
    t.file("rootfs/f", b"x", 0o644)
        .symlink("rootfs/a", target)
        .dir("rootfs/a/d/", 0o755);
    refused(
        &t.finish(),
        &Limits::default(),
        "entry `rootfs/a/d/`: `rootfs/a` is a symlink",
    );
    let mut t = Tar::bundle();
    t.file("rootfs/f", b"x", 0o644)
        .symlink("rootfs/a", target)
        .symlink("rootfs/a/s", "/")
        .hardlink("rootfs/a/h", "rootfs/f");
    refused(
        &t.finish(),
        &Limits::default(),
        "entry `rootfs/a/s`: `rootfs/a` is a symlink",
    );
    let mut t = Tar::bundle();
    t.file("rootfs/f", b"x", 0o644)
        .symlink("rootfs/a", target)
        .hardlink("rootfs/a/h", "rootfs/f");
    refused(
        &t.finish(),
        &Limits::default(),
        "entry `rootfs/a/h`: `rootfs/a` is a symlink",
    );
    assert_eq!(
        fs::read_dir(&outside.0).unwrap().count(),
        0,
        "wrote outside dest"
    );
}

#[test]
fn replaces_a_symlink_rather_than_following_it() {
    let outside = TempDir::new();
    fs::write(outside.0.path().join("passwd"), b"original").unwrap();
    let mut t = Tar::bundle();
    t.symlink(
        "rootfs/passwd",
        outside.0.path().join("passwd").to_str().unwrap(),
    )
    .file("rootfs/passwd", b"new", 0o644);
    let tmp = TempDir::new();
    let out = unpack(&t.finish()[..], &tmp.dest(), &Limits::default()).unwrap();
    assert_eq!(fs::read(out.rootfs.join("passwd")).unwrap(), b"new");
    assert_eq!(
        fs::read(outside.0.path().join("passwd")).unwrap(),
        b"original"
    );
}

#[test]
fn refuses_writing_below_a_file_or_over_a_directory() {
    let mut t = Tar::bundle();
    t.file("rootfs/f", b"x", 0o644)
        .file("rootfs/f/g", b"y", 0o644);
    refused(
        &t.finish(),
        &Limits::default(),
        "entry `rootfs/f/g`: `rootfs/f` is not a directory",
    );
    let mut t = Tar::bundle();
    t.dir("rootfs/d/", 0o755).file("rootfs/d", b"y", 0o644);
    refused(
        &t.finish(),
        &Limits::default(),
        "entry `rootfs/d`: refusing to replace a directory",
    );
}

#[test]
fn refuses_device_nodes_and_fifos() {
    for (kind, name) in [
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "fifo"),
    ] {
        let mut t = Tar::bundle();
        t.raw(kind, "rootfs/dev/node", "", b"", 0o666);
        refused(
            &t.finish(),
            &Limits::default(),
            &format!("entry `rootfs/dev/node`: {name} entries"),
        );
    }
}

#[test]
fn refuses_rootfs_that_is_not_a_directory() {
    let mut t = Tar::new();
    t.file("config.json", CONFIG, 0o644).symlink("rootfs", "/");
    refused(
        &t.finish(),
        &Limits::default(),
        "entry `rootfs`: rootfs must be a directory",
    );
}

#[test]
fn refuses_truncated_archives() {
    let mut t = Tar::bundle();
    t.file("rootfs/big", &[7; 4096], 0o644);
    let full = t.finish();
    // Header layout: config.json (512 + 512 data), rootfs/ (512), big (512 + 4096), end (1024).
    let data_start = 512 * 4;
    refused(
        &full[..data_start + 1000],
        &Limits::default(),
        "entry `rootfs/big` ends after 1000 of its 4096 bytes",
    );
    let end_marker = full.len() - 1024;
    refused(
        &full[..end_marker],
        &Limits::default(),
        "truncated archive: the stream ends after entry `rootfs/big`",
    );
    refused(
        &full[..data_start - 100],
        &Limits::default(),
        "after entry `rootfs/`",
    );
    // gzip: a missing trailer is caught by draining the stream, a cut inside the data as it happens.
    let gz = gzip(&full);
    let needle =
        "cannot read the tar stream after the end-of-archive marker: unexpected end of file";
    refused(&gz[..gz.len() - 8], &Limits::default(), needle);
    refused(
        &gz[..gz.len() / 2],
        &Limits::default(),
        "cannot read the tar stream in entry `config.json`",
    );
    refused(b"", &Limits::default(), "empty body");
}

#[test]
fn refuses_oversize_bodies() {
    // Incompressible data: the compressed body itself goes over the cap.
    let mut noise = Vec::with_capacity(64 * 1024);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    while noise.len() < 64 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    let mut t = Tar::bundle();
    t.file("rootfs/noise", &noise, 0o644);
    let limits = Limits {
        max_body_bytes: 16 * 1024,
        ..Limits::default()
    };
    let tar = t.finish();
    refused(
        &gzip(&tar),
        &limits,
        "oversize body: the request body exceeds the limit of 16384 bytes",
    );
    refused(
        &tar,
        &limits,
        "oversize body: the request body exceeds the limit of 16384 bytes",
    );

    // A gzip bomb: tiny body, large tar stream.
    let mut t = Tar::bundle();
    t.file("rootfs/zeros", &vec![0; 1 << 20], 0o644);
    let bomb = gzip(&t.finish());
    assert!(bomb.len() < 16 * 1024);
    refused(
        &bomb,
        &limits,
        "oversize body: the decompressed tar stream exceeds the limit of 16384 bytes",
    );
}

#[test]
fn refuses_too_many_entries() {
    let mut t = Tar::bundle();
    t.file("rootfs/a", b"", 0o644).file("rootfs/b", b"", 0o644);
    let limits = Limits {
        max_entries: 3,
        ..Limits::default()
    };
    refused(
        &t.finish(),
        &limits,
        "too many entries: entry `rootfs/b` exceeds the limit of 3",
    );
}

#[test]
fn refuses_an_existing_dest_without_touching_it() {
    let tmp = TempDir::new();
    let dest = tmp.dest();
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("keep"), b"x").unwrap();
    let err = unpack(&Tar::bundle().finish()[..], &dest, &Limits::default()).unwrap_err();
    assert!(matches!(err, BundleError::DestExists(_)), "{err}");
    assert!(dest.join("keep").exists());
}

/// What `docker plugin create` really sends (see `tests/fixtures/bundles/README.md`).
#[test]
fn docker_cli_bodies() {
    let plain = include_bytes!("../../../tests/fixtures/bundles/docker-cli-create.tar");
    let gz = include_bytes!("../../../tests/fixtures/bundles/docker-cli-create-compress.tar.gz");
    for body in [&plain[..], &gz[..]] {
        let tmp = TempDir::new();
        let out = unpack(body, &tmp.dest(), &Limits::default()).unwrap();
        assert_eq!(out.digest, sha256(plain));
        assert!(out.config_json.starts_with(br#"{"description":"t""#));
        let root = &out.rootfs;
        let meta = |p: &str| fs::symlink_metadata(root.join(p)).unwrap();
        assert_eq!(meta("bin/tool").permissions().mode() & 0o7777, 0o755);
        assert_eq!(meta("bin/tool").ino(), meta("bin/tool2").ino());
        assert_eq!(
            fs::read_link(root.join("etc/mtab")).unwrap(),
            Path::new("/proc/mounts")
        );
        let long = format!("{}/{}", "x".repeat(120), "y".repeat(120));
        assert_eq!(fs::read(root.join(long)).unwrap(), b"long\n");
    }
}
