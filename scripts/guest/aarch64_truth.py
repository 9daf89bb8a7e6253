#!/usr/bin/env python3
"""The aarch64 capture's ground truth, from the stopped guest (capture.sh runs it after phys.elf).

    aarch64_truth.py --qmp SOCK --out OUTDIR --serial SERIAL --kdir KDIR --cpus N [--gdb GDB]

QEMU 10's HMP `info registers` prints no aarch64 system registers, so the translation
registers come from QEMU's gdbstub: HMP `gdbserver unix:OUTDIR/gdb.sock,...`, then
`gdb-multiarch -batch` reads them per vCPU (gdb thread N+1 = CPU#N) and leaves with
`disconnect`, which sends no detach packet: a detach would make QEMU resume the guest.
HMP `gdbserver none` closes the stub again; the guest must still be paused after (checked).

Writes into OUTDIR:
    sysregs.txt          `CPU NAME 0xVALUE` per vCPU and register (SCTLR_EL1 is QEMU's "SCTLR")
    vmcoreinfo-note.txt  the VMCOREINFO note's text from phys.elf (QEMU copies the guest's)
    symbols.txt          `name vaddr paddr` (paddr: HMP gva2gpa on vCPU 0, "-" when unmapped),
                         the x86 captures' format
    translations.txt     `CPU NAME VADDR PADDR SOURCE` for every vCPU and symbol; SOURCE is
                         kallsyms (the guest's /proc/kallsyms, printed by /init), vmcoreinfo
                         (a SYMBOL(...) line of the note) or vmlinux (the debug vmlinux's
                         symbol table plus the KASLR offset, when KDIR/vmlinux is there)
    facts.txt            `KEY VALUE` lines: release, cpus, kaslr-offset, page-size, va-bits, ...
Exit status 1 (with the reason on stderr) when the sources disagree about an address, a
register cannot be read, or the guest runs again. Python 3 standard library only.
"""

import argparse
import os
import re
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import QMP  # noqa: E402

# What the page-table walk needs (TTBRs, TCR, SCTLR, MAIR), what the CPU supports (the ID
# registers: granules, PA range, LPA2, ...), and PC/SP to match `info registers`.
REGISTERS = [
    ("TTBR0_EL1", "TTBR0_EL1"), ("TTBR1_EL1", "TTBR1_EL1"), ("TCR_EL1", "TCR_EL1"),
    ("SCTLR_EL1", "SCTLR"), ("MAIR_EL1", "MAIR_EL1"),
    ("ID_AA64MMFR0_EL1", "ID_AA64MMFR0_EL1"), ("ID_AA64MMFR1_EL1", "ID_AA64MMFR1_EL1"),
    ("ID_AA64MMFR2_EL1", "ID_AA64MMFR2_EL1"),
    ("PC", "pc"), ("SP", "sp"), ("CPSR", "cpsr"),
]

# Symbols wanted from the debug vmlinux (the Debian 6.1 arm64 kernel's kallsyms holds no data
# symbols: no CONFIG_KALLSYMS_ALL; and its /boot/System.map is a stub).
VMLINUX_SYMBOLS = [
    "_text", "_stext", "init_uts_ns", "swapper_pg_dir", "linux_banner", "jiffies", "init_mm",
    "init_task", "idmap_pg_dir", "tramp_pg_dir", "kimage_voffset", "memstart_addr",
    "vabits_actual",
]


def die(msg):
    print(f"aarch64_truth: {msg}", file=sys.stderr)
    sys.exit(1)


