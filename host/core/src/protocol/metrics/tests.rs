use super::*;
use crate::protocol::{DriverError, ErrorCode, status};

#[test]
fn both_calls_take_no_arguments_and_answer_an_empty_object() {
    for b in [&b""[..], b"null", b"{}", b" {}\n"] {
        assert_eq!(
            Request::decode("/MetricsCollector.StartMetrics", b),
            Ok(Request::Start)
        );
        assert_eq!(Request::decode(STOP, b), Ok(Request::Stop));
    }
    let r = Request::decode(START, b"[1]").unwrap_err();
    assert_eq!(r.status, status::BAD_REQUEST);
    let r = Request::decode("MetricsCollector.Other", b"").unwrap_err();
    assert_eq!(r.status, status::NOT_IMPLEMENTED);
    assert_eq!(
        Request::decode("Plugin.Activate", b""),
        Ok(Request::Activate)
    );

    let ok = encode(Ok(Response::Done));
    assert_eq!((ok.status, &ok.body[..]), (status::OK, &b"{}"[..]));
    let activate = encode(Ok(Response::Activate));
    assert_eq!(
        &activate.body[..],
        br#"{"Implements":["MetricsCollector"]}"#
    );
    let err = encode(Err(DriverError::new(ErrorCode::Internal, "no")));
    assert_eq!(err.status, status::PLUGIN_ERROR);
    assert_eq!(&err.body[..], br#"{"Err":"no"}"#);
}

#[test]
fn a_response_is_read_only_when_whole_and_200() {
    let ok = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nengine_daemon_x 1\n";
    assert_eq!(parse_response(ok, 100).unwrap(), "engine_daemon_x 1\n");
    assert!(parse_response(ok, 5).unwrap_err().contains("larger"));
    let e = parse_response(b"HTTP/1.1 404 Not Found\r\n\r\nno", 100).unwrap_err();
    assert!(e.contains("404"), "{e}");
    assert!(parse_response(b"HTTP/1.0 200 OK\r\n", 100).is_err());
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    assert!(parse_response(chunked, 100).is_err());
    assert!(parse_response(b"HTTP/1.0 200 OK\r\n\r\n\xff", 100).is_err());
    assert!(parse_response(b"SSH-2.0\r\n\r\n", 100).is_err());
}

#[test]
fn scrape_reads_a_real_socket_bounded_in_size_and_time() {
    use std::io::{Read as _, Write as _};
    use std::time::{Duration, Instant};
    let dir = std::env::temp_dir().join(format!("plugd-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("metrics.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let server = std::thread::spawn(move || {
        // 1: a good answer; 2: a large one; 3: none at all (the client times out).
        let (mut c, _) = listener.accept().unwrap();
        let mut req = [0u8; 256];
        let n = c.read(&mut req).unwrap();
        assert!(req[..n].starts_with(b"GET /metrics HTTP/1.0\r\n"));
        c.write_all(b"HTTP/1.0 200 OK\r\n\r\nengine_daemon_engine_info 1\n")
            .unwrap();
        drop(c);
        let (mut c, _) = listener.accept().unwrap();
        let _ = c.read(&mut req);
        let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\n");
        let _ = c.write_all(&vec![b'x'; 64 << 10]);
        drop(c);
        let (c, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_millis(800));
        drop(c);
    });
    let got = scrape(&sock, Duration::from_secs(5), 1 << 10).unwrap();
    assert_eq!(got, "engine_daemon_engine_info 1\n");
    let e = scrape(&sock, Duration::from_secs(5), 1 << 10).unwrap_err();
    assert!(e.0.contains("larger than 1024"), "{e}");
    let t0 = Instant::now();
    let e = scrape(&sock, Duration::from_millis(200), 1 << 10).unwrap_err();
    assert!(e.0.contains("timed out"), "{e}");
    assert!(t0.elapsed() < Duration::from_millis(700));
    server.join().unwrap();
    let e = scrape(&dir.join("absent.sock"), Duration::from_secs(1), 10).unwrap_err();
    assert!(e.0.contains("cannot connect"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
