#!/usr/bin/env python3
"""Builds the initramfs of the harness's kdump guest (gzip'd cpio "newc"), without root.

    kdump_initramfs.py --busybox PATH [--modules DIR] --loader PATH --kernel VMLINUZ --out FILE

Why: issue 12 needs a guest whose first kernel has crashed into a kdump capture kernel, caught
while the capture kernel runs. This archive is the first kernel's initramfs. It holds busybox,
the modules of DIR/order (qemu_fw_cfg, for -device vmcoreinfo), the kexec_file_load loader
(/bin/kexec_load, see kexec_load.c), the guest kernel again as /boot/vmlinuz, and a second,
small archive for the capture kernel as /boot/capture.cpio.gz (busybox, modules, the same
/init). The cpio writer is initramfs.py's (imported, not copied).

One /init serves both kernels and tells them apart by `elfcorehdr=` in /proc/cmdline (the
crash kexec appends it to the capture kernel's command line).

First kernel (prints to the console, ttyS0; the capture script parses these lines):
    GUESTCORE-RELEASE <uname -r>
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
    GUESTCORE-ELFCOREHDR 0x<addr>         (from elfcorehdr= on the command line)
    GUESTCORE-CAPTURE-SYM <name> <hex address>
    GUESTCORE-VMCORE yes <size> | no      (/proc/vmcore)
    GUESTCORE-CAPTURE-MARKER <text>       (also written to /dev/kmsg)
    GUESTCORE-CAPTURE-READY               (then idles)
Python 3 standard library only.
"""

import argparse
import gzip
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from initramfs import Cpio  # noqa: E402  (the harness's one cpio writer)

SYMBOLS = ["init_uts_ns", "_stext", "_text", "init_top_pgt", "swapper_pg_dir", "prb",
           "vmcoreinfo_note", "linux_banner"]

# The capture kernel's command line. nr_cpus=1/maxcpus=1: the capture kernel brings up one CPU
# (the one that crashed into it); reset_devices/irqpoll as kdump setups use them; panic=-1 so
# a failing capture kernel resets at once, and -no-reboot turns that reset into QEMU exiting.
CAPTURE_CMDLINE = ("console=ttyS0 nr_cpus=1 maxcpus=1 reset_devices irqpoll panic=-1 "
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

if grep -q 'elfcorehdr=' /proc/cmdline; then
  # ---- the capture kernel ----
  echo "GUESTCORE-CAPTURE-RELEASE $(uname -r)"
  echo "GUESTCORE-CAPTURE-CMDLINE $(cat /proc/cmdline)"
  hdr=$(sed -n 's/.*elfcorehdr=\([^ ]*\).*/\1/p' /proc/cmdline)
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
if out=$(/bin/kexec_load /boot/vmlinuz /boot/capture.cpio.gz "@CMDLINE@" 2>&1); then
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busybox", required=True, help="static busybox for the guest's architecture")
    ap.add_argument("--modules", help="directory with *.ko files and an 'order' file")
    ap.add_argument("--loader", required=True, help="static kexec_load binary (kexec_load.c)")
    ap.add_argument("--kernel", required=True, help="the capture kernel's bzImage (the guest's own)")
    ap.add_argument("--out", required=True, help="output .cpio.gz")
    args = ap.parse_args()

    init_text = (INIT.replace("@SYMBOLS@", " ".join(SYMBOLS))
                 .replace("@CMDLINE@", CAPTURE_CMDLINE))
    inner = gzip.compress(base_archive(args.busybox, args.modules, init_text).finish(),
                          compresslevel=6, mtime=0)
    c = base_archive(args.busybox, args.modules, init_text)
    with open(args.loader, "rb") as f:
        c.file("bin/kexec_load", f.read(), 0o755)
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
