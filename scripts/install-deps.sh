#!/usr/bin/env bash
# Installs what guestcore's demo, tests and fuzz smoke need on Debian 12 (bookworm), by group:
#
#   install-deps.sh [GROUP...]     GROUP: demo | test (the default) | fuzz | all
#
#   demo  QEMU 10 (bookworm-backports) to boot the guest, gdb to read the dump, gcc + libc6-dev
#         (Rust links through the C compiler), python3 (the guest harness), xz-utils (the guest
#         kernel's modules)                                       used by scripts/demo.sh
#   test  demo's, plus binutils (readelf), makedumpfile, crash, python3-libkdumpfile and
#         python3-venv (drgn, from PyPI, at test time) to open every dump kind; libvirt (daemon,
#         QEMU driver, virsh) for a real `virsh save` image; avml (cargo) for AVML images; the
#         i386 dpkg architecture for the 32-bit guest kernels; qemu-system-arm (QEMU 10 from
#         bookworm-backports: qemu-system-aarch64), gdb-multiarch (reads the aarch64 guests'
#         system registers from QEMU's gdbstub) and the arm64 dpkg architecture for the
#         aarch64 guests; g++, make, bison, flex, gawk, texinfo and the zlib, ncurses, lzo2, snappy
#         and zstd headers (plus curl where neither curl nor wget is) to build crash for ARM64
#         dumps (scripts/guest/build-crash-arm64.sh)                 used by scripts/test.sh
#   fuzz  cargo-fuzz                                               used by scripts/fuzz-smoke.sh
#
# Order: Debian packages first (gcc included: a machine with only a Rust toolchain has no
# linker), then `cargo install`s. Before installing, one line per group says what and why;
# each change to the system outside the packages (an apt source file, a dpkg architecture, the
# libvirt setup of scripts/guest/libvirt-setup.sh) is announced in one line when made. An `apt-get update` that
# reports a failed index (a broken third-party source) is a warning: the script fails only if
# the packages it needs then do not install. Idempotent: what is present is left alone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(test)
want_demo=0 want_test=0 want_fuzz=0
for g in "${groups[@]}"; do
  case "$g" in
    demo) want_demo=1 ;;
    test) want_demo=1; want_test=1 ;;
    fuzz) want_fuzz=1 ;;
    all) want_demo=1; want_test=1; want_fuzz=1 ;;
    *) echo "usage: $0 [demo|test|fuzz|all]..." >&2; exit 2 ;;
  esac
done

