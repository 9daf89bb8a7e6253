#!/usr/bin/env bash
# Fetches the guest kernels and busybox for the real-guest harness into the cache dir
# (${GUESTCORE_CACHE:-~/.cache/guestcore/guests}, outside the repository so a fresh clone reuses it), with `apt-get download` + `dpkg -x`: nothing is
# installed onto the host. Cached: a second run does nothing.
#
# Layout of the cache:
#   debs/                         the downloaded .deb files
#   kernels/FLAVOUR/vmlinuz       FLAVOUR = amd64 | 686 | 686-pae | arm64 | arm64-16k (the
#                                 package's file as is: for arm64 a gzip'd Image, which QEMU's
#                                 -kernel unpacks itself)
#   kernels/FLAVOUR/release       the kernel release (uname -r)
#   kernels/FLAVOUR/System.map    the package's System.map and config (link-time symbol addresses,
#   kernels/FLAVOUR/config        build options); always kept for arm64, for x86 when fetched anew
#   kernels/FLAVOUR/modules/*.ko  qemu_fw_cfg and its dependencies, load order in modules/order
#                                 (empty order file when qemu_fw_cfg is built in)
#   busybox/ARCH/busybox          ARCH = amd64 | i386 | arm64
#   kernels/FLAVOUR/vmlinux       the kernel's debug vmlinux (from linux-image-RELEASE-dbg,
#                                 ~850 MB download, 630 MB kept for amd64; 804 MB / ~600 MB for
#                                 arm64) for crash and drgn; its .deb is deleted once vmlinux is
#                                 out (`debug` / `debug-arm64` / `debug-arm64-16k`, or
#                                 GUESTCORE_DEBUG=1 for amd64)
#   kexec/arm64/                  kexec-tools:arm64 and its libraries, dpkg -x'd into one root
#                                 tree (`kexec-arm64`; for the aarch64 kdump guest)
#
# Usage: fetch.sh [amd64] [i386] [arm64] [arm64-16k] [kexec-arm64] [debug] [debug-arm64] [debug-arm64-16k]
#   default: amd64 i386. The i386 and arm64 guests are skipped with a `SKIP:` message when their
#   packages cannot be had (exit 0, so the caller finds no kernel and skips). `debug` adds the
#   amd64 debug vmlinux, `debug-FLAVOUR` that of an arm64 flavour. arm64 is Debian 12's default
#   arm64 kernel (4 KiB pages), arm64-16k the 16 KiB-page kernel of bookworm-backports (Debian
#   12 itself has no 16k or 64k flavour; backports has 16k, no 64k).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${GUESTCORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guestcore/guests}
mkdir -p "$cache/debs"
cache=$(cd "$cache" && pwd)

log() { echo "fetch: $*" >&2; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# The concrete package a metapackage (e.g. linux-image-amd64) depends on.
resolve_dep() {
  apt-cache depends --no-recommends --no-suggests "$1" 2>/dev/null \
    | awk '$1 == "Depends:" || $1 == "|Depends:" { print $2; exit }'
}

# download PKG ARCH: fetches PKG's .deb into debs/ (once) and prints its path.
download() {
  local pkg=$1 arch=$2 name file size opts=()
  name=${pkg%%:*}
  file=$(ls "$cache/debs/${name}"_*_"$arch".deb 2>/dev/null | head -n1 || true)
  if [ -z "$file" ]; then
    size=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Size: //p' | head -n1)
    if [ -n "$size" ]; then
      if [ "$size" -ge 1000000 ]; then size="$((size / 1000000)) MB"; else size="$((size / 1000)) kB"; fi
    fi
    log "downloading $pkg${size:+ ($size)} into $cache/debs"
    # As root, apt's _apt sandbox user may not be able to write into the cache dir.
    [ "$(id -u)" -ne 0 ] || opts=(-o APT::Sandbox::User=root)
    # quiet=0: apt's progress line (done/total, rate) even when stderr is not a terminal.
    (cd "$cache/debs" && apt-get download -o quiet=0 "${opts[@]}" "$pkg" >&2) || return 1
    file=$(ls "$cache/debs/${name}"_*_"$arch".deb 2>/dev/null | head -n1 || true)
    [ -n "$file" ] || return 1
  fi
  echo "$file"
}

# The "depends=" field of a module's .modinfo section (no modinfo/kmod needed on the host).
mod_depends() {
  tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | head -n1 | tr ',' ' '
}

# find_module MODDIR NAME: the path of NAME.ko[.xz|.zst|.gz] under MODDIR/kernel.
find_module() {
  local alt=${2//_/-}
  find "$1/kernel" \( -name "$2.ko*" -o -name "$alt.ko*" \) -print -quit
}

# add_module MODDIR NAME DEST: copies NAME (uncompressed) and, first, its dependencies into
# DEST and appends them to DEST/order in load order.
add_module() {
  local moddir=$1 name=$2 dest=$3 path base dep
  grep -qx "$name.ko" "$dest/order" 2>/dev/null && return 0
  path=$(find_module "$moddir" "$name")
  [ -n "$path" ] || { log "module $name not found"; return 1; }
  base=$(basename "$path")
  cp "$path" "$dest/$base"
  case "$base" in
    *.ko.xz) xz -d -f "$dest/$base" ;;
    *.ko.zst) zstd -q -d -f --rm "$dest/$base" ;;
    *.ko.gz) gzip -d -f "$dest/$base" ;;
  esac
  for dep in $(mod_depends "$dest/$name.ko"); do
    add_module "$moddir" "$dep" "$dest" || return 1
  done
  echo "$name.ko" >>"$dest/order"
}

