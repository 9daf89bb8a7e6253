#!/usr/bin/env python3
"""Boot the harness's x86_64 test guest, stop it, and time QEMU's own dump-guest-memory
(paging=false and paging=true, alternated, REPS times each) over one QMP connection, with the
synchronous form of the command (no polling). Writes OUT/phys.elf (the last non-paging dump,
for guestcore to work on: the same stopped guest) and OUT/timings.txt with lines
`dump-phys-N SECONDS` / `dump-paging-N SECONDS`, which guestcore-bench reads (medians).

usage: bench_qemu_dump.py OUT [REPS]      (cache: GUESTCORE_GUESTS, default ~/.cache/guestcore/guests)
The kernel and initramfs come from scripts/guest/capture.sh (branch harness), which builds them.
"""
import json, os, signal, socket, subprocess, sys, time

out = os.path.abspath(sys.argv[1])
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
cache = os.environ.get("GUESTCORE_GUESTS") or os.environ.get("GUESTCORE_CACHE") or os.path.expanduser("~/.cache/guestcore/guests")
kernel = f"{cache}/kernels/amd64/vmlinuz"
initrd = f"{cache}/initramfs/amd64.cpio.gz"
os.makedirs(out, exist_ok=True)
sock_path = f"{out}/qmp.sock"
serial = f"{out}/serial.log"
for f in (sock_path, serial):
    if os.path.exists(f):
        os.remove(f)

args = ["qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-cpu", "qemu64", "-m", "256M",
        "-smp", "2", "-nographic", "-no-reboot", "-nic", "none", "-kernel", kernel, "-initrd", initrd,
        "-append", "console=ttyS0 panic=-1 printk.time=1", "-serial", f"file:{serial}",
        "-monitor", "none", "-qmp", f"unix:{sock_path},server=on,wait=off", "-device", "vmcoreinfo"]
qemu = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class QMP:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(600)
        self.s.connect(path)
        self.buf = b""
        self.read()
        self.cmd("qmp_capabilities")

    def read(self):
        while b"\n" not in self.buf:
            c = self.s.recv(65536)
            if not c:
                raise RuntimeError("QMP closed")
            self.buf += c
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **a):
        m = {"execute": name}
        if a:
            m["arguments"] = a
        self.s.sendall(json.dumps(m).encode() + b"\n")
        while True:
            r = self.read()
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError(f"{name}: {r['error']}")


try:
    deadline = time.monotonic() + 180
    while True:
        if qemu.poll() is not None:
            sys.exit("QEMU exited early")
        if os.path.exists(serial) and b"GUESTCORE-READY" in open(serial, "rb").read():
            break
        if time.monotonic() > deadline:
            sys.exit("guest not ready after 180 s")
        time.sleep(0.2)
    q = QMP(sock_path)
    q.cmd("stop")
    lines = []
    for i in range(1, reps + 1):
        for kind, paging in (("phys", False), ("paging", True)):
            path = f"{out}/{kind}.elf"
            if os.path.exists(path):
                os.remove(path)
            t = time.monotonic()
            q.cmd("dump-guest-memory", paging=paging, protocol="file:" + path)
            dt = time.monotonic() - t
            lines.append(f"dump-{kind}-{i} {dt:.4f}")
            print(lines[-1], flush=True)
    os.remove(f"{out}/paging.elf")
    with open(f"{out}/timings.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    q.cmd("quit")
finally:
    try:
        qemu.wait(timeout=10)
    except subprocess.TimeoutExpired:
        qemu.send_signal(signal.SIGKILL)
        qemu.wait()
    if os.path.exists(sock_path):
        os.remove(sock_path)
