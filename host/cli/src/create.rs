//! `plugin create`: the local checks the docker CLI makes, and the streamed tar of the directory.
//!
//! Order and messages follow `cli/command/plugin/create.go`: the name must parse as a normalized
//! reference, the directory must exist and be a directory (`context must be a directory`), and
//! `config.json` must decode as a `types.PluginConfig`. The whole directory is then tarred (like
//! `archive.TarWithOptions`: entries relative to it, sorted, directories with a trailing `/`,
//! hard links as link entries, sockets skipped) on a producer thread and streamed as the request
//! body in 64 KiB chunks, gzip-compressed with `--compress`, so a large rootfs is never held in memory.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;

use hyper::Method;
use plugd_core::config::schema::{self, GoStruct, Kind};

use super::Failure;
use super::client::{ApiClient, ApiError, ReqBody, Response, escape_query};

/// Chunk size of the streamed body.
const CHUNK: usize = 64 * 1024;

/// The text of an OS error the way Go prints it (`no such file or directory`).
pub(crate) fn go_os_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let s = io::Error::from_raw_os_error(code).to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(first) => first.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
        None => e.to_string(),
    }
}

/// `filepath.Clean`.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

// ------------------------------------------------------------ context and config checks

/// `validateContextDir`: the absolute directory to tar.
pub(crate) fn validate_context_dir(dir: &str) -> Result<PathBuf, String> {
    let abs = if Path::new(dir).is_absolute() {
        PathBuf::from(clean(dir))
    } else {
        let cwd = std::env::current_dir().map_err(|e| go_os_error(&e))?;
        PathBuf::from(clean(&format!("{}/{dir}", cwd.display())))
    };
    let meta = fs::symlink_metadata(&abs)
        .map_err(|e| format!("lstat {}: {}", abs.display(), go_os_error(&e)))?;
    if !meta.is_dir() {
        return Err("context must be a directory".into());
    }
    Ok(abs)
}

/// `validateConfig`: `<dir>/config.json` must decode as a `types.PluginConfig`. Only the first JSON
/// value is read, as Go's decoder does.
pub(crate) fn validate_config(dir: &str) -> Result<(), String> {
    let path = clean(&format!("{dir}/config.json"));
    let data = fs::read(&path).map_err(|e| format!("open {path}: {}", go_os_error(&e)))?;
    let mut stream = serde_json::Deserializer::from_slice(&data).into_iter::<serde_json::Value>();
    let value = match stream.next() {
        None => return Err("EOF".into()),
        Some(Err(e)) if e.is_eof() => return Err("unexpected EOF".into()),
        Some(Err(e)) => return Err(e.to_string()),
        Some(Ok(v)) => v,
    };
    if !value.is_object() && !value.is_null() {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type types.PluginConfig",
            json_kind(&value)
        ));
    }
    check_struct(&schema::PLUGIN_CONFIG, &value, &mut Vec::new())
}

fn json_kind(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "null".into(),
        serde_json::Value::Bool(_) => "bool".into(),
        serde_json::Value::Number(_) => "number".into(),
        serde_json::Value::String(_) => "string".into(),
        serde_json::Value::Array(_) => "array".into(),
        serde_json::Value::Object(_) => "object".into(),
    }
}

/// The Go type `encoding/json` names in an `UnmarshalTypeError` (a pointer by its element type).
fn type_string(kind: Kind) -> String {
    match kind {
        Kind::Slice(inner) => format!("[]{}", type_string(*inner)),
        Kind::Ptr(inner) => type_string(*inner),
        named => named.name().unwrap_or_default().to_string(),
    }
}

/// Type-checks a JSON object against a struct, reporting the first mismatch in Go's words.
fn check_struct(
    st: &GoStruct,
    v: &serde_json::Value,
    path: &mut Vec<&'static str>,
) -> Result<(), String> {
    let Some(obj) = v.as_object() else {
        return Ok(());
    };
    for (key, val) in obj {
        let Some(field) = schema::lookup(st.fields, key) else {
            continue;
        };
        path.push(field.key);
        let r = check_value(st, field.kind, val, path);
        path.pop();
        r?;
    }
    Ok(())
}

