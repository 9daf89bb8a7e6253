//! A background snapshot never stalls the guest for long because guestcore stopped reading it:
//! the guest's own clock (its `jiffies`, read through a second monitor with
//! `guestcore read --no-pause`) keeps advancing, the migration ends within the bound, and no
//! file is left, both when guestcore's reader is held (a debugger stopping that one thread:
//! guestcore cuts the stream itself and says why) and when all of guestcore is stopped
//! (SIGSTOP: its watchdog kills it and puts QEMU back). A snapshot nobody holds up is
//! measured the same way, against what guestcore reports.

use super::*;
use std::os::unix::process::ExitStatusExt;

/// guestcore's own bound: it cuts a stream it was away from for 1 s (`STREAM_STALL_LIMIT`).
const CUT_AFTER: Duration = Duration::from_secs(1);
/// The watchdog's bound: no heartbeat for 2 s (`HEARTBEAT_LIMIT`), then SIGKILL.
const KILLED_AFTER: Duration = Duration::from_secs(2);
/// What a loaded 2-core host adds to either: a sample's own time, QEMU noticing the closed
/// pipe, the scheduler.
const SLACK: Duration = Duration::from_millis(1500);

/// One look at the guest from outside: its jiffies and QEMU's migration status.
#[derive(Debug)]
struct Sample {
    at: Duration,
    jiffies: u64,
    migration: Option<String>,
}

/// The guest's jiffies, read through `guestcore read --no-pause` on monitor b.
fn jiffies(g: &Guest, addr: &str) -> u64 {
    let out = succeed(guestcore().args([
        "read",
        "--no-pause",
        &format!("qmp:{}", g.sock_b.display()),
        addr,
        "8",
    ]));
    let bytes: [u8; 8] = out.stdout[..8]
        .try_into()
        .unwrap_or_else(|_| panic!("read {addr}: {:?}", out.stdout));
    u64::from_le_bytes(bytes)
}

