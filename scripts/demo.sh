#!/usr/bin/env bash
# guestcore's headline, end to end on a fresh Debian 12 machine with a Rust toolchain:
#   1. install what the demo needs (scripts/install-deps.sh demo: QEMU, gdb, gcc, python3, xz);
#   2. build guestcore (release);
#   3. fetch a Debian guest kernel and busybox (scripts/guest/fetch.sh amd64, cached);
#   4. boot a Linux guest under QEMU (TCG) with a QMP socket (scripts/guest/boot.sh, the
#      real-guest harness) and leave it RUNNING;
#   5. guestcore dump qmp:SOCKET -o running.elf: a QEMU background snapshot of the running guest,
#      which QEMU stops only to save its device state; the stop time is printed (QEMU's count);
#   6. add the virtual view offline (guestcore dump running.elf --paging), and let gdb read the
#      guest kernel's release string at init_uts_ns, whose address comes from the dump's own
#      VMCOREINFO (KASLR moves it at every boot).
# Each step prints its time. The QEMU it starts is killed on every exit path (trap).
# Outputs: $GUESTCORE_DEMO (default ~/.cache/guestcore/demo), replaced at each run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
now() { date +%s%N; }
took() { local ms=$((($(now) - $1) / 1000000)); printf '   (%d.%03d s)\n' $((ms / 1000)) $((ms % 1000)); }
step() { echo; echo "== $*"; }
export GUESTCORE_CACHE=${GUESTCORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guestcore/guests}
OUT=${GUESTCORE_DEMO:-$(dirname "$GUESTCORE_CACHE")/demo}
t_all=$(now)

cat <<EOF
guestcore demo: dump a running Linux guest and read it with gdb.
On a fresh machine this takes 5-10 minutes and about 1.3 GB of disk: ~100 MB of Debian
packages to download (~400 MB installed: QEMU 10 from bookworm-backports, gdb, gcc, python3),
3-5 min and ~500 MB for the release build (target/release), 72 MB of guest kernel download
(~80 MB kept in $GUESTCORE_CACHE) and ~200 MB of dumps in $OUT.
Run again, with all of that in place, it takes under a minute.
EOF

step "1/6 install what the demo needs (scripts/install-deps.sh demo)"
t=$(now)
bash scripts/install-deps.sh demo
took "$t"

step "2/6 build guestcore (cargo build --release -p guestcore-cli)"
t=$(now)
cargo build --release -p guestcore-cli
GC=$repo/target/release/guestcore
took "$t"

# shellcheck source=guest/boot.sh
. scripts/guest/boot.sh   # guest_config, guest_files, guest_start, guest_wait_ready, guest_stop
log() { echo "demo: $*" >&2; }
guest_config x86_64

step "3/6 guest kernel and busybox from Debian (scripts/guest/fetch.sh amd64; cached)"
t=$(now)
guest_files || { log "no guest kernel: see the messages above"; exit 1; }
echo "   kernel $(cat "$kdir/release"), initramfs $initrd"
took "$t"

rm -rf "$OUT"
mkdir -p "$OUT"
trap 'guest_stop' EXIT
trap 'exit 130' INT TERM

step "4/6 boot the guest: QEMU (TCG, 256 MiB, 2 vCPUs) with a QMP socket, -device vmcoreinfo"
t=$(now)
guest_start "$OUT"
echo "   $(cat "$OUT/cmdline.txt")"
guest_wait_ready || exit 1
release=$(tr -d '\r' <"$serial" | sed -n 's/^GUESTCORE-RELEASE //p' | head -n1)
echo "   the guest is up and running; its console says: uname -r = $release"
took "$t"

step "5/6 guestcore dump qmp:$sock -o running.elf   (the guest keeps running)"
t=$(now)
"$GC" dump "qmp:$sock" -o "$OUT/running.elf" 2>&1 | tee "$OUT/dump.log" | sed 's/^/   /'
took "$t"
stopped=$(sed -n 's/.*guest stopped \([0-9.]*\) ms.*/\1/p' "$OUT/dump.log" | head -n1)
waited=$(sed -n 's/.*at most \([0-9]*\) ms; streamed.*/\1/p' "$OUT/dump.log" | head -n1)
state=$(python3 scripts/guest/qmp.py "$sock" status)
if [ -n "$stopped" ]; then
  echo "   => the guest was stopped for $stopped ms (QEMU's count), and its writes waited on guestcore at most ${waited:-?} ms, while its memory was dumped; now: $state"
else
  echo "   => no background snapshot was possible here (the line above says why); the guest was paused instead; now: $state"
fi
guest_stop   # the rest works on the file alone

step "6/6 read the dump: kernels in it, the virtual view, gdb"
t=$(now)
"$GC" kernels "$OUT/running.elf" | sed 's/^/   /'
"$GC" dump "$OUT/running.elf" --paging -o "$OUT/running-virt.elf" 2>&1 | sed 's/^/   /'
# The kernel's VMCOREINFO (a note in the dump) says where init_uts_ns is in this boot;
# init_uts_ns.name is a struct new_utsname, whose release field is 2 x 65 bytes in.
uts=$(grep -a -m1 -o 'SYMBOL(init_uts_ns)=[0-9a-f]*' "$OUT/running.elf" | cut -d= -f2)
[ -n "$uts" ] || { log "no SYMBOL(init_uts_ns) in the dump's VMCOREINFO"; exit 1; }
echo "   VMCOREINFO: SYMBOL(init_uts_ns)=$uts"
echo "   \$ gdb -batch -ex 'x/s 0x$uts + 130' -core running-virt.elf"
got=$(gdb -batch -nx -ex "x/s 0x$uts + 130" -core "$OUT/running-virt.elf" 2>/dev/null | tail -n1)
echo "   $got"
took "$t"

echo
if [[ "$got" == *"\"$release\""* ]]; then
  echo "== done: gdb read \"$release\" from a dump of the running guest, as its console said."
else
  echo "== FAILED: gdb printed '$got', the guest said \"$release\"" >&2
  exit 1
fi
ms=$((($(now) - t_all) / 1000000))
printf '   dumps in %s (%s on disk); the whole demo took %d.%d s\n' "$OUT" "$(du -sh "$OUT" | cut -f1)" $((ms / 1000)) $((ms % 1000 / 100))
