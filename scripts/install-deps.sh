#!/usr/bin/env bash
# Installs the host packages guestcore's tests need on Debian 12 (bookworm):
# gdb and binutils (readelf) for dump checks, gcc and libc6-dev for the guests' static helpers,
# libvirt for a real `virsh save` image,
# QEMU 10 from bookworm-backports
# for real-guest tests, python3-libkdumpfile / makedumpfile for kdump checks, crash (8.0.2)
# to open every dump with the guest's debug vmlinux, and python3-venv for drgn's virtualenv
# (drgn itself comes from PyPI, installed by the tests into ~/.cache/guestcore/drgn-venv).
# Idempotent: does nothing when everything is already present.
set -euo pipefail

need=()
command -v gdb >/dev/null || need+=(gdb)
command -v readelf >/dev/null || need+=(binutils)
command -v cpio >/dev/null || need+=(cpio)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu)
command -v makedumpfile >/dev/null || need+=(makedumpfile)
command -v crash >/dev/null || need+=(crash)
command -v xz >/dev/null || need+=(xz-utils)
# gcc and static glibc: the guests' static helpers (kexec_load.c, pattern_writer.c).
command -v gcc >/dev/null || need+=(gcc)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
# libvirt (daemon, QEMU driver, virsh) for the `virsh save` capture (scripts/guest/capture-virsh.sh
# starts the daemon itself where no systemd does).
command -v virsh >/dev/null || need+=(libvirt-clients)
[ -x /usr/sbin/libvirtd ] || need+=(libvirt-daemon)
python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
/usr/bin/python3 -c "import kdumpfile" 2>/dev/null || need+=(python3-libkdumpfile)
# cargo-fuzz for the fuzz smoke run (scripts/fuzz-smoke.sh), from crates.io.
if ! command -v cargo-fuzz >/dev/null && ! [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-fuzz" ]; then
  cargo install --locked --quiet cargo-fuzz@0.13.2 2>/dev/null || cargo install --quiet cargo-fuzz
fi
# avml (Microsoft's LiME/AVML tool, MIT) for its converter, `avml convert`, which the LiME test
# uses to make AVML's snappy-compressed images; from crates.io, only the converter built (no
# upload features, so no OpenSSL), cached in ~/.cargo/bin like cargo-fuzz.
if ! command -v avml >/dev/null && ! [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/avml" ]; then
  cargo install --locked --quiet avml@0.21.0 --no-default-features --features convert 2>/dev/null \
    || cargo install --quiet avml --no-default-features --features convert
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# bookworm-backports, from the mirror already configured in the apt sources.
if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  mirror=$( { grep -rhE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true; } \
           | grep -oE 'https?://[^ ]+' | grep -v -e security -e nodesource -e google | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "deb ${mirror%/} bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/guestcore-backports.list >/dev/null
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
pkgs=(gdb binutils cpio makedumpfile python3-libkdumpfile crash xz-utils python3-venv gcc libc6-dev
  libvirt-clients libvirt-daemon libvirt-daemon-driver-qemu)
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
if ! command -v qemu-system-x86_64 >/dev/null; then
  $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null \
    || echo "warning: qemu-system-x86 could not be installed; real-guest tests will be skipped" >&2
fi