fn check_value(
    st: &GoStruct,
    ty: Kind,
    v: &serde_json::Value,
    path: &mut Vec<&'static str>,
) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    let mismatch = || {
        Err(format!(
            "json: cannot unmarshal {} into Go struct field {}.{} of type {}",
            json_kind(v),
            st.name.trim_start_matches("types."),
            path.join("."),
            type_string(ty)
        ))
    };
    match ty {
        Kind::Str if !v.is_string() => mismatch(),
        Kind::Bool if !v.is_boolean() => mismatch(),
        Kind::U32 if v.as_u64().is_none_or(|n| n > u64::from(u32::MAX)) => {
            let kind = match v {
                serde_json::Value::Number(n) => format!("number {n}"),
                other => json_kind(other),
            };
            Err(format!(
                "json: cannot unmarshal {kind} into Go struct field {}.{} of type uint32",
                st.name.trim_start_matches("types."),
                path.join(".")
            ))
        }
        Kind::InterfaceType if !v.is_string() => {
            Err(format!("\"{}\" is not a plugin interface type", v))
        }
        Kind::Ptr(inner) => check_value(st, *inner, v, path),
        Kind::Slice(inner) => match v.as_array() {
            None => mismatch(),
            Some(items) => items
                .iter()
                .try_for_each(|item| check_value(st, *inner, item, path)),
        },
        Kind::Struct(inner) => {
            if !v.is_object() {
                return mismatch();
            }
            check_struct(inner, v, path)
        }
        _ => Ok(()),
    }
}

// ------------------------------------------------------------ tar streaming

/// A `Write` that hands fixed-size chunks to the request body channel.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the request body was closed"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// `POST /plugins/create?name=NAME` with `dir` tarred as the body. A client of its own, dropped
/// before the tar thread is joined: ending its runtime ends any half-sent body, so the producer
/// cannot stay blocked on a full channel. A local failure to read the bundle explains an aborted
/// request better than the transport error does, so it is the one reported.
pub(crate) fn upload(
    host: &str,
    name: &str,
    dir: PathBuf,
    compress: bool,
) -> Result<Response, Failure> {
    let client = ApiClient::new(host)?;
    let (body, producer) = spawn_tar(dir, compress);
    let path = format!("/plugins/create?name={}", escape_query(name));
    let result = client.request(
        Method::POST,
        &path,
        ReqBody::Stream(body),
        Some("application/x-tar"),
    );
    drop(client);
    let archived = producer
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the tar producer panicked")));
    match (result, archived) {
        (Ok(resp), _) => Ok(resp),
        (Err(ApiError::Transport(_)), Err(e)) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(go_os_error(&e).into())
        }
        (Err(e), _) => Err(e.into()),
    }
}

/// Starts tarring `dir` on a thread; returns the body channel and the thread, whose result tells
/// whether the archive was complete (an `Err` is also sent down the channel to abort the request).
pub(crate) fn spawn_tar(
    dir: PathBuf,
    compress: bool,
) -> (
    mpsc::Receiver<io::Result<Bytes>>,
    std::thread::JoinHandle<io::Result<()>>,
) {
    let (tx, rx) = mpsc::channel(4);
    let handle = std::thread::spawn(move || {
        let writer = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = write_archive(&dir, writer, compress);
        if let Err(e) = &result {
            let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
        }
        result
    });
    (rx, handle)
}

fn write_archive<W: Write>(dir: &Path, out: W, compress: bool) -> io::Result<()> {
    if compress {
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        let gz = write_tar(dir, gz)?;
        gz.finish()?.flush()
    } else {
        write_tar(dir, out)?.flush()
    }
}

/// Writes the tar of `dir` to `out` and returns `out`.
pub(crate) fn write_tar<W: Write>(dir: &Path, out: W) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    add_dir(&mut builder, dir, "", &mut inodes)?;
    builder.into_inner()
}

