//! Dumps through the facade: what goes into a core file is decided here, once, for every caller.
//!
//! A dump describes one kernel. Its VMCOREINFO and CPU notes must belong to the tables its
//! PT_LOADs were made from, or crash and drgn read one kernel's memory with another's symbols.
//! So the choices are made together:
//!
//! * the **kernel**: the one a kernel view selected; for `--paging`, the one whose tables the
//!   walked vCPUs run (with paging off, the only kernel with usable tables); for a dump level,
//!   the one whose page array filters the dump (the input's own VMCOREINFO first, as
//!   makedumpfile reads its input's);
//! * the **VMCOREINFO**: that kernel's, else the input's; none when the input's describes a
//!   kernel the walked tables do not run;
//! * the **CPU notes**: a crashed kernel's saved registers; else the input's own notes, byte
//!   for byte, unless the caller replaced the CPU state; else notes built from the registers;
//! * the **pages**: with a dump level, a page filter from that kernel's page array, which
//!   never drops the VMCOREINFO note, the crash header and the crash notes.

use super::{Guest, Notice, View, VmcoreinfoFrom};
use crate::addr::PhysRange;
use crate::dump::kdump::{
    write_kdump, write_kdump_to, BlockSize, Compression, KdumpMachine, KdumpOptions, KdumpRequest,
};
use crate::dump::notes::{dump_notes, CpuNotes};
use crate::dump::{
    write_elf_core, DumpFormat, DumpLayout, DumpOutcome, ElfDumpRequest, ElfMachine, KdumpOutcome,
    OutputOptions,
};
use crate::dump_level::{page_filter, DumpLevel, FilterReport, KernelPages, PageFilter};
use crate::format::kdump::NewUtsname;
use crate::format::ElfNote;
use crate::kernel::{describe, read_utsname, Kernel, KernelRole};
use crate::mapping::{union_of_views, MappingList};
use crate::paging::{ModeKind, PagingMode};
use crate::progress::{NoProgress, Progress};
use crate::{Error, Result};
use std::path::PathBuf;

/// Which addresses an ELF dump's PT_LOADs carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DumpLayoutSpec {
    /// One PT_LOAD per physical RAM range (`p_vaddr = p_paddr`): safe when the page tables are
    /// corrupt or belong to another kernel.
    #[default]
    Physical,
    /// One PT_LOAD per mapping of the view's tables (`p_vaddr` and `p_paddr`), for gdb; with
    /// several vCPUs, the union of their mappings.
    Paging,
}

/// What to dump, and where.
#[derive(Clone, Debug)]
pub struct DumpSpec {
    /// The file to write (through a temporary file beside it, renamed at the end).
    pub output: PathBuf,
    /// The format.
    pub format: DumpFormat,
    /// Physical or paging (ELF only).
    pub layout: DumpLayoutSpec,
    /// Only this physical window (an `end` of `u64::MAX`: to the end of RAM).
    pub range: Option<PhysRange>,
    /// Pages to leave out, as `makedumpfile -d N`.
    pub level: DumpLevel,
    /// kdump only: makedumpfile's flattened stream.
    pub flatten: bool,
    /// Replace `output` if it exists.
    pub force: bool,
    /// How a live input is held while its pages are read ([`Guest::dump_input`]); ignored
    /// for files.
    pub live: LiveCapture,
}

/// How a dump of a running guest gets one instant of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LiveCapture {
    /// A QEMU background snapshot (the guest stopped for milliseconds) when the dump is one a
    /// snapshot can give ([`DumpSpec::snapshot_blocker`]) and QEMU can take one; otherwise a
    /// pause, with a [`Notice::NoSnapshot`] saying why.
    #[default]
    Auto,
    /// Stop the guest while its RAM is copied into memory, then resume it and write.
    Pause,
    /// Read the guest while it runs: no stop, but pages and registers from different moments.
    NoPause,
}

