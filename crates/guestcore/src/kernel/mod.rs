//! The Linux kernels in guest memory: found from their VMCOREINFO, each with its own page
//! tables, and what the vCPUs and kdump say about them.
//!
//! A guest caught while its kdump capture kernel runs holds two kernels: the capture kernel,
//! whose tables the vCPUs run, and the crashed kernel the user wants to debug. A guest with
//! paging off, or a raw image with no CPU state, holds a kernel but no usable CR3. So kernels
//! are found from memory itself (`scan`): every VMCOREINFO note at a page start, and every
//! kdump ELF core header (`elfcorehdr`). Each kernel's page-table root and mode come from its
//! VMCOREINFO (`layout`); its role is
//!
//! * `crashed` — a kdump core header in RAM points at its VMCOREINFO note and at the
//!   registers its CPUs saved at the crash (a header whose CPU notes are still empty belongs to
//!   a kernel armed for kdump that did not crash). A crashed kernel is never `running`, even
//!   when vCPUs still run its tables: the CPUs a crash stops stay parked in it while the
//!   capture kernel runs on the one that crashed;
//! * `running` — not crashed, and a vCPU's page tables map the kernel's `init_uts_ns` to where
//!   this kernel's image keeps it (the vCPUs are named);
//! * `other` — found, role unknown.
//!
//! A crashed kernel whose CPU still sits in its stop loop is `crashed` and names that vCPU.
//!
//! Besides its role, a kernel that did not crash is the *capture kernel* of a crashed one
//! ([`Kernel::capture_of`]) when its VMCOREINFO note lies in RAM that kernel's core header
//! leaves out of its PT_LOADs: the crashkernel reservation, where kdump loads the capture
//! kernel. That needs no vCPU state, so it holds for inputs whose vCPUs cannot be walked
//! (QEMU's aarch64 ELF dumps carry no TTBR/TCR), where the capture kernel's role is `other`.

mod dmesg;
mod elfcorehdr;
mod layout;
pub(crate) mod scan;
mod utsname;
pub(crate) mod vread;

pub use dmesg::kernel_log;
pub use elfcorehdr::CrashHeader;
pub use layout::{KernelLayout, LayoutError};
pub use scan::UnreadablePages;
pub(crate) use utsname::read_utsname;

use crate::cpu::CpuState;
use crate::format::note::ElfNote;
use crate::format::vmcoreinfo::{vmcoreinfo_get, vmcoreinfo_symbol};
use crate::paging::{translate, PagingMode};
use crate::phys::PhysMemory;
use serde::Serialize;

/// What a kernel is to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelRole {
    /// A vCPU runs its page tables.
    Running,
    /// A kdump core header describes it: it crashed, and a capture kernel was started.
    Crashed,
    /// Found, role unknown.
    Other,
}

impl KernelRole {
    /// The role's name as `kernels` prints it.
    pub fn name(self) -> &'static str {
        match self {
            KernelRole::Running => "running",
            KernelRole::Crashed => "crashed",
            KernelRole::Other => "other",
        }
    }
}

/// One kernel found in guest memory.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// Position in [`find_kernels`]'s list (the `--kernel N` selector).
    pub index: usize,
    /// `OSRELEASE`.
    pub release: String,
    /// Whether a vCPU runs it, it crashed, or neither.
    pub role: KernelRole,
    /// Physical address of its VMCOREINFO note in RAM (`None`: only the input's notes hold it).
    pub vmcoreinfo_addr: Option<u64>,
    /// True when the input's own VMCOREINFO note is this kernel's.
    pub in_input_notes: bool,
    /// The VMCOREINFO text.
    pub vmcoreinfo: Vec<u8>,
    /// Page-table root and mode, or why VMCOREINFO does not give them.
    pub layout: Result<KernelLayout, LayoutError>,
    /// vCPUs whose page tables reach this kernel's image.
    pub cpus: Vec<u32>,
    /// The kdump core header that describes it (crashed kernels).
    pub crash: Option<CrashHeader>,
    /// The index of the crashed kernel this one is the kdump capture kernel of: its
    /// VMCOREINFO lies in the RAM that kernel's core header leaves out (the reservation).
    pub capture_of: Option<usize>,
}

