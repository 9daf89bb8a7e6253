//! Which page tables a request works on: one vCPU's, every vCPU's, another root in the same
//! mode, or a Linux kernel's own (found from its VMCOREINFO, for inputs without CPU state or
//! behind a kdump capture kernel).

use super::{Guest, Notice};
use crate::cpu::{Arch, CpuState};
use crate::format::elf::ElfMachine;
use crate::kernel::{Kernel, KernelSelector};
use crate::paging::PagingMode;
use crate::{Error, Result};

/// What to look through, as a caller names it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ViewSpec {
    /// The first vCPU with paging on (with a note when the input has several), or the first
    /// vCPU when none has (virtual = physical).
    #[default]
    FirstPaging,
    /// The vCPU with this index (or at this position).
    Cpu(usize),
    /// Every vCPU in turn.
    AllCpus,
    /// A Linux kernel's own tables (see [`crate::kernel::KernelScan::select`]).
    Kernel(KernelSelector),
}

/// One vCPU to work on and the mode it translates with.
#[derive(Clone, Debug)]
pub struct Selected {
    /// Its registers (for a kernel view: built from the kernel's layout).
    pub cpu: CpuState,
    /// Its paging mode and root.
    pub mode: PagingMode,
}

/// The result of [`Guest::select`]: the tables to walk, in order.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// The vCPUs (or the one kernel view) selected; empty for an input without CPU state
    /// when the caller asked for the default view (physical reads need none).
    pub selected: Vec<Selected>,
    /// The kernel a [`ViewSpec::Kernel`] selected.
    pub kernel: Option<Kernel>,
}

impl View {
    /// The first selected vCPU.
    pub fn first(&self) -> Result<&Selected> {
        self.selected.first().ok_or(Error::NoCpuState)
    }

    /// True when any selected vCPU is in long mode (64-bit output).
    pub fn long_mode(&self) -> bool {
        self.selected.iter().any(|s| s.cpu.is_64bit())
    }

    /// The ELF machine of a core of this view, as QEMU writes it: AArch64 when a selected
    /// vCPU is one, else x86_64 when one is in long mode, else i386.
    pub fn machine(&self) -> ElfMachine {
        if self.selected.iter().any(|s| s.cpu.arch() == Arch::Aarch64) {
            ElfMachine::Aarch64
        } else if self.long_mode() {
            ElfMachine::X86_64
        } else {
            ElfMachine::I386
        }
    }
}

impl Guest {
    /// Selects the tables `spec` names; `cr3` replaces each selected vCPU's root (same mode),
    /// e.g. a crashed kernel's tables in a capture kernel's dump. Notes which vCPU was chosen
    /// when the caller did not say. Without CPU state the view is empty (not an error): a
    /// caller that needs tables checks [`View::first`].
    ///
    /// ```no_run
    /// use guestcore::{Guest, GuestOptions, KernelSelector, ViewSpec};
    ///
    /// # fn main() -> guestcore::Result<()> {
    /// let guest = Guest::open("capture.kdump", &GuestOptions::default())?;
    /// // The tables of the kernel that crashed, not of the capture kernel the vCPUs run.
    /// let view = guest.select(&ViewSpec::Kernel(KernelSelector::Crashed), None)?;
    /// let t = guest.translate(view.first()?, 0xffff_ffff_8100_0000)?;
    /// println!("{:#x} -> {:#x}", t.vaddr, t.paddr);
    /// // vCPU 1's mode with another root: a process's tables.
    /// let user = guest.select(&ViewSpec::Cpu(1), Some(0x1234_5000))?;
    /// # let _ = user;
    /// # Ok(())
    /// # }
    /// ```
    pub fn select(&self, spec: &ViewSpec, cr3: Option<u64>) -> Result<View> {
        let cpus = self.cpus();
        let input = self.image().path.display().to_string();
        if let ViewSpec::Kernel(selector) = spec {
            let scan = self.kernels();
            let k = scan
                .select(*selector, cpus)
                .map_err(|e| e.context(input.clone()))?
                .clone();
            let layout = k.layout.clone().map_err(|e| {
                Error::Unsupported(format!(
                    "{input}: kernel {} ({}) has no usable page-table root: {e}",
                    k.index, k.release
                ))
            })?;
            let cpu = layout.cpu(k.cpus.first().copied().unwrap_or(0));
            let mode = layout
                .paging_mode()
                .map_err(|e| e.context(format!("{input}: kernel {}", k.index)))?;
            self.notice(Notice::Note(format!(
                "kernel {} ({}, {}): its page tables at {:#x}, {}",
                k.index,
                k.release,
                k.role.name(),
                layout.root,
                mode.kind.name()
            )));
            return Ok(View {
                selected: vec![Selected { cpu, mode }],
                kernel: Some(k),
            });
        }
        if cpus.is_empty() {
            return match spec {
                ViewSpec::FirstPaging => Ok(View::default()),
                _ => Err(Error::Unsupported(format!(
                    "{input}: no CPU state in this input"
                ))),
            };
        }
        let chosen: Vec<CpuState> = match spec {
            ViewSpec::AllCpus => cpus.to_vec(),
            ViewSpec::Cpu(n) => {
                let found = cpus
                    .iter()
                    .find(|c| c.index() as usize == *n)
                    .or(cpus.get(*n));
                let Some(c) = found else {
                    return Err(Error::Unsupported(format!(
                        "{input}: there is no vCPU {n} (the input has {})",
                        cpus.len()
                    )));
                };
                vec![c.clone()]
            }
            _ => match self.default_cpu() {
                Some((c, parked)) => {
                    if cpus.len() > 1 {
                        self.notice(Notice::ChoseCpu {
                            cpu: c.index(),
                            of: cpus.len(),
                            parked,
                        });
                    }
                    vec![c.clone()]
                }
                None => {
                    if let Some(view) = self.kernel_tables_instead(cpus.iter()) {
                        return Ok(view);
                    }
                    self.notice(Notice::Note(
                        "no vCPU has paging on: virtual = physical".into(),
                    ));
                    vec![cpus[0].clone()]
                }
            },
        };
        let mut selected = Vec::with_capacity(chosen.len());
        // The kernel's view, looked for once, for named vCPUs without translation registers.
        let mut instead: Option<Option<View>> = None;
        let mut kernel = None;
        for cpu in chosen {
            let mode = match PagingMode::from_state(&cpu) {
                Ok(mode) => mode,
                Err(e) => {
                    let found = instead
                        .get_or_insert_with(|| self.kernel_tables_instead(std::iter::once(&cpu)));
                    let Some(view) = found else {
                        return Err(e.context(format!("{input}: vCPU {}", cpu.index())));
                    };
                    kernel.clone_from(&view.kernel);
                    view.first()?.mode.clone()
                }
            };
            let mode = match cr3 {
                Some(root) => mode.with_cr3(root),
                None => mode,
            };
            selected.push(Selected { cpu, mode });
        }
        Ok(View { selected, kernel })
    }

