//! Guests started without `-device vmcoreinfo` (QEMU's default, and many libvirt, Proxmox and
//! cloud guests'): QEMU's own dumps of them carry no VMCOREINFO, and drgn refuses those. Every
//! file guestcore writes from them must carry the VMCOREINFO of the kernel found in RAM, say so
//! on stderr, and read in the debuggers as a dump of a guest with the device does:
//!
//! - drgn reads `init_uts_ns.name.release` and lists the tasks a dump of the same kernel
//!   booted with the device lists (the `x86_64` capture): the same kernel threads by name; PIDs
//!   and worker counts depend on timing and are not compared across boots.
//! - crash prints on every output what it prints on QEMU's own dump of the same stopped guest
//!   (`sys` less its DUMPFILE line, `bt -a`, `log`, `ps`): same memory, same answers.
//! - libkdumpfile reads the release from every kdump file's header, and translates kernel
//!   addresses in it: `init_uts_ns` (from the file's VMCOREINFO) holds the release, and a
//!   kernel text symbol reads the bytes QEMU's dump has at the physical address QEMU's own
//!   `gva2gpa` gave it.
//! - gdb reads the release at `init_uts_ns` in the paging ELF files.
//!
//! The 32-bit PAE guest is checked with gdb and libkdumpfile only: the cache holds no 686-pae
//! debug vmlinux, and crash is an x86_64 build.

use super::capture::{cache_dir, capture};
use super::debuggers::{crash, drgn, drgn_run, first_difference, two_at_a_time, vmlinux};
use super::gdb_reads_release;
use assert_cmd::Command;
use guestcore::image::{GuestImage, OpenOptions};
use guestcore_testkit::tools::{skip, which};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The crash commands compared (`kmem -i` counts pages and is no more about VMCOREINFO).
const CRASH_COMMANDS: &str = "sys\nbt -a\nlog\nps\nquit\n";

/// drgn's script: the release through the kernel's page tables, then every task.
const DRGN_SCRIPT: &str = r#"
from drgn.helpers.linux.pid import for_each_task
print("release", prog["init_uts_ns"].name.release.string_().decode())
for t in sorted(for_each_task(prog), key=lambda t: int(t.pid)):
    print("task", int(t.pid), t.comm.string_().decode())
"#;

/// libkdumpfile's script: `kdump.py FILE VADDR`. Prints JSON: the header's utsname, the
/// release read through the kernel's tables at `init_uts_ns` (found in the file's VMCOREINFO),
/// and 64 bytes at kernel virtual VADDR, in hex.
const KDUMPFILE_SCRIPT: &str = r#"
import json, sys
import kdumpfile
k = kdumpfile.kdumpfile(sys.argv[1])
# Without an OS type libkdumpfile knows no kernel layout (x86_64: "Cannot determine 5-level
# paging"); with it, it reads the VMCOREINFO's numbers and symbols.
k.attr["addrxlat.ostype"] = "linux"
out = {}
for key in ("release", "version", "machine"):
    try:
        out[key] = str(k.attr["linux.uts." + key])
    except Exception as e:
        out[key] = "error: %s" % e
try:
    uts = int(k.attr["linux.vmcoreinfo.SYMBOL.init_uts_ns"])
    b = k.read(kdumpfile.KDUMP_KVADDR, uts, 512)
    at = b.index(b"Linux\0") + 130
    out["init_uts_ns"] = b[at:b.index(b"\0", at)].decode()
except Exception as e:
    out["init_uts_ns"] = "error: %s" % e
try:
    out["text"] = k.read(kdumpfile.KDUMP_KVADDR, int(sys.argv[2], 0), 64).hex()
except Exception as e:
    out["text"] = "error: %s" % e
try:
    out["ptext"] = k.read(kdumpfile.KDUMP_KPHYSADDR, int(sys.argv[3], 0), 64).hex()
except Exception as e:
    out["ptext"] = "error: %s" % e
print(json.dumps(out))
"#;

/// Where a dump's VMCOREINFO must come from, as its notice says.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    /// The kernel found in RAM (the input carries none).
    Ram,
    /// The input's own note (a file guestcore wrote).
    Input,
}

/// How to make one file guestcore writes.
struct Recipe {
    what: &'static str,
    name: &'static str,
    args: Vec<String>,
    from: Source,
    /// Written as a flattened stream, then reassembled by `makedumpfile -R` for the readers.
    flatten: bool,
    /// Kept to the end: a later recipe converts it.
    keep: bool,
}

