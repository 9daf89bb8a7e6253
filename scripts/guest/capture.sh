#!/usr/bin/env bash
# Boots a real Linux guest under QEMU (TCG), waits until its /init prints the ready marker,
# stops it, and captures QEMU's own view of it as ground truth for guestcore's tests.
#
# Usage: capture.sh GUEST [OUTDIR]
#   GUEST  x86_64 | x86_64-la57 | i386 | i386-pae | x86_64-4g
#          (x86_64-4g: the x86_64 guest with -m 4G, so RAM also lies above 4 GiB past the PCI
#          hole; only phys.elf, registers, mtree, symbols: no paging.elf, kdump-zlib.dump,
#          tlb.txt or mem.txt, which its tests do not use and which would cost minutes and GiBs)
#          x86_64-novmci | i386-pae-novmci: x86_64 / i386-pae started without -device vmcoreinfo,
#          so QEMU's dumps carry no VMCOREINFO; only phys.elf, kdump-zlib.dump and the state
#          (their tests read no paging.elf, tlb.txt or mem.txt)
#          aarch64 | aarch64-16k: Debian 12's arm64 kernel (4 KiB granule, 48-bit VA) and
#          bookworm-backports' arm64-16k kernel (16 KiB granule, 52-bit VA with LPA2) under
#          qemu-system-aarch64 -machine virt -cpu max; see "aarch64 captures" below
#          aarch64-16k-47: the 16k kernel with -cpu max,lpa2=off (no FEAT_LPA2: 47-bit VA)
#   OUTDIR default: $GUESTCORE_CACHE/captures/GUEST (GUESTCORE_CACHE default: ~/.cache/guestcore/guests)
# Environment: GUESTCORE_BOOT_TIMEOUT (seconds, default 120), QEMU (default qemu-system-x86_64).
#
# Writes into OUTDIR:
#   phys.elf          dump-guest-memory paging=false (ELF)
#   paging.elf        dump-guest-memory paging=true  (ELF)
#   kdump-zlib.dump   dump-guest-memory format=kdump-zlib
#   registers.txt     HMP `info registers -a`;  registers-cpu0.txt: `info registers`
#   tlb.txt mem.txt   HMP `info tlb`, `info mem`   (no mem.txt for LA57: QEMU 10's `info mem`
#                     spends ~30 s there and prints nothing)
#   mtree.txt         HMP `info mtree -f`
#   symbols.txt       `name vaddr paddr` per kernel symbol the guest printed (paddr: gva2gpa
#                     on vCPU 0, "-" when unmapped)
#   release.txt       the guest's `uname -r`
#   vmcoreinfo.txt    "yes"/"no": whether the guest registered VMCOREINFO with -device vmcoreinfo
#   workload.txt      what /init's dump-level workload made (its GUESTCORE-WORKLOAD line, less
#                     the marker): `tmpfs-file PATH BYTES anon-pid PID anon-kb KB memfree-kb KB
#                     seconds S`
#   serial.log        the guest's console;  qemu.log: QEMU's stdout/stderr
#   cmdline.txt       the QEMU command line;  timings.txt: the timings also written to stderr
# aarch64 captures: phys.elf, kdump-zlib.dump, registers.txt, registers-cpu0.txt, mtree.txt,
#   release.txt, vmcoreinfo.txt, workload.txt and the logs as above, but no paging.elf (QEMU's
#   arm target has no paging dump: paging=true writes the same file as paging=false), tlb.txt or
#   mem.txt (no such HMP commands for arm), plus
#   migration.bin     `migrate file:` of the stopped guest (plain stream), taken last
#   sysregs.txt translations.txt vmcoreinfo-note.txt facts.txt symbols.txt: aarch64_truth.py
#                     (system registers from QEMU's gdbstub with gdb-multiarch, gva2gpa per vCPU)
#   They also need gdb-multiarch and nm; for a kernel without CONFIG_KALLSYMS_ALL (the 4k one)
#   the debug vmlinux (fetch.sh debug-FLAVOUR, 804 MB download, 314 MB kept;
#   GUESTCORE_ARM64_VMLINUX=0 skips it) adds the data symbols kallsyms lacks.
# QEMU is stopped with QMP `quit` and then killed by PID on every exit path.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=boot.sh
. "$here/boot.sh"   # guest_config, guest_files, guest_start, guest_wait_ready, guest_stop
cache=$guest_cache

