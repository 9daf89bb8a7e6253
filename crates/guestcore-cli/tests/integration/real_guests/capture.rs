//! Taking and caching the captures of `scripts/guest/capture.sh`: one guest at a time, reused
//! while the cache's kernel is the one they were taken of.

use guestcore_testkit::tools::{real_guests_wanted, skip, which};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Captures run one at a time: two TCG guests on a 2-core machine would slow each other's boot.
static CAPTURE: Mutex<()> = Mutex::new(());

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn cache_dir() -> PathBuf {
    guestcore_testkit::tools::guest_cache()
}

/// The kernel flavour (`kernels/FLAVOUR` in the cache) a guest boots.
fn flavour(guest: &str) -> &'static str {
    match guest {
        "i386" => "686",
        "i386-pae" | "i386-pae-novmci" => "686-pae",
        "aarch64" | "aarch64-kdump" => "arm64",
        "aarch64-16k" | "aarch64-16k-47" => "arm64-16k",
        _ => "amd64",
    }
}

/// True for the aarch64 guests (`aarch64`: 4 KiB granule, 48-bit VA; `aarch64-16k`: 16 KiB
/// granule, 52-bit VA with LPA2; `aarch64-16k-47`: the same kernel on a CPU without LPA2, so
/// 47-bit VA), which boot under qemu-system-aarch64.
pub fn is_aarch64(guest: &str) -> bool {
    guest.starts_with("aarch64")
}

/// True when the capture in `dir` was taken of the kernel the cache holds now (a new Debian
/// kernel, and so a new debug vmlinux, makes an older capture useless for crash and drgn).
fn capture_matches_kernel(guest: &str, dir: &Path) -> bool {
    let read = |p: PathBuf| std::fs::read_to_string(p).map(|s| s.trim().to_string());
    match (
        read(dir.join("release.txt")),
        read(
            cache_dir()
                .join("kernels")
                .join(flavour(guest))
                .join("release"),
        ),
    ) {
        (Ok(taken), Ok(now)) => taken == now,
        // No kernel in the cache (yet): capture.sh fetches it, and a fresh capture follows.
        _ => false,
    }
}

/// The capture directory of `guest`, taking the capture when the cache lacks it; `None` (the
/// test returns) when the real-guest tier was not asked for or the guest cannot be had.
pub fn capture(guest: &str) -> Option<PathBuf> {
    if !real_guests_wanted() {
        return None;
    }
    let _one_at_a_time = CAPTURE.lock().unwrap_or_else(|e| e.into_inner());
    capture_unlocked(guest)
}