/// Samples the guest through monitor b until `until` says stop (given the samples so far), at
/// most `span`: each sample is the guest's jiffies and QEMU's migration status.
fn sample(g: &Guest, span: Duration, mut until: impl FnMut(&[Sample]) -> bool) -> Vec<Sample> {
    let addr = format!("0x{}", g.sym("jiffies"));
    let t0 = Instant::now();
    let mut v: Vec<Sample> = Vec::new();
    while t0.elapsed() < span && !until(&v) {
        let j = jiffies(g, &addr);
        let migration = migration_status_b(g);
        v.push(Sample {
            at: t0.elapsed(),
            jiffies: j,
            migration,
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    v
}

fn migration_status_b(g: &Guest) -> Option<String> {
    let mut b = g.qmp_b();
    let s = b.execute("query-migrate", None).unwrap();
    s["status"].as_str().map(str::to_string)
}

/// The longest wall-clock stretch over which the guest's jiffies did not move, as the samples
/// bound it (from the first sample with a value to the first with a larger one).
fn longest_frozen(samples: &[Sample]) -> Duration {
    let mut longest = Duration::ZERO;
    let mut since = 0;
    for (i, s) in samples.iter().enumerate() {
        if s.jiffies > samples[since].jiffies {
            longest = longest.max(s.at - samples[since].at);
            since = i;
        }
    }
    if let Some(last) = samples.last() {
        longest = longest.max(last.at - samples[since].at);
    }
    longest
}

/// When QEMU first reported no migration running, as the samples saw it.
fn migration_ended_at(samples: &[Sample]) -> Option<Duration> {
    samples
        .iter()
        .find(|s| {
            !matches!(
                s.migration.as_deref(),
                Some("active" | "cancelling" | "setup")
            )
        })
        .map(|s| s.at)
}

/// Starts `guestcore dump qmp:a -o OUT` and returns it once QEMU reports its migration active
/// (a few tries: a small guest's snapshot can end before it is seen).
fn snapshot_in_flight(g: &Guest, name: &str) -> (Child, PathBuf, Vec<String>) {
    for attempt in 1..=5 {
        let out = g.path(&format!("{name}{attempt}.elf"));
        let before = dir_names(g);
        let mut a = spawn_guestcore(&g.input, &[], &out);
        let mut b = g.qmp_b();
        if until_migrating(&mut b, &mut a) {
            return (a, out, before);
        }
        eprintln!("attempt {attempt}: the snapshot ended before it was seen");
        let _ = a.wait();
    }
    panic!("never caught guestcore mid-snapshot");
}

/// What must hold once a held-up snapshot is over: QEMU as found, the guest running, no file.
fn qemu_put_back(g: &Guest, pipes: usize, out: &Path, before: &[String]) {
    let mut b = g.qmp_b();
    until(&mut b, Duration::from_secs(10), "capability off", |q| {
        !background_snapshot_on(q)
    });
    until(&mut b, Duration::from_secs(5), "migration ended", |q| {
        !matches!(
            migration_status(q).as_deref(),
            Some("active" | "cancelling")
        )
    });
    assert!(running_via(&mut b), "the guest runs");
    assert_eq!(
        pipes_of(g.child.id()),
        pipes,
        "QEMU holds no pipe of guestcore's"
    );
    assert!(!out.exists());
    assert_eq!(dir_names(g), before, "no file of any name is left");
}

/// Stops one thread of process `pid` (its main thread, which reads the snapshot's stream) as
/// a debugger in non-stop mode does: `PTRACE_SEIZE` + `PTRACE_INTERRUPT`. The other threads
/// run on.
fn stop_main_thread(pid: u32) {
    let pid = pid as libc::pid_t;
    // SAFETY: ptrace(2) on a child process this test started; no memory is passed.
    unsafe {
        assert_eq!(
            libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0),
            0,
            "PTRACE_SEIZE"
        );
        assert_eq!(
            libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0),
            0,
            "PTRACE_INTERRUPT"
        );
        let mut status = 0;
        assert_eq!(
            libc::waitpid(pid, &mut status, libc::__WALL),
            pid,
            "waitpid"
        );
    }
}

fn release_main_thread(pid: u32) {
    // SAFETY: as above; the thread is in a ptrace-stop from `stop_main_thread`.
    let rc = unsafe { libc::ptrace(libc::PTRACE_DETACH, pid as libc::pid_t, 0, 0) };
    assert_eq!(rc, 0, "PTRACE_DETACH");
}

#[test]
fn a_guestcore_that_stops_reading_never_stalls_the_guest_for_long() {
    let files = guest_or_skip!();
    let g = Guest::boot(&files, "512M", Ram::Anonymous);
    let pipes = pipes_of(g.child.id());

    // A snapshot nobody holds up: the guest's clock keeps going, and what guestcore reports
    // as its longest wait is said.
    let (a, out, _) = snapshot_in_flight(&g, "free");
    let samples = sample(&g, Duration::from_secs(60), |v| {
        v.last()
            .is_some_and(|s| s.migration.as_deref() != Some("active"))
    });
    let (st, stderr) = finish(a);
    assert!(st.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("background snapshot: guest stopped"))
        .unwrap_or_else(|| panic!("no snapshot report: {stderr}"));
    eprintln!(
        "free snapshot: {} samples, guest's jiffies frozen at most {:.0} ms; guestcore: {line}",
        samples.len(),
        longest_frozen(&samples).as_secs_f64() * 1e3
    );
    assert!(
        line.contains("waited on guestcore's reading at most"),
        "{line}"
    );
    assert!(
        longest_frozen(&samples) < CUT_AFTER,
        "the guest's clock stood still during a snapshot nobody held up: {samples:?}"
    );
    let _ = std::fs::remove_file(&out);

    // guestcore's reader held (a debugger stops its main thread): guestcore's stall guard
    // cuts the stream after 1 s, QEMU's migration fails, the guest runs on; once the reader
    // runs again the command fails saying why.
    let (a, out, before) = loop {
        let (a, out, before) = snapshot_in_flight(&g, "held");
        stop_main_thread(a.id());
        if migration_status_b(&g).as_deref() == Some("active") {
            break (a, out, before);
        }
        eprintln!("the snapshot ended before its reader was held; again");
        release_main_thread(a.id());
        let _ = finish(a);
    };
    let samples = sample(&g, Duration::from_secs(8), |v| {
        v.last()
            .is_some_and(|s| s.at > CUT_AFTER + SLACK + Duration::from_secs(1))
    });
    release_main_thread(a.id());
    let (st, stderr) = finish(a);
    let ended = migration_ended_at(&samples);
    let frozen = longest_frozen(&samples);
    eprintln!(
        "reader held: migration ended {ended:?} after the hold, guest's jiffies frozen at most {:.0} ms; guestcore: {}",
        frozen.as_secs_f64() * 1e3,
        stderr.trim()
    );
    assert!(!st.success(), "{stderr}");
    assert!(
        stderr.contains("did not take the background snapshot's stream"),
        "{stderr}"
    );
    assert!(
        ended.is_some_and(|t| t <= CUT_AFTER + SLACK),
        "the migration did not end within the bound: {samples:?}"
    );
    assert!(frozen <= CUT_AFTER + SLACK, "{samples:?}");
    assert!(
        samples.last().unwrap().jiffies > samples[0].jiffies,
        "{samples:?}"
    );
    qemu_put_back(&g, pipes, &out, &before);

    // All of guestcore stopped (SIGSTOP): its watchdog, whose heartbeat stopped, SIGKILLs it
    // and puts QEMU back; the guest runs on.
    let (mut a, out, before) = snapshot_in_flight(&g, "stopped");
    signal(a.id(), libc::SIGSTOP);
    let mut died = None;
    let samples = sample(&g, Duration::from_secs(8), |v| {
        if died.is_none() && a.try_wait().unwrap().is_some() {
            died = v.last().map(|s| s.at);
        }
        v.last()
            .is_some_and(|s| s.at > KILLED_AFTER + SLACK + Duration::from_secs(1))
    });
    let (st, _) = finish(a);
    let ended = migration_ended_at(&samples);
    let frozen = longest_frozen(&samples);
    eprintln!(
        "guestcore stopped: killed by {died:?}, migration ended {ended:?}, guest's jiffies frozen at most {:.0} ms",
        frozen.as_secs_f64() * 1e3
    );
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{st:?}");
    assert!(died.is_some_and(|t| t <= KILLED_AFTER + SLACK), "{died:?}");
    assert!(
        ended.is_some_and(|t| t <= KILLED_AFTER + SLACK),
        "the migration did not end within the bound: {samples:?}"
    );
    assert!(frozen <= KILLED_AFTER + SLACK, "{samples:?}");
    assert!(
        samples.last().unwrap().jiffies > samples[0].jiffies,
        "{samples:?}"
    );
    qemu_put_back(&g, pipes, &out, &before);
}
