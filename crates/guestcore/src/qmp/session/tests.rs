//! The pause/resume contract against a fake QMP server.

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};

/// A fake QEMU: answers the commands a session sends, records them, and knows whether the
/// guest runs.
struct FakeQemu {
    path: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

fn fake_qemu(running: bool, fail_registers: bool) -> FakeQemu {
    fake_qemu_migrating(running, fail_registers, None)
}

/// [`fake_qemu`] whose `query-migrate` reports `migrating` as the migration's status.
fn fake_qemu_migrating(
    running: bool,
    fail_registers: bool,
    migrating: Option<&'static str>,
) -> FakeQemu {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut running = running;
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let mut w: UnixStream = conn.try_clone().unwrap();
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            let mut line = String::new();
            let mut r = BufReader::new(conn);
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                let v: Value = serde_json::from_str(&line).unwrap();
                line.clear();
                let cmd = v["execute"].as_str().unwrap().to_string();
                let id = v["id"].clone();
                let arg = v["arguments"]["command-line"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                log2.lock().unwrap().push(if arg.is_empty() {
                    cmd.clone()
                } else {
                    format!("{cmd} {arg}")
                });
                let ret = match cmd.as_str() {
                    "query-status" => {
                        json!({"running": running, "status": if running {"running"} else {"paused"}})
                    }
                    "query-target" => json!({"arch": "x86_64"}),
                    "query-migrate" => match migrating {
                        Some(st) => json!({"status": st}),
                        None => json!({}),
                    },
                    "stop" => {
                        running = false;
                        json!({})
                    }
                    "cont" => {
                        running = true;
                        json!({})
                    }
                    "human-monitor-command" if arg.starts_with("info registers") => {
                        if fail_registers {
                            let e = json!({"error": {"class": "GenericError", "desc": "boom"}, "id": id});
                            w.write_all(format!("{e}\n").as_bytes()).unwrap();
                            continue;
                        }
                        json!("CPU#0\r\nRAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000000000\r\n")
                    }
                    _ => json!({}),
                };
                let reply = json!({"return": ret, "id": id});
                w.write_all(format!("{reply}\n").as_bytes()).unwrap();
            }
        }
    });
    FakeQemu {
        path,
        log,
        _dir: dir,
    }
}

impl FakeQemu {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[test]
fn pause_then_resume_on_drop_and_on_error() {
    let q = fake_qemu(true, true);
    {
        let mut s = LiveSession::connect(&q.path, &LiveOptions::default()).unwrap();
        assert!(s.was_running() && s.holds_pause() && s.consistent());
        // An error while paused: the session is dropped with the error, and resumes.
        assert!(s.registers().is_err());
    }
    let log = q.log();
    assert_eq!(
        log,
        [
            "qmp_capabilities",
            "query-status",
            "query-migrate",
            "stop",
            "query-target",
            "human-monitor-command info registers -a",
            "cont"
        ]
    );
}

#[test]
fn resume_reports_the_pause_once() {
    let q = fake_qemu(true, false);
    let mut s = LiveSession::connect(&q.path, &LiveOptions::default()).unwrap();
    assert!(s.resume().unwrap().is_some());
    assert!(s.resume().unwrap().is_none());
    assert!(s.is_running().unwrap());
    drop(s);
    assert_eq!(q.log().iter().filter(|c| *c == "cont").count(), 1);
}

#[test]
fn already_paused_guest_stays_paused_and_no_pause_never_stops() {
    let q = fake_qemu(false, false);
    let s = LiveSession::connect(&q.path, &LiveOptions::default()).unwrap();
    assert!(!s.was_running() && !s.holds_pause() && s.consistent());
    drop(s);
    assert!(!q.log().iter().any(|c| c == "stop" || c == "cont"));

    let q = fake_qemu(true, false);
    let opts = LiveOptions {
        pause: false,
        ..Default::default()
    };
    let s = LiveSession::connect(&q.path, &opts).unwrap();
    assert!(s.was_running() && !s.consistent());
    drop(s);
    assert!(!q.log().iter().any(|c| c == "stop" || c == "cont"));
}

#[test]
fn resume_on_panic_unwind() {
    let q = fake_qemu(true, false);
    let path = q.path.clone();
    let r = std::panic::catch_unwind(move || {
        let _s = LiveSession::connect(&path, &LiveOptions::default()).unwrap();
        panic!("while paused");
    });
    assert!(r.is_err());
    assert_eq!(q.log().last().map(String::as_str), Some("cont"));
}

/// The session's connection is lost while paused (QEMU never answers `cont`): `resume` fails,
/// shuts the connection down, and the watchdog sends `cont` over a connection of its own.
#[test]
fn lost_connection_fires_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let log = Arc::new(Mutex::new(Vec::<(usize, String)>::new()));
    let log2 = Arc::clone(&log);
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { return };
            let mut w = conn.try_clone().unwrap();
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            let mut r = BufReader::new(conn);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                let v: Value = serde_json::from_str(&line).unwrap();
                line.clear();
                let cmd = v["execute"].as_str().unwrap().to_string();
                log2.lock().unwrap().push((n, cmd.clone()));
                if n == 0 && cmd == "cont" {
                    continue; // wedged for this client
                }
                let ret = if cmd == "query-status" {
                    json!({"running": true, "status": "running"})
                } else if cmd == "query-target" {
                    json!({"arch": "x86_64"})
                } else {
                    json!({})
                };
                let reply = json!({"return": ret, "id": v["id"]});
                w.write_all(format!("{reply}\n").as_bytes()).unwrap();
            }
        }
    });
    let opts = LiveOptions {
        timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let mut s = LiveSession::connect(&path, &opts).unwrap();
    assert!(s.resume().is_err());
    let t0 = Instant::now();
    while !log.lock().unwrap().contains(&(1, "cont".to_string())) {
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", log.lock());
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(s);
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log[log.len() - 2..],
        [(1, "qmp_capabilities".to_string()), (1, "cont".to_string())]
    );
}