# fetch_kernel FLAVOUR ARCH: FLAVOUR = amd64 | 686 | 686-pae | arm64 | arm64-16k;
# ARCH = amd64 | i386 | arm64.
fetch_kernel() {
  local flavour=$1 arch=$2 dest="$cache/kernels/$1" suffix=""
  if [ -s "$dest/vmlinuz" ] && [ -s "$dest/release" ] && [ -f "$dest/modules/order" ] \
     && { [ "$arch" != arm64 ] || [ -s "$dest/System.map" ]; }; then
    return 0
  fi
  [ "$arch" = amd64 ] || suffix=":$arch"
  local pkg deb tmp release moddir
  pkg=$(resolve_dep "linux-image-$flavour$suffix")
  pkg=${pkg%%:*}
  [ -n "$pkg" ] || { log "cannot resolve linux-image-$flavour$suffix"; return 1; }
  deb=$(download "$pkg$suffix" "$arch") || return 1
  tmp=$(mktemp -d "$cache/x.XXXXXX")
  if ! dpkg -x "$deb" "$tmp"; then rm -rf "$tmp"; return 1; fi
  release=$(ls "$tmp/lib/modules" | head -n1)
  moddir="$tmp/lib/modules/$release"
  if [ -z "$release" ] || [ ! -s "$tmp/boot/vmlinuz-$release" ]; then
    log "$deb holds no kernel"; rm -rf "$tmp"; return 1
  fi
  # A debug vmlinux of this very release (fetched before System.map was kept) stays.
  if [ "$(cat "$dest/vmlinux.release" 2>/dev/null)" = "$release" ]; then
    rm -rf "$dest/modules" "$dest/release"
  else
    rm -rf "$dest"
  fi
  mkdir -p "$dest/modules"
  cp "$tmp/boot/vmlinuz-$release" "$dest/vmlinuz"
  # System.map and config: the arm64 kernels have no data symbols in kallsyms (no
  # CONFIG_KALLSYMS_ALL in 6.1), so capture.sh takes them from System.map plus the KASLR offset;
  # config says the page size and VA bits.
  cp "$tmp/boot/System.map-$release" "$dest/System.map" 2>/dev/null || true
  cp "$tmp/boot/config-$release" "$dest/config" 2>/dev/null || true
  : >"$dest/modules/order"
  # qemu_fw_cfg (for -device vmcoreinfo): built in, or a module plus its dependencies.
  if grep -q '/qemu_fw_cfg\.ko' "$moddir/modules.builtin" 2>/dev/null; then
    log "$flavour $release: qemu_fw_cfg is built in"
  elif add_module "$moddir" qemu_fw_cfg "$dest/modules"; then
    log "$flavour $release: modules $(tr '\n' ' ' <"$dest/modules/order")"
  else
    log "$flavour $release: no qemu_fw_cfg (dumps will lack VMCOREINFO)"
  fi
  echo "$release" >"$dest/release"   # written last: marks the entry complete
  rm -rf "$tmp"
  log "$flavour: $release ready in $dest"
}

