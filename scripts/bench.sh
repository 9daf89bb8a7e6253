#!/usr/bin/env bash
# Builds release and runs every side-by-side benchmark of guestcore-bench, printing Markdown
# tables (medians and ratios, all peers on the same input in the same run).
#
#   scripts/bench.sh [CAPTURE_DIR]
#
# CAPTURE_DIR holds a QEMU phys.elf and timings.txt (QEMU's dump-guest-memory durations).
# Without it, when QEMU and the harness's guest kernel are present, a guest is booted and QEMU's
# dumps are timed afresh (scripts/bench_qemu_dump.py; ~1 min under TCG), and with the arm64 kernel
# an aarch64 guest of the same size too (the architecture table); otherwise the harness's
# capture in ~/.cache/guestcore/guests/captures/x86_64 is used.
# Environment: REPS (default 5), SIZES (MiB, default 256,4096,16384), QEMU_REPS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${REPS:-5}
sizes=${SIZES:-256,4096,16384}
work=target/bench-work
mkdir -p "$work"

cargo build --release -q -p guestcore-cli -p guestcore-bench --features guestcore-bench/peers
bench=target/release/guestcore-bench

capture=${1:-}
guests=${GUESTCORE_GUESTS:-${GUESTCORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guestcore/guests}}
if [ -z "$capture" ]; then
  if command -v qemu-system-x86_64 >/dev/null && [ -s "$guests/kernels/amd64/vmlinuz" ]; then
    echo "timing QEMU dump-guest-memory on a fresh guest …" >&2
    python3 scripts/bench_qemu_dump.py "$work/qemu" "${QEMU_REPS:-3}" >&2
    capture=$work/qemu
  else
    capture=$guests/captures/x86_64
  fi
fi

echo "# guestcore benchmarks"
echo
echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, load average at start: \
$(cut -d' ' -f1-3 /proc/loadavg). $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)."
echo
"$bench" walk --reps "$((reps * 2 + 1))" --sizes "$sizes" --capture "$capture"
"$bench" scale --reps "$reps" --sizes "$sizes"
"$bench" dump --reps "$reps" --capture "$capture" --cli target/release/guestcore --workdir "$work"
# The same jobs on an aarch64 guest of the same size, against the same peers: QEMU's physical
# dump is timed on a fresh aarch64 guest (scripts/bench_qemu_dump.py … aarch64, ~20 s).
if command -v qemu-system-aarch64 >/dev/null && [ -s "$guests/kernels/arm64/vmlinuz" ]; then
  echo "timing QEMU dump-guest-memory on a fresh aarch64 guest …" >&2
  python3 scripts/bench_qemu_dump.py "$work/qemu-aarch64" "${QEMU_REPS:-3}" aarch64 >&2
  "$bench" arches --reps "$reps" --captures "$capture,$work/qemu-aarch64" --cli target/release/guestcore --workdir "$work"
else
  echo "(no aarch64 guest kernel in $guests: the architecture comparison is skipped; scripts/guest/fetch.sh arm64)"
fi
