#!/usr/bin/env bash
# Boots the kdump guest under QEMU (TCG): a Debian amd64 (or arm64) kernel with crashkernel=
# whose /init loads the same kernel as kdump capture kernel (amd64: kexec_file_load,
# KEXEC_FILE_ON_CRASH; arm64: kexec-tools' `kexec -p`) and crashes with sysrq-c. Once the capture kernel prints its ready marker the guest is stopped
# and QEMU's own view of it is captured: the ground truth for issue 12 (finding the crashed
# kernel behind a capture kernel). See kdump_initramfs.py for what the guest prints.
#
# Usage: capture-kdump.sh [OUTDIR]
#   OUTDIR default: $GUESTCORE_CACHE/captures/ARCH-kdump (ARCH-kdump-smpN when
#          GUESTCORE_SMP=N is not 2)   (GUESTCORE_CACHE default: ~/.cache/guestcore/guests)
# Environment: GUESTCORE_ARCH (x86_64, the default: -machine pc -cpu qemu64, Debian amd64, the
#   static kexec_load.c loader; aarch64: -machine virt -cpu max, Debian arm64 (4 KiB pages),
#   kexec-tools:arm64 from fetch.sh kexec-arm64), GUESTCORE_SMP (vCPUs, default 2), GUESTCORE_BOOT_TIMEOUT (seconds per phase,
#   default 180: boot to "loaded", then crash to capture kernel ready), GUESTCORE_KDUMP_MEM
#   (default 768M), GUESTCORE_CRASHKERNEL (default 192M), GUESTCORE_CRASH_CPU (the vCPU that
#   crashes, so the one the capture kernel runs on: `taskset -c N` in the guest; default: wherever
#   the scheduler put /init, which differs from boot to boot), QEMU (default
#   qemu-system-ARCH), CC (default gcc; x86_64 only), GDB (default gdb-multiarch; aarch64 only).
#
# Writes into OUTDIR:
#   phys.elf          dump-guest-memory paging=false (ELF)
#   kdump-zlib.dump   dump-guest-memory format=kdump-zlib
#   migration.bin     aarch64: `migrate file:` of the stopped guest, taken last
#   registers.txt     HMP `info registers -a`;  registers-cpu0.txt: `info registers`
#   sysregs.txt       aarch64: `CPU NAME 0xVALUE` from QEMU's gdbstub (aarch64_truth.py's
#                     reader): HMP prints no aarch64 system register
#   mtree.txt         HMP `info mtree -f`
#   release.txt       the first (crashed) kernel's `uname -r`
#   facts.txt         `KEY VALUE` per line (VALUE = rest of the line); see README.md
#   symbols.txt       `name vaddr paddr` for the crashed kernel's symbols (paddr: gva2gpa on the
#                     first vCPU still in the crashed kernel, "-" when there is none; a vCPU
#                     runs the capture kernel when its CR3 / TTBR1_EL1 lies in the reservation)
#   capture-symbols.txt  the same for the capture kernel (gva2gpa on its vCPU)
#   capture-console.txt  the capture kernel's console: serial.log from its first line on
#   serial.log qemu.log cmdline.txt timings.txt
# Exit status: 0 ok, 1 failure (log tail printed), 77 skipped (no kernel/busybox, or the static
# loader cannot be built, or kexec-tools:arm64 cannot be had). QEMU is stopped with QMP `quit` and then killed by PID on every exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${GUESTCORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guestcore/guests}
arch=${GUESTCORE_ARCH:-x86_64}
qemu=${QEMU:-qemu-system-$arch}
cc=${CC:-gcc}
gdb=${GDB:-gdb-multiarch}
boot_timeout=${GUESTCORE_BOOT_TIMEOUT:-180}
smp=${GUESTCORE_SMP:-2}
mem=${GUESTCORE_KDUMP_MEM:-768M}
crashkernel=${GUESTCORE_CRASHKERNEL:-192M}
crash_cpu=${GUESTCORE_CRASH_CPU:-}
# What differs between the architectures: the board and CPU, the Debian kernel flavour (also
# busybox's architecture), the console, and the loader.
case "$arch" in
  x86_64)  flavour=amd64; console=ttyS0;   machine=(-machine pc -accel tcg -cpu qemu64) ;;
  # virt's RAM starts at 1 GiB; -cpu max as the other aarch64 guests (boot.sh).
  aarch64) flavour=arm64; console=ttyAMA0; machine=(-machine virt -accel tcg -cpu max) ;;
  *) echo "GUESTCORE_ARCH: x86_64 or aarch64, not $arch" >&2; exit 2 ;;
