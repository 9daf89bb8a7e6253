//! External tools the tests run (QEMU, crash, gdb, drgn, libkdumpfile, makedumpfile, readelf):
//! finding them, and the one rule for a missing one.
//!
//! A test that cannot find its tool says so and passes on a developer's machine, but under
//! `CI=true` the same absence is a failure: CI installs every tool (`scripts/install-deps.sh`),
//! so a missing one there means the install broke, and a green run would hide it.

use std::path::{Path, PathBuf};

/// True when running under CI (`CI=true`), where a missing tool fails the test.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
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
