#!/usr/bin/env bash
# The README's test command: every test of the workspace, including the real-guest tests
# (which boot QEMU guests; they skip with a printed reason only where QEMU cannot be installed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo test --workspace --all-targets