/// One file guestcore wrote, and what reads it.
struct Output {
    what: &'static str,
    path: PathBuf,
    /// A kdump file (libkdumpfile reads it).
    kdump: bool,
    /// A paging ELF (gdb reads virtual addresses in it).
    paging: bool,
    /// drgn reads it (not an ELF32 file).
    elf64_or_kdump: bool,
    /// crash reads it too: one file of each kind (crash takes ~15 s a file, and the kdump
    /// compressions differ only in their page codec, which `debuggers` already covers).
    crash: bool,
    keep: bool,
}

/// Every kind of file guestcore writes, from QEMU's physical ELF dump `phys` and its
/// kdump-zlib file `qemu_kdump` of a guest without the device (neither carries VMCOREINFO).
fn recipes(phys: &Path, qemu_kdump: &Path, dir: &Path, bits32: bool) -> Vec<Recipe> {
    let p = phys.to_str().unwrap();
    let q = qemu_kdump.to_str().unwrap();
    let zlib = dir.join("zlib.kdump");
    let recipe = |what, name, args: &[&str], from| Recipe {
        what,
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        from,
        flatten: false,
        keep: false,
    };
    let mut r = vec![
        recipe("physical ELF", "phys.elf", &["dump", p], Source::Ram),
        recipe(
            "paging ELF",
            "paging.elf",
            &["dump", "--paging", p],
            Source::Ram,
        ),
    ];
    if bits32 {
        // ELF32 is for 32-bit guests: crash refuses an x86_64 one, drgn takes it for x32.
        r.push(recipe(
            "physical ELF32",
            "phys32.elf",
            &["dump", "--elf-class", "32", p],
            Source::Ram,
        ));
        r.push(recipe(
            "paging ELF32",
            "paging32.elf",
            &["dump", "--paging", "--elf-class", "32", p],
            Source::Ram,
        ));
    }
    for (what, name) in [
        ("kdump-zlib", "zlib.kdump"),
        ("kdump-lzo", "lzo.kdump"),
        ("kdump-snappy", "snappy.kdump"),
        ("kdump-zstd", "zstd.kdump"),
        ("kdump-raw", "raw.kdump"),
    ] {
        r.push(recipe(
            what,
            name,
            &["dump", "--format", what, p],
            Source::Ram,
        ));
    }
    r.iter_mut().find(|r| r.name == "zlib.kdump").unwrap().keep = true;
    let mut flat = recipe(
        "flattened kdump-zstd after makedumpfile -R",
        "flat.kdump",
        &["dump", "--format", "kdump-zstd", "--flatten", p],
        Source::Ram,
    );
    flat.flatten = true;
    r.push(flat);
    // All of RAM (256 MiB from 0), without QEMU's VGA RAM and BIOS ROM below 4 GiB.
    r.push(recipe(
        "window --begin 0 --length 256M",
        "window.elf",
        &["dump", "--begin", "0", "--length", "256M", p],
        Source::Ram,
    ));
    r.push(recipe(
        "QEMU's kdump-zlib converted to ELF",
        "qemu-kdump.elf",
        &["dump", q],
        Source::Ram,
    ));
    r.push(recipe(
        "QEMU's kdump-zlib converted to kdump-zstd",
        "qemu-kdump.zstd.kdump",
        &["dump", "--format", "kdump-zstd", q],
        Source::Ram,
    ));
    r.push(recipe(
        "guestcore's kdump-zlib converted to ELF",
        "from-kdump.elf",
        &["dump", zlib.to_str().unwrap()],
        Source::Input,
    ));
    r
}

