#!/usr/bin/env python3
"""Reads pages of a kdump file with libkdumpfile (an independent reader), for guestcore's tests.

usage: kdump-read.py FILE ADDR...
Prints one line of header facts as JSON on stderr, and writes the 4096 bytes at each
guest-physical ADDR to stdout, in order.
"""
import json
import sys

import kdumpfile


def main():
    k = kdumpfile.kdumpfile(sys.argv[1])
    space = getattr(kdumpfile, "KDUMP_PHYSADDR", None) or kdumpfile.KDUMP_MACHPHYSADDR
    facts = {}
    for key in ("file.format", "arch.name", "linux.uts.release", "linux.uts.machine",
                "max_pfn", "arch.page_size", "linux.phys_base"):
        try:
            v = k.attr[key]
            facts[key] = v if isinstance(v, (int, str)) else str(v)
        except Exception as e:  # an attribute this file does not have
            facts[key] = "error: %s" % e
    print(json.dumps(facts), file=sys.stderr)
    if len(sys.argv) == 2:  # no address: list every attribute, for debugging
        def walk(d, prefix):
            for key in d:
                try:
                    v = d[key]
                except Exception as e:
                    print(prefix + key, "error", e, file=sys.stderr)
                    continue
                if hasattr(v, "keys"):
                    walk(v, prefix + key + ".")
                else:
                    print(prefix + key, "=", v, file=sys.stderr)
        walk(k.attr, "")
    out = sys.stdout.buffer
    for a in sys.argv[2:]:
        out.write(k.read(space, int(a, 0), 4096))
    out.flush()


if __name__ == "__main__":
    main()
