#!/usr/bin/env python3
"""Live dumps from QEMU background snapshots, side by side with QEMU writing the same snapshot
to a file, on one running guest (the harness's x86_64 guest, anonymous RAM, TCG).

    bench_snapshot.py [--mem 1G] [--reps 3] [--guestcore target/release/guestcore] [--libvirt]
                      [OUTDIR]

With --libvirt the same guest runs as a transient libvirt domain (no QMP socket of its own, no
`<qemu:commandline>`): QEMU's snapshot is driven through `virsh qemu-monitor-command`, and
guestcore reads `libvirt:NAME`. The stop is then QEMU's own `downtime` (there is no second
monitor). It needs a libvirtd on qemu:///system; as root, where none answers, it starts
libvirtd and virtlogd for the run (after scripts/guest/libvirt-setup.sh) and stops them after.

Per round, in turn: QEMU's own background snapshot to a file (`migrate-set-capabilities
background-snapshot=on`, `migrate file:`), then `guestcore dump qmp:` as a physical ELF, a
paging ELF, kdump-lzo and kdump-zlib. For each: wall time, QEMU's downtime (query-migrate),
the stop seen from a second QMP monitor (STOP to RESUME events), guestcore's peak RSS
(/usr/bin/time is not needed: wait4's rusage), and the output size. Prints the medians as a
Markdown table. The cache is $GUESTCORE_CACHE (default ~/.cache/guestcore/guests), whose
kernel and initramfs scripts/guest/capture.sh makes. Python 3 standard library only.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest"))
from qmp import QMP  # noqa: E402


def boot(cache, mem, d):
    sock, sock_b, serial = f"{d}/qmp.sock", f"{d}/qmp-b.sock", f"{d}/serial.log"
    for f in (sock, sock_b, serial):
        if os.path.exists(f):
            os.remove(f)
    args = ["qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-cpu", "qemu64", "-m", mem,
            "-smp", "2", "-display", "none", "-no-reboot", "-nic", "none", "-monitor", "none",
            "-kernel", f"{cache}/kernels/amd64/vmlinuz", "-initrd", f"{cache}/initramfs/amd64.cpio.gz",
            "-append", "console=ttyS0 panic=-1 printk.time=1", "-device", "vmcoreinfo",
            "-serial", f"file:{serial}", "-qmp", f"unix:{sock},server=on,wait=off",
            "-qmp", f"unix:{sock_b},server=on,wait=off"]
    qemu = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (os.path.exists(serial) and b"GUESTCORE-READY" in open(serial, "rb").read()):
        if qemu.poll() is not None or time.time() - t0 > 300:
            qemu.kill()
            sys.exit("the guest did not boot")
        time.sleep(0.2)
    return qemu, sock, sock_b


def stops_ms(events):
    out, stopped = [], None
    for e in events:
        t = e["timestamp"]["seconds"] + e["timestamp"]["microseconds"] / 1e6
        if e["event"] == "STOP":
            stopped = t
        elif e["event"] == "RESUME" and stopped is not None:
            out.append((t - stopped) * 1e3)
            stopped = None
    return out


class Libvirt:
    """A transient libvirt domain of the harness guest, and the daemons started for it."""

    URI = "qemu:///system"

    def __init__(self, cache, mem, d):
        self.d, self.started, self.name = d, [], f"guestcore-bench-{os.getpid()}"
        if subprocess.run(["virsh", "-c", self.URI, "version"], capture_output=True).returncode:
            here = os.path.dirname(os.path.abspath(__file__))
            subprocess.run(["bash", f"{here}/guest/libvirt-setup.sh"], check=True)
            os.makedirs("/run/libvirt", exist_ok=True)
            for daemon in ("virtlogd", "libvirtd"):
                pid = f"{d}/{daemon}.pid"
                subprocess.run([f"/usr/sbin/{daemon}", "-d", "-p", pid], check=True)
                for _ in range(50):
                    if os.path.exists(pid) and open(pid).read().strip():
                        break
                    time.sleep(0.1)
                self.started.append(int(open(pid).read()))
            for _ in range(100):
                if not subprocess.run(["virsh", "-c", self.URI, "version"],
                                      capture_output=True).returncode:
                    break
                time.sleep(0.1)
        serial = f"{d}/serial.log"
        xml = f"""<domain type='qemu'><name>{self.name}</name>
  <memory unit='MiB'>{int(mem.rstrip('G')) * 1024 if mem.endswith('G') else int(mem.rstrip('M'))}</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{cache}/kernels/amd64/vmlinuz</kernel><initrd>{cache}/initramfs/amd64.cpio.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 printk.time=1</cmdline></os>
  <features><acpi/></features><cpu mode='custom'><model>qemu64</model></cpu>
  <on_reboot>destroy</on_reboot>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='{serial}'/></serial><memballoon model='none'/></devices>