/// Writes `r`'s file into `dir` (checking its notice) and says what reads it; `None` when
/// makedumpfile, needed to reassemble a flattened stream, is not installed.
fn make(r: &Recipe, dir: &Path, release: &str) -> Option<Output> {
    let path = dir.join(r.name);
    let args: Vec<&str> = r.args.iter().map(String::as_str).collect();
    if r.flatten {
        let flat = dir.join("flat.bin");
        dump_says(r.what, &args, &flat, r.from, release);
        if which("makedumpfile").is_none() {
            skip("makedumpfile is not installed");
            return None;
        }
        let m = std::process::Command::new("makedumpfile")
            .arg("-R")
            .arg(&path)
            .stdin(std::fs::File::open(&flat).unwrap())
            .output()
            .unwrap();
        assert!(
            m.status.success(),
            "makedumpfile -R: {}",
            String::from_utf8_lossy(&m.stderr)
        );
        std::fs::remove_file(&flat).unwrap();
    } else {
        dump_says(r.what, &args, &path, r.from, release);
    }
    let kdump = args.contains(&"--format");
    let elf64_or_kdump = !args.contains(&"32");
    Some(Output {
        what: r.what,
        path,
        kdump,
        paging: args.contains(&"--paging"),
        crash: elf64_or_kdump
            && (!kdump || r.what == "kdump-zstd" || r.flatten)
            && r.from == Source::Ram,
        elf64_or_kdump,
        keep: r.keep,
    })
}

/// Runs `guestcore dump ARGS… -o OUT` (not quiet: the VMCOREINFO notice is a note) and
/// asserts that it succeeds and says where the dump's VMCOREINFO came from.
fn dump_says(what: &str, args: &[&str], out: &Path, from: Source, release: &str) {
    if let Err(e) = try_dump_says(what, args, out, from, release) {
        panic!("{e}");
    }
}

/// [`dump_says`], a wrong notice returned as `Err` (the dump must still succeed).
fn try_dump_says(
    what: &str,
    args: &[&str],
    out: &Path,
    from: Source,
    release: &str,
) -> Result<(), String> {
    let r = Command::cargo_bin("guestcore")
        .unwrap()
        .args(args)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{what}: guestcore {args:?}: {stderr}");
    let Some(notice) = stderr
        .lines()
        .find(|l| l.starts_with("guestcore: VMCOREINFO: "))
    else {
        return Err(format!("{what}: no VMCOREINFO notice on stderr:\n{stderr}"));
    };
    let ok = match from {
        Source::Ram => {
            notice.starts_with("guestcore: VMCOREINFO: kernel ")
                && notice.contains(&format!("'s ({release}), found in RAM at 0x"))
                && notice.ends_with(" (the input carries none)")
        }
        Source::Input => notice == "guestcore: VMCOREINFO: the input's own",
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{what}: guestcore {args:?} said {notice:?}"))
    }
}

/// `(name, virtual, physical)` of the kernel symbols the guest printed (QEMU's gva2gpa).
fn symbols(dir: &Path) -> Vec<(String, u64, u64)> {
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    std::fs::read_to_string(dir.join("symbols.txt"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), hex(f.get(1)?)?, hex(f.get(2)?)?))
        })
        .collect()
}

