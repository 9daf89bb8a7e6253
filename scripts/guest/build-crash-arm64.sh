#!/usr/bin/env bash
# Builds crash for ARM64 dumps on this x86_64 host (`make target=ARM64`: crash's own build, which
# builds its bundled gdb 10.2 for an aarch64 target) from Debian's source tarball, for the
# real-guest tests that open the aarch64 guests' dumps with crash. Debian ships no such binary:
# its crash package reads the host's architecture only.
#
#   build-crash-arm64.sh          prints the binary's path on stdout
#
# Cache: ${GUESTCORE_CACHE:-~/.cache/guestcore/guests}/tools/crash-arm64-VERSION/crash (fetch.sh's
# cache dir). Only that binary is kept: the tarball (41 MB, its sha256 pinned below) and the build
# tree are removed. Cached: a second run does nothing. Progress goes to stderr, a line per phase;
# the build's output goes to a log whose tail is printed on failure (the log is kept then).
#
# Needs gcc, g++, make, bison, flex, gawk, texinfo and the headers of zlib, ncurses, lzo2, snappy and
# zstd (`scripts/install-deps.sh test` installs them), and curl or wget. crash reads
# kdump-compressed files in all four of guestcore's compressions (-DLZO -DSNAPPY -DZSTD, zlib
# always). Exit 1 with the reason when it cannot build.
set -euo pipefail

version=8.0.6
# Debian trixie's crash_8.0.6.orig.tar.gz (upstream's 8.0.6 release with gdb-10.2.tar.gz inside);
# the sha256 is the one trixie's Sources index lists. The pool keeps a file only while a suite
# has that version: once it is gone (bookworm's 8.0.2 already is), the same file is at
# snapshot.debian.org (not reachable from the machine this was written on) or upstream's
# github.com/crash-utility/crash release plus ftp.gnu.org's gdb-10.2.tar.gz.
url=http://deb.debian.org/debian/pool/main/c/crash/crash_${version}.orig.tar.gz
sha256=097c6c94ded7e24db4af58de24744bd28276d6f5bae0828bc6b6a02664c4282a

cache=${GUESTCORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guestcore/guests}
mkdir -p "$cache/tools"
cache=$(cd "$cache" && pwd)
dest="$cache/tools/crash-arm64-$version"
bin="$dest/crash"

log() { echo "build-crash-arm64: $*" >&2; }

[ -x "$bin" ] && { echo "$bin"; exit 0; }

# One build at a time (test.sh starts this in the background; a second caller waits for it).
exec 9>"$cache/tools/crash-arm64.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi
[ -x "$bin" ] && { echo "$bin"; exit 0; }

missing=()
for t in gcc g++ make bison flex gawk makeinfo; do command -v "$t" >/dev/null || missing+=("$t"); done
for h in zlib.h ncurses.h lzo/lzo1x.h snappy-c.h zstd.h; do
  [ -e "/usr/include/$h" ] || missing+=("<$h>")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "FAILED: missing ${missing[*]} (scripts/install-deps.sh test installs them)"
  exit 1
fi

start=$SECONDS
build=$(mktemp -d "$cache/tools/crash-build.XXXXXX")
buildlog="$cache/tools/crash-arm64-$version.build.log"
cleanup() { rm -rf "$build"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

log "downloading $url (41 MB)"
tarball="$build/crash_${version}.orig.tar.gz"
if command -v curl >/dev/null; then
  curl -fsSL --retry 3 -o "$tarball" "$url" || { log "FAILED: download of $url (see the comment at the top of this script)"; exit 1; }
elif command -v wget >/dev/null; then
  wget -q --tries=3 -O "$tarball" "$url" || { log "FAILED: download of $url (see the comment at the top of this script)"; exit 1; }
else
  log "FAILED: neither curl nor wget is installed"; exit 1
fi
got=$(sha256sum "$tarball" | cut -d' ' -f1)
if [ "$got" != "$sha256" ]; then
  log "FAILED: sha256 of the download is $got, wanted $sha256"
  exit 1
fi
log "sha256 verified; unpacking"
tar -xzf "$tarball" -C "$build"
rm -f "$tarball"
src="$build/crash-$version"
# crash's configure takes these two files as extra compiler and linker flags (its `make lzo`,
# `make snappy`, `make zstd` write the same).
printf -- '-DLZO -DSNAPPY -DZSTD\n' >"$src/CFLAGS.extra"
printf -- '-llzo2 -lsnappy -lzstd\n' >"$src/LDFLAGS.extra"

jobs=$(nproc 2>/dev/null || echo 2)
log "building (make -j$jobs target=ARM64: crash and gdb 10.2 for aarch64); log: $buildlog"
# Without -g (gdb's default is -g -O2): the binary is stripped anyway, and C++ debug info is
# most of gdb's compile time.
if ! (cd "$src" && CFLAGS=-O2 CXXFLAGS=-O2 make -j"$jobs" target=ARM64) >"$buildlog" 2>&1 \
   || [ ! -x "$src/crash" ]; then
  log "FAILED: make target=ARM64 (last lines of $buildlog below)"
  tail -n 40 "$buildlog" >&2
  exit 1
fi
if ! "$src/crash" --version 2>/dev/null | grep -q "crash $version"; then
  log "FAILED: the built crash does not run: $("$src/crash" --version 2>&1 | head -n 3)"
  exit 1
fi
mkdir -p "$dest"
strip -o "$dest/crash.tmp" "$src/crash"
mv "$dest/crash.tmp" "$bin"
rm -f "$buildlog"
log "crash $version for ARM64 ready in $bin ($(du -k "$bin" | cut -f1) KiB; built in $((SECONDS - start)) s)"
echo "$bin"
