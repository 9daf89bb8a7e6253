//! The client against a fake QMP server on a socket pair.

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::thread::JoinHandle;

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}}"#;

/// A fake server: sends `greeting`, then for each command line received calls `answer` with
/// (command name, id, arguments) and writes the lines it returns. `None` closes the socket.
fn serve<F>(greeting: &'static str, mut answer: F) -> (UnixStream, JoinHandle<Vec<Value>>)
where
    F: FnMut(&str, &Value, &Value) -> Option<Vec<String>> + Send + 'static,
{
    let (client, server) = UnixStream::pair().unwrap();
    let h = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut w = server.try_clone().unwrap();
        if !greeting.is_empty() {
            w.write_all(greeting.as_bytes()).unwrap();
            w.write_all(b"\r\n").unwrap();
        }
        let mut r = BufReader::new(server);
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let v: Value = serde_json::from_str(&line).unwrap();
            seen.push(v.clone());
            let cmd = v["execute"].as_str().unwrap_or("").to_string();
            match answer(&cmd, &v["id"], &v["arguments"]) {
                Some(lines) => {
                    for l in lines {
                        if l == "CLOSE" {
                            return seen;
                        }
                        if w.write_all(l.as_bytes()).is_err() {
                            return seen;
                        }
                    }
                }
                None => return seen,
            }
        }
        seen
    });
    (client, h)
}

fn ok(id: &Value, ret: &str) -> String {
    format!("{{\"return\": {ret}, \"id\": {id}}}\r\n")
}

const T: Duration = Duration::from_secs(5);

#[test]
fn greeting_capabilities_and_ids() {
    let (s, h) = serve(GREETING, |cmd, id, _| {
        Some(vec![match cmd {
            "qmp_capabilities" => ok(id, "{}"),
            "query-status" => ok(id, r#"{"status": "running", "running": true}"#),
            _ => panic!("{cmd}"),
        }])
    });
    let mut c = QmpClient::from_stream(s, "fake", T).unwrap();
    assert_eq!(c.greeting()["QMP"]["version"]["qemu"]["major"], 10);
    let r = c.execute("query-status", None).unwrap();
    assert_eq!(r["status"], "running");
    drop(c);
    let seen = h.join().unwrap();
    assert_eq!(seen[0]["execute"], "qmp_capabilities");
    assert_eq!(seen[1]["execute"], "query-status");
    assert_ne!(seen[0]["id"], seen[1]["id"], "ids are unique");
}

#[test]
fn events_between_command_and_reply_are_queued() {
    let (s, _h) = serve(GREETING, |cmd, id, _| {
        Some(match cmd {
            "stop" => vec![
                r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}"#.to_string()
                    + "\r\n",
                ok(id, "{}"),
            ],
            "human-monitor-command" => vec![
                // split across writes, event first, then a reply in two pieces
                r#"{"event": "RTC_CHANGE", "data": {"offset": 1}}"#.to_string() + "\n",
                format!("{{\"return\": \"CPU#0\\r\\nRAX=0\\r\\n\", "),
                format!("\"id\": {id}}}\n"),
            ],
            _ => vec![ok(id, "{}")],
        })
    });
    let mut c = QmpClient::from_stream(s, "fake", T).unwrap();
    c.execute("stop", None).unwrap();
    assert_eq!(c.hmp("info registers -a").unwrap(), "CPU#0\nRAX=0\n");
    let ev = c.take_events();
    let names: Vec<_> = ev.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["STOP", "RTC_CHANGE"]);
    assert!(c.take_events().is_empty());
}

#[test]
fn error_replies_are_clear() {
    let (s, _h) = serve(GREETING, |cmd, id, args| {
        Some(vec![match cmd {
            "qmp_capabilities" => ok(id, "{}"),
            "human-monitor-command" => {
                assert_eq!(args["command-line"], "gpa2hva 0xffffffffff");
                format!(
                    "{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"No memory is mapped at address 0xffffffffff\"}}, \"id\": {id}}}\n"
                )
            }
            // QEMU's answer to a line it could not parse has no id.
            "bogus" => {
                r#"{"error": {"class": "GenericError", "desc": "JSON parse error"}}"#.to_string()
                    + "\n"
            }
            _ => unreachable!(),
        }])
    });
    let mut c = QmpClient::from_stream(s, "fake", T).unwrap();
    let e = c.hmp("gpa2hva 0xffffffffff").unwrap_err();
    match &e {
        Error::QmpCommand {
            command,
            class,
            desc,
        } => {
            assert_eq!(command, "human-monitor-command");
            assert_eq!(class, "GenericError");
            assert!(desc.contains("No memory"));
        }
        e => panic!("{e:?}"),
    }
    assert!(e.to_string().contains("GenericError"), "{e}");
    let e = c.execute("bogus", None).unwrap_err();
    assert!(e.to_string().contains("JSON parse error"), "{e}");
}