impl Kernel {
    /// The NT_PRSTATUS notes saved at the crash (empty unless crashed).
    pub fn crash_notes(&self) -> &[ElfNote] {
        self.crash.as_ref().map_or(&[], |c| &c.prstatus)
    }

    /// The paging mode that walks this kernel's own tables.
    pub fn paging_mode(&self) -> Option<PagingMode> {
        self.layout.as_ref().ok()?.paging_mode().ok()
    }
}

/// Every kernel found, in order: those in RAM by address, then the input's note when it is
/// none of them.
#[derive(Clone, Debug, Default)]
pub struct KernelScan {
    /// The kernels; [`Kernel::index`] is the position here.
    pub kernels: Vec<Kernel>,
    /// True when the scan met more candidates than it keeps ([`scan::MAX_FOUND`]).
    pub truncated: bool,
    /// Pages the scan could not read: a kernel whose VMCOREINFO lies in one is not listed.
    pub unreadable: scan::UnreadablePages,
}

/// Which of the kernels found a request means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelSelector {
    /// The kernel a kdump capture kernel was started for (its ELF core header is in RAM).
    Crashed,
    /// A kernel no kdump core header describes (it did not crash) and that a vCPU runs: the
    /// one the first such vCPU runs; without one, the only kernel that did not crash.
    Running,
    /// The kernel at this index of [`KernelScan::kernels`].
    Index(usize),
}

impl std::str::FromStr for KernelSelector {
    type Err = crate::Error;
    /// `crashed`, `running` or an index.
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "crashed" => Ok(KernelSelector::Crashed),
            "running" => Ok(KernelSelector::Running),
            n => n
                .parse()
                .map(KernelSelector::Index)
                .map_err(|_| crate::Error::Parse {
                    what: "kernel selector",
                    detail: format!("crashed, running or an index, not {n:?}"),
                }),
        }
    }
}

/// As [`FromStr`](std::str::FromStr) reads it.
impl std::fmt::Display for KernelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelSelector::Crashed => f.write_str("crashed"),
            KernelSelector::Running => f.write_str("running"),
            KernelSelector::Index(i) => write!(f, "{i}"),
        }
    }
}

impl KernelScan {
    /// The kernel `selector` names; [`Error::NoKernel`](crate::Error::NoKernel) says why none
    /// and lists the kernels found.
    pub fn select(&self, selector: KernelSelector, cpus: &[CpuState]) -> crate::Result<&Kernel> {
        let missing = |why: String| crate::Error::NoKernel {
            selector: selector.to_string(),
            why,
            found: self
                .kernels
                .iter()
                .map(|k| format!("{} {} ({})", k.index, k.release, k.role.name()))
                .collect(),
        };
        match selector {
            KernelSelector::Crashed => {
                let c: Vec<_> = self
                    .kernels
                    .iter()
                    .filter(|k| k.role == KernelRole::Crashed)
                    .collect();
                match c[..] {
                    [k] => Ok(k),
                    [] => Err(missing(
                        "no crashed kernel (no kdump ELF core header in RAM)".into(),
                    )),
                    _ => Err(missing(format!(
                        "{} crashed kernels: select one by index",
                        c.len()
                    ))),
                }
            }
            KernelSelector::Running => {
                // A kernel no crash header describes, that a vCPU runs: the one the first such
                // vCPU runs, whichever vCPUs stay parked in a crashed kernel.
                let running = |i: u32| {
                    self.kernels
                        .iter()
                        .find(|k| k.role == KernelRole::Running && k.cpus.contains(&i))
                };
                if let Some(k) = cpus
                    .iter()
                    .filter(|c| c.paging_enabled())
                    .find_map(|c| running(c.index()))
                {
                    return Ok(k);
                }
                let not_crashed: Vec<_> = self
                    .kernels
                    .iter()
                    .filter(|k| k.role != KernelRole::Crashed)
                    .collect();
                match &not_crashed[..] {
                    [k] => Ok(k),
                    [] if !self.kernels.is_empty() => Err(missing(
                        "every kernel found crashed (--kernel crashed reads it)".into(),
                    )),
                    _ => Err(missing(
                        "no single running kernel; select one by index".into(),
                    )),
                }
            }
            KernelSelector::Index(i) => self
                .kernels
                .get(i)
                .ok_or_else(|| missing(format!("there is no kernel {i}"))),
        }
    }
}