/// Why a dump cannot come from a QEMU background snapshot, which gives all of RAM, with every
/// vCPU's registers from the snapshot itself, as pages arrive in no set order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotBlocker {
    /// A flattened kdump stream is written in pfn order.
    Flattened,
    /// A dump level that reads the kernel's page array (above 1 for kdump; any for ELF).
    DumpLevel {
        /// True for an ELF core (its levels all read the page array first).
        elf: bool,
    },
    /// A paging layout for a kdump file.
    PagingKdump,
    /// A physical window (`range`): a snapshot dumps all of RAM.
    Range,
    /// Registers or tables named by the caller (overrides, a vCPU, a kernel, a root): a
    /// snapshot's come from the snapshot itself.
    Registers,
}

impl DumpSpec {
    /// A physical dump of all RAM into `output`, at dump level 0.
    pub fn new(output: impl Into<PathBuf>, format: DumpFormat) -> Self {
        DumpSpec {
            output: output.into(),
            format,
            layout: DumpLayoutSpec::Physical,
            range: None,
            level: DumpLevel::default(),
            flatten: false,
            force: false,
            live: LiveCapture::Auto,
        }
    }

    /// Why this dump is not one a QEMU background snapshot can give, or `None`: a snapshot
    /// gives an ELF core (physical, or paging from the snapshot's own page tables), or a
    /// plain (not flattened) kdump file at dump level 0 or 1, of all of RAM.
    pub fn snapshot_blocker(&self) -> Option<SnapshotBlocker> {
        match self.format {
            DumpFormat::Kdump(_) if self.flatten => return Some(SnapshotBlocker::Flattened),
            DumpFormat::Kdump(_) if self.layout == DumpLayoutSpec::Paging => {
                return Some(SnapshotBlocker::PagingKdump)
            }
            DumpFormat::Kdump(_) if self.level.bits() > DumpLevel::ZERO => {
                return Some(SnapshotBlocker::DumpLevel { elf: false })
            }
            DumpFormat::Elf(_) if self.level.bits() > 0 => {
                return Some(SnapshotBlocker::DumpLevel { elf: true })
            }
            _ => {}
        }
        if self.range.is_some() {
            return Some(SnapshotBlocker::Range);
        }
        None
    }
}

/// Everything a dump's content was decided to be, before any byte is written (or, for pages
/// pushed by a stream, before the file is completed).
pub(super) struct Plan {
    pub(super) vmcoreinfo: Option<Vec<u8>>,
    /// The described kernel's `uname` strings, read from its `init_uts_ns` (kdump headers).
    pub(super) utsname: Option<NewUtsname>,
    pub(super) mappings: Option<MappingList>,
    pub(super) notes: Vec<ElfNote>,
    pub(super) nr_cpus: usize,
    pub(super) machine: ElfMachine,
    /// A kdump file's block: the described kernel's page size (4 KiB without one).
    pub(super) block_size: BlockSize,
    filter: Option<PageFilter>,
}

/// What a plan is for: it decides the same things, but a dry run builds no mappings, and
/// pages pushed by a stream are kept whole (a snapshot's dump levels need no page array: its
/// writers keep zero pages themselves).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PlanFor {
    /// A dump pulled from an opened input.
    Write,
    /// Counting what a dump level leaves out.
    DryRun,
    /// The end of a dump whose pages a stream pushed.
    Stream,
}

/// The block of a kdump file describing the kernel whose VMCOREINFO is `vmcoreinfo`: its
/// `PAGESIZE` (readers number a kdump file's blocks by the kernel's page size); 4 KiB without
/// a VMCOREINFO or a `PAGESIZE` in it. A page size no kdump block can be is an error.
pub(super) fn kdump_block_size(vmcoreinfo: Option<&[u8]>) -> Result<BlockSize> {
    let page = vmcoreinfo.and_then(|t| crate::format::vmcoreinfo::vmcoreinfo_get(t, "PAGESIZE"));
    match page {
        None => Ok(BlockSize::KIB_4),
        Some(p) => p
            .trim()
            .parse::<u64>()
            .map_err(|_| {
                Error::Unsupported(format!(
                    "the kernel's PAGESIZE {:?} is not a number",
                    p.trim()
                ))
            })
            .and_then(BlockSize::new),
    }
}

