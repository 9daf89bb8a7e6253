#!/usr/bin/env bash
# The README's test command, and CI's: every test of the workspace, both tiers.
#   - unit, property and synthetic-guest tests (what plain `cargo test --workspace` runs);
#   - the real-guest and live tests (GUESTCORE_REAL_GUESTS=1): they boot Debian guests under
#     QEMU (TCG), a kdump guest and a libvirt domain, and open every dump with gdb, crash, drgn,
#     makedumpfile and libkdumpfile. They skip, saying why, only where a tool cannot be
#     installed, and under CI=true even that fails.
# Installs what the tests need first (scripts/install-deps.sh test). Takes ~24 min on a
# 2-core machine after a build, with fresh captures (more from scratch: downloads, the build,
# crash for ARM64), and ~14 GB in the guest cache (README, "Disk").
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
bash scripts/install-deps.sh test
# crash for ARM64 dumps is built from source (scripts/guest/build-crash-arm64.sh: ~870 CPU-seconds,
# ~7-8 min on 2 idle cores, the first time; then cached), in the background while the guests are
# fetched and the tests compile; its progress goes to a log printed when it is waited for, before
# the tests run.
# Its own process group (setsid), so that leaving early stops the whole build.
crash_log=$(mktemp)
setsid bash scripts/guest/build-crash-arm64.sh >/dev/null 2>"$crash_log" &
crash_pid=$!
trap 'kill -- -"$crash_pid" 2>/dev/null || true; rm -f "$crash_log"' EXIT
# Guest kernels, busybox and the amd64 debug vmlinux for crash/drgn (cached outside the repo;
# nothing is installed onto the host) for the real-guest and live-guest tests, fetched before
# the tests so every test binary finds them.
if command -v qemu-system-x86_64 >/dev/null; then
  bash scripts/guest/fetch.sh amd64 i386 debug || echo "warning: guest packages could not be fetched; real-guest tests will say why they skip" >&2
fi
# The aarch64 guests' kernels and busybox, both kernels' debug vmlinux (their kallsyms has no
# data symbols; drgn reads the 4k guest's dumps and guestcore's kdump files of the 16k guests)
# and kexec-tools:arm64 for the aarch64 kdump guest; a SKIP message when arm64 packages cannot
# be had.
if command -v qemu-system-aarch64 >/dev/null; then
  bash scripts/guest/fetch.sh arm64 arm64-16k debug-arm64 debug-arm64-16k kexec-arm64 || echo "warning: arm64 guest packages could not be fetched; the aarch64 tests will say why they skip" >&2
fi
echo "test.sh: building the tests (cargo test --workspace --all-targets --no-run)"
cargo test --workspace --all-targets --no-run
echo "test.sh: waiting for crash for ARM64 (build-crash-arm64.sh)"
t1=$SECONDS
crash_ok=1
wait "$crash_pid" || crash_ok=0
sed 's/^/  /' "$crash_log" >&2
echo "test.sh: waited $((SECONDS - t1)) s for crash for ARM64"
[ $crash_ok = 1 ] || echo "warning: crash for ARM64 could not be built (above); the aarch64 crash tests will say why they skip" >&2
echo "test.sh: cargo test --workspace --all-targets, with GUESTCORE_REAL_GUESTS=1 (the real-guest and live tiers)"
GUESTCORE_REAL_GUESTS=1 cargo test --workspace --all-targets
echo "test.sh: all tests passed in $((SECONDS - t0)) s"