/// True when `mode`'s tables map the kernel-image address `sym` to where `layout` puts it: the
/// tables are that kernel's (or share its kernel half).
fn maps_image(
    mem: &(impl PhysMemory + ?Sized),
    mode: &PagingMode,
    layout: &KernelLayout,
    sym: u64,
) -> bool {
    layout
        .image_phys(sym)
        .is_some_and(|pa| translate(mem, mode, sym).is_ok_and(|t| t.paddr == pa))
}

/// True when `mode`'s tables run the kernel `vmcoreinfo` describes: they map its
/// `init_uts_ns` onto its image. Costs one translation, no scan of RAM.
pub fn tables_run(mem: &(impl PhysMemory + ?Sized), mode: &PagingMode, vmcoreinfo: &[u8]) -> bool {
    match (
        KernelLayout::from_vmcoreinfo(vmcoreinfo),
        vmcoreinfo_symbol(vmcoreinfo, "init_uts_ns"),
    ) {
        (Ok(l), Some(sym)) => maps_image(mem, mode, &l, sym),
        _ => false,
    }
}

/// The kernel `vmcoreinfo` describes, without a scan of RAM: its layout, the vCPUs that run
/// its tables, and its role (crashed when `crash` is its kdump core header). `index` is 0 and
/// `in_input_notes` false; [`find_kernels`] sets them.
pub fn describe(
    mem: &(impl PhysMemory + ?Sized),
    cpus: &[CpuState],
    vmcoreinfo: Vec<u8>,
    addr: Option<u64>,
    crash: Option<CrashHeader>,
) -> Kernel {
    let release = vmcoreinfo_get(&vmcoreinfo, "OSRELEASE")
        .unwrap_or("?")
        .to_string();
    let layout = KernelLayout::from_vmcoreinfo(&vmcoreinfo);
    let mut cpu_list = Vec::new();
    if let (Ok(l), Some(sym)) = (&layout, vmcoreinfo_symbol(&vmcoreinfo, "init_uts_ns")) {
        cpu_list = cpus
            .iter()
            .filter(|c| c.paging_enabled())
            .filter(|c| PagingMode::from_state(c).is_ok_and(|m| maps_image(mem, &m, l, sym)))
            .map(|c| c.index())
            .collect();
    }
    let role = if crash.is_some() {
        KernelRole::Crashed
    } else if !cpu_list.is_empty() {
        KernelRole::Running
    } else {
        KernelRole::Other
    };
    Kernel {
        index: 0,
        release,
        role,
        vmcoreinfo_addr: addr,
        in_input_notes: false,
        vmcoreinfo,
        layout,
        cpus: cpu_list,
        crash,
        capture_of: None,
    }
}

/// Finds the kernels in `mem`: VMCOREINFO notes and kdump core headers in RAM, plus the
/// input's own VMCOREINFO; `cpus` name the running ones.
pub fn find_kernels(
    mem: &(impl PhysMemory + ?Sized),
    cpus: &[CpuState],
    input_vmcoreinfo: Option<&[u8]>,
) -> KernelScan {
    kernels_from(mem, cpus, input_vmcoreinfo, scan::scan(mem))
}

/// [`find_kernels`] over only the page starts `heads` saw as a stream pushed the pages:
/// the same kernels, without a second pass over RAM.
pub(crate) fn find_kernels_among(
    mem: &(impl PhysMemory + ?Sized),
    cpus: &[CpuState],
    input_vmcoreinfo: Option<&[u8]>,
    heads: &scan::PageHeads,
) -> KernelScan {
    kernels_from(mem, cpus, input_vmcoreinfo, scan::scan_heads(mem, heads))
}