/// [`capture`], with the lock held by the caller.
fn capture_unlocked(guest: &str) -> Option<PathBuf> {
    let dir = cache_dir().join("captures").join(guest);
    // The kdump guests (a first kernel crashed into its capture kernel) have their own script.
    // `(vCPUs, the vCPU that crashes)`: the crash is pinned so each capture is the same
    // situation every time it is taken (which vCPU stays parked in the crashed kernel).
    let (kdump_smp, crash_cpu) = match guest {
        "x86_64-kdump" => (Some("2"), Some("0")),
        "x86_64-kdump-cpu1" => (Some("2"), Some("1")),
        "x86_64-kdump-smp1" => (Some("1"), None),
        // The crash pinned to vCPU 0: vCPU 1 is the one the crash stops (PSCI CPU_OFF).
        "aarch64-kdump" => (Some("2"), Some("0")),
        _ => (None, None),
    };
    // What the tests read; a capture missing any of it (e.g. one taken before /init had the
    // dump-level workload, so without workload.txt) is taken again.
    let needed: &[&str] = match guest {
        // The aarch64 one: its vCPUs' TTBR1_EL1 (gdbstub) and the newer facts' files too.
        _ if kdump_smp.is_some() && is_aarch64(guest) => &[
            "phys.elf",
            "facts.txt",
            "sysregs.txt",
            "symbols.txt",
            "capture-symbols.txt",
            "capture-console.txt",
            "migration.bin",
            "timings.txt",
        ],
        _ if kdump_smp.is_some() => &["phys.elf", "facts.txt", "registers.txt", "timings.txt"],
        // The aarch64 guests: no paging.elf (QEMU's arm target writes the same file with
        // paging), no tlb.txt (no `info tlb` for arm); the system registers come from QEMU's
        // gdbstub and the translations from gva2gpa on every vCPU.
        _ if is_aarch64(guest) => &[
            "phys.elf",
            "kdump-zlib.dump",
            "migration.bin",
            "registers.txt",
            "sysregs.txt",
            "translations.txt",
            "symbols.txt",
            "vmcoreinfo-note.txt",
            "facts.txt",
            "release.txt",
            "workload.txt",
            "timings.txt",
        ],
        "x86_64-virsh" => &["virsh.save", "phys.elf", "registers.txt", "release.txt"],
        // The 4 GiB guest: only the dump-level tests, which read phys.elf (capture.sh writes
        // no paging.elf, kdump-zlib.dump, tlb.txt or mem.txt for it).
        "x86_64-4g" => &[
            "phys.elf",
            "registers.txt",
            "symbols.txt",
            "release.txt",
            "workload.txt",
            "timings.txt",
        ],
        // The guests without -device vmcoreinfo: only what `no_vmcoreinfo` reads (capture.sh
        // takes no paging.elf, tlb.txt or mem.txt of them).
        "x86_64-novmci" | "i386-pae-novmci" => &[
            "phys.elf",
            "kdump-zlib.dump",
            "symbols.txt",
            "release.txt",
            "vmcoreinfo.txt",
            "serial.log",
            "timings.txt",
        ],
        _ => &[
            "phys.elf",
            "paging.elf",
            "kdump-zlib.dump",
            "tlb.txt",
            "symbols.txt",
            "release.txt",
            "workload.txt",
            "timings.txt",
        ],
    };
    let pinned_as_asked = match crash_cpu {
        None => true,
        Some(n) => std::fs::read_to_string(dir.join("cmdline.txt"))
            .is_ok_and(|c| c.contains(&format!("guestcore_crash_cpu={n}"))),
    };
    let complete = needed.iter().all(|f| dir.join(f).exists()) && pinned_as_asked;
    if complete && capture_matches_kernel(guest, &dir) {
        return Some(dir);
    }
    let tools: &[&str] = if is_aarch64(guest) {
        &["qemu-system-aarch64", "gdb-multiarch", "nm"]
    } else {
        &["qemu-system-x86_64"]
    };
    if let Some(missing) = tools.iter().find(|t| which(t).is_none()) {
        skip(format_args!("{guest}: {missing} is not installed"));
        return None;
    }
    let mut cmd = std::process::Command::new("bash");
    if guest == "x86_64-virsh" {
        // Boots the harness's amd64 guest under libvirt: its kernel and initramfs come from
        // the x86_64 capture.
        capture_unlocked("x86_64")?;
        cmd.arg(repo_root().join("scripts/guest/capture-virsh.sh"))
            .arg(&dir);
    } else {
        match kdump_smp {
            Some(smp) => {
                cmd.arg(repo_root().join("scripts/guest/capture-kdump.sh"))
                    .arg(&dir)
                    .env("GUESTCORE_SMP", smp);
                if is_aarch64(guest) {
                    cmd.env("GUESTCORE_ARCH", "aarch64");
                }
                if let Some(n) = crash_cpu {
                    cmd.env("GUESTCORE_CRASH_CPU", n);
                }
                &mut cmd
            }
            None => cmd
                .arg(repo_root().join("scripts/guest/capture.sh"))
                .arg(guest),
        };
    }
    let out = cmd
        .env("GUESTCORE_CACHE", cache_dir())
        .output()
        .expect("run the capture script");
    if out.status.code() == Some(77) {
        skip(format_args!(
            "{guest}: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("guest unavailable")
        ));
        return None;
    }
    assert!(
        out.status.success(),
        "capturing {guest} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dir)
}
