#!/usr/bin/env python3
"""Boot one of the harness's guests, stop it, and time QEMU's own dump-guest-memory
(paging=false and paging=true, alternated, REPS times each) over one QMP connection, with the
synchronous form of the command (no polling). Writes OUT/phys.elf (the last non-paging dump,
for guestcore to work on: the same stopped guest) and OUT/timings.txt with lines
`dump-phys-N SECONDS` / `dump-paging-N SECONDS`, which guestcore-bench reads (medians).

usage: bench_qemu_dump.py OUT [REPS] [GUEST]      (GUEST: x86_64 by default, or aarch64, ...)

The guest boots through scripts/guest/boot.sh, the harness's one way to boot it (same kernel,
initramfs and QEMU command line as its captures), and the QMP client is scripts/guest/qmp.py.
On aarch64 QEMU 10's paging=true writes the physical dump again (its dump page walk is x86
only); it is timed all the same, and guestcore-bench compares against paging=false.
"""
import os
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "guest"))
from qmp import QMP  # noqa: E402

out = os.path.abspath(sys.argv[1])
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
guest = sys.argv[3] if len(sys.argv) > 3 else "x86_64"
os.makedirs(out, exist_ok=True)

# boot.sh starts QEMU in the background and leaves its pid in OUT/qemu.pid; the shell that
# sourced it exits at once, QEMU runs on.
boot = f"""
. "{here}/guest/boot.sh"
log() {{ echo "bench_qemu_dump: $*" >&2; }}
guest_config "$1" || {{ log "unknown guest $1"; exit 2; }}
guest_files || exit $?
guest_start "$2"
guest_wait_ready || {{ guest_stop; exit 1; }}
"""
subprocess.run(["bash", "-c", boot, "boot", guest, out], check=True)
pid = int(open(f"{out}/qemu.pid").read())
try:
    q = QMP(f"{out}/qmp.sock", timeout=600)
    q.execute("stop")
    lines = []
    for i in range(1, reps + 1):
        for kind, paging in (("phys", False), ("paging", True)):
            path = f"{out}/{kind}.elf"
            if os.path.exists(path):
                os.remove(path)
            t = time.monotonic()
            q.execute("dump-guest-memory", paging=paging, protocol="file:" + path)
            dt = time.monotonic() - t
            lines.append(f"dump-{kind}-{i} {dt:.4f}")
            print(lines[-1], flush=True)
    os.remove(f"{out}/paging.elf")
    with open(f"{out}/timings.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        q.execute("quit")
    except Exception:  # QEMU may close the socket before answering
        pass
finally:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
    for f in ("qmp.sock", "qemu.pid"):
        if os.path.exists(f"{out}/{f}"):
            os.remove(f"{out}/{f}")