/// A guest under a running migration (a background snapshot whose reader stalls, where `stop`
/// would wait on it): `pause` refuses at once, sends no `stop`, and arms no watchdog.
#[test]
fn no_pause_under_a_running_migration() {
    let q = fake_qemu_migrating(true, false, Some("active"));
    let t0 = Instant::now();
    let e = LiveSession::connect(&q.path, &LiveOptions::default()).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(
        e.to_string().contains("QEMU is migrating (status active"),
        "{e}"
    );
    assert!(
        !q.log().iter().any(|c| c == "stop" || c == "cont"),
        "{:?}",
        q.log()
    );
    // A finished migration does not stand in the way.
    let q = fake_qemu_migrating(true, false, Some("completed"));
    let s = LiveSession::connect(&q.path, &LiveOptions::default()).unwrap();
    assert!(s.holds_pause());
}

/// A reply that never comes while paused: the command fails after one timeout, `cont` is not
/// waited for a second time on the lost connection, and the watchdog resumes the guest.
#[test]
fn a_stopped_qemu_costs_one_timeout_and_the_watchdog_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let log = Arc::new(Mutex::new(Vec::<(usize, String)>::new()));
    let log2 = Arc::clone(&log);
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { return };
            let mut w = conn.try_clone().unwrap();
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            let mut r = BufReader::new(conn);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                let v: Value = serde_json::from_str(&line).unwrap();
                line.clear();
                let cmd = v["execute"].as_str().unwrap().to_string();
                log2.lock().unwrap().push((n, cmd.clone()));
                if n == 0 && cmd == "human-monitor-command" {
                    continue; // QEMU stopped from here on, for this client
                }
                let ret = if cmd == "query-status" {
                    json!({"running": true, "status": "running"})
                } else if cmd == "query-target" {
                    json!({"arch": "x86_64"})
                } else {
                    json!({})
                };
                let reply = json!({"return": ret, "id": v["id"]});
                w.write_all(format!("{reply}\n").as_bytes()).unwrap();
            }
        }
    });
    let opts = LiveOptions {
        timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let t0 = Instant::now();
    {
        let mut s = LiveSession::connect(&path, &opts).unwrap();
        let e = s.registers().unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("did not answer within 0.3 s")
                && e.contains("HMP `info registers -a`")
                && e.contains("watchdog resumes it"),
            "{e}"
        );
    }
    assert!(
        t0.elapsed() < Duration::from_millis(550),
        "{:?}",
        t0.elapsed()
    );
    while !log.lock().unwrap().contains(&(1, "cont".to_string())) {
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", log.lock());
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = log.lock().unwrap().clone();
    assert!(!log.contains(&(0, "cont".to_string())), "{log:?}");
}
