# Sourced, not run: boots one of the harness's guests under QEMU (TCG) with a QMP socket and
# waits until its /init prints GUESTCORE-READY. capture.sh (which then stops the guest and
# captures it) and scripts/demo.sh (which dumps it while it runs) share it, so both boot the
# same guest the same way.
#
#   . scripts/guest/boot.sh
#   log() { echo "me: $*" >&2; }        # the caller's log function (used for messages)
#   guest_config GUEST                  # x86_64 | x86_64-la57 | x86_64-4g | i386 | i386-pae
#                                       # | x86_64-novmci | i386-pae-novmci | aarch64 | aarch64-16k
#                                       # | aarch64-16k-47
#   guest_files || exit $?              # fetch.sh + initramfs; status 77: no kernel for GUEST
#   guest_start OUTDIR                  # starts QEMU in the background (qemu_pid, sock)
#   trap guest_stop EXIT                # QMP quit, then kill by PID: on every exit path
#   guest_wait_ready || exit 1
#
# Sets: flavour bbarch cpu mem full vmci arch qemu (guest_config); kdir busybox initrd
# (guest_files); qemu_args qemu_pid sock serial (guest_start). Reads: GUESTCORE_CACHE (default
# ~/.cache/guestcore/guests), QEMU (default qemu-system-x86_64, for the aarch64 guests
# qemu-system-aarch64), GUESTCORE_BOOT_TIMEOUT
# (seconds, default 120). Writes into OUTDIR: serial.log, qemu.log, cmdline.txt, qemu.pid,
# qmp.sock.

guest_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
guest_cache=${GUESTCORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guestcore/guests}
boot_timeout=${GUESTCORE_BOOT_TIMEOUT:-120}
qemu_pid=""

# guest_config GUEST: the kernel flavour, busybox arch, CPU model and RAM of GUEST; full=0 for
# the 4 GiB guest, whose capture keeps only phys.elf and the HMP state; vmci=0 for the
# *-novmci guests, started without -device vmcoreinfo (QEMU's default, and many libvirt and
# cloud guests'), so QEMU's own dumps of them carry no VMCOREINFO. arch: the QEMU target
# (x86_64 | aarch64). The aarch64 guests run `-machine virt -cpu max`: max, not cortex-a57,
# because the 16k guest needs a CPU with the 16 KiB granule (the A57 has 4k and 64k only) and
# FEAT_LPA2 (its kernel is built for 52-bit VAs), and one CPU model for both keeps them alike.
guest_config() {
  mem=256M
  full=1
  vmci=1
  arch=x86_64
  case "$1" in
    x86_64)      flavour=amd64;   bbarch=amd64; cpu=qemu64 ;;
    x86_64-la57) flavour=amd64;   bbarch=amd64; cpu=qemu64,+la57 ;;
    x86_64-4g)   flavour=amd64;   bbarch=amd64; cpu=qemu64; mem=4G; full=0 ;;
    i386)        flavour=686;     bbarch=i386;  cpu=qemu32 ;;
    i386-pae)    flavour=686-pae; bbarch=i386;  cpu=qemu32,+pae,+nx ;;
    x86_64-novmci)   flavour=amd64;   bbarch=amd64; cpu=qemu64;          full=0; vmci=0 ;;
    i386-pae-novmci) flavour=686-pae; bbarch=i386;  cpu=qemu32,+pae,+nx; full=0; vmci=0 ;;
    aarch64)     flavour=arm64;     bbarch=arm64; cpu=max; arch=aarch64 ;;
    aarch64-16k) flavour=arm64-16k; bbarch=arm64; cpu=max; arch=aarch64 ;;
    # The same 52-bit kernel on a CPU without FEAT_LPA2: it falls back to 47-bit VAs.
    aarch64-16k-47) flavour=arm64-16k; bbarch=arm64; cpu=max,lpa2=off; arch=aarch64 ;;
    *) return 2 ;;
  esac
  qemu=${QEMU:-qemu-system-$arch}
}

