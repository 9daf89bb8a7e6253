#!/usr/bin/env python3
"""Builds the initramfs of the harness's kdump guests (gzip'd cpio "newc"), without root.

    kdump_initramfs.py --busybox PATH [--modules DIR] (--loader PATH | --kexec-root DIR)
                       [--console TTY] --kernel KERNEL --out FILE

Why: issue 12 needs a guest whose first kernel has crashed into a kdump capture kernel, caught
while the capture kernel runs. This archive is the first kernel's initramfs. It holds busybox,
the modules of DIR/order (qemu_fw_cfg, for -device vmcoreinfo), the kexec_file_load loader
(x86_64: /bin/kexec_load, see kexec_load.c, one kexec_file_load; aarch64: /sbin/kexec of
kexec-tools with the shared libraries its DT_NEEDED closure names, from --kexec-root, since
Debian's arm64 kernel has no kexec_file_load and kexec_load(2) needs the segments kexec-tools
builds), the guest kernel again as /boot/vmlinuz, and a second, small archive for the capture
kernel as /boot/capture.cpio.gz (busybox, modules, the same /init). The cpio writer is
initramfs.py's (imported, not copied).

One /init serves both kernels and tells them apart by GUESTCORE_CAPTURE=1 in /proc/cmdline
(the capture kernel's command line below). The crash kexec gives the capture kernel the core
header's address as `elfcorehdr=` on its command line (x86_64) or as the device tree's
/chosen/linux,elfcorehdr (aarch64, kexec-tools); /init prints it from either.

First kernel (prints to the console, ttyS0; the capture script parses these lines):
    GUESTCORE-RELEASE <uname -r>
    GUESTCORE-CMDLINE <its /proc/cmdline>
    GUESTCORE-SYM <name> <hex address from /proc/kallsyms>
    GUESTCORE-VMCOREINFO yes|no           (qemu_fw_cfg exposes etc/vmcoreinfo)
    GUESTCORE-CRASHKERNEL 0x<start> 0x<end>   ("Crash kernel" in /proc/iomem; end inclusive)
    GUESTCORE-CRASH-MARKER <text>         (also written to /dev/kmsg, i.e. the kernel log)
    GUESTCORE-LOADED | GUESTCORE-KEXEC-FAILED <why>
    GUESTCORE-CRASHING [on CPU N]         (then `echo c > /proc/sysrq-trigger`; with
                                          `guestcore_crash_cpu=N` on the kernel command line
                                          the writer is pinned there with `taskset -c N`, so
                                          the capture kernel runs on vCPU N and the other vCPUs
                                          stay parked in the crashed kernel)
Capture kernel:
    GUESTCORE-CAPTURE-RELEASE <uname -r>
    GUESTCORE-CAPTURE-CMDLINE <its /proc/cmdline>
    GUESTCORE-ELFCOREHDR 0x<addr>         (elfcorehdr= on the command line, or
                                          /proc/device-tree/chosen/linux,elfcorehdr)
    GUESTCORE-CAPTURE-SYM <name> <hex address>
    GUESTCORE-VMCORE yes <size> | no      (/proc/vmcore)
    GUESTCORE-CAPTURE-MARKER <text>       (also written to /dev/kmsg)
    GUESTCORE-CAPTURE-READY               (then idles)
Python 3 standard library only.
"""

import argparse
import gzip
import os
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from initramfs import Cpio  # noqa: E402  (the harness's one cpio writer)

# Data symbols are in kallsyms only with CONFIG_KALLSYMS_ALL (Debian amd64: yes; arm64 6.1: no),
# so a few text symbols too: the crash path (sysrq_handle_crash, panic) and two that run often.
SYMBOLS = ["init_uts_ns", "_stext", "_text", "init_top_pgt", "swapper_pg_dir", "prb",
           "vmcoreinfo_note", "linux_banner", "sysrq_handle_crash", "panic", "schedule", "_printk"]

# The capture kernel's command line. nr_cpus=1/maxcpus=1: the capture kernel brings up one CPU
# (the one that crashed into it); reset_devices/irqpoll as kdump setups use them; panic=-1 so
# a failing capture kernel resets at once, and -no-reboot turns that reset into QEMU exiting.
CAPTURE_CMDLINE = ("console=@CONSOLE@ nr_cpus=1 maxcpus=1 reset_devices irqpoll panic=-1 "
                   "printk.time=1 GUESTCORE_CAPTURE=1")

INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
if [ -f /lib/modules/order ]; then
  for m in $(cat /lib/modules/order); do
    insmod /lib/modules/$m || echo "GUESTCORE-WARN insmod $m failed"
  done
fi
echo 0 > /proc/sys/kernel/kptr_restrict
bootid=$(cat /proc/sys/kernel/random/boot_id)
syms() {  # syms PREFIX: one "PREFIX name addr" line per wanted kallsyms symbol
  awk -v want="@SYMBOLS@" -v p="$1" 'BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) need[w[i]] = 1 }
    ($3 in need) && !($3 in seen) { seen[$3] = $1; print p " " $3 " " $1 }' /proc/kallsyms
}

