//! The facade: one entry type, [`Guest`], for a program that wants guestcore's results without
//! assembling its parts.
//!
//! A [`Guest`] opens any input ([`Guest::open`]), names its vCPUs and the Linux kernels in its
//! memory, and, as library calls: selects the page tables to look through ([`Guest::select`]),
//! walks and lists their mappings, translates and reads virtual memory, reads a kernel's log,
//! and writes dumps in any [`DumpFormat`]. Every decision a user would otherwise have to make
//! (which vCPU, which kernel's VMCOREINFO goes into a dump, which CPU notes, which kernel's page
//! array filters it) is made here, the same way for every caller, and reported as a [`Notice`].
//!
//! ```no_run
//! use guestcore::NoProgress;
//! use guestcore::{Compression, DumpFormat, DumpSpec, Guest, GuestOptions, ViewSpec};
//!
//! # fn main() -> guestcore::Result<()> {
//! let mut guest = Guest::open("guest.elf", &GuestOptions::default())?;
//! let view = guest.select(&ViewSpec::FirstPaging, None)?;
//! let sel = view.first()?;
//! let (mappings, _report) = guest.mappings(sel)?;
//! println!("{} mappings", mappings.len());
//! let mut bytes = [0u8; 64];
//! guest.read_virt(sel, 0xffff_ffff_8200_0000, &mut bytes)?;
//! let spec = DumpSpec::new("out.kdump", DumpFormat::Kdump(Compression::Zstd));
//! guest.dump(&view, &spec, &NoProgress)?;
//! # Ok(())
//! # }
//! ```

mod budget;
mod dump;
mod live;
mod log;
mod notice;
mod options;
mod page_heads;
mod read;
mod view;

pub use crate::dump::{DumpFormat, DumpOutcome, KdumpOutcome};
pub use dump::{DumpLayoutSpec, DumpSpec, LiveCapture, SnapshotBlocker};
pub use notice::{NoSnapshot, Notice, NoticeSink, VmcoreinfoFrom};
pub use options::{CpuOverrides, GuestOptions};
pub use view::{Selected, View, ViewSpec};

use crate::cpu::CpuState;
use crate::image::{GuestImage, ImageFormat, OpenOptions};
use crate::input::Input;
use crate::kernel::scan::PageHeads;
use crate::kernel::{find_kernels, find_kernels_among, KernelScan};
use crate::mapping::MappingList;
use crate::paging::{translate, walk, Leaf, PagingMode, Translation, WalkReport};
use crate::phys::PhysMemory;
use crate::progress::Progress;
use crate::Result;
use budget::WalkBudget;
use std::sync::OnceLock;

/// An opened guest: its memory, its CPU state (after the caller's overrides), the walk budget
/// every walk shares, and where notices go.
pub struct Guest {
    image: GuestImage,
    cpus: Vec<CpuState>,
    cpus_overridden: bool,
    budget: WalkBudget,
    kernels: OnceLock<KernelScan>,
    sink: Option<NoticeSink>,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("image", &self.image)
            .field("cpus", &self.cpus.len())
            .field("cpus_overridden", &self.cpus_overridden)
            .finish_non_exhaustive()
    }
}

impl Guest {
    /// Opens `input` ([`Input`]; text such as `qmp:SOCKET` is parsed by [`Input::parse`]): an
    /// ELF core, kdump file, raw image, QEMU migration stream, LiME/AVML image, or a running
    /// QEMU (see [`GuestImage::open`]). A file's format is found from its first bytes; `opts` places a raw image, says how to hold a live
    /// guest, and corrects the CPU state.
    ///
    /// ```no_run
    /// use guestcore::{CpuOverrides, Guest, GuestOptions, Notice};
    ///
    /// # fn main() -> guestcore::Result<()> {
    /// // A core whose notes lack EFER: say the guest runs with long mode active.
    /// let opts = GuestOptions {
    ///     cpus: CpuOverrides {
    ///         efer: Some(0xd01),
    ///         ..Default::default()
    ///     },
    ///     ..Default::default()
    /// };
    /// let mut guest = Guest::open("guest.elf", &opts)?;
    /// guest.on_notice(|n| {
    ///     if let Notice::Warning(w) = n {
    ///         eprintln!("warning: {w}");
    ///     }
    /// });
    /// println!("{} vCPUs, {}", guest.cpus().len(), guest.image().format);
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(input: impl Into<Input>, opts: &GuestOptions) -> Result<Self> {
        let input = input.into();
        let image = GuestImage::open(
            &input,
            &OpenOptions {
                layout: opts.layout.clone(),
                live: opts.live.clone(),
            },
        )?;
        let guest = Self::from_image(image, opts);
        if let Some(m) = &guest.image.migration {
            for w in m.shortfalls(guest.image.cpus.len()) {
                guest.notice(Notice::Warning(format!(
                    "{}: {w}",
                    guest.image.path.display()
                )));
            }
        }
        if let Input::Libvirt(_) = &input {
            let name = guest.image.path.display().to_string();
            let domain = name.strip_prefix(Input::LIBVIRT_PREFIX).unwrap_or(&name);
            guest.notice(Notice::LibvirtTainted {
                domain: domain.to_string(),
            });
        }
        if let (ImageFormat::Raw, Input::File(path)) = (guest.image.format, &input) {
            if let Some(what) = crate::phys::raw::doubt(path) {
                guest.notice(Notice::Warning(format!(
                    "{}: no known format, and it looks like {what}, not guest memory: read as a raw memory image",
                    path.display()
                )));
            }
        }
        Ok(guest)
    }