# guest_files: the kernel and busybox (fetch.sh, cached), then the initramfs for this kernel
# (rebuilt when the builder or the kernel changed). Status 77 when the kernel cannot be had.
guest_files() {
  local fetch_arch=amd64
  [ "$bbarch" = i386 ] && fetch_arch=i386
  [ "$bbarch" = arm64 ] && fetch_arch=$flavour   # arm64 | arm64-16k
  "$guest_here/fetch.sh" "$fetch_arch" || return 1
  kdir="$guest_cache/kernels/$flavour"
  busybox="$guest_cache/busybox/$bbarch/busybox"
  if [ ! -s "$kdir/vmlinuz" ] || [ ! -s "$kdir/release" ] || [ ! -x "$busybox" ]; then
    log "SKIP: no $flavour kernel or $bbarch busybox in $guest_cache (see fetch.sh's messages)"
    return 77
  fi
  initrd="$guest_cache/initramfs/$flavour.cpio.gz"
  mkdir -p "$guest_cache/initramfs"
  if [ ! -s "$initrd" ] || [ "$guest_here/initramfs.py" -nt "$initrd" ] || [ "$kdir/release" -nt "$initrd" ]; then
    python3 "$guest_here/initramfs.py" --busybox "$busybox" --modules "$kdir/modules" --out "$initrd"
  fi
}

# guest_start OUTDIR: starts QEMU in the background with the guest's console in
# OUTDIR/serial.log and QMP on OUTDIR/qmp.sock (-device vmcoreinfo unless vmci=0: the guest
# registers its VMCOREINFO with QEMU, so dumps carry it).
guest_start() {
  local out=$1 device=() machine=(-machine pc) console=ttyS0
  [ "${vmci:-1}" = 0 ] || device=(-device vmcoreinfo)
  # aarch64: the virt board, its PL011 UART as console; -kernel takes Debian's vmlinuz (an
  # uncompressed arm64 Image) directly, no firmware.
  [ "${arch:-x86_64}" != aarch64 ] || { machine=(-machine virt); console=ttyAMA0; }
  sock="$out/qmp.sock"
  serial="$out/serial.log"
  rm -f "$sock" "$serial" "$out/qemu.pid"
  qemu_args=("${machine[@]}" -accel tcg -cpu "$cpu" -m "$mem" -smp 2 -nographic -no-reboot -nic none
        -kernel "$kdir/vmlinuz" -initrd "$initrd"
        -append "console=$console panic=-1 printk.time=1"
        -serial "file:$serial" -monitor none
        -qmp "unix:$sock,server=on,wait=off" "${device[@]}"
        -pidfile "$out/qemu.pid")
  printf '%q ' "$qemu" "${qemu_args[@]}" >"$out/cmdline.txt"; echo >>"$out/cmdline.txt"
  "$qemu" "${qemu_args[@]}" </dev/null >"$out/qemu.log" 2>&1 &
  qemu_pid=$!
}

# guest_wait_ready: waits for GUESTCORE-READY on the console; on timeout or QEMU exiting says
# why with the console's tail and returns 1.
guest_wait_ready() {
  local deadline=$((SECONDS + boot_timeout)) out
  out=$(dirname "$serial")
  until grep -q '^GUESTCORE-READY' "$serial" 2>/dev/null; do
    if ! kill -0 "$qemu_pid" 2>/dev/null; then
      log "QEMU exited before the guest was ready; qemu.log:"; cat "$out/qemu.log" >&2
      log "serial.log tail:"; tail -n 40 "$serial" >&2 2>/dev/null || true
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      log "timeout (${boot_timeout} s) waiting for GUESTCORE-READY; serial.log tail:"
      tail -n 40 "$serial" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

# guest_stop: asks QEMU to quit over QMP, then kills it by PID if it has not gone in 5 s.
# Safe to call twice and when nothing was started (meant for an EXIT trap).
guest_stop() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    [ -S "$sock" ] && timeout 10 python3 "$guest_here/qmp.py" "$sock" quit >/dev/null 2>&1 || true
    for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$qemu_pid" 2>/dev/null; then
      log "QEMU (pid $qemu_pid) did not quit; killing it"
      kill -TERM "$qemu_pid" 2>/dev/null || true
      sleep 1
      kill -KILL "$qemu_pid" 2>/dev/null || true
    fi
    wait "$qemu_pid" 2>/dev/null || true
  fi
  qemu_pid=""
  [ -z "${sock:-}" ] || rm -f "$sock" "$(dirname "$sock")/qemu.pid"
}