</domain>"""
        open(f"{d}/domain.xml", "w").write(xml)
        self.virsh("create", f"{d}/domain.xml")
        t0 = time.time()
        while not (os.path.exists(serial) and b"GUESTCORE-READY" in open(serial, "rb").read()):
            if time.time() - t0 > 300:
                self.close()
                sys.exit("the domain did not boot")
            time.sleep(0.2)

    def virsh(self, *args):
        return subprocess.run(["virsh", "-c", self.URI, *args], check=True, capture_output=True,
                              text=True).stdout

    def qmp(self, command, **arguments):
        cmd = {"execute": command}
        if arguments:
            cmd["arguments"] = arguments
        reply = json.loads(self.virsh("qemu-monitor-command", self.name, json.dumps(cmd)))
        if "error" in reply:
            sys.exit(f"{command}: {reply['error']}")
        return reply["return"]

    def close(self):
        subprocess.run(["virsh", "-c", self.URI, "destroy", self.name], capture_output=True)
        for pid in reversed(self.started):  # libvirtd first: it holds a connection to virtlogd
            os.kill(pid, 15)
            for _ in range(100):
                if not os.path.exists(f"/proc/{pid}"):
                    break
                time.sleep(0.1)


def events(q):
    q.execute("query-status")
    ev, q.events = q.events, []
    return ev


def qemu_to_file(execute, path):
    """QEMU's own background snapshot to a file; `execute(command, **arguments)` is a QMP
    monitor's (our socket's, or libvirt's through `virsh qemu-monitor-command`)."""
    execute("migrate-set-capabilities",
            capabilities=[{"capability": "background-snapshot", "state": True}])
    t0 = time.time()
    execute("migrate", uri=f"file:{path}")
    while True:
        r = execute("query-migrate")
        if r.get("status") in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.01)
    wall = time.time() - t0
    execute("migrate-set-capabilities",
            capabilities=[{"capability": "background-snapshot", "state": False}])
    if r["status"] != "completed":
        sys.exit(f"QEMU's snapshot: {r}")
    return wall, r["total-time"] / 1e3, None, float(r.get("downtime", 0))


def guestcore(exe, source, path, extra):
    t0 = time.time()
    p = subprocess.Popen([exe, "dump", source, "-o", path] + extra,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.time() - t0
    err = p.stderr.read().decode()
    m = re.search(r"background snapshot: guest stopped ([0-9]+) ms.* streamed in ([0-9.]+) s", err)
    if status != 0 or not m:
        sys.exit(f"guestcore {extra} took no background snapshot: {err}")
    return wall, float(m.group(2)), usage.ru_maxrss / 1024, float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mem", default="1G")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--guestcore", default="target/release/guestcore")
    ap.add_argument("--libvirt", action="store_true",
                    help="a libvirt domain through libvirt's monitor, not a QMP socket")
    ap.add_argument("out", nargs="?")
    a = ap.parse_args()
    cache = os.environ.get("GUESTCORE_CACHE") or os.path.expanduser("~/.cache/guestcore/guests")
    d = a.out or tempfile.mkdtemp(prefix="bench-snapshot-")
    os.makedirs(d, exist_ok=True)
    if a.libvirt:
        dom = Libvirt(cache, a.mem, d)
        source, watch = f"libvirt:{dom.name}", None
    else:
        qemu, sock, sock_b = boot(cache, a.mem, d)
        source, watch = f"qmp:{sock}", QMP(sock_b)
    peers = [
        ("QEMU `migrate file:` (background snapshot)", "qemu.mig", None),
        ("guestcore physical ELF", "phys.elf", []),
        ("guestcore paging ELF", "paging.elf", ["--paging"]),
        ("guestcore kdump-lzo", "lzo.kdump", ["--format", "kdump-lzo"]),
        ("guestcore kdump-zlib", "zlib.kdump", ["--format", "kdump-zlib"]),
    ]
    rows = {name: [] for name, _, _ in peers}
    try:
        for _ in range(a.reps):
            for name, file, extra in peers:
                path = f"{d}/{file}"
                if os.path.exists(path):
                    os.remove(path)
                if watch:
                    events(watch)
                if extra is None and a.libvirt:
                    wall, stream, rss, downtime = qemu_to_file(dom.qmp, path)
                elif extra is None:
                    q = QMP(sock)
                    try:
                        wall, stream, rss, downtime = qemu_to_file(q.execute, path)
                    finally:
                        q.close()
                else:
                    wall, stream, rss, downtime = guestcore(a.guestcore, source, path, extra)
                # The stop: STOP to RESUME on the second monitor, or QEMU's own downtime.
                seen = stops_ms(events(watch)) if watch else [downtime]
                size = os.stat(path).st_blocks * 512
                rows[name].append((wall, max(seen) if seen else 0.0, rss, size, stream))
                os.remove(path)
    finally:
        if a.libvirt:
            dom.close()
        else:
            watch.close()
            qemu.kill()
    med = lambda xs: statistics.median(xs)  # noqa: E731
    base = med([r[4] for r in rows[peers[0][0]]])
    stop = "QEMU's downtime" if a.libvirt else "the second monitor's STOP→RESUME"
    print(f"{a.mem} running guest{' (libvirt domain)' if a.libvirt else ''}, median of "
          f"{a.reps}. stream: migrate to completed (QEMU's "
          f"total-time; guestcore's own count); stop: {stop}; "
          "command: the whole guestcore run (connecting, registers, RAM layout, fsync)\n")
    print("| dump | stream | vs QEMU to a file | command | stop | peak RSS | on disk |")
    print("|---|---|---|---|---|---|---|")
    for name, _, extra in peers:
        r = rows[name]
        stream, wall, stop = (med([x[i] for x in r]) for i in (4, 0, 1))
        rss = [x[2] for x in r if x[2] is not None]
        rss = f"{max(rss):.1f} MiB" if rss else "–"
        size = med([x[3] for x in r]) / (1 << 20)
        cmd = "–" if extra is None else f"{wall:.2f} s"
        print(f"| {name} | {stream:.2f} s | {stream / base:.2f}× | {cmd} | {stop:.1f} ms | {rss} "
              f"| {size:.1f} MiB |")


if __name__ == "__main__":
    main()
