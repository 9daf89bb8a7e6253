//! External tools the tests run (QEMU, crash, gdb, drgn, libkdumpfile, makedumpfile, readelf):
//! finding them, the one rule for a missing one, and the one switch for the real-guest tier.
//!
//! A test that cannot find its tool says so and passes on a developer's machine, but under
//! `CI=true` the same absence is a failure: CI installs every tool (`scripts/install-deps.sh`),
//! so a missing one there means the install broke, and a green run would hide it.
//!
//! Tests that boot QEMU guests or start libvirt (the CLI's `real_guests` and `live` modules)
//! take minutes each, so `cargo test` runs them only when asked: [`real_guests_wanted`] is
//! true when [`REAL_GUESTS_VAR`] is `1`, and otherwise prints one line saying how to run them.
//! `scripts/test.sh` (the README's test command, and CI's) sets it.

use std::path::{Path, PathBuf};

/// True when running under CI (`CI=true`), where a missing tool fails the test.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The environment variable that opts in to the real-guest and live tests.
pub const REAL_GUESTS_VAR: &str = "GUESTCORE_REAL_GUESTS";

/// True when the real-guest tier was asked for (`GUESTCORE_REAL_GUESTS=1`). Otherwise prints
/// one line naming the test and how to run it, and returns false: the caller returns at once,
/// before booting or fetching anything. This is a choice of tier, not a missing tool, so it
/// passes under `CI=true` too (CI runs `scripts/test.sh`, which sets the variable).
///
/// The line goes to the test's captured output (shown with `--nocapture`); the first such test
/// of a process also writes it once straight to stderr, past the harness's capture, so a plain
/// `cargo test` says which tier it left out.
pub fn real_guests_wanted() -> bool {
    static TOLD: std::sync::Once = std::sync::Once::new();
    if std::env::var(REAL_GUESTS_VAR).is_ok_and(|v| v == "1" || v == "true") {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    eprintln!(
        "not run: {test} boots QEMU guests (real-guest tier); set {REAL_GUESTS_VAR}=1 to run it (bash scripts/test.sh does)"
    );
    TOLD.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "note: the real-guest and live tests (QEMU guests, 10-25 min) are not run; set {REAL_GUESTS_VAR}=1 to run them (bash scripts/test.sh does)"
        );
    });
    false
}

/// The test cannot run because `why` (a tool or a guest file is missing): prints `SKIPPED: why`
/// and returns, or panics under `CI=true`.
#[track_caller]
pub fn skip(why: impl std::fmt::Display) {
    assert!(
        !in_ci(),
        "{why} — and CI=true makes a missing tool a failure (scripts/install-deps.sh installs it)"
    );
    eprintln!("SKIPPED: {why}");
}

/// The path of `cmd` on `PATH`, if any.
pub fn which(cmd: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

/// `which(cmd)`, or [`skip`] with the reason and `None`.
#[track_caller]
pub fn require(cmd: &str) -> Option<PathBuf> {
    let found = which(cmd);
    if found.is_none() {
        skip(format_args!("{cmd} is not installed"));
    }
    found
}

/// The cache of the real-guest harness (`scripts/guest/fetch.sh`): `$GUESTCORE_CACHE`, else
/// `$XDG_CACHE_HOME/guestcore/guests`, else `~/.cache/guestcore/guests`. It lives outside the
/// repository so that a fresh clone (CI) reuses kernels, debug vmlinux and captures.
pub fn guest_cache() -> PathBuf {
    if let Some(c) = std::env::var_os("GUESTCORE_CACHE") {
        return PathBuf::from(c);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    base.join("guestcore/guests")
}