# fetch_busybox ARCH: ARCH = amd64 | i386 | arm64.
fetch_busybox() {
  local arch=$1 dest="$cache/busybox/$1" suffix="" deb tmp
  [ -x "$dest/busybox" ] && return 0
  [ "$arch" = amd64 ] || suffix=":$arch"
  deb=$(download "busybox-static$suffix" "$arch") || return 1
  tmp=$(mktemp -d "$cache/x.XXXXXX")
  if ! dpkg -x "$deb" "$tmp"; then rm -rf "$tmp"; return 1; fi
  mkdir -p "$dest"
  cp "$tmp/bin/busybox" "$dest/busybox"
  rm -rf "$tmp"
  log "busybox $arch ready in $dest"
}

# fetch_vmlinux FLAVOUR ARCH: the debug vmlinux matching kernels/FLAVOUR/release, for crash and
# drgn. Only the one file is taken out of the package (dpkg-deb | tar), and the .deb (~800 MB -
# 1 GB) is removed after.
fetch_vmlinux() {
  local flavour=$1 arch=$2 dest="$cache/kernels/$1" release pkg deb tmp suffix=""
  [ "$arch" = amd64 ] || suffix=":$arch"
  release=$(cat "$dest/release" 2>/dev/null) || { log "fetch the $flavour kernel first"; return 1; }
  if [ -s "$dest/vmlinux" ] && [ "$(cat "$dest/vmlinux.release" 2>/dev/null)" = "$release" ]; then
    return 0
  fi
  pkg="linux-image-$release-dbg"
  deb=$(download "$pkg$suffix" "$arch") || { log "cannot download $pkg$suffix"; return 1; }
  tmp=$(mktemp "$cache/vmlinux.XXXXXX")
  if ! dpkg-deb --fsys-tarfile "$deb" | tar -x --wildcards -O "./usr/lib/debug/boot/vmlinux-$release" >"$tmp" \
     || [ ! -s "$tmp" ]; then
    rm -f "$tmp"; log "$deb holds no vmlinux-$release"; return 1
  fi
  mv "$tmp" "$dest/vmlinux"
  echo "$release" >"$dest/vmlinux.release"
  rm -f "$deb"
  log "debug vmlinux for $release ready in $dest/vmlinux"
}

# The arm64 kexec-tools and the shared libraries its DT_NEEDED closure names (kexec links
# libxenctrl, which links six small Xen libraries; the rest of libxenmisc4.17's package
# dependencies are never loaded). The aarch64 kdump guest's first kernel runs `kexec -p` from
# this tree: Debian's arm64 kernel has no CONFIG_KEXEC_FILE, so the capture kernel must be
# loaded with kexec_load(2), for which kexec-tools builds the segments itself (the capture
# kernel's DTB with linux,elfcorehdr and linux,usable-memory-range, the ELF core header, its
# purgatory). kdump_initramfs.py copies only the closure of sbin/kexec out of it.
KEXEC_ARM64_PACKAGES=(kexec-tools libxenmisc4.17 libxentoollog1 libxencall1 libxenevtchn1 libxengnttab1
                      libxenforeignmemory1 libxendevicemodel1 libxentoolcore1 zlib1g libc6)

# fetch_kexec ARCH: kexec/ARCH/ = the packages above unpacked (dpkg -x) into one root tree.
fetch_kexec() {
  local arch=$1 dest="$cache/kexec/$1" pkg deb tmp
  [ -f "$dest/complete" ] && return 0
  tmp=$(mktemp -d "$cache/x.XXXXXX")
  for pkg in "${KEXEC_ARM64_PACKAGES[@]}"; do
    deb=$(download "$pkg:$arch" "$arch") && dpkg -x "$deb" "$tmp" || {
      log "cannot fetch $pkg:$arch"; rm -rf "$tmp"; return 1; }
  done
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  mv "$tmp" "$dest"
  touch "$dest/complete"   # last: marks the tree complete
  log "kexec-tools $arch ready in $dest"
}

i386_available() {
  if ! dpkg --print-foreign-architectures | grep -x i386 >/dev/null; then
    $SUDO dpkg --add-architecture i386 || return 1
    log "system change: added the i386 dpkg architecture (dpkg --add-architecture i386: apt fetches i386 package lists; no i386 package is installed)"
  fi
  if ! apt-cache show linux-image-686:i386 >/dev/null 2>&1; then
    log "apt-get update for i386 package lists"
    # A failing index (e.g. a mirror sync of the security suite) is not fatal if main works.
    $SUDO apt-get update -qq >&2 || true
  fi
  apt-cache show linux-image-686:i386 >/dev/null 2>&1 && apt-cache show busybox-static:i386 >/dev/null 2>&1
}