def read_sysregs(q, out, cpus, gdb):
    """{cpu: {name: value}} from QEMU's gdbstub; the guest stays paused."""
    sock = os.path.join(out, "gdb.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    res = q.hmp(f"gdbserver unix:{sock},server=on,wait=off")
    if "Waiting for gdb connection" not in res:
        die(f"HMP gdbserver: {res.strip()}")
    cmds = ["set pagination off", "set confirm off", "set architecture aarch64",
            f"target remote {sock}", "info threads"]
    for cpu in range(cpus):
        cmds.append(f"thread {cpu + 1}")
        for name, gdbname in REGISTERS:
            cmds.append(f'printf "GUESTCORE-REG {cpu} {name} 0x%016lx\\n", ${gdbname}')
    cmds.append("disconnect")
    argv = [gdb, "-nx", "-batch"]
    for c in cmds:
        argv += ["-ex", c]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    finally:
        q.hmp("gdbserver none")
        if os.path.exists(sock):
            os.unlink(sock)
    regs = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "GUESTCORE-REG":
            value = int(parts[3], 16)
            if parts[2] == "CPSR":
                # gdb's cpsr is 32 bits; printf sign-extends it when N (bit 31) is set.
                value &= 0xFFFF_FFFF
            regs.setdefault(int(parts[1]), {})[parts[2]] = value
    threads = re.findall(r"Thread 1\.(\d+) \(CPU#(\d+)", p.stdout)
    if [(int(t), int(c)) for t, c in threads] != [(c + 1, c) for c in range(cpus)]:
        die(f"gdb threads are not CPU#0..{cpus - 1} in order: {threads}\n{p.stdout}{p.stderr}")
    for cpu in range(cpus):
        missing = [n for n, _ in REGISTERS if n not in regs.get(cpu, {})]
        if missing:
            die(f"vCPU {cpu}: gdb could not read {missing}:\n{p.stdout}{p.stderr}")
    st = q.execute("query-status")
    if st.get("running"):
        q.execute("stop")
        die(f"the guest ran again after gdb left ({st}); stopped it")
    return regs


def elf_notes(path):
    """(name, type, desc) of every note in an ELF64 little-endian core file."""
    with open(path, "rb") as f:
        eh = f.read(64)
        if eh[:4] != b"\x7fELF" or eh[4] != 2 or eh[5] != 1:
            die(f"{path}: not an ELF64 little-endian file")
        phoff, = struct.unpack_from("<Q", eh, 32)
        phentsize, phnum = struct.unpack_from("<HH", eh, 54)
        f.seek(phoff)
        phs = [struct.unpack("<IIQQQQQQ", f.read(phentsize)[:56]) for _ in range(phnum)]
        notes = []
        for p_type, _, off, _, _, filesz, _, _ in phs:
            if p_type != 4:  # PT_NOTE
                continue
            f.seek(off)
            data = f.read(filesz)
            i = 0
            while i + 12 <= len(data):
                namesz, descsz, ntype = struct.unpack_from("<III", data, i)
                i += 12
                name = data[i:i + namesz].rstrip(b"\0").decode(errors="replace")
                i += (namesz + 3) & ~3
                desc = data[i:i + descsz]
                i += (descsz + 3) & ~3
                notes.append((name, ntype, desc))
        return notes


def config_value(kdir, key):
    try:
        for line in open(os.path.join(kdir, "config")):
            if line.startswith(key + "="):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def vmlinux_symbols(kdir, release):
    """{name: link-time address} from KDIR/vmlinux when it is this release's debug vmlinux."""
    path = os.path.join(kdir, "vmlinux")
    try:
        if open(path + ".release").read().strip() != release:
            return {}
    except OSError:
        return {}
    p = subprocess.run(["nm", path], capture_output=True, text=True)
    if p.returncode != 0:
        die(f"nm {path}: {p.stderr.strip()}")
    want, syms = set(VMLINUX_SYMBOLS), {}
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in want and parts[2] not in syms:
            syms[parts[2]] = int(parts[0], 16)
    return syms


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qmp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--serial", required=True)
    ap.add_argument("--kdir", required=True)
    ap.add_argument("--cpus", type=int, required=True)
    ap.add_argument("--gdb", default="gdb-multiarch")
    a = ap.parse_args()

    release = ""
    symbols = []  # (name, vaddr, source), first source wins
    seen = {}
    conflicts = []

    def add(name, vaddr, source):
        if name in seen:
            if seen[name] != vaddr:
                conflicts.append(f"{name}: 0x{seen[name]:x} vs 0x{vaddr:x} ({source})")
            return
        seen[name] = vaddr
        symbols.append((name, vaddr, source))

    for line in open(a.serial, errors="replace"):
        parts = line.split()
        if len(parts) == 2 and parts[0] == "GUESTCORE-RELEASE":
            release = parts[1]
        if len(parts) == 3 and parts[0] == "GUESTCORE-SYM":
            add(parts[1], int(parts[2], 16), "kallsyms")

    vmci = [d for n, t, d in elf_notes(os.path.join(a.out, "phys.elf")) if n == "VMCOREINFO"]
    vmci_text = vmci[0].rstrip(b"\0").decode(errors="replace") if vmci else ""
    with open(os.path.join(a.out, "vmcoreinfo-note.txt"), "w") as f:
        f.write(vmci_text)
    vmci_kv = dict(l.split("=", 1) for l in vmci_text.splitlines() if "=" in l)
    for k, v in vmci_kv.items():
        m = re.fullmatch(r"SYMBOL\((\w+)\)", k)
        if m:
            add(m.group(1), int(v, 16), "vmcoreinfo")

    # KASLR: the runtime _stext (kallsyms) less the link-time one (vmlinux).
    linked = vmlinux_symbols(a.kdir, release)
    offset = None
    if "_stext" in linked and "_stext" in seen:
        offset = seen["_stext"] - linked["_stext"]
        for name in VMLINUX_SYMBOLS:
            if name in linked:
                add(name, linked[name] + offset, "vmlinux")
    if conflicts:
        die("symbol sources disagree: " + "; ".join(conflicts))

    q = QMP(a.qmp)
    regs = read_sysregs(q, a.out, a.cpus, a.gdb)
    with open(os.path.join(a.out, "sysregs.txt"), "w") as f:
        f.write("# CPU NAME VALUE: QEMU gdbstub via gdb-multiarch, guest paused; SCTLR_EL1 is QEMU's SCTLR\n")
        for cpu in range(a.cpus):
            for name, _ in REGISTERS:
                f.write(f"{cpu} {name} 0x{regs[cpu][name]:016x}\n")

    rows = []
    for cpu in range(a.cpus):
        for name, vaddr, source in symbols:
            res = q.execute("human-monitor-command",
                            **{"command-line": f"gva2gpa 0x{vaddr:x}", "cpu-index": cpu}).strip()
            paddr = res.split()[1] if res.startswith("gpa:") else "-"
            if paddr == "-":
                print(f"aarch64_truth: vCPU {cpu} gva2gpa {name} 0x{vaddr:x}: {res}", file=sys.stderr)
            rows.append((cpu, name, vaddr, paddr, source))
    q.close()
    by_cpu = {}
    for cpu, name, _, paddr, _ in rows:
        by_cpu.setdefault(name, set()).add(paddr)
    differ = [n for n, ps in by_cpu.items() if len(ps) != 1]
    if differ:
        print(f"aarch64_truth: note: vCPUs translate {differ} differently", file=sys.stderr)
    with open(os.path.join(a.out, "translations.txt"), "w") as f:
        f.write("# CPU NAME VADDR PADDR SOURCE: HMP gva2gpa with cpu-index CPU; PADDR - when unmapped\n")
        for cpu, name, vaddr, paddr, source in rows:
            f.write(f"{cpu} {name} 0x{vaddr:x} {paddr} {source}\n")
    with open(os.path.join(a.out, "symbols.txt"), "w") as f:
        for cpu, name, vaddr, paddr, _ in rows:
            if cpu == 0:
                f.write(f"{name} 0x{vaddr:x} {paddr}\n")

    # 6.1 names it CONFIG_ARM64_PAGE_SHIFT, 6.12 CONFIG_PAGE_SHIFT.
    page = config_value(a.kdir, "CONFIG_ARM64_PAGE_SHIFT") or config_value(a.kdir, "CONFIG_PAGE_SHIFT")
    facts = [
        ("release", release),
        ("cpus", str(a.cpus)),
        ("page-size", str(1 << int(page)) if page else "?"),
        ("va-bits-config", config_value(a.kdir, "CONFIG_ARM64_VA_BITS") or "?"),
        ("pa-bits-config", config_value(a.kdir, "CONFIG_ARM64_PA_BITS") or "?"),
        ("pgtable-levels-config", config_value(a.kdir, "CONFIG_PGTABLE_LEVELS") or "?"),
        ("kaslr-offset", f"0x{offset:x}" if offset is not None else "-"),
        ("vmcoreinfo-va-bits", vmci_kv.get("NUMBER(VA_BITS)", "-")),
        ("vmcoreinfo-kerneloffset", vmci_kv.get("KERNELOFFSET", "-")),
        ("vmcoreinfo-kimage-voffset", vmci_kv.get("NUMBER(kimage_voffset)", "-")),
        ("vmcoreinfo-phys-offset", vmci_kv.get("NUMBER(PHYS_OFFSET)", "-")),
        ("vmcoreinfo-tcr-el1-t1sz", vmci_kv.get("NUMBER(TCR_EL1_T1SZ)", "-")),
        ("vmcoreinfo-pagesize", vmci_kv.get("PAGESIZE", "-")),
    ]
    with open(os.path.join(a.out, "facts.txt"), "w") as f:
        for k, v in facts:
            f.write(f"{k} {v}\n")
    print(f"aarch64_truth: {len(symbols)} symbols x {a.cpus} vCPUs, "
          f"{sum(1 for r in rows if r[3] == '-')} unmapped; kaslr {facts[6][1]}", file=sys.stderr)


if __name__ == "__main__":
    main()