    /// A guest over an image opened some other way.
    pub fn from_image(image: GuestImage, opts: &GuestOptions) -> Self {
        Guest {
            cpus: opts.cpus.apply(&image.cpus),
            cpus_overridden: opts.cpus.any(),
            image,
            budget: WalkBudget::new(opts.limits),
            kernels: OnceLock::new(),
            sink: opts.notices.clone(),
        }
    }

    /// Sends every later [`Notice`] to `sink` (without one, notices are dropped).
    pub fn on_notice(&mut self, sink: impl Fn(&Notice) + Send + Sync + 'static) {
        self.sink = Some(std::sync::Arc::new(sink));
    }

    pub(crate) fn notice(&self, n: Notice) {
        if let Some(sink) = &self.sink {
            sink(&n);
        }
    }

    /// The opened input: format, memory, notes, VMCOREINFO, live session.
    pub fn image(&self) -> &GuestImage {
        &self.image
    }

    /// Resumes a running guest this guest holds stopped (`GuestOptions::live.pause`), and says
    /// for how long it was stopped; `None` when it holds none stopped (a file, a guest read
    /// running, one already resumed, or one that was paused before guestcore came).
    pub fn resume(&mut self) -> Result<Option<std::time::Duration>> {
        match self.image.live.as_mut() {
            Some(live) => live.resume(),
            None => Ok(None),
        }
    }

    /// Guest-physical memory.
    pub fn memory(&self) -> &dyn PhysMemory {
        &*self.image.memory
    }

    /// Every vCPU, after the caller's overrides.
    pub fn cpus(&self) -> &[CpuState] {
        &self.cpus
    }

    /// `Ok` while everything read from the input came from it as it was opened; an
    /// [`Error::InputCut`](crate::Error::InputCut) naming the file once it was cut (truncated)
    /// while it was read (see [`PhysMemory::intact`](crate::phys::PhysMemory::intact)). What
    /// was read since then is zeros that are not the input's: a caller that lists or prints
    /// what it read asks this before it does.
    pub fn intact(&self) -> Result<()> {
        self.image.memory.intact()
    }

    /// The Linux kernels in guest memory (found once, from their VMCOREINFO; see
    /// [`find_kernels`]).
    /// Pages the scan could not read are said once, as a [`Notice::UnreadablePages`].
    pub fn kernels(&self) -> &KernelScan {
        self.kernels.get_or_init(|| {
            self.scanned(find_kernels(
                &*self.image.memory,
                &self.cpus,
                self.image.vmcoreinfo.as_deref(),
            ))
        })
    }

    /// Finds the kernels among the page starts `heads` saw while a stream pushed the pages
    /// (instead of a pass over all of them), for every later [`kernels`](Self::kernels).
    pub(super) fn find_kernels_among(&self, heads: &PageHeads) {
        self.kernels.get_or_init(|| {
            self.scanned(find_kernels_among(
                &*self.image.memory,
                &self.cpus,
                self.image.vmcoreinfo.as_deref(),
                heads,
            ))
        });
    }

    fn scanned(&self, scan: KernelScan) -> KernelScan {
        if scan.unreadable.pages > 0 {
            self.notice(Notice::UnreadablePages(scan.unreadable.clone()));
        }
        scan
    }

    /// Walks `sel`'s page tables, sending every leaf to `sink`, within what is left of the
    /// walk budget. The walk's report is also sent as a [`Notice::Walk`].
    pub fn walk(&self, sel: &Selected, sink: impl FnMut(&Leaf)) -> Result<WalkReport> {
        let report = walk(&*self.image.memory, &sel.mode, self.budget.left(), sink)
            .map_err(|e| e.context(self.tables_of(sel)))?;
        self.budget.spend(&report, 0);
        self.notice(Notice::Walk {
            cpu: sel.cpu.index(),
            report: report.clone(),
        });
        Ok(report)
    }

    /// The merged mapping list of `sel`'s tables, with the same budget and notice as
    /// [`walk`](Self::walk).
    pub fn mappings(&self, sel: &Selected) -> Result<(MappingList, WalkReport)> {
        self.mappings_of(sel.cpu.index(), &sel.mode, || self.tables_of(sel))
    }

    /// The merged mapping list of the tables `mode` describes, labelled `cpu` in its notice;
    /// an error is put in the words `context` gives.
    pub(crate) fn mappings_of(
        &self,
        cpu: u32,
        mode: &PagingMode,
        context: impl FnOnce() -> String,
    ) -> Result<(MappingList, WalkReport)> {
        let (list, report) = MappingList::from_walk(&*self.image.memory, mode, self.budget.left())
            .map_err(|e| e.context(context()))?;
        self.budget.spend(&report, list.len() as u64);
        self.notice(Notice::Walk {
            cpu,
            report: report.clone(),
        });
        Ok((list, report))
    }

    /// Translates one virtual address through `sel`'s tables, with every entry read.
    pub fn translate(&self, sel: &Selected, vaddr: u64) -> Result<Translation> {
        translate(&*self.image.memory, &sel.mode, vaddr)
            .map_err(|e| e.context(self.image.path.display().to_string()))
    }

    /// Before a long read of a live input (a dump): copies the RAM of a guest this session
    /// holds stopped and resumes it ([`GuestImage::detach_live`]); the pause is returned.
    pub fn detach_live(&mut self, progress: &dyn Progress) -> Result<Option<std::time::Duration>> {
        let paused = self.image.detach_live(progress)?;
        // VMCOREINFO may have been found just now: scan again when asked.
        self.kernels = OnceLock::new();
        Ok(paused)
    }

    fn tables_of(&self, sel: &Selected) -> String {
        format!(
            "{}: vCPU {} page tables at {:#x}",
            self.image.path.display(),
            sel.cpu.index(),
            sel.mode.root
        )
    }
}