if grep -q 'GUESTCORE_CAPTURE=1' /proc/cmdline; then
  # ---- the capture kernel ----
  echo "GUESTCORE-CAPTURE-RELEASE $(uname -r)"
  echo "GUESTCORE-CAPTURE-CMDLINE $(cat /proc/cmdline)"
  hdr=$(sed -n 's/.*elfcorehdr=\([^ ]*\).*/\1/p' /proc/cmdline)
  dt=/proc/device-tree/chosen/linux,elfcorehdr   # <address size>, two cells each (big-endian)
  if [ -z "$hdr" ] && [ -e "$dt" ]; then
    hdr=0x$(od -A n -t x1 -N 8 "$dt" | tr -d ' \n')
  fi
  case "$hdr" in  # x86 kexec_file_load writes 0xADDR; older kexec-tools wrote NNNK or SIZE@ADDR
    *@*) hdr=${hdr#*@} ;;
  esac
  case "$hdr" in
    *[kK]) hdr=$(( ${hdr%[kK]} * 1024 )) ;;
    *[mM]) hdr=$(( ${hdr%[mM]} * 1048576 )) ;;
  esac
  printf 'GUESTCORE-ELFCOREHDR 0x%x\n' "$(( hdr ))"
  syms GUESTCORE-CAPTURE-SYM
  if [ -e /proc/vmcore ]; then
    echo "GUESTCORE-VMCORE yes $(stat -c %s /proc/vmcore)"
  else
    echo "GUESTCORE-VMCORE no"
  fi
  mark="GUESTCORE-MARK capture kernel up $bootid"
  echo "$mark" > /dev/kmsg
  echo "GUESTCORE-CAPTURE-MARKER $mark"
  echo "GUESTCORE-CAPTURE-READY"
  while :; do sleep 1000; done
fi

# ---- the first kernel ----
echo "GUESTCORE-RELEASE $(uname -r)"
echo "GUESTCORE-CMDLINE $(cat /proc/cmdline)"
syms GUESTCORE-SYM
if [ -e /sys/firmware/qemu_fw_cfg/by_name/etc/vmcoreinfo ]; then
  echo "GUESTCORE-VMCOREINFO yes"
else
  echo "GUESTCORE-VMCOREINFO no"
fi
# /proc/iomem: "  START-END : Crash kernel" (real addresses for root with kptr_restrict=0)
ck=$(sed -n 's/^ *\([0-9a-f]*\)-\([0-9a-f]*\) : Crash kernel$/0x\1 0x\2/p' /proc/iomem | head -n1)
echo "GUESTCORE-CRASHKERNEL ${ck:-none}"
echo "GUESTCORE-MARK first kernel up $bootid" > /dev/kmsg
if [ -x /sbin/kexec ]; then  # kexec-tools: kexec_load(2) with the segments it builds
  load() { LD_LIBRARY_PATH=/lib/@MULTIARCH@ /sbin/kexec -p /boot/vmlinuz --initrd=/boot/capture.cpio.gz --append="@CMDLINE@"; }
else                         # one kexec_file_load(2)
  load() { /bin/kexec_load /boot/vmlinuz /boot/capture.cpio.gz "@CMDLINE@"; }
fi
if out=$(load 2>&1); then
  echo "GUESTCORE-LOADED $(cat /sys/kernel/kexec_crash_loaded 2>/dev/null)"
else
  echo "GUESTCORE-KEXEC-FAILED $out" | tr '\n' ' '; echo
  while :; do sleep 1000; done
