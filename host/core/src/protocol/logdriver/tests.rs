//! The log driver calls as dockerd 20.10 sends them.

use super::*;
use serde_json::{Value, json};

fn body(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

/// A StartLogging body as dockerd 20.10 marshals it (`logger.Info`, zero times included).
const START: &str = r#"{"File":"/run/docker/logging/8f2e0c","Info":{"Config":{"tag":"x"},
 "ContainerID":"c1","ContainerName":"/web","ContainerEntrypoint":"sh","ContainerArgs":["-c","echo"],
 "ContainerImageID":"sha256:ab","ContainerImageName":"busybox:local",
 "ContainerCreated":"2026-12-03T10:00:00.5+01:00","ContainerEnv":null,"ContainerLabels":{},
 "LogPath":"","DaemonName":"docker"}}"#;

#[test]
fn start_logging_reads_dockerds_info() {
    let r = Request::decode("/LogDriver.StartLogging", START.as_bytes()).unwrap();
    let Request::StartLogging { file, info } = r else {
        panic!("{r:?}")
    };
    assert_eq!(file, "/run/docker/logging/8f2e0c");
    assert_eq!(info.config, vec![("tag".into(), "x".into())]);
    assert_eq!(info.container_id, "c1");
    assert_eq!(info.container_args, vec!["-c", "echo"]);
    assert!(info.container_env.is_empty());
    // 2026-12-03T09:00:00.5Z
    assert_eq!(info.container_created, Some(1_796_288_400_500_000_000));
}

#[test]
fn read_logs_reads_config_and_zero_times_are_none() {
    let b = br#"{"Info":{"ContainerID":"c1"},"Config":{"Since":"0001-01-01T00:00:00Z",
        "Until":"1970-01-01T00:00:01.000000002Z","Tail":-1,"Follow":true}}"#;
    let r = Request::decode(READ_LOGS, b).unwrap();
    let Request::ReadLogs { info, config } = r else {
        panic!("{r:?}")
    };
    assert_eq!(info.container_id, "c1");
    assert_eq!(
        config,
        ReadConfig {
            since: None,
            until: Some(1_000_000_002),
            tail: -1,
            follow: true
        }
    );
    // dockerd's documented key `ReadConfig` is not what it sends, and is ignored.
    let r = Request::decode(READ_LOGS, br#"{"ReadConfig":{"Tail":3}}"#).unwrap();
    assert!(matches!(r, Request::ReadLogs { config, .. } if config.tail == 0));
}

#[test]
fn bodies_go_would_not_decode_are_400s() {
    for (m, b) in [
        (START_LOGGING, &br#"{"File":1}"#[..]),
        (READ_LOGS, br#"{"Config":{"Tail":"3"}}"#),
        (READ_LOGS, br#"{"Config":{"Since":""}}"#),
        (CAPABILITIES, b"[]"),
    ] {
        let e = Request::decode(m, b).unwrap_err();
        assert_eq!(e.status, 400, "{m} {}", String::from_utf8_lossy(b));
    }
    assert_eq!(
        Request::decode("LogDriver.Nope", b"").unwrap_err().status,
        404
    );
}

#[test]
fn replies_are_what_dockerd_decodes() {
    assert_eq!(
        body(&encode(Ok(Response::Capabilities { read_logs: true }))),
        json!({"Cap": {"ReadLogs": true}})
    );
    assert_eq!(body(&encode(Ok(Response::Done))), json!({}));
    assert_eq!(
        body(&encode(Ok(Response::Activate))),
        json!({"Implements": ["LogDriver"]})
    );
    let e = encode(Err(DriverError::invalid_argument("bad opt")));
    assert_eq!((e.status, body(&e)), (500, json!({"Err": "bad opt"})));
}

#[test]
fn fifo_names_are_one_plain_component() {
    assert_eq!(fifo_name("/run/docker/logging/ab12"), Ok("ab12"));
    for bad in [
        "/run/docker/logging/",
        "/run/docker/logging/..",
        "/run/docker/logging/a/b",
        "/run/docker/logging/../../etc/passwd",
        "/run/docker/loggingx/a",
        "run/docker/logging/a",
        "/tmp/a",
        "/run/docker/logging/a b",
    ] {
        assert!(fifo_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn times_convert_like_go() {
    assert_eq!(unix_nanos("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(unix_nanos("1969-12-31T23:59:59.999999999Z"), Some(-1));
    assert_eq!(
        unix_nanos("2000-03-01T00:00:00+02:00"),
        Some(951_861_600_000_000_000)
    );
    assert_eq!(unix_nanos("0001-01-01T00:00:00Z"), None);
    assert_eq!(unix_nanos("not a time"), None);
}

#[test]
fn read_back_frames_end_whole_lines_with_their_newline() {
    let line = Entry {
        source: "stdout".into(),
        line: b"a".to_vec(),
        ..Default::default()
    };
    assert_eq!(line.to_read_frame().line, b"a\n");
    assert_eq!(line.to_frame().line, b"a");
    let first = Entry {
        partial: Some(Partial {
            last: false,
            id: "i".into(),
            ordinal: 1,
        }),
        ..line.clone()
    };
    assert_eq!(first.to_read_frame().line, b"a");
    let last = Entry {
        partial: Some(Partial {
            last: true,
            id: "i".into(),
            ordinal: 2,
        }),
        ..line
    };
    assert_eq!(last.to_read_frame().line, b"a\n");
    assert!(last.to_read_frame().partial);
}