/// The kdump machine of a dump whose ELF machine is `machine`.
pub(super) fn kdump_machine(machine: ElfMachine) -> KdumpMachine {
    match machine {
        ElfMachine::X86_64 => KdumpMachine::X86_64,
        ElfMachine::I386 => KdumpMachine::I686,
        ElfMachine::Aarch64 => KdumpMachine::Aarch64,
    }
}

impl Guest {
    /// Writes the dump `spec` asks for of what `view` looks at. A live guest this session
    /// holds stopped has its RAM copied and is resumed first.
    ///
    /// ```no_run
    /// use guestcore::NoProgress;
    /// use guestcore::{DumpFormat, DumpLayoutSpec, DumpOutcome, DumpSpec, ElfClass};
    /// use guestcore::{Guest, GuestOptions, ViewSpec};
    ///
    /// # fn main() -> guestcore::Result<()> {
    /// let mut guest = Guest::open("guest.kdump", &GuestOptions::default())?;
    /// // An ELF core of every vCPU's mappings, for gdb.
    /// let view = guest.select(&ViewSpec::AllCpus, None)?;
    /// let spec = DumpSpec {
    ///     layout: DumpLayoutSpec::Paging,
    ///     force: true,
    ///     ..DumpSpec::new("vmcore.elf", DumpFormat::Elf(ElfClass::Elf64))
    /// };
    /// if let DumpOutcome::Elf { paging: false, .. } = guest.dump(&view, &spec, &NoProgress)? {
    ///     eprintln!("paging is off: the core has the physical layout");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn dump(
        &mut self,
        view: &View,
        spec: &DumpSpec,
        progress: &dyn Progress,
    ) -> Result<DumpOutcome> {
        self.detach_for_dump(progress)?;
        let plan = self.plan_dump(view, spec, PlanFor::Write, progress)?;
        let excluded = plan.filter.as_ref().map(|f| f.excluded());
        let memory = &*self.image.memory;
        match spec.format {
            DumpFormat::Kdump(compression) => {
                let req = self.kdump_request(&plan, spec, compression);
                let summary = write_kdump(&req, &spec.output, &KdumpOptions::default(), progress)?;
                Ok(DumpOutcome::Kdump(KdumpOutcome {
                    summary,
                    compression,
                }))
            }
            DumpFormat::Elf(class) => {
                let req = ElfDumpRequest {
                    memory,
                    notes: &plan.notes,
                    machine: plan.machine,
                    class,
                    layout: match &plan.mappings {
                        Some(m) => DumpLayout::Paging(m),
                        None => DumpLayout::Physical,
                    },
                    filter: self.range(spec),
                    excluded,
                };
                let opts = OutputOptions { force: spec.force };
                let summary = write_elf_core(&req, &spec.output, &opts, progress)?;
                Ok(DumpOutcome::Elf {
                    summary,
                    paging: plan.mappings.is_some(),
                })
            }
        }
    }

    /// A kdump dump as makedumpfile's flattened stream into `out` (a pipe, stdout).
    pub fn dump_kdump_stream(
        &mut self,
        view: &View,
        spec: &DumpSpec,
        out: &mut dyn std::io::Write,
        progress: &dyn Progress,
    ) -> Result<KdumpOutcome> {
        let DumpFormat::Kdump(compression) = spec.format else {
            return Err(Error::Unsupported(
                "a dump stream is a flattened kdump file: ELF cores need a seekable file".into(),
            ));
        };
        self.detach_for_dump(progress)?;
        let plan = self.plan_dump(view, spec, PlanFor::Write, progress)?;
        let mut req = self.kdump_request(&plan, spec, compression);
        req.flatten = true;
        let summary = write_kdump_to(&req, out, &KdumpOptions::default(), progress)?;
        Ok(KdumpOutcome {
            summary,
            compression,
        })
    }

    /// What `spec`'s dump level would leave out, without writing anything.
    pub fn dump_level_report(
        &mut self,
        view: &View,
        spec: &DumpSpec,
        progress: &dyn Progress,
    ) -> Result<FilterReport> {
        self.detach_for_dump(progress)?;
        if spec.level.bits() == 0 {
            let f = page_filter(&*self.image.memory, spec.level, None, &[], &NoProgress)?;
            return Ok(f.report().clone());
        }
        let plan = self.plan_dump(view, spec, PlanFor::DryRun, progress)?;
        let f = plan
            .filter
            .ok_or_else(|| Error::Unsupported("no page filter".into()))?;
        Ok(f.report().clone())
    }

    /// The spec's physical window, its open end made the end of RAM.
    fn range(&self, spec: &DumpSpec) -> Option<PhysRange> {
        spec.range.map(|r| PhysRange {
            start: r.start,
            end: if r.end == u64::MAX {
                self.image.memory.ram().end()
            } else {
                r.end
            },
        })
    }

    fn detach_for_dump(&mut self, progress: &dyn Progress) -> Result<()> {
        let paused = self
            .detach_live(progress)
            .map_err(|e| e.context("capturing the live guest's memory"))?;
        if let Some(d) = paused {
            self.notice(Notice::Note(format!(
                "guest paused for {:.3} s",
                d.as_secs_f64()
            )));
        }
        Ok(())
    }

    fn kdump_request<'a>(
        &'a self,
        plan: &'a Plan,
        spec: &DumpSpec,
        compression: Compression,
    ) -> KdumpRequest<'a> {
        KdumpRequest {
            memory: &*self.image.memory,
            notes: &plan.notes,
            vmcoreinfo: plan.vmcoreinfo.as_deref(),
            utsname: plan.utsname.as_ref(),
            machine: kdump_machine(plan.machine),
            nr_cpus: plan.nr_cpus.max(1) as u32,
            compression,
            filter: self.range(spec),
            excluded: plan.filter.as_ref().map(|f| f.excluded()),
            dump_level: spec.level.bits(),
            block_size: plan.block_size,
            flatten: spec.flatten,
            force: spec.force,
        }
    }

    /// Decides the dump's kernel, VMCOREINFO, mappings, notes and page filter.
    pub(super) fn plan_dump(
        &self,
        view: &View,
        spec: &DumpSpec,
        purpose: PlanFor,
        progress: &dyn Progress,
    ) -> Result<Plan> {
        let dry_run = purpose == PlanFor::DryRun;
        let first = view.first()?;
        let paging_asked = spec.layout == DumpLayoutSpec::Paging;
        if paging_asked && matches!(spec.format, DumpFormat::Kdump(_)) {
            return Err(Error::Unsupported(
                "kdump files hold physical memory only: crash and libkdumpfile translate through the guest's own page tables".into(),
            ));
        }
        let mut kernel = view.kernel.clone();
        let mut vmcoreinfo = self.image.vmcoreinfo.clone();
        let mut walked: Vec<(u32, PagingMode)> = view
            .selected
            .iter()
            .filter(|s| s.mode.kind != ModeKind::Off)
            .map(|s| (s.cpu.index(), s.mode.clone()))
            .collect();
        let mut foreign = false;
        if paging_asked && kernel.is_none() {
            let scan = self.kernels();
            if walked.is_empty() {
                // Paging off: the tables of the one kernel VMCOREINFO describes, if there is one.
                let usable: Vec<_> = scan
                    .kernels
                    .iter()
                    .filter(|k| k.paging_mode().is_some())
                    .collect();
                if let ([k], Some(mode)) =
                    (&usable[..], usable.first().and_then(|k| k.paging_mode()))
                {
                    self.notice(Notice::Warning(format!(
                        "vCPU {} has paging off: using the page tables of kernel {} ({}) at {:#x} from its VMCOREINFO",
                        first.cpu.index(), k.index, k.release, mode.root
                    )));
                    walked.push((first.cpu.index(), mode));
                    kernel = Some((*k).clone());
                }
            } else {
                let runs = |k: &&Kernel| walked.iter().any(|(i, _)| k.cpus.contains(i));
                if let Some(k) = scan.kernels.iter().find(runs) {
                    kernel = Some(k.clone());
                } else if let Some(k) = scan
                    .kernels
                    .iter()
                    .find(|k| k.in_input_notes && k.layout.is_ok())
                {
                    self.notice(Notice::ForeignVmcoreinfo {
                        kernel: k.index,
                        release: k.release.clone(),
                    });
                    vmcoreinfo = None;
                    foreign = true;
                }
            }
        }
        let level = spec.level;
        let paging = paging_asked && !walked.is_empty();
        if kernel.is_none() && !paging {
            kernel = self.described_kernel(&walked);
        }
        let filtered = level.bits() > 0 && purpose != PlanFor::Stream;
        if filtered && kernel.is_none() && !paging {
            kernel = self.kernel_for_page_array(level);
        }
        if let Some(k) = &kernel {
            vmcoreinfo = Some(k.vmcoreinfo.clone());
        }
        // A kdump file's blocks are its kernel's pages: readers (libkdumpfile, drgn, crash)
        // number the bitmap's bits by PAGESIZE (arm64's 16 and 64 KiB pages among them).
        let block_size = match spec.format {
            DumpFormat::Kdump(_) => kdump_block_size(vmcoreinfo.as_deref())?,
            DumpFormat::Elf(_) => BlockSize::KIB_4,
        };
        if paging_asked && !paging {
            self.notice(Notice::PagingOff {
                cpu: first.cpu.index(),
            });
        }
        let mappings = if paging && !dry_run {
            Some(self.paging_view(&walked)?)
        } else {
            None
        };
        if let Some(k) = &kernel {
            self.notice(Notice::Note(format!(
                "the dump describes kernel {} ({}, {}): its VMCOREINFO{}",
                k.index,
                k.release,
                k.role.name(),
                if k.role == KernelRole::Crashed {
                    format!(
                        " and the {} CPUs' registers saved at the crash",
                        k.crash_notes().len()
                    )
                } else {
                    String::new()
                }
            )));
        }
        if !dry_run && !foreign {
            self.notice(Notice::DumpVmcoreinfo(match (&vmcoreinfo, &kernel) {
                (None, _) => VmcoreinfoFrom::None,
                (Some(_), Some(k)) if !k.in_input_notes && k.vmcoreinfo_addr.is_some() => {
                    VmcoreinfoFrom::Ram {
                        kernel: k.index,
                        release: k.release.clone(),
                        addr: k.vmcoreinfo_addr.unwrap_or_default(),
                        replaced_input: self.image.vmcoreinfo.is_some(),
                    }
                }
                (Some(_), _) => VmcoreinfoFrom::Input,
            }));
        }
        let machine = view.machine();
        let (notes, nr_cpus) =
            self.cpu_notes(view, kernel.as_ref(), vmcoreinfo.as_deref(), machine);
        let filter = if filtered {
            Some(self.filter(level, kernel.as_ref(), spec, dry_run, progress)?)
        } else {
            None
        };
        let utsname = match (&spec.format, &vmcoreinfo) {
            (DumpFormat::Kdump(_), Some(text)) => read_utsname(&*self.image.memory, text),
            _ => None,
        };
        Ok(Plan {
            vmcoreinfo,
            utsname,
            mappings,
            notes,
            nr_cpus,
            machine,
            block_size,
            filter,
        })
    }

    /// The walked vCPUs' mappings: one vCPU's list, or the union of several (the first vCPU
    /// that maps a page wins; the union is reported).
    fn paging_view(&self, walked: &[(u32, PagingMode)]) -> Result<MappingList> {
        let mut views = Vec::with_capacity(walked.len());
        for (cpu, mode) in walked {
            let (list, _) = self.mappings_of(*cpu, mode, || {
                format!(
                    "{}: page tables at {:#x}",
                    self.image.path.display(),
                    mode.root
                )
            })?;
            views.push((*cpu, list));
        }
        if views.len() == 1 {
            return Ok(views.pop().map(|(_, l)| l).unwrap_or_default());
        }
        let union = union_of_views(views.iter().map(|(cpu, l)| (*cpu, l)));
        self.notice(Notice::Union {
            parts: union.parts,
            conflicts: union.conflicts,
            conflict_bytes: union.conflict_bytes,
            first_conflict: union.first_conflict,
        });
        Ok(union.list)
    }

    /// The dump's notes and its CPU count: a crashed kernel's saved registers; else the
    /// input's CPU notes when the CPU state came from them; else notes built from the
    /// registers (the selected vCPUs' when the caller replaced the CPU state).
    fn cpu_notes(
        &self,
        view: &View,
        kernel: Option<&Kernel>,
        vmcoreinfo: Option<&[u8]>,
        machine: ElfMachine,
    ) -> (Vec<ElfNote>, usize) {
        let image = &self.image;
        let cpus: Vec<_> = if self.cpus_overridden {
            view.selected.iter().map(|s| s.cpu.clone()).collect()
        } else {
            self.cpus.clone()
        };
        let has_cpu_notes = image
            .notes
            .iter()
            .any(|n| n.name == b"QEMU" || n.name == b"CORE");
        let crash_notes = kernel.map(|k| k.crash_notes()).filter(|n| !n.is_empty());
        let source = if let Some(n) = crash_notes {
            CpuNotes::FromSource(n)
        } else if has_cpu_notes && !self.cpus_overridden {
            CpuNotes::FromSource(&image.notes)
        } else {
            CpuNotes::Build {
                cpus: &cpus,
                machine,
            }
        };
        let nr_cpus = crash_notes.map_or(cpus.len(), <[_]>::len);
        (dump_notes(source, &image.notes, vmcoreinfo), nr_cpus)
    }

    /// The page filter of `level` from `kernel`'s page array (zero pages only without one).
    fn filter(
        &self,
        level: DumpLevel,
        kernel: Option<&Kernel>,
        spec: &DumpSpec,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> Result<PageFilter> {
        let memory = &*self.image.memory;
        let mode = kernel.and_then(|k| k.paging_mode());
        let pages = match (kernel, &mode) {
            (Some(k), Some(m)) => Some(KernelPages {
                mode: m,
                vmcoreinfo: &k.vmcoreinfo,
            }),
            _ => None,
        };
        let keep = kernel.map(kept_ranges).unwrap_or_default();
        let mut f = page_filter(memory, level, pages, &keep, progress)
            .map_err(|e| e.context("filtering"))?;
        if matches!(spec.format, DumpFormat::Elf(_)) || dry_run {
            f.exclude_zero_pages(memory, progress)?;
        }
        self.notice(Notice::Filter {
            report: f.report().clone(),
            kernel: kernel.map(|k| (k.index, k.release.clone())),
        });
        Ok(f)
    }

    /// The kernel a dump describes when no kernel view named one and no paging view chose
    /// it, when that is not the input's own VMCOREINFO: `None` keeps the input's note.
    ///
    /// The input's note is kept, without a scan of RAM, when the walked vCPUs run its kernel,
    /// or when no vCPU has paging on (nothing says another kernel is meant). Otherwise the
    /// scan's kernel that a walked vCPU runs (the default view's vCPU runs the running kernel,
    /// not one parked in a crashed kernel); else the only kernel with usable tables. When the
    /// scan finds neither, the input's note (if any) stays: no kernel is known to be meant.
    fn described_kernel(&self, walked: &[(u32, PagingMode)]) -> Option<Kernel> {
        let image = &self.image;
        if let Some(text) = image.vmcoreinfo.as_ref().filter(|t| !t.is_empty()) {
            if walked.is_empty() {
                return None;
            }
            let k = describe(&*image.memory, &self.cpus, text.clone(), None, None);
            if walked.iter().any(|(i, _)| k.cpus.contains(i)) {
                return None;
            }
        }
        let scan = self.kernels();
        let runs = |k: &&Kernel| walked.iter().any(|(i, _)| k.cpus.contains(i));
        if let Some(k) = scan.kernels.iter().find(runs) {
            return (!k.in_input_notes).then(|| k.clone());
        }
        match scan
            .kernels
            .iter()
            .filter(|k| k.layout.is_ok())
            .collect::<Vec<_>>()[..]
        {
            [k] if !k.in_input_notes && k.vmcoreinfo_addr.is_some() => Some(k.clone()),
            _ => None,
        }
    }

    /// The kernel whose page array filters a dump when none was named: the one whose
    /// VMCOREINFO the input carries (as makedumpfile filters by its input's), found without a
    /// scan of RAM; else, from a scan, the one a vCPU runs or the only one with usable tables.
    fn kernel_for_page_array(&self, level: DumpLevel) -> Option<Kernel> {
        let image = &self.image;
        if let Some(text) = image.vmcoreinfo.as_ref().filter(|t| !t.is_empty()) {
            let mut k = describe(&*image.memory, &self.cpus, text.clone(), None, None);
            if k.layout.is_ok() {
                k.in_input_notes = true;
                return Some(k);
            }
        }
        let scan = self.kernels();
        let usable: Vec<&Kernel> = scan.kernels.iter().filter(|k| k.layout.is_ok()).collect();
        let chosen = usable
            .iter()
            .find(|k| !k.cpus.is_empty())
            .or_else(|| (usable.len() == 1).then(|| &usable[0]))
            .map(|k| (*k).clone());
        if chosen.is_none() && level.needs_page_array() && usable.len() > 1 {
            self.notice(Notice::NoFilterKernel {
                kernels: usable.len(),
            });
        }
        chosen
    }
}