fi
mark="GUESTCORE-MARK before crash $bootid"
echo "$mark" > /dev/kmsg
echo "GUESTCORE-CRASH-MARKER $mark"
sleep 1
crash_cpu=$(sed -n 's/.*guestcore_crash_cpu=\([0-9][0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "$crash_cpu" ]; then
  echo "GUESTCORE-CRASHING on CPU $crash_cpu"
  taskset -c "$crash_cpu" sh -c 'echo c > /proc/sysrq-trigger'
  echo "GUESTCORE-WARN taskset -c $crash_cpu failed"
fi
echo "GUESTCORE-CRASHING"
echo c > /proc/sysrq-trigger
echo "GUESTCORE-WARN still alive after sysrq-c"
while :; do sleep 1000; done
"""


def base_archive(busybox, modules, init_text):
    """Busybox, the modules and /init: what both kernels' archives hold."""
    c = Cpio()
    for d in ["bin", "sbin", "dev", "proc", "sys", "tmp", "lib", "lib/modules", "boot"]:
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/ttyS0", 4, 64)
    c.chardev("dev/ttyAMA0", 204, 64)
    c.chardev("dev/null", 1, 3, 0o666)
    c.chardev("dev/kmsg", 1, 11, 0o644)
    with open(busybox, "rb") as f:
        c.file("bin/busybox", f.read(), 0o755)
    c.file("init", init_text.encode(), 0o755)
    order = []
    if modules:
        order_path = os.path.join(modules, "order")
        order = open(order_path).read().split() if os.path.exists(order_path) else []
        for m in order:
            with open(os.path.join(modules, m), "rb") as f:
                c.file("lib/modules/" + m, f.read())
    c.file("lib/modules/order", ("\n".join(order) + "\n").encode() if order else b"")
    return c


def elf_dynamic(data):
    """(PT_INTERP path or None, [DT_NEEDED sonames]) of an ELF64 little-endian file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        sys.exit(f"kdump_initramfs: not an ELF64 little-endian file ({data[:6]!r})")
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    phdrs = [struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize) for i in range(phnum)]
    interp, dyn = None, None
    for p_type, _, off, vaddr, _, filesz, _, _ in phdrs:
        if p_type == 3:  # PT_INTERP
            interp = data[off:off + filesz].rstrip(b"\0").decode()
        elif p_type == 2:  # PT_DYNAMIC
            dyn = data[off:off + filesz]

    def file_offset(addr):
        for p_type, _, off, vaddr, _, filesz, _, _ in phdrs:
            if p_type == 1 and vaddr <= addr < vaddr + filesz:
                return off + addr - vaddr
        sys.exit(f"kdump_initramfs: address {addr:#x} is in no PT_LOAD")

    needed, strtab = [], None
    for i in range(0, len(dyn or b""), 16):
        tag, val = struct.unpack_from("<qQ", dyn, i)
        if tag == 0:
            break
        if tag == 1:  # DT_NEEDED
            needed.append(val)
        elif tag == 5:  # DT_STRTAB
            strtab = file_offset(val)
    names = [data[strtab + n:data.index(b"\0", strtab + n)].decode() for n in needed]
    return interp, names


def add_kexec_tools(c, root, multiarch):
    """ROOT's sbin/kexec as /sbin/kexec, its interpreter at the path it names, and the DT_NEEDED
    closure of both from ROOT's lib dirs into /lib/MULTIARCH (what LD_LIBRARY_PATH names)."""
    lib_dirs = [os.path.join(root, d, multiarch) for d in ("lib", "usr/lib")]

    def find(soname):
        for d in lib_dirs:
            path = os.path.join(d, soname)
            if os.path.exists(path):
                return os.path.realpath(path)
        sys.exit(f"kdump_initramfs: {soname} is not in {' or '.join(lib_dirs)} "
                 "(fetch.sh kexec-arm64 lists the packages)")

    with open(os.path.join(root, "sbin/kexec"), "rb") as f:
        kexec = f.read()
    interp, todo = elf_dynamic(kexec)
    c.file("sbin/kexec", kexec, 0o755)
    c.dir("lib/" + multiarch)
    if interp:
        with open(find(os.path.basename(interp)), "rb") as f:
            c.file(interp.lstrip("/"), f.read(), 0o755)
    done = {os.path.basename(interp)} if interp else set()
    while todo:
        soname = todo.pop()
        if soname in done:
            continue
        done.add(soname)
        with open(find(soname), "rb") as f:
            data = f.read()
        c.file(f"lib/{multiarch}/{soname}", data, 0o755)
        todo.extend(elf_dynamic(data)[1])
    print(f"kdump initramfs: kexec-tools with {len(done)} libraries: {' '.join(sorted(done))}",
          file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busybox", required=True, help="static busybox for the guest's architecture")
    ap.add_argument("--modules", help="directory with *.ko files and an 'order' file")
    loader = ap.add_mutually_exclusive_group(required=True)
    loader.add_argument("--loader", help="static kexec_load binary (kexec_load.c)")
    loader.add_argument("--kexec-root", help="root tree with sbin/kexec and its libraries "
                        "(fetch.sh kexec-arm64)")
    ap.add_argument("--multiarch", default="aarch64-linux-gnu",
                    help="the libraries' directory name under lib/ (with --kexec-root)")
    ap.add_argument("--console", default="ttyS0", help="the capture kernel's console=")
    ap.add_argument("--kernel", required=True,
                    help="the capture kernel (the guest's own: bzImage, arm64 Image)")
    ap.add_argument("--out", required=True, help="output .cpio.gz")
    args = ap.parse_args()

    init_text = (INIT.replace("@SYMBOLS@", " ".join(SYMBOLS))
                 .replace("@CMDLINE@", CAPTURE_CMDLINE.replace("@CONSOLE@", args.console))
                 .replace("@MULTIARCH@", args.multiarch))
    inner = gzip.compress(base_archive(args.busybox, args.modules, init_text).finish(),
                          compresslevel=6, mtime=0)
    c = base_archive(args.busybox, args.modules, init_text)
    if args.loader:
        with open(args.loader, "rb") as f:
            c.file("bin/kexec_load", f.read(), 0o755)
    else:
        add_kexec_tools(c, args.kexec_root, args.multiarch)
    with open(args.kernel, "rb") as f:
        c.file("boot/vmlinuz", f.read())
    c.file("boot/capture.cpio.gz", inner)
    # vmlinuz and the inner archive are compressed already: a light level is enough.
    data = gzip.compress(c.finish(), compresslevel=1, mtime=0)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)
    print(f"kdump initramfs: {args.out} ({len(data)} bytes; capture archive {len(inner)} bytes)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
