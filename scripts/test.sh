#!/usr/bin/env bash
# The README's test command: every test of the workspace, including the real-guest tests
# (which boot QEMU guests; they skip with a printed reason only where QEMU cannot be installed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# Guest kernels, busybox and the amd64 debug vmlinux for crash/drgn (cached outside the repo;
# nothing is installed onto the host) for the real-guest and live-guest tests, fetched before
# the tests so every test binary finds them.
if command -v qemu-system-x86_64 >/dev/null; then
  bash scripts/guest/fetch.sh amd64 i386 debug || echo "warning: guest packages could not be fetched; real-guest tests will say why they skip" >&2
fi
# The real-guest and live tests run only when asked (plain `cargo test` leaves them out).
GUESTCORE_REAL_GUESTS=1 cargo test --workspace --all-targets
