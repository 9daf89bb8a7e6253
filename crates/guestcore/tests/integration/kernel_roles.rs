//! Kernel roles and the default view behind a kdump capture kernel do not depend on which vCPU
//! crashed: a synthetic guest holds a crashed kernel (a kdump core header with a saved CPU note
//! describes it) and a capture kernel, on two vCPUs, with the crash on either of them.

use guestcore::cpu::X86CpuState;
use guestcore::format::ElfNote;
use guestcore::paging::ModeKind;
use guestcore::{Guest, GuestOptions, KernelRole, KernelSelector, Notice, ViewSpec};
use guestcore_testkit::fixture::write_qemu_like_core;
use guestcore_testkit::{GuestBuilder, MapFlags};
use std::sync::{Arc, Mutex};

const K: u64 = 0xffff_ffff_8000_0000;
/// The capture kernel is the crashed one moved up by this much (its own image and tables).
const SHIFT: u64 = 8 << 20;
const CORE_HEADER: u64 = 0x30_0000;
const CRASH_NOTES: u64 = 0x31_0000;

fn vmcoreinfo(release: &str, phys_base: u64) -> Vec<u8> {
    format!(
        "OSRELEASE={release}\nPAGESIZE=4096\nSYMBOL(init_top_pgt)={:x}\nSYMBOL(init_uts_ns)={:x}\nNUMBER(phys_base)={phys_base}\n",
        K + 0x60_0000,
        K + 0x20_0000
    )
    .into_bytes()
}

/// A kdump ELF core header (as kexec leaves it) whose PT_NOTEs point at `notes`.
fn core_header(notes: &[(u64, u64)]) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    h[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
    h[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    h[52..54].copy_from_slice(&64u16.to_le_bytes());
    h[54..56].copy_from_slice(&56u16.to_le_bytes());
    h[56..58].copy_from_slice(&(notes.len() as u16).to_le_bytes());
    for &(addr, len) in notes {
        let mut p = vec![0u8; 56];
        p[..4].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
        p[8..16].copy_from_slice(&addr.to_le_bytes());
        p[24..32].copy_from_slice(&addr.to_le_bytes());
        p[32..40].copy_from_slice(&len.to_le_bytes());
        p[40..48].copy_from_slice(&len.to_le_bytes());
        h.extend_from_slice(&p);
    }
    h
}

/// The two-kernel guest, `crashed_cpu` being the vCPU that crashed (so it runs the capture
/// kernel) and the other parked in the crashed kernel. Returns the ELF core's path; `armed`
/// leaves the crash notes empty (a crash kernel loaded, no crash yet).
fn capture(dir: &std::path::Path, crashed_cpu: u32, armed_only: bool) -> std::path::PathBuf {
    let mut crashed = GuestBuilder::new(ModeKind::Level4, 16 << 20).tables_at(0x60_0000);
    crashed.map(K, 0, 4 << 20, MapFlags::WRITE);
    let mut capture = GuestBuilder::new(ModeKind::Level4, 16 << 20).tables_at(0x60_0000 + SHIFT);
    capture.map(K, SHIFT, 4 << 20, MapFlags::WRITE);
    let crashed_root = crashed.root();
    let capture_root = capture.root();
    // The capture kernel's tables and data live in its own 8 MiB: copy them over.
    let mut page = vec![0u8; 4096];
    for pa in (SHIFT..2 * SHIFT).step_by(4096) {
        guestcore::phys::PhysMemory::read_at(capture.memory(), pa, &mut page).unwrap();
        crashed.write_phys(pa, &page);
    }
    let mut note = Vec::new();
    ElfNote::new(b"VMCOREINFO", 0, vmcoreinfo("6.1.0-crashed", 0)).encode_into(&mut note);
    crashed.write_phys(0x5000, &note);
    let mut note = Vec::new();
    ElfNote::new(b"VMCOREINFO", 0, vmcoreinfo("6.1.0-capture", SHIFT)).encode_into(&mut note);
    crashed.write_phys(SHIFT + 0x5000, &note);
    let mut prstatus = Vec::new();
    if !armed_only {
        ElfNote::new(b"CORE", 1, vec![0; 336]).encode_into(&mut prstatus);
    }
    prstatus.extend_from_slice(&[0; 12]);
    crashed.write_phys(CRASH_NOTES, &prstatus);
    crashed.write_phys(
        CORE_HEADER,
        &core_header(&[(CRASH_NOTES, 1024), (0x5000, 4096)]),
    );
    let (mem, cpu) = crashed.build();
    let on = |index: u32, root: u64| {
        let mut c = X86CpuState {
            index,
            ..cpu.clone()
        };
        c.cr[3] = root;
        c
    };
    let cpus = [0, 1].map(|i| {
        on(
            i,
            if i == crashed_cpu {
                capture_root
            } else {
                crashed_root
            },
        )
    });
    let path = dir.join(format!("crash-on-{crashed_cpu}-{armed_only}.elf"));
    write_qemu_like_core(&path, &mem, &cpus, None).unwrap();
    path
}

#[test]
fn roles_and_the_default_view_are_the_same_whichever_vcpu_crashed() {
    let dir = tempfile::tempdir().unwrap();
    for crashed_cpu in [0, 1] {
        let path = capture(dir.path(), crashed_cpu, false);
        let notices = Arc::new(Mutex::new(Vec::new()));
        let n = notices.clone();
        let opts = GuestOptions::default()
            .with_notices(move |x: &Notice| n.lock().unwrap().push(format!("{x:?}")));
        let guest = Guest::open(&path, &opts).unwrap();
        let scan = guest.kernels();
        let roles: Vec<_> = scan
            .kernels
            .iter()
            .map(|k| (k.release.as_str(), k.role, k.cpus.clone()))
            .collect();
        let parked = 1 - crashed_cpu;
        assert_eq!(
            roles,
            [
                ("6.1.0-crashed", KernelRole::Crashed, vec![parked]),
                ("6.1.0-capture", KernelRole::Running, vec![crashed_cpu]),
            ],
            "crash on vCPU {crashed_cpu}"
        );
        assert_eq!(
            scan.select(KernelSelector::Running, guest.cpus())
                .unwrap()
                .release,
            "6.1.0-capture",
            "crash on vCPU {crashed_cpu}"
        );
        assert_eq!(guest.parked_in_crashed(), [(parked, 0)]);
        let view = guest.select(&ViewSpec::FirstPaging, None).unwrap();
        assert_eq!(
            view.first().unwrap().cpu.index(),
            crashed_cpu,
            "the default view is the capture kernel's vCPU; notices {:?}",
            notices.lock().unwrap()
        );
        let log = notices.lock().unwrap().join("\n");
        assert!(
            crashed_cpu == 0 || log.contains("parked: [(0, 0)]"),
            "crash on vCPU {crashed_cpu}: {log}"
        );
    }
}

#[test]
fn a_kernel_armed_for_kdump_that_did_not_crash_is_not_crashed() {
    // The core header is in RAM as soon as `kexec -p` loads the crash kernel; its CPU notes
    // stay empty until a crash.
    let dir = tempfile::tempdir().unwrap();
    let path = capture(dir.path(), 1, true);
    let guest = Guest::open(&path, &GuestOptions::default()).unwrap();
    let roles: Vec<_> = guest.kernels().kernels.iter().map(|k| k.role).collect();
    assert_eq!(roles, [KernelRole::Running, KernelRole::Running]);
    assert!(guest.parked_in_crashed().is_empty());
}