# arm64_available META: adds the arm64 dpkg architecture and its package lists when needed;
# true when META (a kernel metapackage) and busybox-static exist for arm64. A failing index
# (e.g. bookworm-security's arm64 list) is not fatal: bookworm main has the kernel too, and
# apt's candidate is then the newest version the lists it has offer.
arm64_available() {
  if ! dpkg --print-foreign-architectures | grep -x arm64 >/dev/null; then
    $SUDO dpkg --add-architecture arm64 || return 1
    log "system change: added the arm64 dpkg architecture (dpkg --add-architecture arm64: apt fetches arm64 package lists; no arm64 package is installed)"
  fi
  if ! apt-cache show "$1:arm64" >/dev/null 2>&1 || ! apt-cache show busybox-static:arm64 >/dev/null 2>&1; then
    log "apt-get update for arm64 package lists"
    $SUDO apt-get update -qq >&2 || log "apt-get update reported a failed index; going on with the lists it has"
  fi
  apt-cache show "$1:arm64" >/dev/null 2>&1 && apt-cache show busybox-static:arm64 >/dev/null 2>&1
}

# arm64_guest FLAVOUR: the arm64 kernel FLAVOUR (arm64 | arm64-16k) and arm64 busybox, or a
# SKIP message (status 0) when they cannot be had.
arm64_guest() {
  local flavour=$1
  if [ -s "$cache/kernels/$flavour/release" ] && [ -s "$cache/kernels/$flavour/System.map" ] \
     && [ -x "$cache/busybox/arm64/busybox" ]; then
    return 0
  fi
  if ! arm64_available "linux-image-$flavour"; then
    log "SKIP: linux-image-$flavour:arm64 or busybox-static:arm64 is not available from the configured apt sources; no $flavour guest"
    return 0
  fi
  fetch_kernel "$flavour" arm64 || { log "SKIP: linux-image-$flavour:arm64 could not be fetched; no $flavour guest"; return 0; }
  fetch_busybox arm64 || log "SKIP: busybox-static:arm64 could not be fetched; no arm64 guests"
}

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(amd64 i386)
[ "${GUESTCORE_DEBUG:-0}" != 1 ] || want+=(debug)
start=$SECONDS
for w in "${want[@]}"; do
  case "$w" in
    amd64)
      fetch_kernel amd64 amd64 || { log "cannot fetch the amd64 kernel"; exit 1; }
      fetch_busybox amd64 || { log "cannot fetch busybox-static"; exit 1; }
      ;;
    i386)
      if [ -s "$cache/kernels/686/vmlinuz" ] && [ -s "$cache/kernels/686-pae/vmlinuz" ] && [ -x "$cache/busybox/i386/busybox" ]; then
        continue
      fi
      if i386_available; then
        fetch_kernel 686 i386 || log "SKIP: linux-image-686:i386 unavailable; no i386 guest"
        fetch_kernel 686-pae i386 || log "SKIP: linux-image-686-pae:i386 unavailable; no i386-pae guest"
        fetch_busybox i386 || log "SKIP: busybox-static:i386 unavailable; no 32-bit guests"
      else
        log "SKIP: i386 packages are not available from the configured apt sources; 32-bit guests (i386, i386-pae) are skipped"
      fi
      ;;
    arm64 | arm64-16k)
      arm64_guest "$w"
      ;;
    kexec-arm64)
      arm64_guest arm64
      fetch_kexec arm64 || log "SKIP: kexec-tools:arm64 or its libraries could not be fetched; no aarch64 kdump guest"
      ;;
    debug)
      fetch_kernel amd64 amd64 || { log "cannot fetch the amd64 kernel"; exit 1; }
      fetch_vmlinux amd64 amd64 || { log "cannot fetch the amd64 debug vmlinux"; exit 1; }
      ;;
    debug-arm64 | debug-arm64-16k)
      f=${w#debug-}
      arm64_guest "$f"
      [ -s "$cache/kernels/$f/release" ] || { log "SKIP: no $f kernel, so no $f debug vmlinux"; continue; }
      fetch_vmlinux "$f" arm64 || { log "cannot fetch the $f debug vmlinux"; exit 1; }
      ;;
    *) log "unknown argument $w (amd64 | i386 | arm64 | arm64-16k | kexec-arm64 | debug | debug-arm64 | debug-arm64-16k)"; exit 2 ;;
  esac
done
log "done in $((SECONDS - start)) s; cache: $cache"