/// A python3 that can import kdumpfile (Debian's lives in /usr/bin, not in a pyenv).
fn python_with_kdumpfile() -> Option<String> {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|py| {
            std::process::Command::new(py)
                .args(["-c", "import kdumpfile"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_string)
}

/// The first line of the guest's console that holds the kernel's banner ("Linux version …").
fn banner(dir: &Path) -> String {
    let serial = std::fs::read(dir.join("serial.log")).unwrap();
    String::from_utf8_lossy(&serial)
        .lines()
        .find(|l| l.contains("Linux version "))
        .expect("the kernel's banner on the console")
        .trim()
        .to_string()
}

/// The capture of `guest` (a guest without the device), QEMU's dumps of it checked to carry
/// no VMCOREINFO; `None` when the tier is off or the guest cannot be had.
fn novmci_capture(guest: &str) -> Option<(PathBuf, String)> {
    let dir = capture(guest)?;
    let release = std::fs::read_to_string(dir.join("release.txt"))
        .unwrap()
        .trim()
        .to_string();
    let registered = std::fs::read_to_string(dir.join("vmcoreinfo.txt")).unwrap();
    assert_eq!(
        registered.trim(),
        "no",
        "{guest}: the guest registered VMCOREINFO with QEMU"
    );
    for f in ["phys.elf", "kdump-zlib.dump"] {
        let image = GuestImage::open(dir.join(f), &OpenOptions::default()).unwrap();
        assert!(
            image.vmcoreinfo.is_none(),
            "{guest}: QEMU's {f} carries VMCOREINFO: not a guest without the device"
        );
    }
    Some((dir, release))
}

/// What libkdumpfile must read in every kdump file of one capture.
struct KdumpfileCheck {
    py: String,
    script: PathBuf,
    /// A kernel text symbol: name, virtual address, physical address (QEMU's gva2gpa), and
    /// its 64 bytes (hex) in QEMU's dump there.
    symbol: (String, u64, u64, String),
    banner: String,
    /// libkdumpfile 0.5.1 cannot translate kernel addresses of an ia32 kdump file, whoever
    /// wrote it (QEMU's own included): with no CR3 in i386 register notes it starts from
    /// `swapper_pg_dir` as a kernel address, and setting up the direct map for that reads
    /// `vmap_area_list` through the same map ("Infinite recursion loop"). For such a guest the
    /// check wants exactly that error for virtual reads, and the symbol's bytes by physical
    /// address.
    ia32: bool,
}

impl KdumpfileCheck {
    fn new(guest: &str, dir: &Path, tmp: &Path) -> Option<KdumpfileCheck> {
        let Some(py) = python_with_kdumpfile() else {
            skip("python3-libkdumpfile is not installed");
            return None;
        };
        let script = tmp.join("kdump.py");
        std::fs::write(&script, KDUMPFILE_SCRIPT).unwrap();
        let (name, va, pa) = symbols(dir)
            .into_iter()
            // Not start_kernel: init text is freed (and cleared) once the kernel has booted.
            .find(|(n, ..)| n == "schedule")
            .unwrap_or_else(|| panic!("{guest}: no schedule in symbols.txt"));
        let qemu = GuestImage::open(dir.join("phys.elf"), &OpenOptions::default()).unwrap();
        let mut want = [0u8; 64];
        qemu.memory.read_at(pa, &mut want).unwrap();
        let hex = want.iter().map(|b| format!("{b:02x}")).collect();
        Some(KdumpfileCheck {
            py,
            script,
            symbol: (name, va, pa, hex),
            banner: banner(dir),
            ia32: guest.starts_with("i386"),
        })
    }

    /// The header's utsname, init_uts_ns's release through the kernel's tables, and the
    /// symbol's bytes, as libkdumpfile reads them in `o`.
    fn check(&self, o: &Output, release: &str, failures: &mut Vec<String>) {
        let (name, va, pa, want) = &self.symbol;
        let r = std::process::Command::new(&self.py)
            .arg(&self.script)
            .arg(&o.path)
            .arg(format!("{va:#x}"))
            .arg(format!("{pa:#x}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&r.stdout);
        let got: BTreeMap<String, String> = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "libkdumpfile on {}: {e}: {text}{}",
                o.what,
                String::from_utf8_lossy(&r.stderr)
            )
        });
        let field = |k: &str| got.get(k).map(String::as_str).unwrap_or("<none>");
        if field("ptext") != want {
            failures.push(format!(
                "libkdumpfile on {}: {name} at physical {pa:#x} read {}, QEMU's dump has {want}",
                o.what,
                field("ptext")
            ));
        }
        if self.ia32 {
            let known = |k: &str| field(k).contains("Infinite recursion loop");
            if !(known("init_uts_ns") && known("text")) {
                failures.push(format!(
                    "libkdumpfile on {}: virtual reads of an ia32 kdump file did not fail as libkdumpfile 0.5.1 does (if they work now, make this check translate): init_uts_ns {:?}, {name} {:?}",
                    o.what,
                    field("init_uts_ns"),
                    field("text")
                ));
            }
            eprintln!(
                "libkdumpfile on {}: header and physical reads checked; virtual reads fail as on QEMU's own ia32 kdump (libkdumpfile 0.5.1)",
                o.what
            );
            if field("release") != release {
                failures.push(format!(
                    "libkdumpfile on {}: header release {:?}; wanted {release:?}",
                    o.what,
                    field("release")
                ));
            }
        } else if field("release") != release || field("init_uts_ns") != release {
            failures.push(format!(
                "libkdumpfile on {}: header release {:?}, at init_uts_ns {:?}; wanted {release:?}",
                o.what,
                field("release"),
                field("init_uts_ns")
            ));
        }
        // The banner ends with utsname.version (the kernel prints "... VERSION" last).
        if !field("version").starts_with('#') || !self.banner.ends_with(field("version")) {
            failures.push(format!(
                "libkdumpfile on {}: header version {:?}, not the end of the banner {:?}",
                o.what,
                field("version"),
                self.banner
            ));
        }
        if !self.ia32 && field("text") != want {
            failures.push(format!(
                "libkdumpfile on {}: {name} at {va:#x} read {}, QEMU's dump has {want}",
                o.what,
                field("text")
            ));
        }
    }
}

/// What every output must hold, whatever reads it: its own VMCOREINFO, of the release, naming
/// the same init_uts_ns as the others (`uts`); gdb reading the release there in a paging ELF;
/// libkdumpfile reading a kdump file.
fn check_output(
    guest: &str,
    o: &Output,
    release: &str,
    uts: &mut Option<u64>,
    kdumpfile: Option<&KdumpfileCheck>,
    failures: &mut Vec<String>,
) {
    let image = GuestImage::open(&o.path, &OpenOptions::default())
        .unwrap_or_else(|e| panic!("{guest}: guestcore opening its {}: {e}", o.what));
    let got = image.vmcoreinfo_get("OSRELEASE");
    if got != Some(release) {
        failures.push(format!("VMCOREINFO of {}: OSRELEASE {got:?}", o.what));
        return;
    }
    let sym = image
        .vmcoreinfo_get("SYMBOL(init_uts_ns)")
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .unwrap_or_else(|| panic!("{guest}: no SYMBOL(init_uts_ns) in {}", o.what));
    if *uts.get_or_insert(sym) != sym {
        failures.push(format!("{}: init_uts_ns at {sym:#x}, not {uts:x?}", o.what));
    }
    if o.paging {
        // The utsname's layout from the page its PT_LOADs map init_uts_ns to.
        let mut head = [0u8; 512];
        image
            .memory
            .read_at(uts_phys(&image, sym), &mut head)
            .unwrap();
        let sysname = head
            .windows(6)
            .position(|w| w == b"Linux\0")
            .unwrap_or_else(|| panic!("{guest}: no utsname at init_uts_ns {sym:#x}"));
        gdb_reads_release(
            &o.path,
            sym + sysname as u64 + 130,
            release,
            &format!("{guest}: {}", o.what),
        );
    }
    if let (true, Some(k)) = (o.kdump, kdumpfile) {
        k.check(o, release, failures);
    }
}

/// The physical address of kernel virtual `va` in `image`'s PT_LOADs (a paging ELF: p_vaddr
/// to p_paddr).
fn uts_phys(image: &GuestImage, va: u64) -> u64 {
    let elf = guestcore::phys::elf::ElfCore::open(&image.path).unwrap();
    let s = elf
        .segments()
        .iter()
        .find(|s| s.vaddr <= va && va < s.vaddr + s.memsz && s.filesz > 0)
        .unwrap_or_else(|| panic!("{va:#x} is in no PT_LOAD of {}", image.path.display()));
    s.paddr + (va - s.vaddr)
}

/// The task names of drgn's list that do not depend on timing: every task but the kernel's
/// workers (`kworker/…`, created on demand) and `sleep` (/init forks its endless `sleep 1000`
/// just after it prints the ready marker, which a capture may beat), with their count.
fn stable_tasks(drgn_out: &str) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for l in drgn_out.lines() {
        let Some(rest) = l.strip_prefix("task ") else {
            continue;
        };
        let name = rest.split_once(' ').map_or("", |(_, n)| n);
        if !name.starts_with("kworker/") && name != "sleep" {
            *names.entry(name.to_string()).or_insert(0) += 1;
        }
    }
    names
}

