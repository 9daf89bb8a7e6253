#!/usr/bin/env bash
# Prepares a machine without systemd for scripts/guest/capture-virsh.sh, which then starts its
# own libvirtd and virtlogd (as root) for one capture and stops them afterwards. libvirt 9.0
# there wants a `libvirt-qemu` account and a `kvm` group to exist, and QEMU run as root with
# files keeping their owners (no dynamic ownership, no security driver), which six lines
# appended to /etc/libvirt/qemu.conf (marked "guestcore capture-virsh") say.
#
# Does nothing when a libvirtd already answers on qemu:///system (a systemd machine: its own
# configuration stays as it is), when not root, or when libvirtd is not installed. Idempotent.
# Prints one line per change made (to stdout), nothing else; scripts/install-deps.sh (test)
# and capture-virsh.sh run it.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || exit 0
[ -x /usr/sbin/libvirtd ] || exit 0
if command -v virsh >/dev/null && virsh -c qemu:///system version >/dev/null 2>&1; then
  exit 0
fi
if ! id libvirt-qemu >/dev/null 2>&1; then
  useradd -r -U -M -s /usr/sbin/nologin libvirt-qemu
  echo "created the system user and group libvirt-qemu (libvirt 9.0 wants it to exist)"
fi
if ! getent group kvm >/dev/null; then
  groupadd -r kvm
  echo "created the system group kvm (libvirt 9.0 wants it to exist)"
fi
conf=/etc/libvirt/qemu.conf
if ! grep -qs "guestcore capture-virsh" "$conf"; then
  mkdir -p /etc/libvirt
  printf '%s\n' "# guestcore capture-virsh: QEMU runs as root, files keep their owners" \
    'user = "root"' 'group = "root"' 'dynamic_ownership = 0' 'remember_owner = 0' \
    'security_driver = "none"' >>"$conf"
  echo "appended 6 lines marked 'guestcore capture-virsh' to $conf (QEMU under libvirt runs as root, no dynamic ownership, no security driver)"
fi
made=()
for d in /var/log/libvirt /var/lib/libvirt /var/cache/libvirt; do
  [ -d "$d" ] || { mkdir -p "$d"; made+=("$d"); }
done
[ ${#made[@]} = 0 ] || echo "created libvirt's directories ${made[*]}"
