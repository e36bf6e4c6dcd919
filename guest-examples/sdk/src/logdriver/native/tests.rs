use super::*;
use crate::Error;
use std::io::Write as _;

/// Records what it is handed; refuses nothing.
#[derive(Default)]
struct Recorder(RefCell<Vec<String>>);

impl LogDriver for Recorder {
    fn start_logging(&self, _file: &str, _info: &super::super::Info) -> Result<(), Error> {
        Ok(())
    }
    fn log(&self, _file: &str, entries: &[Entry]) -> Result<(), Error> {
        self.0.borrow_mut().extend(
            entries
                .iter()
                .map(|e| String::from_utf8_lossy(&e.line).into_owned()),
        );
        Ok(())
    }
    fn stop_logging(&self, _file: &str) -> Result<(), Error> {
        Ok(())
    }
}

fn frames(lines: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        frame::encode(
            &frame::LogEntry {
                source: "stdout".into(),
                time_nano: 1,
                line: l.as_bytes().to_vec(),
                ..Default::default()
            },
            &mut out,
        );
    }
    out
}

fn fifo(dir: &Path) -> (File, File) {
    let path = dir.join("fifo");
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .unwrap();
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .unwrap();
    (writer, reader)
}

fn inner() -> Inner<Recorder> {
    Inner {
        driver: Recorder::default(),
        streams: RefCell::new(HashMap::new()),
        batches: Notify::new(),
    }
}

/// The reader takes out of the pipe only the whole frames the driver got: a frame still being
/// written stays there, from its first byte, for whoever reads next (a restarted plugin).
#[test]
fn only_delivered_frames_leave_the_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, reader) = fifo(dir.path());
    let scratch = Scratch::new().unwrap();
    let inner = inner();
    let wire = frames(&["one", "two", "three"]);
    let cut = wire.len() - 3;
    writer.write_all(&wire[..cut]).unwrap();
    assert!(deliver(&inner, "f", &reader, &scratch).unwrap());
    assert!(!deliver(&inner, "f", &reader, &scratch).unwrap());
    assert_eq!(*inner.driver.0.borrow(), ["one", "two"]);
    // What is left is the start of "three", untouched.
    let mut left = vec![0u8; 64];
    let n = (&reader).read(&mut left).unwrap();
    assert_eq!(&left[..n], &wire[frames(&["one", "two"]).len()..cut]);
}

/// A frame larger than the pipe is read out as it comes and still delivered whole.
#[test]
fn a_frame_larger_than_the_pipe_is_delivered_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, reader) = fifo(dir.path());
    let scratch = Scratch::new().unwrap();
    let inner = inner();
    let big = "y".repeat(pipe_size(&reader) * 2);
    let wire = frames(&[&big, "after"]);
    let mut sent = 0;
    while sent < wire.len() {
        match writer.write(&wire[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                deliver(&inner, "f", &reader, &scratch).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    while deliver(&inner, "f", &reader, &scratch).unwrap() {}
    deliver(&inner, "f", &reader, &scratch).unwrap();
    let got = inner.driver.0.borrow().clone();
    assert_eq!(
        got.len(),
        2,
        "{:?}",
        got.iter().map(String::len).collect::<Vec<_>>()
    );
    assert_eq!((got[0].len(), &*got[1]), (big.len(), "after"));
}