#[test]
fn timeout_then_late_reply_is_dropped() {
    let mut pending: Option<Value> = None;
    let (s, _h) = serve(GREETING, move |cmd, id, _| {
        Some(match cmd {
            "qmp_capabilities" => vec![ok(id, "{}")],
            // No reply now; it comes late, just before the next command's reply.
            "slow" => {
                pending = Some(id.clone());
                vec![]
            }
            _ => {
                let mut v = Vec::new();
                if let Some(p) = pending.take() {
                    v.push(ok(&p, r#""late""#));
                }
                v.push(ok(id, r#""fresh""#));
                v
            }
        })
    });
    let mut c = QmpClient::from_stream(s, "fake", T).unwrap();
    c.set_timeout(Duration::from_millis(100)).unwrap();
    let t0 = std::time::Instant::now();
    let e = c.execute("slow", None).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(matches!(e, Error::Qmp { .. }), "{e:?}");
    assert!(e.to_string().contains("did not answer within 0.1 s"), "{e}");
    assert!(c.lost(), "a timed-out connection is marked lost");
    assert_eq!(c.execute("next", None).unwrap(), "fresh");
}

#[test]
fn server_closing_mid_command() {
    let (s, _h) = serve(GREETING, |cmd, id, _| match cmd {
        "qmp_capabilities" => Some(vec![ok(id, "{}")]),
        _ => None,
    });
    let mut c = QmpClient::from_stream(s, "fake", T).unwrap();
    let e = c.execute("stop", None).unwrap_err();
    assert!(e.to_string().contains("closed the connection"), "{e}");
    assert!(c.lost());
    // A second command on a dead connection fails too, without hanging.
    assert!(c.execute("cont", None).is_err());
}

#[test]
fn server_closing_in_the_middle_of_a_reply() {
    let (s, h) = serve(GREETING, |cmd, id, _| match cmd {
        "qmp_capabilities" => Some(vec![ok(id, "{}")]),
        _ => Some(vec![r#"{"return": {"sta"#.to_string(), "CLOSE".to_string()]),
    });
    let mut c = QmpClient::from_stream(s, "fake", T).unwrap();
    let e = c.execute("query-status", None).unwrap_err();
    h.join().unwrap();
    assert!(matches!(e, Error::Qmp { .. }), "{e:?}");
    assert!(e.to_string().contains("middle of a message"), "{e}");
}

#[test]
fn bad_greeting_and_no_greeting() {
    let (s, _h) = serve(r#"{"return": {}}"#, |_, id, _| Some(vec![ok(id, "{}")]));
    let e = QmpClient::from_stream(s, "fake", T).unwrap_err();
    assert!(e.to_string().contains("greeting"), "{e}");

    let (s, _h) = serve("", |_, id, _| Some(vec![ok(id, "{}")]));
    let e = QmpClient::from_stream(s, "fake", Duration::from_millis(100)).unwrap_err();
    assert!(e.to_string().contains("did not answer"), "{e}");
    assert!(e.to_string().contains("another one connected"), "{e}");

    let (s, _h) = serve("not json", |_, id, _| Some(vec![ok(id, "{}")]));
    let e = QmpClient::from_stream(s, "fake", T).unwrap_err();
    assert!(e.to_string().contains("malformed"), "{e}");

    let e = QmpClient::connect("/nonexistent/qmp.sock", T).unwrap_err();
    assert!(e.to_string().contains("cannot connect"), "{e}");
}

#[test]
fn peer_pid_of_a_socket_pair_is_us() {
    let (a, _b) = UnixStream::pair().unwrap();
    assert_eq!(peer_pid(&a).unwrap(), std::process::id());
}