    /// An AArch64 source without translation registers (QEMU's aarch64 dump notes carry none)
    /// says nothing about paging: the kernel found in RAM has its own tables. Its view, with a
    /// note naming what is missing; `None` when `cpus` lack nothing or no kernel is found.
    fn kernel_tables_instead<'a>(&self, cpus: impl Iterator<Item = &'a CpuState>) -> Option<View> {
        let missing = cpus
            .filter_map(CpuState::as_aarch64)
            .map(|c| c.missing_translation_registers())
            .find(|m| m.contains(&"TTBR1_EL1"))?;
        let view = self
            .select(&ViewSpec::Kernel(KernelSelector::Running), None)
            .ok()?;
        self.notice(Notice::Note(format!(
            "the vCPUs' translation registers are not in this input ({} missing): using the kernel's own tables",
            missing.join(", ")
        )));
        Some(view)
    }

    /// The vCPU the default view takes: the first with paging on that does not run a crashed
    /// kernel, so every capture of the same situation gives the same view whichever vCPU the
    /// crash happened on (a kdump capture kernel runs on the vCPU that crashed; the others stay
    /// parked in the crashed kernel with its tables).
    ///
    /// Finding the crashed kernel takes a scan of RAM, so it is only done when the vCPUs with
    /// paging on could run different kernels: when the top-level entries that map the upper
    /// half of their address space (where the kernel lives, and which every process of one
    /// kernel shares) are not all equal. Equal entries translate every kernel address alike,
    /// so the first vCPU then runs the same kernel as the rest.
    /// Returns it with the vCPUs passed over, as `(vCPU, crashed kernel)`.
    fn default_cpu(&self) -> Option<(&CpuState, Vec<(u32, usize)>)> {
        let paging = self.paging_cpus();
        let first = *paging.first()?;
        let parked = self.parked_in_crashed();
        let is_parked = |c: &CpuState| parked.iter().any(|(cpu, _)| *cpu == c.index());
        match paging.iter().find(|c| !is_parked(c)) {
            Some(c) => {
                let passed = parked.into_iter().filter(|(p, _)| *p < c.index()).collect();
                Some((c, passed))
            }
            // Every vCPU in a crashed kernel (no capture kernel runs): the first.
            None => Some((first, Vec::new())),
        }
    }

    /// True when every vCPU in `cpus` has the same paging mode and the same entries in the
    /// upper half of its top-level table.
    fn one_kernel_half(&self, cpus: &[&CpuState]) -> bool {
        let mem = self.memory();
        let half = |c: &CpuState| -> Option<(crate::paging::ModeKind, Vec<u8>)> {
            let mode = PagingMode::from_state(c).ok()?;
            let top = mode.levels().first()?;
            let table = (top.entries() * mode.entry_bytes()) as u64;
            let mut upper = vec![0u8; (table / 2) as usize];
            mem.read_at(mode.root + table / 2, &mut upper).ok()?;
            Some((mode.kind, upper))
        };
        let Some(first) = half(cpus[0]) else {
            return false;
        };
        cpus[1..].iter().all(|c| half(c).as_ref() == Some(&first))
    }

    /// The vCPUs whose tables run a crashed kernel (a kdump capture kernel runs elsewhere), as
    /// `(vCPU, kernel index)`. Costs a scan of RAM (once per guest) unless the vCPUs with
    /// paging on share their kernel half, which no crashed and capture kernel pair does.
    pub fn parked_in_crashed(&self) -> Vec<(u32, usize)> {
        let paging = self.paging_cpus();
        if paging.len() < 2 || self.one_kernel_half(&paging) {
            return Vec::new();
        }
        self.kernels()
            .kernels
            .iter()
            .filter(|k| k.role == crate::kernel::KernelRole::Crashed)
            .flat_map(|k| k.cpus.iter().map(move |&c| (c, k.index)))
            .collect()
    }

    /// The vCPUs with paging on, in order.
    fn paging_cpus(&self) -> Vec<&CpuState> {
        self.cpus().iter().filter(|c| c.paging_enabled()).collect()
    }
}