/// crash and drgn, with what they must print.
struct Debuggers {
    vmlinux: PathBuf,
    drgn: PathBuf,
    crash_cmds: PathBuf,
    drgn_script: PathBuf,
    /// crash on QEMU's dump of this guest.
    crash_want: String,
    /// drgn's stable tasks on QEMU's dump of the same kernel booted with the device (drgn
    /// refuses QEMU's dump without it).
    device_tasks: BTreeMap<String, usize>,
}

impl Debuggers {
    fn new(guest: &str, dir: &Path, release: &str, tmp: &Path) -> Option<Debuggers> {
        if which("crash").is_none() {
            skip("crash is not installed");
            return None;
        }
        let vmlinux = vmlinux(release)?;
        let drgn = drgn()?;
        let crash_cmds = tmp.join("crash.cmds");
        std::fs::write(&crash_cmds, CRASH_COMMANDS).unwrap();
        let drgn_script = tmp.join("check.py");
        std::fs::write(&drgn_script, DRGN_SCRIPT).unwrap();
        let with_device = capture("x86_64").expect("the x86_64 capture");
        let refs = [dir.join("phys.elf"), with_device.join("phys.elf")];
        let [crash_want, drgn_device]: [String; 2] = two_at_a_time(&[0, 1], |&i| match i {
            0 => crash(&vmlinux, &refs[0], &crash_cmds)
                .unwrap_or_else(|e| panic!("{guest}: crash on QEMU's dump: {e}")),
            _ => drgn_run(&drgn, &vmlinux, &refs[1], &drgn_script)
                .unwrap_or_else(|e| panic!("x86_64: drgn on QEMU's dump: {e}")),
        })
        .try_into()
        .unwrap();
        assert!(
            crash_want.contains(&format!("RELEASE: {release}"))
                && crash_want.contains("Linux version")
                && crash_want.contains("PID: 0 "),
            "{guest}: crash on QEMU's dump printed too little:\n{crash_want}"
        );
        let device_tasks = stable_tasks(&drgn_device);
        assert!(
            device_tasks.len() > 10,
            "x86_64: drgn on QEMU's dump: {drgn_device}"
        );
        Some(Debuggers {
            vmlinux,
            drgn,
            crash_cmds,
            drgn_script,
            crash_want,
            device_tasks,
        })
    }