say() { echo "install-deps: $*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { say "not root and no sudo: run as root"; exit 1; }
  SUDO="sudo"
fi
cargo_bin() { command -v "$1" >/dev/null || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/$1" ]; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# --- what each group lacks --------------------------------------------------------------------
apt_need=() backports=0 i386=0 arm64=0 cargo_need=()
need() { apt_need+=("$@"); }
if [ $want_demo = 1 ]; then
  d=()
  command -v qemu-system-x86_64 >/dev/null || { d+=(qemu-system-x86); backports=1; }
  command -v gdb >/dev/null || d+=(gdb)
  command -v gcc >/dev/null || d+=(gcc)
  # gcc only recommends libc6-dev, without which nothing links (crt1.o, libc.so, libc.a).
  [ -e /usr/lib/x86_64-linux-gnu/libc.a ] || d+=(libc6-dev)
  command -v python3 >/dev/null || d+=(python3)
  command -v xz >/dev/null || d+=(xz-utils)
  if [ ${#d[@]} -gt 0 ]; then
    say "demo: ${d[*]} — QEMU boots the guest, gdb reads its dump, gcc links guestcore, python3 drives the guest harness, xz unpacks the kernel's modules"
    need "${d[@]}"
  else
    say "demo: all present (QEMU, gdb, gcc, libc6-dev, python3, xz)"
  fi
fi
if [ $want_test = 1 ]; then
  t=()
  command -v readelf >/dev/null || t+=(binutils)
  command -v makedumpfile >/dev/null || t+=(makedumpfile)
  command -v crash >/dev/null || t+=(crash)
  /usr/bin/python3 -c "import kdumpfile" 2>/dev/null || t+=(python3-libkdumpfile)
  python3 -c "import venv, ensurepip" 2>/dev/null || t+=(python3-venv)
  command -v virsh >/dev/null || t+=(libvirt-clients)
  [ -x /usr/sbin/libvirtd ] || t+=(libvirt-daemon)
  have_pkg libvirt-daemon-driver-qemu || t+=(libvirt-daemon-driver-qemu)
  command -v qemu-system-aarch64 >/dev/null || { t+=(qemu-system-arm); backports=1; }
  command -v gdb-multiarch >/dev/null || t+=(gdb-multiarch)
  dpkg --print-foreign-architectures | grep -x i386 >/dev/null || i386=1
  dpkg --print-foreign-architectures | grep -x arm64 >/dev/null || arm64=1
  # scripts/guest/build-crash-arm64.sh: crash's `make target=ARM64` (crash, and its bundled gdb
  # 10.2 for an aarch64 target) and the compressions of guestcore's kdump files.
  b=()
  for c in g++:g++ make:make bison:bison flex:flex gawk:gawk makeinfo:texinfo; do
    command -v "${c%%:*}" >/dev/null || b+=("${c#*:}")
  done
  for h in zlib.h:zlib1g-dev ncurses.h:libncurses-dev lzo/lzo1x.h:liblzo2-dev \
           snappy-c.h:libsnappy-dev zstd.h:libzstd-dev; do
    [ -e "/usr/include/${h%%:*}" ] || b+=("${h#*:}")
  done
  command -v curl >/dev/null || command -v wget >/dev/null || b+=(curl)
  t+=("${b[@]}")
  cargo_bin avml || cargo_need+=(avml)
  what=("${t[@]}")
  [ $i386 = 0 ] || what+=("the i386 dpkg architecture")
  [ $arm64 = 0 ] || what+=("the arm64 dpkg architecture")
  [ ${#cargo_need[@]} = 0 ] || what+=("avml (cargo)")
  if [ ${#what[@]} -gt 0 ]; then
    say "test: ${what[*]} — readelf, makedumpfile, crash, libkdumpfile and drgn's venv open every dump kind; libvirt makes a real virsh save image; avml converts LiME to AVML; i386 package lists give the 32-bit guest kernels; qemu-system-aarch64, gdb-multiarch and arm64 package lists give the aarch64 guests and their system registers; g++, make, bison, flex, gawk, texinfo and the zlib, ncurses, lzo, snappy and zstd headers build crash for ARM64 dumps (scripts/guest/build-crash-arm64.sh)"
    need "${t[@]}"
  else
    say "test: all present (readelf, makedumpfile, crash, libkdumpfile, python3-venv, libvirt, avml, i386 lists, qemu-system-aarch64, gdb-multiarch, arm64 lists, crash-arm64's build tools)"
  fi
fi
if [ $want_fuzz = 1 ]; then
  if cargo_bin cargo-fuzz; then
    say "fuzz: all present (cargo-fuzz)"
  else
    say "fuzz: cargo-fuzz (cargo) — builds and runs the fuzz targets for scripts/fuzz-smoke.sh"
    cargo_need+=(cargo-fuzz)
  fi
fi

changed() { say "system change: $*"; }
# --- Debian packages ----------------------------------------------------------------------------
if [ ${#apt_need[@]} -gt 0 ] || [ $i386 = 1 ] || [ $arm64 = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  . /etc/os-release 2>/dev/null || true
  codename=${VERSION_CODENAME:-bookworm}
  # QEMU 10 comes from bookworm-backports (the real-guest harness is measured with it; bookworm's
  # own QEMU 7.2 also boots the guests). The mirror is the one already configured.
  if [ $backports = 1 ] && [ "$codename" = bookworm ] \
     && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$( { grep -rhE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true; } \
             | grep -oE 'https?://[^ ]+' | grep -v -e security -e nodesource -e google | head -n1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    echo "deb ${mirror%/} bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/guestcore-backports.list >/dev/null
    changed "added the apt source /etc/apt/sources.list.d/guestcore-backports.list (deb ${mirror%/} bookworm-backports main)"
  fi
  if [ $i386 = 1 ]; then
    $SUDO dpkg --add-architecture i386
    changed "added the i386 dpkg architecture (dpkg --add-architecture i386: apt fetches i386 package lists; no i386 package is installed)"
  fi
  if [ $arm64 = 1 ]; then
    $SUDO dpkg --add-architecture arm64
    changed "added the arm64 dpkg architecture (dpkg --add-architecture arm64: apt fetches arm64 package lists; no arm64 package is installed)"
  fi
  say "apt-get update"
  if ! $SUDO apt-get update -q 2>&1 | sed -n '/^\(Err\|W\|E\):/s/^/  /p'; then
    say "warning: apt-get update reported a failed index (above); going on with the lists it has"
  fi
  if [ ${#apt_need[@]} -gt 0 ]; then
    say "apt-get install ${apt_need[*]}"
    plain=() bpo=()
    for p in "${apt_need[@]}"; do
      case "$p" in
        qemu-system-x86 | qemu-system-arm) [ "$codename" = bookworm ] && bpo+=("$p") || plain+=("$p") ;;
        *) plain+=("$p") ;;
      esac
    done
    # Download progress one package a line ("Get:"), then apt's errors; -qq alone is silent.
    apt_install() {
      $SUDO apt-get install -y -q --no-install-recommends "$@" 2>&1 \
        | sed -n -e '/^Need to get/p' -e '/^Get:/s/ \[/  [/p' -e '/^\(E\|W\):/p' -e '/^Setting up qemu-system-\(x86\|arm\) /p'
    }
    if [ ${#plain[@]} -gt 0 ] && ! apt_install "${plain[@]}"; then
      say "FAILED: apt-get install ${plain[*]} (see apt's messages above)"; exit 1
    fi
    if [ ${#bpo[@]} -gt 0 ] && ! apt_install -t bookworm-backports "${bpo[@]}"; then
      say "FAILED: apt-get install -t bookworm-backports ${bpo[*]} (see apt's messages above)"; exit 1
    fi
  fi
fi

# --- cargo installs (after gcc: they link) -----------------------------------------------------
for c in "${cargo_need[@]}"; do
  case "$c" in
    # avml (Microsoft's LiME/AVML tool, MIT): only its converter (`avml convert`), no upload
    # features, so no OpenSSL.
    avml) args=(avml@0.21.0 --no-default-features --features convert) ;;
    cargo-fuzz) args=(cargo-fuzz@0.13.2) ;;
  esac
  say "cargo install --locked ${args[*]} (into ${CARGO_HOME:-$HOME/.cargo}/bin; a few minutes)"
  cargo install --locked "${args[@]}" || { say "FAILED: cargo install ${args[*]}"; exit 1; }
done

# --- libvirt without systemd (test group) -------------------------------------------------------
# Where no libvirtd runs and we are root, scripts/guest/capture-virsh.sh starts its own and needs
# QEMU run as root: libvirt-setup.sh makes that configuration once and prints each change.
if [ $want_test = 1 ] && [ "$(id -u)" -eq 0 ] && [ -x /usr/sbin/libvirtd ]; then
  bash "$here/guest/libvirt-setup.sh" | while IFS= read -r line; do changed "$line"; done
fi
exit 0