fn kernels_from(
    mem: &(impl PhysMemory + ?Sized),
    cpus: &[CpuState],
    input_vmcoreinfo: Option<&[u8]>,
    found: scan::Found,
) -> KernelScan {
    // A header is in RAM as soon as a crash kernel is loaded (`kexec -p`); only a crash fills
    // its CPU notes. A kernel armed for kdump that did not crash is not `crashed`.
    let headers: Vec<CrashHeader> = found
        .core_headers
        .iter()
        .filter_map(|&a| elfcorehdr::read_crash_header(mem, a))
        .filter(|h| !h.prstatus.is_empty())
        .collect();
    let make = |text: Vec<u8>, addr: Option<u64>| -> Kernel {
        let crash = addr.and_then(|a| headers.iter().find(|h| h.note_addrs.contains(&a)).cloned());
        let mut k = describe(mem, cpus, text, addr, crash);
        k.in_input_notes = input_vmcoreinfo == Some(&k.vmcoreinfo[..]);
        k
    };
    let mut kernels: Vec<Kernel> = found
        .vmcoreinfo
        .into_iter()
        .map(|v| make(v.text, Some(v.addr)))
        .collect();
    if let Some(text) = input_vmcoreinfo.filter(|t| !t.is_empty()) {
        if !kernels.iter().any(|k| k.vmcoreinfo == text) {
            kernels.push(make(text.to_vec(), None));
        }
    }
    for (i, k) in kernels.iter_mut().enumerate() {
        k.index = i;
    }
    let capture_of = capture_kernels_of(mem, &kernels);
    for (k, of) in kernels.iter_mut().zip(capture_of) {
        k.capture_of = of;
    }
    KernelScan {
        kernels,
        truncated: found.truncated,
        unreadable: found.unreadable,
    }
}

