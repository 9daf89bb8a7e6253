#!/usr/bin/env python3
"""A tiny synchronous QMP client (QEMU Machine Protocol over a unix socket).

Library: QMP(path).execute(cmd, **args), .hmp(text), .dump(path, paging, fmt),
.migrate_file(path), .close().
CLI:
    qmp.py SOCK stop | cont | quit | status
    qmp.py SOCK hmp 'info registers -a'
    qmp.py SOCK dump PATH [--paging] [--format elf|kdump-zlib|kdump-lzo|kdump-snappy|...]
    qmp.py SOCK exec COMMAND ['JSON-ARGS']
    qmp.py SOCK migrate-file PATH     (`migrate file:PATH`, waits until completed)
Output of `hmp` goes to stdout verbatim; errors go to stderr with exit status 1.
Python 3 standard library only.
"""

import argparse
import json
import os
import socket
import sys
import time


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path, timeout=60.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError(f"no QMP greeting: {greeting!r}")
        self.execute("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QMPError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, cmd, **args):
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            resp = self._read()
            if "event" in resp:
                self.events.append(resp)
                continue
            if "error" in resp:
                err = resp["error"]
                raise QMPError(f"{cmd}: {err.get('class')}: {err.get('desc')}")
            if "return" in resp:
                return resp["return"]

    def hmp(self, command_line):
        return self.execute("human-monitor-command", **{"command-line": command_line})

    def wait_event(self, name, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPError(f"timeout waiting for event {name}")
            self.sock.settimeout(left)
            resp = self._read()
            if "event" in resp:
                self.events.append(resp)

    def dump(self, path, paging=False, fmt="elf", timeout=300.0):
        """dump-guest-memory to PATH (absolute), asynchronously, then waits for completion."""
        args = {"paging": paging, "protocol": "file:" + os.path.abspath(path), "detach": True}
        if fmt != "elf":
            args["format"] = fmt
        self.execute("dump-guest-memory", **args)
        deadline = time.monotonic() + timeout
        while True:
            st = self.execute("query-dump")
            status = st.get("status")
            if status == "completed":
                return st
            if status == "failed":
                raise QMPError(f"dump-guest-memory to {path} failed")
            if time.monotonic() > deadline:
                raise QMPError(f"dump-guest-memory to {path}: timeout ({st})")
            time.sleep(0.1)

    def migrate_file(self, path, timeout=120.0):
        """`migrate file:PATH` (absolute), then polls query-migrate until completed; the guest
        is in `postmigrate` after."""
        self.execute("migrate", uri="file:" + os.path.abspath(path))
        deadline = time.monotonic() + timeout
        while True:
            st = self.execute("query-migrate")
            status = st.get("status")
            if status == "completed":
                return st
            if status in ("failed", "cancelled"):
                raise QMPError(f"migrate to {path}: {status} ({st.get('error-desc', '')})")
            if time.monotonic() > deadline:
                raise QMPError(f"migrate to {path}: timeout ({st})")
            time.sleep(0.1)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def main(argv=None):
    ap = argparse.ArgumentParser(description="tiny QMP client")
    ap.add_argument("sock")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ["stop", "cont", "quit", "status"]:
        sub.add_parser(name)
    p = sub.add_parser("hmp")
    p.add_argument("line")
    p = sub.add_parser("dump")
    p.add_argument("path")
    p.add_argument("--paging", action="store_true")
    p.add_argument("--format", default="elf")
    p.add_argument("--timeout", type=float, default=300.0)
    p = sub.add_parser("migrate-file")
    p.add_argument("path")
    p.add_argument("--timeout", type=float, default=120.0)
    p = sub.add_parser("exec")
    p.add_argument("command")
    p.add_argument("args", nargs="?", default="{}")
    a = ap.parse_args(argv)
    try:
        q = QMP(a.sock)
        if a.cmd == "stop":
            q.execute("stop")
        elif a.cmd == "cont":
            q.execute("cont")
        elif a.cmd == "status":
            print(json.dumps(q.execute("query-status")))
        elif a.cmd == "quit":
            try:
                q.execute("quit")
            except QMPError as e:  # QEMU may close the socket before answering
                if "closed" not in str(e):
                    raise
        elif a.cmd == "hmp":
            sys.stdout.write(q.hmp(a.line))
        elif a.cmd == "dump":
            q.dump(a.path, a.paging, a.format, a.timeout)
        elif a.cmd == "migrate-file":
            q.migrate_file(a.path, a.timeout)
        elif a.cmd == "exec":
            print(json.dumps(q.execute(a.command, **json.loads(a.args)), indent=1))
        q.close()
    except (OSError, QMPError, ValueError) as e:
        print(f"qmp.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
