#!/usr/bin/env bash
# Captures a `virsh save` image of the harness's x86_64 guest (libvirt's own save format:
# its LibvirtQemudSave header, the domain XML, then QEMU's migration stream), with QEMU's own
# physical dump and registers of the same instant as ground truth.
#
#   capture-virsh.sh [OUTDIR]      (default: $GUESTCORE_CACHE/captures/x86_64-virsh)
#
# Boots the harness guest (kernels/amd64 + initramfs/amd64.cpio.gz, made by capture.sh
# x86_64) as a transient libvirt domain (TCG, 256 MiB, 2 vCPUs, -device vmcoreinfo), waits for
# GUESTCORE-READY, suspends it, writes `info registers -a` (registers.txt, through `virsh
# qemu-monitor-command --hmp`) and QEMU's physical dump (`virsh dump --memory-only`:
# dump-guest-memory, phys.elf), then `virsh save`s it (virsh.save; libvirt ends the domain). Writes release.txt and timings.txt too.
#
# libvirt without systemd: when no libvirtd answers on /run/libvirt/libvirt-sock, this starts
# libvirtd and virtlogd itself (root only) for this capture and stops them again on every exit
# path (by the PIDs in their pid files, which it chose: a daemon it did not start is never
# touched). The configuration that needs (QEMU run as root: lines appended once, marked, to
# /etc/libvirt/qemu.conf; the `libvirt-qemu` account libvirt 9.0 insists on) comes from
# libvirt-setup.sh, which scripts/install-deps.sh runs too; each change is printed once, when
# made. libvirt 9.0 passes QEMU 10 the removed -no-acpi unless the domain has ACPI, so the
# domain enables it. Exit status 77: skipped (no libvirt, not root, or no guest files).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${GUESTCORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guestcore/guests}
out=${1:-$cache/captures/x86_64-virsh}
log() { echo "capture-virsh: $*" >&2; }
skip() { log "SKIP: $*"; exit 77; }

command -v virsh >/dev/null || skip "virsh is not installed (apt-get install libvirt-clients libvirt-daemon libvirt-daemon-driver-qemu)"
kernel=$cache/kernels/amd64/vmlinuz
initrd=$cache/initramfs/amd64.cpio.gz
if [ ! -s "$kernel" ] || [ ! -s "$initrd" ]; then
  skip "no guest kernel or initramfs in $cache (run scripts/guest/capture.sh x86_64 first)"
fi
uri=qemu:///system
name=guestcore-virsh-$$
# Daemons this script started (pid files it chose), stopped by stop_daemons.
daemon_dir=""
stop_daemons() {
  [ -n "$daemon_dir" ] || return 0
  local d pid
  for d in libvirtd virtlogd; do   # libvirtd first: it holds a connection to virtlogd
    pid=$(cat "$daemon_dir/$d.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$d (pid $pid) did not stop in 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    else
      log "stopped the $d it started (pid $pid)"
    fi
  done
  rm -rf "$daemon_dir"
  daemon_dir=""
}
cleanup() {
  virsh -c "$uri" destroy "$name" >/dev/null 2>&1 || true
  stop_daemons
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if ! virsh -c "$uri" version >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || skip "no libvirtd running, and only root can start one here"
  [ -x /usr/sbin/libvirtd ] || skip "libvirtd is not installed (libvirt-daemon)"
  bash "$here/libvirt-setup.sh" | while IFS= read -r change; do log "system change: $change"; done
  mkdir -p /run/libvirt
  daemon_dir=$(mktemp -d /run/guestcore-libvirt.XXXXXX)
  if ! pgrep -x virtlogd >/dev/null; then
    /usr/sbin/virtlogd -d -p "$daemon_dir/virtlogd.pid"
    for _ in $(seq 50); do [ -s "$daemon_dir/virtlogd.pid" ] && break; sleep 0.1; done
    log "started virtlogd (pid $(cat "$daemon_dir/virtlogd.pid" 2>/dev/null); stopped when this capture ends)"
  fi
  if ! pgrep -x libvirtd >/dev/null; then
    /usr/sbin/libvirtd -d -p "$daemon_dir/libvirtd.pid"
    for _ in $(seq 50); do [ -s "$daemon_dir/libvirtd.pid" ] && break; sleep 0.1; done
    log "started libvirtd (pid $(cat "$daemon_dir/libvirtd.pid" 2>/dev/null); stopped when this capture ends)"
  fi
  for _ in $(seq 100); do virsh -c "$uri" version >/dev/null 2>&1 && break; sleep 0.1; done
  virsh -c "$uri" version >/dev/null 2>&1 || skip "libvirtd did not start"
fi

mkdir -p "$out"
rm -f "$out"/{virsh.save,phys.elf,registers.txt,release.txt,serial.log,timings.txt}
serial=$out/serial.log
cat >"$out/domain.xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>256</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$kernel</kernel><initrd>$initrd</initrd>
    <cmdline>console=ttyS0 panic=-1 printk.time=1</cmdline></os>
  <features><acpi/></features>
  <cpu mode='custom'><model>qemu64</model></cpu>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <serial type='file'><source path='$serial'/></serial>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
    <qemu:arg value='-device'/><qemu:arg value='vmcoreinfo'/>
  </qemu:commandline>
</domain>
EOF
t0=$(date +%s.%N)
virsh -c "$uri" create "$out/domain.xml" >/dev/null
deadline=$(( $(date +%s) + ${GUESTCORE_BOOT_TIMEOUT:-180} ))
until grep -qa GUESTCORE-READY "$serial" 2>/dev/null; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    log "guest not ready; serial log tail:"; tail -n 20 "$serial" >&2 || true; exit 1
  fi
  sleep 0.2
done
t1=$(date +%s.%N)
grep -a '^GUESTCORE-RELEASE ' "$serial" | head -n1 | cut -d' ' -f2 | tr -d '\r' >"$out/release.txt"
virsh -c "$uri" suspend "$name" >/dev/null
virsh -c "$uri" qemu-monitor-command "$name" --hmp 'info registers -a' >"$out/registers.txt"
# libvirt's own memory-only dump (QEMU's dump-guest-memory, paging off, ELF); issuing
# dump-guest-memory through qemu-monitor-command instead crashes libvirt 9.0's QEMU driver
# when QEMU 10 reports the dump's completion.
virsh -c "$uri" dump "$name" "$out/phys.elf.tmp" --memory-only --format elf >/dev/null
mv "$out/phys.elf.tmp" "$out/phys.elf"
virsh -c "$uri" save "$name" "$out/virsh.save.tmp" >/dev/null
mv "$out/virsh.save.tmp" "$out/virsh.save"
t2=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v c="$t2" \
  'BEGIN { printf "boot->ready %.1f s\nsuspend+dump+save %.1f s\n", b - a, c - b }' \
  | tee "$out/timings.txt" >&2
