#!/usr/bin/env python3
"""Builds the harness's tiny initramfs (a gzip'd cpio "newc" archive), without root.

    initramfs.py --busybox PATH [--modules DIR] [--pattern-writer BIN] --out FILE

The archive holds busybox (static, of the guest's architecture) as /bin/busybox, the
modules listed in DIR/order (e.g. qemu_fw_cfg.ko, so `-device vmcoreinfo` receives the
guest's VMCOREINFO) under /lib/modules, a /dev/console node, and /init: a shell script that
mounts proc/sys/devtmpfs, loads the modules, sets kptr_restrict=0, prints facts to the
console (whatever console= names: ttyS0 on x86, ttyAMA0 on aarch64), makes the dump-level workload (page cache in a tmpfs file, 16 MiB of
anonymous memory in a sleeping dd, free memory), starts the pattern writer when the archive
has one (--pattern-writer: a static build of pattern_writer.c, for the live tests), prints
the ready marker, then idles.

Lines printed (the capture script parses them):
    GUESTCORE-RELEASE <uname -r>
    GUESTCORE-SYM <name> <hex address from /proc/kallsyms>
    GUESTCORE-VMCOREINFO yes|no
    GUESTCORE-WORKLOAD tmpfs-file PATH BYTES anon-pid PID anon-kb KB memfree-kb KB seconds S
    GUESTCORE-PATTERN pages N magic M     (from the pattern writer, when there is one)
    GUESTCORE-READY
Python 3 standard library only.
"""

import argparse
import gzip
import os
import stat
import sys

SYMBOLS = [
    "_stext", "_text", "start_kernel", "_printk", "schedule", "do_idle",  # text: always in kallsyms
    # data: only with CONFIG_KALLSYMS_ALL (Debian amd64 has it, 686 and 686-pae do not)
    "init_uts_ns", "linux_banner", "init_task", "jiffies", "init_mm", "init_top_pgt", "swapper_pg_dir",
    # aarch64 only (absent from x86 kallsyms, so x86 output is unchanged): the other kernel page
    # tables and the variables behind the kernel's virtual-to-physical arithmetic
    "idmap_pg_dir", "tramp_pg_dir", "kimage_voffset", "memstart_addr", "vabits_actual",
]

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
echo 1 > /proc/sys/kernel/printk 2>/dev/null
echo "GUESTCORE-RELEASE $(uname -r)"
awk -v want="@SYMBOLS@" 'BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) need[w[i]] = 1 }
  ($3 in need) && !($3 in seen) { seen[$3] = $1; print "GUESTCORE-SYM " $3 " " $1 }' /proc/kallsyms
if [ -e /sys/firmware/qemu_fw_cfg/by_name/etc/vmcoreinfo ]; then
  echo "GUESTCORE-VMCOREINFO yes"
else
  echo "GUESTCORE-VMCOREINFO no"
fi
# Workload for the dump-level tests: page cache (a tmpfs file of 8 MiB of random bytes, and
# a read of the rootfs's busybox), anonymous user memory (dd's 16 MiB buffer, filled from
# /dev/urandom, held while dd blocks writing into a pipe nobody reads), and free memory (the
# rest of RAM). Waits until dd has filled its buffer and blocks in the pipe (RssAnon lags the
# truth by up to 64 pages per thread: split RSS counters), then prints what it made.
t0=$(cut -d' ' -f1 /proc/uptime)
mkdir -p /mnt/cache
mount -t tmpfs -o size=16m tmpfs /mnt/cache
dd if=/dev/urandom of=/mnt/cache/fill bs=1M count=8 2>/dev/null
cat /bin/busybox >/dev/null
dd if=/dev/urandom bs=16M count=1 2>/dev/null | sleep 1000000 &
n=0; anon=0; ddpid=
while [ $n -lt 600 ]; do
  ddpid=$(pidof dd)
  anon=$(awk '/^RssAnon:/ { print $2 }' /proc/${ddpid:-none}/status 2>/dev/null)
  if [ "${anon:-0}" -ge 16000 ]; then
    [ "$(cat /proc/$ddpid/wchan 2>/dev/null)" = pipe_write ] && break
    [ $n -ge 50 ] && { echo "GUESTCORE-WARN workload: dd never seen in pipe_write"; break; }
  fi
  n=$((n + 1)); sleep 0.1
