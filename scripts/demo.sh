#!/usr/bin/env bash
# guestcore's main job, end to end on a fresh Debian 12 machine:
#   1. boot a Linux guest under QEMU (TCG) and take QEMU's *physical* dump of it, stopped
#      (scripts/guest/capture.sh; the capture is cached, delete it for a fresh boot);
#   2. turn that physical dump into a *paging* dump with guestcore (the virtual view, offline);
#   3. let gdb read the guest kernel's release string at a virtual address from that dump.
# Each step prints its time. GUEST=x86_64-la57|i386|i386-pae picks another guest.
set -euo pipefail
cd "$(dirname "$0")/.."
GUEST=${GUEST:-x86_64}
CACHE=${GUESTCORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guestcore/guests}
OUT=${OUT:-$PWD/.cache/demo}
now() { date +%s%N; }
took() { local ms=$((($(now) - $1) / 1000000)); printf '  (%d.%03d s)\n' $((ms / 1000)) $((ms % 1000)); }

bash scripts/install-deps.sh

t=$(now); echo "== building guestcore (release)"
cargo build --release -q -p guestcore-cli
took "$t"
GC=target/release/guestcore

CAP=$CACHE/captures/$GUEST
t=$(now)
if [ -f "$CAP/phys.elf" ] && [ -f "$CAP/timings.txt" ]; then
  echo "== guest $GUEST: using the cached capture in $CAP"
else
  echo "== booting the $GUEST guest and taking QEMU's physical dump (dump-guest-memory paging=false)"
  GUESTCORE_CACHE=$CACHE bash scripts/guest/capture.sh "$GUEST" >/dev/null
fi
took "$t"

echo "== what the dump holds"
"$GC" info "$CAP/phys.elf"

mkdir -p "$OUT"
t=$(now); echo "== guestcore: physical dump -> paging dump"
"$GC" dump "$CAP/phys.elf" --paging --force -o "$OUT/$GUEST-paging.elf"
took "$t"

# The kernel's own VMCOREINFO says where init_uts_ns is (KASLR moves it every boot);
# utsname.release is 130 bytes into it, after sysname and nodename.
UTS=$(grep -a -o 'SYMBOL(init_uts_ns)=[0-9a-f]*' "$CAP/phys.elf" | head -n1 | cut -d= -f2)
t=$(now); echo "== gdb reads the kernel release at init_uts_ns.name.release (0x$UTS + 130) through the page tables"
gdb -batch -nx -ex "x/s 0x$UTS + 130" -core "$OUT/$GUEST-paging.elf" 2>/dev/null | tail -n1
took "$t"
echo "== the guest said: $(cat "$CAP/release.txt")"