    /// crash (where `o.crash`) and drgn on `o`: `(crash's output, drgn's)`.
    fn run(&self, o: &Output) -> (Option<Result<String, String>>, Result<String, String>) {
        (
            o.crash
                .then(|| crash(&self.vmlinux, &o.path, &self.crash_cmds)),
            drgn_run(&self.drgn, &self.vmlinux, &o.path, &self.drgn_script),
        )
    }

    /// Compares one output's answers; `drgn_first` is the first output's drgn answer, which
    /// every other output of the same memory must repeat exactly.
    fn compare(
        &self,
        o: &Output,
        (c, d): (Option<Result<String, String>>, Result<String, String>),
        release: &str,
        drgn_first: &mut Option<(&'static str, String)>,
        failures: &mut Vec<String>,
    ) {
        match c {
            None => {}
            Some(Err(e)) => failures.push(format!("crash on {}: {e}", o.what)),
            Some(Ok(text)) if text != self.crash_want => failures.push(format!(
                "crash on {} differs from QEMU's dump:\n{}",
                o.what,
                first_difference(&self.crash_want, &text)
            )),
            Some(Ok(_)) => {}
        }
        let text = match d {
            Err(e) => return failures.push(format!("drgn on {}: {e}", o.what)),
            Ok(text) => text,
        };
        if text.lines().next() != Some(&format!("release {release}")) {
            failures.push(format!("drgn on {}: {:?}", o.what, text.lines().next()));
        }
        let tasks = stable_tasks(&text);
        if tasks != self.device_tasks {
            failures.push(format!(
                "drgn on {}: tasks (less kworkers) {tasks:?}; on the guest with the device {:?}",
                o.what, self.device_tasks
            ));
        }
        match drgn_first {
            None => *drgn_first = Some((o.what, text)),
            Some((first, want)) if *want != text => failures.push(format!(
                "drgn on {} differs from drgn on {first}:\n{}",
                o.what,
                first_difference(want, &text)
            )),
            Some(_) => {}
        }
    }
}

/// Every output of `guest`'s capture, two at a time (each is written, checked, read by the
/// debuggers in parallel, then deleted: at most two ELF files of all RAM on disk at once).
/// `debuggers`: crash and drgn, for the x86_64 guest. Returns how many outputs were checked.
fn check_guest(guest: &str, dir: &Path, release: &str, bits32: bool, debuggers: bool) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    let recipes = recipes(
        &dir.join("phys.elf"),
        &dir.join("kdump-zlib.dump"),
        tmp.path(),
        bits32,
    );
    let kdumpfile = KdumpfileCheck::new(guest, dir, tmp.path());
    let dbg = if debuggers {
        Debuggers::new(guest, dir, release, tmp.path())
    } else {
        None
    };
    let mut failures = Vec::new();
    let mut uts = None;
    let mut drgn_first = None;
    let mut checked = 0;
    for pair in recipes.chunks(2) {
        let outs: Vec<Output> = pair
            .iter()
            .filter_map(|r| make(r, tmp.path(), release))
            .collect();
        for o in &outs {
            check_output(
                guest,
                o,
                release,
                &mut uts,
                kdumpfile.as_ref(),
                &mut failures,
            );
        }
        if let Some(d) = &dbg {
            let readable: Vec<&Output> = outs.iter().filter(|o| o.elf64_or_kdump).collect();
            let answers = two_at_a_time(&readable, |o| d.run(o));
            for (o, a) in readable.iter().zip(answers) {
                d.compare(o, a, release, &mut drgn_first, &mut failures);
            }
        }
        for o in outs.iter().filter(|o| !o.keep) {
            std::fs::remove_file(&o.path).unwrap();
        }
        checked += outs.len();
    }
    assert!(failures.is_empty(), "{guest}:\n{}", failures.join("\n\n"));
    checked
}