esac
append="console=$console crashkernel=$crashkernel panic=-1 printk.time=1"
[ -z "$crash_cpu" ] || append+=" guestcore_crash_cpu=$crash_cpu"

guest=$arch-kdump
[ "$smp" = 2 ] || guest=$arch-kdump-smp$smp
[ $# -le 1 ] || { echo "usage: $0 [OUTDIR]" >&2; exit 2; }
out=${1:-$cache/captures/$guest}

log() { echo "capture[$guest]: $*" >&2; }
t0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
timing() { log "$1: $2 s"; echo "$1 $2" >>"$out/timings.txt"; }

command -v "$qemu" >/dev/null || { log "$qemu not found (run scripts/install-deps.sh)"; exit 1; }

# Kernel + busybox (cached); for arm64 also kexec-tools.
if [ "$arch" = aarch64 ]; then
  "$here/fetch.sh" kexec-arm64
  command -v "$gdb" >/dev/null || { log "$gdb not found (run scripts/install-deps.sh)"; exit 1; }
else
  "$here/fetch.sh" amd64
fi
kdir="$cache/kernels/$flavour"
busybox="$cache/busybox/$flavour/busybox"
if [ ! -s "$kdir/vmlinuz" ] || [ ! -s "$kdir/release" ] || [ ! -x "$busybox" ]; then
  log "SKIP: no $flavour kernel or busybox in $cache (see fetch.sh's messages)"
  exit 77
fi

# The loader. arm64: Debian's kernel has no kexec_file_load (no CONFIG_KEXEC_FILE), so the
# capture kernel is loaded with kexec_load(2), whose segments (the capture kernel's DTB with
# linux,elfcorehdr and linux,usable-memory-range, the ELF core header, purgatory) kexec-tools
# builds: Debian's arm64 kexec-tools, what arm64 kdump setups run, with its libraries.
# x86_64: the static kexec_load.c (one kexec_file_load), cached next to the initramfs and
# rebuilt when kexec_load.c is newer.
mkdir -p "$cache/initramfs"
if [ "$arch" = aarch64 ]; then
  loader="$cache/kexec/arm64/complete"
  [ -f "$loader" ] || { log "SKIP: no kexec-tools:arm64 in $cache/kexec/arm64 (see fetch.sh's messages)"; exit 77; }
  loader_args=(--kexec-root "$cache/kexec/arm64")
else
  loader="$cache/initramfs/kexec_load"
  loader_args=(--loader "$loader")
fi
if [ "$arch" = x86_64 ] && { [ ! -x "$loader" ] || [ "$here/kexec_load.c" -nt "$loader" ]; }; then
  command -v "$cc" >/dev/null || { log "SKIP: no C compiler ($cc) to build the static kexec_load"; exit 77; }
  if ! "$cc" -static -O2 -s -Wall -o "$loader.tmp" "$here/kexec_load.c" 2>"$cache/initramfs/kexec_load.err"; then
    log "SKIP: cannot build kexec_load with '$cc -static' (static libc missing? on Debian: libc6-dev):"
    cat "$cache/initramfs/kexec_load.err" >&2
    rm -f "$loader.tmp"
    exit 77
  fi
  mv "$loader.tmp" "$loader"
  rm -f "$cache/initramfs/kexec_load.err"
  log "built $loader"
fi

# The two-kernel initramfs, rebuilt when a builder, the loader or the kernel changed.
initrd="$cache/initramfs/$flavour-kdump.cpio.gz"
if [ ! -s "$initrd" ] || [ "$here/kdump_initramfs.py" -nt "$initrd" ] || [ "$here/initramfs.py" -nt "$initrd" ] \
   || [ "$loader" -nt "$initrd" ] || [ "$kdir/release" -nt "$initrd" ]; then
  python3 "$here/kdump_initramfs.py" --busybox "$busybox" --modules "$kdir/modules" \
    "${loader_args[@]}" --console "$console" --kernel "$kdir/vmlinuz" --out "$initrd"
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/{phys.elf,kdump-zlib.dump,migration.bin,registers.txt,registers-cpu0.txt,sysregs.txt,mtree.txt,release.txt,facts.txt} \
      "$out"/{symbols.txt,capture-symbols.txt,capture-console.txt,serial.log,qemu.log,cmdline.txt,timings.txt,qmp.sock,qemu.pid}
sock="$out/qmp.sock"
qmp() { python3 "$here/qmp.py" "$sock" "$@"; }

# -no-reboot does not get in the way: the crash kexec jumps into the capture kernel without a
# reset; only a reset (e.g. the capture kernel panicking, panic=-1) makes QEMU exit.
args=("${machine[@]}" -m "$mem" -smp "$smp" -nographic -no-reboot -nic none
      -kernel "$kdir/vmlinuz" -initrd "$initrd"
      -append "$append"
      -serial "file:$out/serial.log" -monitor none
      -qmp "unix:$sock,server=on,wait=off" -device vmcoreinfo
      -pidfile "$out/qemu.pid")
printf '%q ' "$qemu" "${args[@]}" >"$out/cmdline.txt"; echo >>"$out/cmdline.txt"

qemu_pid=""
cleanup() {
  local rc=$?
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    [ -S "$sock" ] && timeout 10 python3 "$here/qmp.py" "$sock" quit >/dev/null 2>&1 || true
    for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$qemu_pid" 2>/dev/null; then
      log "QEMU (pid $qemu_pid) did not quit; killing it"
      kill -TERM "$qemu_pid" 2>/dev/null || true
      sleep 1
      kill -KILL "$qemu_pid" 2>/dev/null || true
    fi
    wait "$qemu_pid" 2>/dev/null || true
  fi
  rm -f "$sock" "$out/qemu.pid"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "booting $(cat "$kdir/release") with -m $mem -smp $smp crashkernel=$crashkernel${crash_cpu:+, crashing on vCPU $crash_cpu}"
"$qemu" "${args[@]}" </dev/null >"$out/qemu.log" 2>&1 &
qemu_pid=$!

# wait_for REGEX WHAT: waits until serial.log has a line matching REGEX (grep -E, anchored at
# the line start), failing on timeout, on QEMU exiting, or on a GUESTCORE-KEXEC-FAILED line.
wait_for() {
  local deadline=$((SECONDS + boot_timeout))
  until grep -qaE "^($1)" "$out/serial.log" 2>/dev/null; do
    if grep -qa '^GUESTCORE-KEXEC-FAILED' "$out/serial.log" 2>/dev/null; then
      log "the first kernel could not load the capture kernel:"
      grep -a '^GUESTCORE-KEXEC-FAILED' "$out/serial.log" | tr -d '\r' >&2
      log "serial.log tail:"; tail -n 40 "$out/serial.log" >&2 2>/dev/null || true
      exit 1
    fi
    if ! kill -0 "$qemu_pid" 2>/dev/null; then
      log "QEMU exited before $2 (a reset: -no-reboot); qemu.log:"; cat "$out/qemu.log" >&2
      log "serial.log tail:"; tail -n 40 "$out/serial.log" >&2 2>/dev/null || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      log "timeout (${boot_timeout} s) waiting for $2; serial.log tail:"
      tail -n 40 "$out/serial.log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.2
  done
}
wait_for 'GUESTCORE-LOADED' "the capture kernel to be loaded (GUESTCORE-LOADED)"
timing boot-to-loaded "$(since "$t0")"
t1=$(date +%s.%N)
wait_for 'GUESTCORE-CAPTURE-READY' "the capture kernel (GUESTCORE-CAPTURE-READY)"
timing crash-to-capture-ready "$(since "$t1")"

t2=$(date +%s.%N)
qmp stop
hmp_to() {
  local t; t=$(date +%s.%N)
  qmp hmp "$2" >"$out/$1"
  log "  $2: $(since "$t") s"
}
hmp_to registers.txt 'info registers -a'
hmp_to registers-cpu0.txt 'info registers'
hmp_to mtree.txt 'info mtree -f'

# facts.txt, symbols.txt, capture-symbols.txt: from serial.log and the vCPUs' page-table roots,
# with gva2gpa on the vCPU that runs each kernel (a vCPU whose root lies inside the crashkernel
# reservation runs the capture kernel; any other one is still in the crashed kernel). x86: CR3
# from registers.txt; aarch64: TTBR1_EL1 (the kernel half's root) from QEMU's gdbstub.
PYTHONDONTWRITEBYTECODE=1 python3 - "$here" "$sock" "$out" "$smp" "$mem" "$crashkernel" "$arch" "$gdb" <<'PY'
import re
import sys

sys.path.insert(0, sys.argv[1])
from qmp import QMP

sock, out, smp, mem, crashkernel, arch, gdb = sys.argv[2:9]
lines = [l.rstrip("\r\n") for l in open(f"{out}/serial.log", errors="replace")]


def first(prefix):
    """The rest of the first line that starts with PREFIX ("" when none)."""
    for l in lines:
        if l.startswith(prefix + " ") or l == prefix:
            return l[len(prefix):].strip()
    return ""


def grep(regex):
    """The first line (timestamp and all) that matches REGEX anywhere ("" when none)."""
    r = re.compile(regex)
    for l in lines:
        if r.search(l):
            return l
    return ""


def syms(prefix):
    seen = {}
    for l in lines:
        p = l.split()
        if len(p) == 3 and p[0] == prefix and p[1] not in seen:
            seen[p[1]] = p[2]
    return seen


facts = []
def fact(k, v):
    facts.append(f"{k} {v}")


release = first("GUESTCORE-RELEASE")
ck = first("GUESTCORE-CRASHKERNEL").split()
ck_start, ck_end = (int(ck[0], 16), int(ck[1], 16)) if len(ck) == 2 else (None, None)
crash_marker = first("GUESTCORE-CRASH-MARKER")
capture_marker = first("GUESTCORE-CAPTURE-MARKER")
fact("release", release)
fact("capture-release", first("GUESTCORE-CAPTURE-RELEASE"))
fact("cpus", smp)
fact("mem", mem)
fact("crashkernel", crashkernel)
fact("crashkernel-start", ck[0] if ck_start is not None else "-")
fact("crashkernel-end", ck[1] if ck_start is not None else "-")
fact("elfcorehdr", first("GUESTCORE-ELFCOREHDR"))
fact("vmcoreinfo", first("GUESTCORE-VMCOREINFO"))
fact("vmcore", first("GUESTCORE-VMCORE"))
fact("cmdline", first("GUESTCORE-CMDLINE"))
fact("capture-cmdline", first("GUESTCORE-CAPTURE-CMDLINE"))
first_syms, capture_syms = syms("GUESTCORE-SYM"), syms("GUESTCORE-CAPTURE-SYM")
for name, addr in first_syms.items():
    fact(f"sym-{name}", "0x" + addr)
for name, addr in capture_syms.items():
    fact(f"capture-sym-{name}", "0x" + addr)
fact("crash-line", grep(r"\] sysrq: Trigger a crash"))
panic_line = grep(r"\] Kernel panic - not syncing: ")
fact("panic-line", panic_line)
# The crashed kernel's last console line before the panic (its log holds it).
kernel_lines = [l for l in lines if re.match(r"\[ *\d+\.\d+\] ", l)]
before = kernel_lines[:kernel_lines.index(panic_line)] if panic_line in kernel_lines else []
fact("pre-panic-line", before[-1] if before else "")
# The capture kernel's console starts at the first line after the panic whose timestamp is 0
# again (x86 prints "Linux version ..." first, arm64 "Booting Linux on physical CPU ...").
panic_at = lines.index(panic_line) if panic_line in lines else len(lines)
starts = [i for i, l in enumerate(lines) if i > panic_at and re.match(r"\[ *0\.000000\] ", l)]
start = starts[0] if starts else len(lines)
with open(f"{out}/capture-console.txt", "w") as f:
    f.write("".join(l + "\n" for l in lines[start:]))
# The crashed kernel's last console line: the last timestamped one before that.
crashed = [l for l in lines[:start] if re.match(r"\[ *\d+\.\d+\] ", l)] if starts else []
fact("crashed-last-line", crashed[-1] if crashed else "")
fact("first-marker-line", grep(r"\] GUESTCORE-MARK first kernel up "))
fact("crash-marker", crash_marker)
fact("crash-marker-line", grep(r"\] " + re.escape(crash_marker) + "$") if crash_marker else "")
fact("capture-marker", capture_marker)
fact("capture-marker-line", grep(r"\] " + re.escape(capture_marker) + "$") if capture_marker else "")

# Each vCPU's page-table root and which kernel it runs.
q = QMP(sock)
cpus = {}
if arch == "aarch64":
    from aarch64_truth import read_sysregs  # the gdbstub reader of the aarch64 captures
    sysregs = read_sysregs(q, out, int(smp), gdb)
    with open(f"{out}/sysregs.txt", "w") as f:
        for n, regs in sorted(sysregs.items()):
            for name, value in regs.items():
                f.write(f"{n} {name} 0x{value:x}\n")
    # HMP's "PSTATE=... EL1h" / a halted vCPU (WFI or PSCI off) has no HLT field on arm.
    cpus = {n: (r["TTBR1_EL1"], "?") for n, r in sysregs.items()}
else:
    regs = open(f"{out}/registers.txt", errors="replace").read()
    for block in re.split(r"(?m)^(?=CPU#)", regs):
        m = re.match(r"CPU#(\d+)", block)
        if not m:
            continue
        cr3 = re.search(r"\bCR3=([0-9a-fA-F]+)", block)
        hlt = re.search(r"\bHLT=(\d)", block)
        cpus[int(m.group(1))] = (int(cr3.group(1), 16) if cr3 else None, hlt.group(1) if hlt else "?")
# The table's address: CR3 less its flags and PCID; TTBR1_EL1 less its ASID (bits 63:48) and
# CnP (bit 0).
root_mask = 0x0000_FFFF_FFFF_FFFE if arch == "aarch64" else ~0xFFF
root_name = "ttbr1" if arch == "aarch64" else "cr3"
crashed_cpu = capture_cpu = None
for n, (cr3, hlt) in sorted(cpus.items()):
    root = (cr3 or 0) & root_mask
    if cr3 is None or ck_start is None:
        role = "unknown"
    elif ck_start <= root <= ck_end:
        role = "capture"
        capture_cpu = n if capture_cpu is None else capture_cpu
    else:
        role = "crashed"
        crashed_cpu = n if crashed_cpu is None else crashed_cpu
    fact(f"cpu{n}-{root_name}", f"0x{cr3:x}" if cr3 is not None else "-")
    fact(f"cpu{n}-hlt", hlt)
    fact(f"cpu{n}-kernel", role)

def translate(table, cpu, path):
    with open(path, "w") as f:
        for name, vaddr in table.items():
            paddr = "-"
            if cpu is not None:
                res = q.execute("human-monitor-command",
                                **{"command-line": f"gva2gpa 0x{vaddr}", "cpu-index": cpu}).strip()
                if res.startswith("gpa:"):
                    paddr = res.split()[1]
                else:
                    print(f"capture: gva2gpa {name} 0x{vaddr} on vCPU {cpu}: {res}", file=sys.stderr)
            f.write(f"{name} 0x{vaddr} {paddr}\n")
translate(first_syms, crashed_cpu, f"{out}/symbols.txt")
translate(capture_syms, capture_cpu, f"{out}/capture-symbols.txt")
q.close()

with open(f"{out}/facts.txt", "w") as f:
    f.write("\n".join(facts) + "\n")
with open(f"{out}/release.txt", "w") as f:
    f.write(release + "\n")
missing = [k.split()[0] for k in facts if len(k.split(None, 1)) < 2 or k.split(None, 1)[1] in ("", "-")]
# cpuN-cr3 "-" and the symbols kallsyms lacks are not errors; the core facts are.
core = {"release", "capture-release", "crashkernel-start", "crashkernel-end", "elfcorehdr",
        "crash-line", "panic-line", "pre-panic-line", "crashed-last-line", "crash-marker",
        "capture-marker", "cmdline"}
bad = sorted(core.intersection(missing))
if bad:
    print(f"capture: facts missing from serial.log: {' '.join(bad)}", file=sys.stderr)
    sys.exit(1)
PY
timing state "$(since "$t2")"

t3=$(date +%s.%N)
qmp dump "$out/phys.elf"
timing dump-phys "$(since "$t3")"

# Self-check of the capture: the crashed kernel's ELF core header must be at elfcorehdr, inside
# the reservation, in phys.elf. A small independent parse (not QEMU's view) adds what it holds
# to facts.txt: elfcorehdr-phnum, elfcorehdr-prstatus (NT_PRSTATUS notes = CPUs saved at the
# crash), elfcorehdr-vmcoreinfo (physical address of the VMCOREINFO note it points at) and
# elfcorehdr-osrelease (OSRELEASE= in that note).
PYTHONDONTWRITEBYTECODE=1 python3 - "$out" <<'PY'
import struct
import sys

out = sys.argv[1]
facts = dict(l.rstrip("\n").split(" ", 1) for l in open(f"{out}/facts.txt") if " " in l)
hdr, lo, hi = (int(facts[k], 16) for k in ("elfcorehdr", "crashkernel-start", "crashkernel-end"))
if not lo <= hdr <= hi:
    sys.exit(f"capture: elfcorehdr 0x{hdr:x} is outside the reservation 0x{lo:x}-0x{hi:x}")
f = open(f"{out}/phys.elf", "rb")
eh = f.read(64)
phoff, phnum = struct.unpack_from("<Q", eh, 32)[0], struct.unpack_from("<H", eh, 56)[0]
f.seek(phoff)
loads = []
for _ in range(phnum):
    p_type, _, off, _, paddr, filesz = struct.unpack("<IIQQQQ", f.read(56)[:40])
    if p_type == 1:
        loads.append((paddr, filesz, off))


def phys(addr, n):
    for start, size, off in loads:
        if start <= addr and addr + n <= start + size:
            f.seek(off + addr - start)
            return f.read(n)
    sys.exit(f"capture: 0x{addr:x}+{n} is not in phys.elf")


h = phys(hdr, 64)
if h[:4] != b"\x7fELF" or h[4] != 2 or struct.unpack_from("<H", h, 16)[0] != 4:
    sys.exit(f"capture: no ELF64 ET_CORE header at elfcorehdr 0x{hdr:x} in phys.elf")
phoff, phnum = struct.unpack_from("<Q", h, 32)[0], struct.unpack_from("<H", h, 56)[0]
if phnum > 1024:
    sys.exit(f"capture: implausible e_phnum {phnum} at elfcorehdr")
ph = phys(hdr + phoff, 56 * phnum)
prstatus, vmcoreinfo, osrelease = 0, "-", "-"
for i in range(phnum):
    p_type, _, off, _, _, filesz = struct.unpack_from("<IIQQQQ", ph, 56 * i)
    if p_type != 4 or filesz > 1 << 20:
        continue
    d, p = phys(off, filesz), 0
    while p + 12 <= len(d):
        namesz, descsz, ntype = struct.unpack_from("<III", d, p)
        if namesz == descsz == ntype == 0:
            break
        name = d[p + 12:p + 12 + namesz].rstrip(b"\0")
        q = p + 12 + ((namesz + 3) & ~3)
        if name == b"CORE" and ntype == 1:
            prstatus += 1
        elif name == b"VMCOREINFO":
            vmcoreinfo = f"0x{off:x}"
            for line in d[q:q + descsz].decode(errors="replace").splitlines():
                if line.startswith("OSRELEASE="):
                    osrelease = line.split("=", 1)[1]
        p = q + ((descsz + 3) & ~3)
with open(f"{out}/facts.txt", "a") as out_f:
    out_f.write(f"elfcorehdr-phnum {phnum}\nelfcorehdr-prstatus {prstatus}\n"
                f"elfcorehdr-vmcoreinfo {vmcoreinfo}\nelfcorehdr-osrelease {osrelease}\n")
if prstatus == 0 or osrelease != facts["release"]:
    sys.exit(f"capture: the core header at 0x{hdr:x} holds {prstatus} NT_PRSTATUS notes, "
             f"OSRELEASE {osrelease} (the crashed kernel is {facts['release']})")
PY
t3=$(date +%s.%N)
qmp dump "$out/kdump-zlib.dump" --format kdump-zlib
timing dump-kdump-zlib "$(since "$t3")"
# aarch64: QEMU's ELF carries no translation registers; a migration stream of the same instant
# does (the cpreg arrays). Last: after a migration the guest is in `postmigrate`.
if [ "$arch" = aarch64 ]; then
  t3=$(date +%s.%N)
  qmp migrate-file "$out/migration.bin"
  timing migrate "$(since "$t3")"
fi
timing capture "$(since "$t2")"
chmod a+r "$out"/*.elf "$out"/*.dump "$out"/*.bin 2>/dev/null || true  # QEMU creates dumps mode 0400

qmp quit || true
for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
timing total "$(since "$t0")"
fact() { sed -n "s/^$1 //p" "$out/facts.txt"; }
log "crashed $(fact release), capture $(fact capture-release), crashkernel $(fact crashkernel-start)-$(fact crashkernel-end), elfcorehdr $(fact elfcorehdr)"
log "vCPUs: $(grep '^cpu[0-9]*-kernel ' "$out/facts.txt" | tr '\n' ' ')"
(cd "$out" && ls -l phys.elf kdump-zlib.dump registers.txt facts.txt >&2)
log "outputs in $out"