/// For each kernel, the index of the crashed kernel it is the capture kernel of: it did not
/// crash, and its VMCOREINFO note lies in RAM exactly one crashed kernel's core header leaves
/// out.
fn capture_kernels_of(mem: &(impl PhysMemory + ?Sized), kernels: &[Kernel]) -> Vec<Option<usize>> {
    kernels
        .iter()
        .map(|k| {
            let at = k.vmcoreinfo_addr.filter(|_| k.crash.is_none())?;
            if !mem.is_ram(at, 1) {
                return None;
            }
            let mut of = kernels
                .iter()
                .filter(|c| c.crash.as_ref().is_some_and(|h| h.leaves_out(at)))
                .map(|c| c.index);
            match (of.next(), of.next()) {
                (Some(c), None) => Some(c),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phys::VecMemory;

    fn note(text: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        ElfNote::new(b"VMCOREINFO", 0, text.to_vec()).encode_into(&mut d);
        d
    }

    #[test]
    fn finds_notes_at_page_starts_and_dedups_the_input_note() {
        let mut ram = vec![0u8; 64 << 12];
        let a =
            b"OSRELEASE=6.1.0-a\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffff81010000\nNUMBER(phys_base)=0\n";
        let b = b"OSRELEASE=6.1.0-b\nPAGESIZE=4096\n";
        ram[3 << 12..][..note(a).len()].copy_from_slice(&note(a));
        ram[9 << 12..][..note(b).len()].copy_from_slice(&note(b));
        // Not at a page start: not a note the kernel wrote.
        ram[(11 << 12) + 8..][..note(b).len()].copy_from_slice(&note(b));
        let mem = VecMemory::flat(ram);
        let scan = find_kernels(&mem, &[], Some(&a[..]));
        assert_eq!(scan.kernels.len(), 2);
        let k = &scan.kernels[0];
        assert_eq!(
            (k.release.as_str(), k.vmcoreinfo_addr),
            ("6.1.0-a", Some(3 << 12))
        );
        assert!(k.in_input_notes);
        assert_eq!(k.layout.as_ref().unwrap().root, 0x101_0000);
        assert!(scan.kernels[1].layout.is_err());
        let sel = |s: &str| s.parse::<KernelSelector>().unwrap();
        let err = scan.select(sel("running"), &[]).unwrap_err().to_string();
        assert!(err.contains("no single running"), "{err}");
        assert!(err.contains("kernels found: 0 6.1.0-a"), "{err}");
        assert_eq!(scan.select(sel("1"), &[]).unwrap().release, "6.1.0-b");
        assert!(scan.select(sel("crashed"), &[]).is_err());
        assert!(scan.select(sel("7"), &[]).is_err());
        let bad = "first".parse::<KernelSelector>().unwrap_err().to_string();
        assert!(bad.contains("crashed, running or an index"), "{bad}");
        for s in ["crashed", "running", "3"] {
            assert_eq!(sel(s).to_string(), s);
        }
    }

    /// An aarch64 kdump core header as kexec-tools leaves it: `(p_type, paddr, memsz)` each.
    fn crash_header(phdrs: &[(u32, u64, u64)]) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        h[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
        h[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
        h[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for &(p_type, at, len) in phdrs {
            let mut p = vec![0u8; 56];
            p[..4].copy_from_slice(&p_type.to_le_bytes());
            p[8..16].copy_from_slice(&at.to_le_bytes());
            p[24..32].copy_from_slice(&at.to_le_bytes());
            p[32..40].copy_from_slice(&len.to_le_bytes());
            p[40..48].copy_from_slice(&len.to_le_bytes());
            h.extend_from_slice(&p);
        }
        h
    }

    #[test]
    fn the_kernel_in_the_ram_a_crash_header_leaves_out_is_its_capture_kernel() {
        const P: usize = 4096;
        let mut ram = vec![0u8; 64 * P];
        let put = |ram: &mut Vec<u8>, at: usize, d: &[u8]| ram[at..][..d.len()].copy_from_slice(d);
        put(
            &mut ram,
            3 * P,
            &note(b"OSRELEASE=6.1.0-crashed\nPAGESIZE=4096\n"),
        );
        // A stale note in the crashed kernel's RAM: not a capture kernel.
        put(
            &mut ram,
            10 * P,
            &note(b"OSRELEASE=6.1.0-stale\nPAGESIZE=4096\n"),
        );
        // The reservation is pages 32..48; the capture kernel's note and the header are there.
        put(
            &mut ram,
            36 * P,
            &note(b"OSRELEASE=6.1.0-capture\nPAGESIZE=4096\n"),
        );
        let mut crash_notes = Vec::new();
        ElfNote::new(b"CORE", 1, vec![0; 392]).encode_into(&mut crash_notes);
        put(&mut ram, 20 * P, &crash_notes);
        let header = crash_header(&[
            (4, 20 * P as u64, 1024),
            (4, 3 * P as u64, 4096),
            // kexec-tools 2.0.25's kernel-text PT_LOAD on arm64 6.1: its end overflows.
            (1, 0x3e7d_b8c0_0000, 0xffff_c182_8961_0000),
            (1, 0, 32 * P as u64),
            (1, 48 * P as u64, 16 * P as u64),
        ]);
        put(&mut ram, 40 * P, &header);
        let mem = VecMemory::flat(ram);
        let scan = find_kernels(&mem, &[], None);
        let got: Vec<_> = scan
            .kernels
            .iter()
            .map(|k| (k.release.as_str(), k.role, k.capture_of))
            .collect();
        assert_eq!(
            got,
            [
                ("6.1.0-crashed", KernelRole::Crashed, None),
                ("6.1.0-stale", KernelRole::Other, None),
                ("6.1.0-capture", KernelRole::Other, Some(0)),
            ]
        );
        let h = scan.kernels[0].crash.as_ref().unwrap();
        assert_eq!(h.loads, [0..32 * P as u64, 48 * P as u64..64 * P as u64]);
        assert_eq!(h.prstatus.len(), 1);
        // A header with no usable PT_LOAD leaves nothing out: no capture kernel from it.
        assert!(!CrashHeader {
            loads: Vec::new(),
            ..h.clone()
        }
        .leaves_out(36 * P as u64));
    }

    #[test]
    fn thousands_of_fake_notes_are_bounded() {
        let n = note(b"OSRELEASE=fake\nPAGESIZE=4096\n");
        let mut ram = vec![0u8; 2000 << 12];
        for p in 0..2000 {
            ram[p << 12..][..n.len()].copy_from_slice(&n);
        }
        let mem = VecMemory::flat(ram);
        let scan = find_kernels(&mem, &[], None);
        assert_eq!(scan.kernels.len(), scan::MAX_FOUND);
        assert!(scan.truncated);
    }
}