guest=${1:-}
guest_config "$guest" || { echo "usage: $0 x86_64|x86_64-la57|x86_64-4g|i386|i386-pae|x86_64-novmci|i386-pae-novmci|aarch64|aarch64-16k|aarch64-16k-47 [OUTDIR]" >&2; exit 2; }
out=${2:-$cache/captures/$guest}

log() { echo "capture[$guest]: $*" >&2; }
t0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
timing() { log "$1: $2 s"; echo "$1 $2" >>"$out/timings.txt"; }

command -v "$qemu" >/dev/null || { log "$qemu not found (run scripts/install-deps.sh)"; exit 1; }
if [ "$arch" = aarch64 ]; then
  command -v gdb-multiarch >/dev/null || { log "gdb-multiarch not found (run scripts/install-deps.sh test)"; exit 1; }
  command -v nm >/dev/null || { log "nm not found (binutils; run scripts/install-deps.sh test)"; exit 1; }
fi

# Kernel + busybox (cached), then the initramfs for this kernel (rebuilt when the builder changed).
rc=0; guest_files || rc=$?
[ "$rc" = 0 ] || exit "$rc"
# aarch64: the debug vmlinux gives the data symbols a kernel without CONFIG_KALLSYMS_ALL (Debian's
# 6.1 arm64) lacks in kallsyms; the 6.12 arm64-16k kernel has them there.
if [ "$arch" = aarch64 ] && [ "${GUESTCORE_ARM64_VMLINUX:-1}" != 0 ] \
   && ! grep -qx 'CONFIG_KALLSYMS_ALL=y' "$kdir/config" 2>/dev/null; then
  "$here/fetch.sh" "debug-$flavour" || log "warning: no debug vmlinux for $flavour: symbols from kallsyms and VMCOREINFO only"
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/{phys.elf,paging.elf,kdump-zlib.dump,registers.txt,registers-cpu0.txt,tlb.txt,mem.txt,mtree.txt} \
      "$out"/{symbols.txt,release.txt,vmcoreinfo.txt,workload.txt,serial.log,qemu.log,cmdline.txt,timings.txt,qmp.sock,qemu.pid} \
      "$out"/{migration.bin,sysregs.txt,translations.txt,vmcoreinfo-note.txt,facts.txt,gdb.sock}
qmp() { python3 "$here/qmp.py" "$sock" "$@"; }