/// Physical ranges a filtered dump keeps whatever the page array says: the kernel's
/// VMCOREINFO note and, for a crashed kernel, its core header and crash notes.
fn kept_ranges(k: &Kernel) -> Vec<PhysRange> {
    let page = |a: u64| PhysRange {
        start: a & !0xfff,
        end: (a & !0xfff).saturating_add(0x2000),
    };
    let mut v: Vec<PhysRange> = k.vmcoreinfo_addr.into_iter().map(page).collect();
    if let Some(c) = &k.crash {
        v.push(page(c.addr));
        v.extend(c.note_addrs.iter().map(|&a| page(a)));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kdump file's block is the kernel's PAGESIZE; 4 KiB without one; an error for a page
    /// size no block can be, rather than a file readers misread.
    #[test]
    fn kdump_block_is_the_kernels_page() {
        let of = |t: &[u8]| kdump_block_size(Some(t)).map(BlockSize::bytes);
        assert_eq!(kdump_block_size(None).unwrap(), BlockSize::KIB_4);
        assert_eq!(of(b"OSRELEASE=6.1.0\n").unwrap(), 4096);
        assert_eq!(of(b"OSRELEASE=6.1.0\nPAGESIZE=4096\n").unwrap(), 4096);
        assert_eq!(of(b"PAGESIZE=16384\n").unwrap(), 16384);
        assert_eq!(of(b"PAGESIZE=65536\n").unwrap(), 65536);
        for bad in [
            &b"PAGESIZE=2048\n"[..],
            b"PAGESIZE=131072\n",
            b"PAGESIZE=16k\n",
        ] {
            let e = of(bad).unwrap_err().to_string();
            assert!(e.contains("PAGESIZE") || e.contains("pages"), "{e}");
        }
    }
}