done
[ "${anon:-0}" -ge 16000 ] || echo "GUESTCORE-WARN workload: dd holds only ${anon:-0} kB of anon memory"
t1=$(cut -d' ' -f1 /proc/uptime)
echo "GUESTCORE-WORKLOAD tmpfs-file /mnt/cache/fill $(stat -c %s /mnt/cache/fill) anon-pid ${ddpid:-none} anon-kb ${anon:-0}" \
  "memfree-kb $(awk '/^MemFree:/ { print $2 }' /proc/meminfo) seconds $(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.2f", b - a }')"
# The live tests' pattern writer (only in archives built with --pattern-writer): waits until
# it has stamped its pages and started its sweeps (it prints GUESTCORE-PATTERN itself).
if [ -x /bin/pattern_writer ]; then
  /bin/pattern_writer > /tmp/pattern.out &
  n=0
  while [ $n -lt 300 ] && ! grep -q GUESTCORE-PATTERN /tmp/pattern.out 2>/dev/null; do
    n=$((n + 1)); sleep 0.1
  done
  cat /tmp/pattern.out
fi
echo "GUESTCORE-READY"
while :; do sleep 1000; done
"""


class Cpio:
    """A minimal writer of the cpio "newc" format the kernel unpacks."""

    def __init__(self):
        self.out = bytearray()
        self.ino = 1

    def _entry(self, name, mode, data=b"", nlink=1, rdev=(0, 0)):
        name_b = name.encode() + b"\0"
        fields = [
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0,
        ]
        self.ino += 1
        self.out += b"070701" + b"".join(b"%08X" % f for f in fields)
        self.out += name_b
        self.out += b"\0" * (-len(self.out) % 4)
        self.out += data
        self.out += b"\0" * (-len(self.out) % 4)

    def dir(self, name):
        self._entry(name, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name, data, mode=0o644):
        self._entry(name, stat.S_IFREG | mode, data)

    def chardev(self, name, major, minor, mode=0o600):
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0, nlink=1)
        self.out += b"\0" * (-len(self.out) % 512)
        return bytes(self.out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busybox", required=True, help="static busybox for the guest's architecture")
    ap.add_argument("--modules", help="directory with *.ko files and an 'order' file")
    ap.add_argument("--pattern-writer", help="static pattern_writer binary to start at boot")
    ap.add_argument("--out", required=True, help="output .cpio.gz")
    args = ap.parse_args()

    c = Cpio()
    for d in ["bin", "sbin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"]:
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/ttyS0", 4, 64)
    c.chardev("dev/ttyAMA0", 204, 64)
    c.chardev("dev/null", 1, 3, 0o666)
    with open(args.busybox, "rb") as f:
        c.file("bin/busybox", f.read(), 0o755)
    if args.pattern_writer:
        with open(args.pattern_writer, "rb") as f:
            c.file("bin/pattern_writer", f.read(), 0o755)
    c.file("init", INIT.replace("@SYMBOLS@", " ".join(SYMBOLS)).encode(), 0o755)
    if args.modules:
        order_path = os.path.join(args.modules, "order")
        order = open(order_path).read().split() if os.path.exists(order_path) else []
        for m in order:
            with open(os.path.join(args.modules, m), "rb") as f:
                c.file("lib/modules/" + m, f.read())
        c.file("lib/modules/order", ("\n".join(order) + "\n").encode() if order else b"")
    data = gzip.compress(c.finish(), compresslevel=6, mtime=0)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)
    print(f"initramfs: {args.out} ({len(data)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