cleanup() {
  local rc=$?
  guest_stop
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "booting $(cat "$kdir/release") with -cpu $cpu -m $mem"
tb=$(date +%s.%N)   # boot only: t0 also counts fetch.sh (a first aarch64 run downloads ~1 GB)
guest_start "$out"
guest_wait_ready || exit 1
timing boot-to-ready "$(since "$tb")"

t1=$(date +%s.%N)
qmp stop
tr -d '\r' <"$out/serial.log" >"$out/serial.tmp"
sed -n 's/^GUESTCORE-RELEASE //p' "$out/serial.tmp" | head -n1 >"$out/release.txt"
sed -n 's/^GUESTCORE-VMCOREINFO //p' "$out/serial.tmp" | head -n1 >"$out/vmcoreinfo.txt"
sed -n 's/^GUESTCORE-WORKLOAD //p' "$out/serial.tmp" | head -n1 >"$out/workload.txt"
log "workload: $(cat "$out/workload.txt")"
grep -a '^GUESTCORE-WARN' "$out/serial.tmp" >&2 || true

# hmp_to FILE COMMAND: one HMP command into FILE, timed (to stderr only).
hmp_to() {
  local t; t=$(date +%s.%N)
  qmp hmp "$2" >"$out/$1"
  log "  $2: $(since "$t") s"
}
hmp_to registers.txt 'info registers -a'
hmp_to registers-cpu0.txt 'info registers'   # the monitor's current CPU, without -a
hmp_to mtree.txt 'info mtree -f'

if [ "$arch" = aarch64 ]; then
  t2=$(date +%s.%N)
  qmp dump "$out/phys.elf"
  timing dump-phys "$(since "$t2")"
  t=$(date +%s.%N)
  PYTHONDONTWRITEBYTECODE=1 python3 "$here/aarch64_truth.py" --qmp "$sock" --out "$out" \
    --serial "$out/serial.tmp" --kdir "$kdir" --cpus 2
  log "  sysregs (gdb) + gva2gpa: $(since "$t") s"
  rm -f "$out/serial.tmp"
  timing state "$(since "$t1")"
  t2=$(date +%s.%N)
  qmp dump "$out/kdump-zlib.dump" --format kdump-zlib
  timing dump-kdump-zlib "$(since "$t2")"
  # Last: after a migration the guest is in `postmigrate`.
  t2=$(date +%s.%N)
  qmp migrate-file "$out/migration.bin"
  timing migrate "$(since "$t2")"
  timing capture "$(since "$t1")"
  chmod a+r "$out"/*.elf "$out"/*.dump "$out"/*.bin 2>/dev/null || true
  qmp quit || true
  for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
  timing total "$(since "$t0")"
  log "release $(cat "$out/release.txt"), vmcoreinfo $(cat "$out/vmcoreinfo.txt"), $(grep -c '^CPU#' "$out/registers.txt") CPUs; sizes:"
  (cd "$out" && ls -l phys.elf kdump-zlib.dump migration.bin sysregs.txt translations.txt >&2 2>/dev/null || true)
  log "outputs in $out"
  exit 0
fi

# `info tlb` / `info mem` are references, not requirements: keep going if QEMU refuses.
if [ "$full" = 0 ]; then
  log "  info tlb, info mem: skipped for $guest"
else
  hmp_to tlb.txt 'info tlb' || log "warning: info tlb failed"
  if [ "$guest" = x86_64-la57 ]; then
    # QEMU 10's `info mem` does not handle LA57: ~30 s of work for an empty answer.
    log "  info mem: skipped for LA57 (broken in QEMU 10); no mem.txt"
  else
    hmp_to mem.txt 'info mem' || log "warning: info mem failed"
  fi
fi

# gva2gpa for every symbol the guest printed, over one QMP connection.
t=$(date +%s.%N)
PYTHONDONTWRITEBYTECODE=1 python3 - "$here" "$sock" "$out/serial.tmp" >"$out/symbols.txt" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from qmp import QMP

q = QMP(sys.argv[2])
for line in open(sys.argv[3], errors="replace"):
    parts = line.split()
    if len(parts) != 3 or parts[0] != "GUESTCORE-SYM":
        continue
    name, vaddr = parts[1], parts[2]
    res = q.hmp(f"gva2gpa 0x{vaddr}").strip()
    paddr = res.split()[1] if res.startswith("gpa:") else "-"
    if paddr == "-":
        print(f"capture: gva2gpa {name} 0x{vaddr}: {res}", file=sys.stderr)
    print(f"{name} 0x{vaddr} {paddr}")
q.close()
PY
log "  gva2gpa x $(wc -l <"$out/symbols.txt"): $(since "$t") s"
rm -f "$out/serial.tmp"
timing state "$(since "$t1")"

t2=$(date +%s.%N)
qmp dump "$out/phys.elf"
timing dump-phys "$(since "$t2")"
if [ "$full" = 1 ]; then
  t2=$(date +%s.%N)
  qmp dump "$out/paging.elf" --paging
  timing dump-paging "$(since "$t2")"
fi
if [ "$full" = 1 ] || [ "$vmci" = 0 ]; then
  t2=$(date +%s.%N)
  qmp dump "$out/kdump-zlib.dump" --format kdump-zlib
  timing dump-kdump-zlib "$(since "$t2")"
fi
timing capture "$(since "$t1")"
chmod a+r "$out"/*.elf "$out"/*.dump 2>/dev/null || true   # QEMU creates dumps mode 0400

qmp quit || true
for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
timing total "$(since "$t0")"
log "release $(cat "$out/release.txt"), vmcoreinfo $(cat "$out/vmcoreinfo.txt"), $(grep -c '^CPU#' "$out/registers.txt") CPUs; sizes:"
(cd "$out" && ls -l phys.elf paging.elf kdump-zlib.dump registers.txt tlb.txt ./mem.txt >&2 2>/dev/null || true)
log "outputs in $out"
