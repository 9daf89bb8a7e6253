//! QEMU left as guestcore found it, and every wait on QEMU bounded, on the ways a live dump can
//! go wrong: guestcore SIGKILLed mid-snapshot (its watchdog turns `background-snapshot` off
//! again and ends the migration), guestcore meeting a migration already running (an error at
//! once, not a `stop` that waits on it), what a killed guestcore without a watchdog left (repaired by
//! the next snapshot, saying so), QEMU stopped (SIGSTOP) mid-snapshot and mid-`--pause` (an
//! error naming QEMU within the stated bound, the guest running once QEMU runs again), and
//! QEMU killed mid-snapshot (the error says QEMU went away). Each test reuses one guest.

use super::*;
use std::os::unix::process::ExitStatusExt;

/// The bound guestcore states for a QEMU that stops answering: no stream data for 1 s, then
/// 10 s for QEMU's reply (`qmp::snapshot`, `qmp::client`), plus slack for a loaded host.
const STOPPED_QEMU_BOUND: Duration = Duration::from_secs(16);

/// One guest for every case (a boot costs more than all of them but the bounded waits);
/// QEMU is killed last.
#[test]
fn live_dumps_leave_qemu_as_found_and_bound_their_waits() {
    let files = guest_or_skip!();
    let mut g = Guest::boot(&files, "256M", Ram::Anonymous);
    sigkilled_snapshot_is_undone_and_a_second_guestcore_is_told_at_once(&g);
    stopped_or_dead_qemu_ends_the_command_with_an_error_naming_it(&mut g);
}

