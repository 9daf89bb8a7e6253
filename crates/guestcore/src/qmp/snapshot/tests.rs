//! The bounded waits of a snapshot's stream against a fake QMP server and a real pipe: data
//! passes at once; a QEMU that does not answer, a failed migration and a stream that stalls
//! each end the read with the cause named, within the bound; a stream that ended early is
//! explained by QEMU's closed monitor.

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

/// A client of a fake QEMU whose reply to `query-migrate` is `migrate` (`None`: no reply,
/// as from a stopped QEMU; `Some("CLOSE")`: the connection closes, as when QEMU exits).
fn fake(migrate: Option<&'static str>, timeout: Duration) -> QmpClient {
    let (client, server) = UnixStream::pair().unwrap();
    std::thread::spawn(move || {
        let mut w = server.try_clone().unwrap();
        w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
            .unwrap();
        let mut r = BufReader::new(server);
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            let v: Value = serde_json::from_str(&line).unwrap();
            line.clear();
            let ret = match (v["execute"].as_str(), migrate) {
                (Some("query-migrate"), None) => continue,
                (Some("query-migrate"), Some("CLOSE")) => return,
                (Some("query-migrate"), Some(m)) => serde_json::from_str(m).unwrap(),
                _ => json!({}),
            };
            let reply = json!({"return": ret, "id": v["id"]});
            if w.write_all(format!("{reply}\r\n").as_bytes()).is_err() {
                return;
            }
        }
    });
    QmpClient::from_stream(client, "fake.sock", timeout).unwrap()
}

/// Reads once through a [`Watched`] pipe (`data` written first, the write end kept open):
/// the result, the cause kept, and how long it took.
fn read_once(
    client: &mut QmpClient,
    data: &[u8],
    stall_limit: Duration,
) -> (std::io::Result<usize>, Option<Error>, Duration) {
    let (r, w) = rustix::pipe::pipe().unwrap();
    rustix::io::write(&w, data).unwrap();
    let stream = Arc::new(File::from(r));
    // A guard that never cuts within these tests' waits (its own tests are in `stall`).
    let guard = StallGuard::start(Arc::clone(&stream), None, Duration::from_secs(3600)).unwrap();
    let mut cause = None;
    let t0 = Instant::now();
    let got = {
        let mut watched = Watched {
            stream: &stream,
            guard: &guard,
            client,
            socket: Path::new("fake.sock"),
            cause: &mut cause,
            last_data: Instant::now(),
            stall_limit,
        };
        watched.read(&mut [0u8; 16])
    };
    drop(w);
    (got, cause, t0.elapsed())
}

#[test]
fn data_passes_at_once() {
    let mut c = fake(None, Duration::from_millis(300));
    let (got, cause, took) = read_once(&mut c, b"QEVM", STALL_LIMIT);
    assert_eq!(got.unwrap(), 4);
    assert!(
        cause.is_none() && took < Duration::from_millis(500),
        "{took:?}"
    );
}

#[test]
fn a_qemu_that_does_not_answer_ends_the_read() {
    let mut c = fake(None, Duration::from_millis(300));
    let (got, cause, took) = read_once(&mut c, b"", STALL_LIMIT);
    assert!(got.is_err());
    let e = cause.expect("a cause").to_string();
    assert!(
        e.contains("QEMU stopped answering during the background snapshot")
            && e.contains("no stream data for 1 s")
            && e.contains("did not answer within 0.3 s")
            && e.contains("fake.sock"),
        "{e}"
    );
    // IDLE_CHECK, then the client's timeout.
    assert!(took < IDLE_CHECK + Duration::from_millis(1300), "{took:?}");
    assert!(c.lost());
}

#[test]
fn a_failed_migration_ends_the_read_with_qemus_reason() {
    let mut c = fake(
        Some(r#"{"status": "failed", "error-desc": "Unable to write to file: Broken pipe"}"#),
        Duration::from_millis(300),
    );
    let (got, cause, took) = read_once(&mut c, b"", STALL_LIMIT);
    assert!(got.is_err());
    let e = cause.expect("a cause").to_string();
    assert!(e.contains("Unable to write to file"), "{e}");
    assert!(took < IDLE_CHECK + Duration::from_secs(1), "{took:?}");
}

#[test]
fn a_stalled_stream_ends_the_read_after_the_stall_limit() {
    let mut c = fake(Some(r#"{"status": "active"}"#), Duration::from_millis(300));
    let limit = Duration::from_millis(1500);
    let (got, cause, took) = read_once(&mut c, b"", limit);
    assert!(got.is_err());
    let e = cause.expect("a cause").to_string();
    assert!(
        e.contains("sent no background-snapshot data for 1.5 s (migration status active)"),
        "{e}"
    );
    // Checked once per IDLE_CHECK: given up at the first check past the limit.
    assert!(
        took >= limit && took < limit + IDLE_CHECK + Duration::from_secs(1),
        "{took:?}"
    );
    assert!(!c.lost(), "QEMU answered throughout");
}

#[test]
fn an_early_end_with_qemu_gone_says_so() {
    let ended = Error::format("stream", "stream ends inside a RAM record header");
    let mut c = fake(Some("CLOSE"), Duration::from_millis(300));
    let e = explain_early_end(&mut c, Path::new("fake.sock"), 4096, &ended)
        .expect("explained")
        .to_string();
    assert!(
        e.contains("QEMU went away during the background snapshot")
            && e.contains("after 4096 bytes")
            && e.contains("RAM record header")
            && e.contains("did QEMU exit?"),
        "{e}"
    );
    // QEMU still there and its migration running: the stream's own error stands.
    let mut c = fake(Some(r#"{"status": "active"}"#), Duration::from_millis(300));
    assert!(explain_early_end(&mut c, Path::new("fake.sock"), 1, &ended).is_none());
    let mut c = fake(
        Some(r#"{"status": "failed", "error-desc": "boom"}"#),
        Duration::from_millis(300),
    );
    let e = explain_early_end(&mut c, Path::new("fake.sock"), 1, &ended).unwrap();
    assert!(
        e.to_string()
            .contains("failed after 1 bytes of stream: boom"),
        "{e}"
    );
}