/// x86_64 without the device: notices, VMCOREINFO, gdb, libkdumpfile, crash and drgn.
#[test]
fn x86_64_without_vmcoreinfo_device() {
    let started = std::time::Instant::now();
    let guest = "x86_64-novmci";
    let Some((dir, release)) = novmci_capture(guest) else {
        return;
    };
    let captured_s = started.elapsed().as_secs_f64();
    let n = check_guest(guest, &dir, &release, false, true);
    eprintln!(
        "{guest}: {n} outputs carry {release}'s VMCOREINFO and read in gdb, libkdumpfile, crash and drgn; capture {captured_s:.0} s, {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
}

/// i386 PAE without the device: notices, VMCOREINFO, gdb (paging ELF and ELF32) and
/// libkdumpfile on every kdump file.
#[test]
fn i386_pae_without_vmcoreinfo_device() {
    let started = std::time::Instant::now();
    let guest = "i386-pae-novmci";
    let Some((dir, release)) = novmci_capture(guest) else {
        return;
    };
    let captured_s = started.elapsed().as_secs_f64();
    let n = check_guest(guest, &dir, &release, true, false);
    eprintln!(
        "{guest}: {n} outputs carry {release}'s VMCOREINFO and read in gdb and libkdumpfile; capture {captured_s:.0} s, {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
}

/// The x86_64 guest without the device, running (booted by `scripts/guest/boot.sh`, which a
/// bash process keeps until its stdin closes, then stops QEMU on every exit path).
struct RunningGuest {
    bash: std::process::Child,
    dir: tempfile::TempDir,
}

impl RunningGuest {
    /// Boots `guest` and waits for its /init's ready marker; `None` when it cannot be had.
    fn boot(guest: &str) -> Option<RunningGuest> {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let script = r#"
set -euo pipefail
. scripts/guest/boot.sh
log() { echo "boot: $*" >&2; }
guest_config "$1"
rc=0; guest_files >&2 || rc=$?
[ "$rc" = 0 ] || exit "$rc"
trap guest_stop EXIT
guest_start "$2"
guest_wait_ready
echo READY
read -r _ || true
"#;
        let mut bash = std::process::Command::new("bash")
            .args(["-c", script, "boot", guest])
            .arg(dir.path())
            .current_dir(super::capture::repo_root())
            .env("GUESTCORE_CACHE", cache_dir())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("boot.log")).unwrap())
            .spawn()
            .expect("run bash");
        let mut line = String::new();
        std::io::BufReader::new(bash.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.trim() == "READY" {
            return Some(RunningGuest { bash, dir });
        }
        let status = bash.wait().unwrap();
        let log = std::fs::read_to_string(dir.path().join("boot.log")).unwrap_or_default();
        if status.code() == Some(77) {
            skip(format_args!(
                "{guest}: {}",
                log.lines().last().unwrap_or("")
            ));
            return None;
        }
        panic!("booting {guest} failed ({status}):\n{log}");
    }

    fn input(&self) -> String {
        format!("qmp:{}", self.dir.path().join("qmp.sock").display())
    }
}

impl Drop for RunningGuest {
    fn drop(&mut self) {
        // Closing bash's stdin ends its `read`; its EXIT trap quits QEMU.
        drop(self.bash.stdin.take());
        let _ = self.bash.wait();
    }
}

/// Live dumps of a running guest without the device: a background snapshot (ELF and
/// kdump-zstd) and a `--pause` dump (kdump-zstd: one ELF of all RAM on disk is enough) carry
/// the VMCOREINFO of the kernel found in the dumped memory, drgn reads the release and the
/// stable tasks of the guest with the device, and libkdumpfile translates init_uts_ns in the
/// kdump files.
#[test]
fn x86_64_live_without_vmcoreinfo_device() {
    use guestcore_testkit::tools::real_guests_wanted;
    if !real_guests_wanted() {
        return;
    }
    let started = std::time::Instant::now();
    let guest = "x86_64-novmci";
    // The release, and drgn's reference, from the captures (same kernel).
    let Some((_, release)) = novmci_capture(guest) else {
        return;
    };
    let with_device = capture("x86_64").expect("the x86_64 capture");
    let Some(g) = RunningGuest::boot(guest) else {
        return;
    };
    let booted_s = started.elapsed().as_secs_f64();
    let tmp = tempfile::tempdir().unwrap();
    let input = g.input();
    let snap = tmp.path().join("snapshot.elf");
    let snap_kdump = tmp.path().join("snapshot.kdump");
    let paused = tmp.path().join("pause.kdump");
    // Each dump must say where its VMCOREINFO came from; a wrong notice is reported with the
    // readers' findings below.
    let mut failures: Vec<String> = [
        ("background snapshot ELF", vec!["dump", &input], &snap),
        (
            "background snapshot kdump-zstd",
            vec!["dump", "--format", "kdump-zstd", &input],
            &snap_kdump,
        ),
        (
            "--pause kdump-zstd",
            vec!["dump", "--pause", "--format", "kdump-zstd", &input],
            &paused,
        ),
    ]
    .into_iter()
    .filter_map(|(what, args, out)| try_dump_says(what, &args, out, Source::Ram, &release).err())
    .collect();
    drop(g);
    let files = [&snap, &snap_kdump, &paused];
    for f in files {
        let image = GuestImage::open(f, &OpenOptions::default()).unwrap();
        let got = image.vmcoreinfo_get("OSRELEASE");
        if got != Some(release.as_str()) {
            failures.push(format!("VMCOREINFO of {}: OSRELEASE {got:?}", f.display()));
        }
    }

    // libkdumpfile: the release at init_uts_ns through the kernel's tables.
    let py = python_with_kdumpfile();
    if py.is_none() {
        skip("python3-libkdumpfile is not installed");
    }
    for (py, kdump) in py.iter().flat_map(|py| [(py, &snap_kdump), (py, &paused)]) {
        let script = tmp.path().join("kdump.py");
        std::fs::write(&script, KDUMPFILE_SCRIPT).unwrap();
        let r = std::process::Command::new(py)
            .arg(&script)
            .arg(kdump)
            .arg("0")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&r.stdout);
        let got: BTreeMap<String, String> = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "libkdumpfile: {e}: {text}{}",
                String::from_utf8_lossy(&r.stderr)
            )
        });
        if got.get("release") != Some(&release) || got.get("init_uts_ns") != Some(&release) {
            failures.push(format!("libkdumpfile on {}: {got:?}", kdump.display()));
        }
    }

    // drgn: the release and the tasks of the guest with the device.
    let (Some(vmlinux), Some(drgn)) = (vmlinux(&release), drgn()) else {
        assert!(
            failures.is_empty(),
            "{guest} live:\n{}",
            failures.join("\n")
        );
        return;
    };
    let script = tmp.path().join("check.py");
    std::fs::write(&script, DRGN_SCRIPT).unwrap();
    let mut runs = vec![with_device.join("phys.elf")];
    runs.extend(files.iter().map(|f| f.to_path_buf()));
    let outs = two_at_a_time(&runs, |f| drgn_run(&drgn, &vmlinux, f, &script));
    let want = stable_tasks(outs[0].as_ref().expect("drgn on QEMU's x86_64 dump"));
    for (f, out) in runs.iter().zip(&outs).skip(1) {
        match out {
            Err(e) => failures.push(format!("drgn on {}: {e}", f.display())),
            Ok(text) => {
                if text.lines().next() != Some(&format!("release {release}")) {
                    failures.push(format!(
                        "drgn on {}: {:?}",
                        f.display(),
                        text.lines().next()
                    ));
                }
                let tasks = stable_tasks(text);
                if tasks != want {
                    failures.push(format!(
                        "drgn on {}: tasks (less kworkers) {tasks:?}; on the guest with the device {want:?}",
                        f.display()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{guest} live:\n{}",
        failures.join("\n")
    );
    eprintln!(
        "{guest} live: snapshot ELF, snapshot kdump-zstd and --pause ELF carry {release}'s VMCOREINFO; boot {booted_s:.0} s, {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
}