fn sigkilled_snapshot_is_undone_and_a_second_guestcore_is_told_at_once(g: &Guest) {
    let qemu_pid = g.child.id();
    let pipes = pipes_of(qemu_pid);
    let mut b = g.qmp_b();
    assert!(!background_snapshot_on(&mut b));

    // A migration runs (this test's own, into a pipe it never reads, so it stays active): a
    // guestcore meeting it is told at once, with no `stop` sent.
    {
        use std::os::fd::{AsFd, FromRawFd, OwnedFd};
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 just returned these two descriptors; nothing else owns them.
        let (_r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        b.execute_with_fd(
            "getfd",
            Some(json!({"fdname": "test-migration"})),
            w.as_fd(),
        )
        .unwrap();
        drop(w);
        b.execute("migrate", Some(json!({"uri": "fd:test-migration"})))
            .unwrap();
        until(
            &mut b,
            Duration::from_secs(10),
            "the test's migration active",
            |q| migration_status(q).as_deref() == Some("active"),
        );
        for args in [&[][..], &["--pause"][..]] {
            let t0 = Instant::now();
            let o = guestcore()
                .arg("dump")
                .args(args)
                .arg(&g.input)
                .arg("-o")
                .arg(g.path("b.elf"))
                .output()
                .unwrap();
            let took = t0.elapsed();
            let stderr = String::from_utf8_lossy(&o.stderr);
            eprintln!(
                "guestcore during a migration {args:?}: {:.2} s: {}",
                took.as_secs_f64(),
                stderr.trim()
            );
            assert!(!o.status.success(), "{args:?}: {stderr}");
            assert!(
                stderr.contains("QEMU is already migrating")
                    || stderr.contains("QEMU is migrating"),
                "{args:?}: {stderr}"
            );
            assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
            assert!(!g.path("b.elf").exists());
            assert!(running_via(&mut b), "the guest runs");
        }
        b.execute("migrate_cancel", None).unwrap();
    }
    until(
        &mut b,
        Duration::from_secs(10),
        "the test's migration ended",
        |q| {
            !matches!(
                migration_status(q).as_deref(),
                Some("active" | "cancelling")
            )
        },
    );

    // guestcore A streams a snapshot; SIGKILL it mid-stream: its watchdog ends the migration
    // and turns the capability off.
    let mut caught = None;
    for attempt in 1..=5 {
        let out = g.path(&format!("a{attempt}.elf"));
        let before = dir_names(g);
        let mut a = spawn_guestcore(&g.input, &[], &out);
        if !until_migrating(&mut b, &mut a) {
            eprintln!("attempt {attempt}: the snapshot ended before it was seen");
            continue;
        }
        signal(a.id(), libc::SIGKILL);
        caught = Some((a, out, before));
        break;
    }
    let (a, a_out, before) = caught.expect("never caught guestcore A mid-snapshot");
    let killed = Instant::now();
    let (st, _) = finish(a);
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    let took = until(&mut b, Duration::from_secs(5), "capability off", |q| {
        !background_snapshot_on(q)
    });
    until(&mut b, Duration::from_secs(5), "migration ended", |q| {
        !matches!(
            migration_status(q).as_deref(),
            Some("active" | "cancelling")
        )
    });
    eprintln!(
        "background-snapshot off {:.1} ms after SIGKILL; migration {:?}",
        took.as_secs_f64() * 1e3,
        migration_status(&mut b),
    );
    assert!(killed.elapsed() < Duration::from_secs(5));
    assert!(running_via(&mut b), "the guest runs");
    assert_eq!(
        pipes_of(qemu_pid),
        pipes,
        "QEMU holds no pipe of guestcore's"
    );
    assert!(!a_out.exists());
    // The output had no name while it was written (O_TMPFILE), so the SIGKILL left none.
    assert_eq!(
        dir_names(g),
        before,
        "a SIGKILLed snapshot leaves no file of any name"
    );
    // Postcopy can be enabled again (QEMU refuses it alongside background-snapshot).
    for on in [true, false] {
        b.execute(
            "migrate-set-capabilities",
            Some(json!({"capabilities": [{"capability": "postcopy-ram", "state": on}]})),
        )
        .unwrap_or_else(|e| panic!("postcopy-ram {on}: {e}"));
    }

    // What a killed guestcore without a watchdog leaves: the capability on, its descriptor
    // name held by monitor a. The next snapshot says so, works, and leaves neither.
    b.execute(
        "migrate-set-capabilities",
        Some(json!({"capabilities": [{"capability": "background-snapshot", "state": true}]})),
    )
    .unwrap();
    {
        use std::os::fd::{AsFd, FromRawFd, OwnedFd};
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 just returned these two descriptors; nothing else owns them.
        let (_r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut q = g.qmp();
        q.execute_with_fd(
            "getfd",
            Some(json!({"fdname": "guestcore-snapshot"})),
            w.as_fd(),
        )
        .unwrap();
    }
    assert_eq!(pipes_of(qemu_pid), pipes + 1, "the leftover descriptor");
    let stderr = snapshot_dump_quiet(g, &g.path("after.elf"));
    assert!(
        stderr
            .contains("background-snapshot migration capability was on with no migration running")
            && stderr.contains("still held the descriptor"),
        "{stderr}"
    );
    assert!(!background_snapshot_on(&mut b), "repaired");
    assert_eq!(pipes_of(qemu_pid), pipes, "the leftover descriptor closed");
    assert!(running_via(&mut b));
    let j = info_json(&g.path("after.elf"));
    assert_eq!(j["osrelease"], g.line("GUESTCORE-RELEASE").as_str(), "{j}");
}

/// A snapshot dump with `--quiet`, which must succeed; its stderr (warnings survive it).
fn snapshot_dump_quiet(g: &Guest, out: &Path) -> String {
    let o = succeed(
        guestcore()
            .args(["--quiet", "dump", &g.input, "-o"])
            .arg(out),
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stopped_or_dead_qemu_ends_the_command_with_an_error_naming_it(g: &mut Guest) {
    let qemu_pid = g.child.id();
    let mut b = g.qmp_b();
    let sock = g.sock.display().to_string();

    // QEMU stopped mid-snapshot: guestcore gives up within the bound, naming QEMU; once
    // QEMU runs again the guest runs, the migration is over and the capability off.
    let mut done = false;
    for attempt in 1..=5 {
        let out = g.path(&format!("stopped{attempt}.elf"));
        let mut c = spawn_guestcore(&g.input, &[], &out);
        if !until_migrating(&mut b, &mut c) {
            eprintln!("attempt {attempt}: the snapshot ended before it was seen");
            continue;
        }
        signal(qemu_pid, libc::SIGSTOP);
        let stopped = Instant::now();
        let (st, stderr) = finish(c);
        let took = stopped.elapsed();
        signal(qemu_pid, libc::SIGCONT);
        if st.success() {
            eprintln!("attempt {attempt}: the snapshot ended before SIGSTOP");
            continue;
        }
        eprintln!(
            "QEMU stopped mid-snapshot: guestcore ended after {:.1} s: {}",
            took.as_secs_f64(),
            stderr.trim()
        );
        assert!(took < STOPPED_QEMU_BOUND, "{took:?}: {stderr}");
        assert!(
            names_stopped_qemu(&stderr) && stderr.contains(&sock),
            "{stderr}"
        );
        assert!(!out.exists(), "no output");
        assert!(leftovers(g, &format!("stopped{attempt}")).is_empty());
        let back = until(&mut b, Duration::from_secs(10), "capability off", |q| {
            !background_snapshot_on(q)
                && !matches!(
                    migration_status(q).as_deref(),
                    Some("active" | "cancelling")
                )
        });
        eprintln!(
            "QEMU put back {:.1} ms after SIGCONT",
            back.as_secs_f64() * 1e3
        );
        assert!(running_via(&mut b));
        done = true;
        break;
    }
    assert!(done, "never stopped QEMU mid-snapshot");

    // QEMU stopped mid-`--pause`: the same bound; the watchdog resumes the guest once QEMU
    // runs again.
    let mut done = false;
    for attempt in 1..=10 {
        let out = g.path(&format!("paused{attempt}.elf"));
        let mut c = spawn_guestcore(&g.input, &["--pause"], &out);
        let t0 = Instant::now();
        while running_via(&mut b) && c.try_wait().unwrap().is_none() {
            assert!(t0.elapsed() < Duration::from_secs(60), "no pause");
        }
        signal(qemu_pid, libc::SIGSTOP);
        let stopped = Instant::now();
        let (st, stderr) = finish(c);
        let took = stopped.elapsed();
        signal(qemu_pid, libc::SIGCONT);
        if st.success() {
            eprintln!("attempt {attempt}: the pause ended before SIGSTOP");
            continue;
        }
        eprintln!(
            "QEMU stopped mid-pause: guestcore ended after {:.1} s: {}",
            took.as_secs_f64(),
            stderr.trim()
        );
        assert!(took < STOPPED_QEMU_BOUND, "{took:?}: {stderr}");
        assert!(
            names_stopped_qemu(&stderr) && stderr.contains(&sock),
            "{stderr}"
        );
        assert!(!out.exists(), "no output");
        let back = until(
            &mut b,
            Duration::from_secs(10),
            "guest running",
            running_via,
        );
        eprintln!(
            "guest running {:.1} ms after SIGCONT",
            back.as_secs_f64() * 1e3
        );
        done = true;
        break;
    }
    assert!(done, "never stopped QEMU mid-pause");

    // QEMU killed mid-snapshot: the error says QEMU went away.
    for attempt in 1..=5 {
        let out = g.path(&format!("dead{attempt}.elf"));
        let mut c = spawn_guestcore(&g.input, &[], &out);
        if !until_migrating(&mut b, &mut c) {
            eprintln!("attempt {attempt}: the snapshot ended before it was seen");
            continue;
        }
        g.child.kill().unwrap();
        let killed = Instant::now();
        let (st, stderr) = finish(c);
        let took = killed.elapsed();
        assert!(
            !st.success(),
            "a dump of a QEMU killed mid-snapshot: {stderr}"
        );
        eprintln!(
            "QEMU killed mid-snapshot: guestcore ended after {:.2} s: {}",
            took.as_secs_f64(),
            stderr.trim()
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(stderr.contains("QEMU went away"), "{stderr}");
        assert!(!out.exists());
        assert!(leftovers(g, &format!("dead{attempt}")).is_empty());
        return;
    }
    panic!("never killed QEMU mid-snapshot");
}