fn add_dir<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
    inodes: &mut HashMap<(u64, u64), String>,
) -> io::Result<()> {
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("non-UTF-8 file name in {}", dir.display()),
            )
        })?;
        let rel = format!("{prefix}{name}");
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        if ft.is_socket() {
            continue;
        }
        let mut h = tar::Header::new_ustar();
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(u64::from(meta.uid()));
        h.set_gid(u64::from(meta.gid()));
        h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        h.set_size(0);
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, format!("{rel}/"), io::empty())?;
            add_dir(b, &path, &format!("{rel}/"), inodes)?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(&path)?;
            b.append_link(&mut h, &rel, target)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = inodes.get(&key) {
                    h.set_entry_type(tar::EntryType::Link);
                    b.append_link(&mut h, &rel, first)?;
                    continue;
                }
                inodes.insert(key, rel.clone());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.len());
            let file = File::open(&path)?;
            b.append_data(&mut h, &rel, file.take(meta.len()))?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            };
            h.set_entry_type(kind);
            if !ft.is_fifo() {
                let rdev = meta.rdev();
                h.set_device_major(nix::sys::stat::major(rdev) as u32)?;
                h.set_device_minor(nix::sys::stat::minor(rdev) as u32)?;
            }
            b.append_data(&mut h, &rel, io::empty())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        tempfile::Builder::new()
            .prefix(&format!("plugd-cli-{tag}-"))
            .tempdir()
            .unwrap()
            .keep()
    }

    #[test]
    fn tars_a_bundle_like_docker() {
        let d = tempdir("tar");
        fs::write(d.join("config.json"), br#"{"description":"x"}"#).unwrap();
        fs::create_dir_all(d.join("rootfs/bin")).unwrap();
        fs::write(d.join("rootfs/bin/app"), b"hello").unwrap();
        fs::hard_link(d.join("rootfs/bin/app"), d.join("rootfs/bin/link")).unwrap();
        std::os::unix::fs::symlink("app", d.join("rootfs/bin/sym")).unwrap();
        let data = write_tar(&d, Vec::new()).unwrap();
        let mut ar = tar::Archive::new(&data[..]);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().to_vec()).unwrap();
            let kind = e.header().entry_type();
            let link = e.link_name().unwrap().map(|l| l.display().to_string());
            let mut body = String::new();
            e.read_to_string(&mut body).unwrap();
            seen.push((name, kind, link, body));
        }
        let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "config.json",
                "rootfs/",
                "rootfs/bin/",
                "rootfs/bin/app",
                "rootfs/bin/link",
                "rootfs/bin/sym"
            ]
        );
        assert_eq!(seen[0].3, r#"{"description":"x"}"#);
        assert_eq!(seen[3].3, "hello");
        assert_eq!(seen[4].1, tar::EntryType::Link);
        assert_eq!(seen[4].2.as_deref(), Some("rootfs/bin/app"));
        assert_eq!(seen[5].1, tar::EntryType::Symlink);
        assert_eq!(seen[5].2.as_deref(), Some("app"));

        // The streamed, compressed variant carries the same archive.
        let (mut rx, handle) = spawn_tar(d.clone(), true);
        let mut gz = Vec::new();
        while let Some(chunk) = rx.blocking_recv() {
            gz.extend_from_slice(&chunk.unwrap());
        }
        handle.join().unwrap().unwrap();
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, data);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn validates_like_docker() {
        let d = tempdir("validate");
        let dir = d.to_str().unwrap();
        assert_eq!(
            validate_config(dir).unwrap_err(),
            format!("open {dir}/config.json: no such file or directory")
        );
        fs::write(d.join("config.json"), "{").unwrap();
        assert_eq!(validate_config(dir).unwrap_err(), "unexpected EOF");
        fs::write(d.join("config.json"), r#"{"description":5}"#).unwrap();
        assert_eq!(
            validate_config(dir).unwrap_err(),
            "json: cannot unmarshal number into Go struct field PluginConfig.Description of type string"
        );
        fs::write(d.join("config.json"), r#"{"interface":{"socket":true}}"#).unwrap();
        assert_eq!(
            validate_config(dir).unwrap_err(),
            "json: cannot unmarshal bool into Go struct field PluginConfigInterface.Interface.Socket of type string"
        );
        fs::write(d.join("config.json"), r#"{"user":{"uid":-1}}"#).unwrap();
        assert_eq!(
            validate_config(dir).unwrap_err(),
            "json: cannot unmarshal number -1 into Go struct field PluginConfigUser.User.UID of type uint32"
        );
        fs::write(
            d.join("config.json"),
            r#"{"description":"ok","interface":{"types":["docker.volumedriver/1.0"]}} trailing"#,
        )
        .unwrap();
        assert_eq!(validate_config(dir), Ok(()));

        assert_eq!(validate_context_dir(dir).unwrap(), d);
        assert_eq!(
            validate_context_dir(&format!("{dir}/config.json")).unwrap_err(),
            "context must be a directory"
        );
        assert_eq!(
            validate_context_dir(&format!("{dir}/missing")).unwrap_err(),
            format!("lstat {dir}/missing: no such file or directory")
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn cleans_like_go() {
        assert_eq!(clean("./a//b/../c/"), "a/c");
        assert_eq!(clean("/../x"), "/x");
    }
}
