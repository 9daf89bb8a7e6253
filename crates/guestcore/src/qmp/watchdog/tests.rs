//! The watchdog against a fake QMP server: disarmed it never connects; fired (or dropped) it
//! negotiates capabilities and sends `cont`, even when the server serves it late; and it holds
//! none of this process's descriptors.

use super::*;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

fn listener() -> (tempfile::TempDir, std::path::PathBuf, UnixListener) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let l = UnixListener::bind(&path).unwrap();
    l.set_nonblocking(true).unwrap();
    (dir, path, l)
}

/// The next connection within `within`.
fn accept(l: &UnixListener, within: Duration) -> Option<UnixStream> {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if let Ok((s, _)) = l.accept() {
            s.set_nonblocking(false).unwrap();
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Plays QEMU for one connection: greets, answers every command, returns the commands.
fn serve(s: UnixStream) -> Vec<String> {
    serve_refusing(s, "", 0)
}

/// [`serve`], answering the first `refusals` `refused` commands with an error.
fn serve_refusing(s: UnixStream, refused: &str, mut refusals: usize) -> Vec<String> {
    let mut w = s.try_clone().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        line.clear();
        got.push(v["execute"].as_str().unwrap().to_string());
        let mut reply = serde_json::json!({"return": {}});
        if v["execute"] == refused && refusals > 0 {
            refusals -= 1;
            reply = serde_json::json!({"error": {"class": "GenericError",
                "desc": "There's a migration process in progress"}});
        }
        if let Some(id) = v.get("id") {
            reply["id"] = id.clone();
        }
        // Events and a reply split in two writes, as a real monitor may send them.
        if v["execute"] == "cont" {
            w.write_all(b"{\"event\": \"RESUME\"}\r\n").unwrap();
            let text = format!("{reply}\r\n");
            let (a, b) = text.split_at(text.len() / 2);
            w.write_all(a.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            w.write_all(b.as_bytes()).unwrap();
        } else {
            w.write_all(format!("{reply}\r\n").as_bytes()).unwrap();
        }
    }
    got
}

#[test]
fn watchdog_disarmed_never_connects() {
    let (_d, path, l) = listener();
    let w = Watchdog::arm(&path, &[Restore::Cont]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    w.disarm();
    assert!(accept(&l, Duration::from_millis(500)).is_none());
}

#[test]
fn watchdog_fired_sends_cont() {
    let (_d, path, l) = listener();
    let w = Watchdog::arm(&path, &[Restore::Cont]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        accept(&l, Duration::from_millis(100)).is_none(),
        "armed: silent"
    );
    let t0 = Instant::now();
    w.fire();
    let s = accept(&l, Duration::from_secs(2)).expect("the watchdog connects");
    assert!(t0.elapsed() < Duration::from_secs(1));
    // The watchdog closes its connection once it has the reply: serve() sees EOF.
    assert_eq!(serve(s), ["qmp_capabilities", "cont"]);
    assert!(accept(&l, Duration::from_millis(200)).is_none(), "one cont");
}

#[test]
fn watchdog_dropped_fires_and_waits_for_a_busy_monitor() {
    let (_d, path, l) = listener();
    drop(Watchdog::arm(&path, &[Restore::Cont]).unwrap());
    // A monitor busy with another client: the connection queues in the backlog; serve it
    // only after a while, as QEMU does once the previous client is gone.
    std::thread::sleep(Duration::from_millis(700));
    let s = accept(&l, Duration::from_secs(2)).expect("queued connection");
    assert_eq!(serve(s), ["qmp_capabilities", "cont"]);
}

#[test]
fn watchdog_holds_no_inherited_descriptor() {
    let (_d, path, _l) = listener();
    // A connection of ours, as guestcore's QMP session would be: the watchdog must not keep
    // it open, or QEMU would never serve the next client.
    let (mine, mut peer) = UnixStream::pair().unwrap();
    let w = Watchdog::arm(&path, &[Restore::Cont]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(mine);
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(peer.read(&mut b).unwrap(), 0, "EOF: nobody else holds it");
    w.disarm();
}

#[test]
fn watchdog_refuses_an_overlong_path() {
    let p = std::path::PathBuf::from(format!("/tmp/{}", "x".repeat(200)));
    let e = Watchdog::arm(&p, &[Restore::Cont]).unwrap_err().to_string();
    assert!(e.contains("too long"), "{e}");
}

#[test]
fn watchdog_restores_in_order_and_retries_a_refused_capability() {
    let (_d, path, l) = listener();
    let restore = [
        Restore::MigrateCancel,
        Restore::Capability {
            name: "background-snapshot",
            state: false,
        },
        Restore::CloseFd("guestcore-snapshot"),
    ];
    let w = Watchdog::arm(&path, &restore).unwrap();
    w.fire();
    let s = accept(&l, Duration::from_secs(2)).expect("the watchdog connects");
    // QEMU refuses the capability while the cancelled migration is still ending.
    let got = serve_refusing(s, "migrate-set-capabilities", 2);
    assert_eq!(
        got,
        [
            "qmp_capabilities",
            "migrate_cancel",
            "migrate-set-capabilities",
            "migrate-set-capabilities",
            "migrate-set-capabilities",
            "closefd"
        ]
    );
    assert!(accept(&l, Duration::from_millis(200)).is_none(), "done");
}

#[test]
fn watchdog_commands_carry_their_arguments() {
    let (cmd, retry) = Restore::Capability {
        name: "background-snapshot",
        state: false,
    }
    .command("x-1");
    assert!(retry);
    assert_eq!(
        cmd,
        serde_json::json!({"execute": "migrate-set-capabilities", "id": "x-1", "arguments":
            {"capabilities": [{"capability": "background-snapshot", "state": false}]}})
    );
    let (cmd, retry) = Restore::CloseFd("n").command("x-2");
    assert!(!retry);
    assert_eq!(cmd["arguments"]["fdname"], "n");
}

/// A watchdog for `owner` (a process this test can let be killed) with a short heartbeat limit.
fn armed_for(path: &std::path::Path, restore: &[Restore], owner: u32, limit: Duration) -> Watchdog {
    let p = sys::Prepared::new(path, Watchdog::steps(restore), FIRE_WINDOW, limit)
        .unwrap()
        .with_owner(owner);
    Watchdog {
        pipe: Some(sys::spawn(&p).unwrap()),
    }
}

#[test]
fn a_stopped_heartbeat_kills_the_owner_and_fires_and_a_resting_one_does_not() {
    use std::os::unix::process::ExitStatusExt;
    let (_d, path, l) = listener();
    let mut owner = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let limit = Duration::from_millis(300);
    let w = armed_for(&path, &[Restore::MigrateCancel], owner.id(), limit);
    let h = w.heartbeat().unwrap();
    // Beating, or resting after a beat: nothing happens.
    for _ in 0..6 {
        h.beat();
        std::thread::sleep(Duration::from_millis(100));
    }
    h.rest();
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        owner.try_wait().unwrap().is_none(),
        "killed while beating or resting"
    );
    assert!(
        accept(&l, Duration::from_millis(10)).is_none(),
        "fired while beating"
    );
    // A beat, then silence: the owner is SIGKILLed after the limit, and the watchdog fires
    // although this process still holds the pipe.
    h.beat();
    let t0 = Instant::now();
    let status = owner.wait().unwrap();
    let took = t0.elapsed();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let s = accept(&l, Duration::from_secs(5)).expect("the watchdog fired");
    assert_eq!(serve(s), ["qmp_capabilities", "migrate_cancel"]);
    drop(h);
    drop(w);
}
