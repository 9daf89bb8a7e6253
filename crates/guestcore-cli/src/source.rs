//! The arguments every subcommand shares — which input, which vCPU, which page-table root — and
//! turning them into guest memory plus a list of (vCPU, paging mode) to work on.

use crate::output::Context;
use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, ValueEnum};
use guestcore::cpu::{X86CpuState, CR4_PSE};
use guestcore::image::{GuestImage, OpenOptions};
use guestcore::kernel::{find_kernels, Kernel};
use guestcore::mapping::MappingList;
use guestcore::paging::{walk, Leaf, ModeKind, PagingMode, WalkLimits, WalkReport};
use std::path::PathBuf;

/// Parses numbers as users type them (decimal, 0x hex, K/M/G/T suffixes).
pub fn num(s: &str) -> Result<u64, String> {
    guestcore::units::parse_u64(s).map_err(|e| e.to_string())
}

/// Paging modes a user can name for a raw image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Paging off (physical = virtual).
    Off,
    /// 32-bit paging, 4 KiB pages only.
    #[value(name = "32")]
    Bits32,
    /// 32-bit paging with 4 MiB pages (CR4.PSE, PSE-36).
    Pse,
    /// PAE paging (NX enabled).
    Pae,
    /// IA-32e 4-level paging.
    #[value(name = "4level")]
    Level4,
    /// IA-32e 5-level paging (LA57).
    #[value(name = "5level")]
    Level5,
}

// ---- live guests (qmp:SOCKET) -------------------------------------------------------------

/// Consistency of a live input (`qmp:SOCKET`); ignored for files.
#[derive(Args, Debug, Clone, Default)]
pub struct LiveArgs {
    /// Live input: stop the guest while its registers and memory are read, so they describe
    /// one instant (the default, except for `dump`, which takes a QEMU background snapshot when
    /// it can: one instant with a pause of milliseconds). A dump copies RAM into memory and
    /// resumes the guest before writing the file; other commands resume it when they finish.
    /// The pause time is printed. A guest that was already paused stays paused.
    #[arg(long, overrides_with = "no_pause")]
    pub pause: bool,
    /// Live input: read while the guest keeps running. No pause at all, but pages and
    /// registers may be inconsistent (taken at different moments); `info` and the dump's
    /// GUESTCORE note say so.
    #[arg(long, overrides_with = "pause")]
    pub no_pause: bool,
}

impl LiveArgs {
    /// True when neither --pause nor --no-pause was given (a dump may then use a background
    /// snapshot).
    pub fn unspecified(&self) -> bool {
        !self.pause && !self.no_pause
    }

    /// The library's options for these flags.
    pub fn options(&self) -> guestcore::qmp::LiveOptions {
        guestcore::qmp::LiveOptions {
            pause: !self.no_pause,
            ..Default::default()
        }
    }
}

/// True for a `qmp:SOCKET` input.
pub fn is_live(input: &std::path::Path) -> bool {
    input.to_str().is_some_and(|s| s.starts_with("qmp:"))
}

/// Opens INPUT; for a live input first makes Ctrl-C a cancel request (so the guest is resumed
/// on the way out instead of the process dying with the guest stopped).
pub fn open_image(
    input: &std::path::Path,
    layout: Option<guestcore::phys::layout::Layout>,
    live: &LiveArgs,
) -> Result<GuestImage> {
    if is_live(input) {
        crate::progress::cancel_flag();
    }
    GuestImage::open(
        input,
        &OpenOptions {
            layout,
            live: live.options(),
        },
    )
    .map_err(|e| naming(e, input))
}

/// `e` as an anyhow error that names `path`: as context, unless its own text names it already
/// (so `guestcore: FILE: No such file…` says FILE once).
pub fn naming(e: guestcore::Error, path: &std::path::Path) -> anyhow::Error {
    let name = path.display().to_string();
    if e.to_string().contains(&name) {
        anyhow::Error::new(e)
    } else {
        anyhow::Error::new(e).context(name)
    }
}

/// Resumes a live guest this image holds stopped and says for how long it was stopped.
pub fn finish_live(quiet: bool, image: &mut GuestImage) {
    let Some(live) = image.live.as_mut() else {
        return;
    };
    match live.resume() {
        Ok(Some(d)) if !quiet => {
            eprintln!("guestcore: guest paused for {:.3} s", d.as_secs_f64())
        }
        Ok(_) => {}
        Err(e) => eprintln!("guestcore: could not resume the guest: {e}"),
    }
}

// -------------------------------------------------------------------------------------------

/// Input and CPU-selection arguments.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// Guest memory: ELF core (QEMU dump-guest-memory, kdump /proc/vmcore), raw image, or
    /// `qmp:SOCKET` — a running QEMU's QMP socket (see --pause/--no-pause).
    pub input: PathBuf,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Layout of a raw image that is not flat from physical 0: `PHYS:LEN,PHYS:LEN,…` pieces
    /// in file order, or `BASE@` for a file that starts at physical BASE.
    #[arg(long, value_name = "LAYOUT")]
    pub layout: Option<guestcore::phys::layout::Layout>,
    /// CPU state from a file holding QEMU's HMP `info registers -a` output.
    #[arg(long, value_name = "FILE")]
    pub registers: Option<PathBuf>,
    /// Paging mode for an input without CPU state (with --cr3).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Walk this page-table root instead of the vCPU's CR3 (same mode), e.g. the crashed
    /// kernel's tables in a kdump second kernel's dump.
    #[arg(long, value_parser = num, value_name = "ADDR")]
    pub cr3: Option<u64>,
    /// Override CR0.
    #[arg(long, value_parser = num, value_name = "VALUE")]
    pub cr0: Option<u64>,
    /// Override CR4.
    #[arg(long, value_parser = num, value_name = "VALUE")]
    pub cr4: Option<u64>,
    /// Override EFER.
    #[arg(long, value_parser = num, value_name = "VALUE")]
    pub efer: Option<u64>,
    /// Use vCPU N (default: the first vCPU with paging on).
    #[arg(long, value_name = "N", conflicts_with = "all_cpus")]
    pub cpu: Option<usize>,
    /// Work on every vCPU in turn.
    #[arg(long)]
    pub all_cpus: bool,
    /// Stop a walk after this many page-table entries (bounds work on corrupt tables).
    #[arg(long, value_parser = num, value_name = "N")]
    pub max_entries: Option<u64>,
    /// Stop a walk after this many leaves.
    #[arg(long, value_parser = num, value_name = "N")]
    pub max_leaves: Option<u64>,
    /// Walk a Linux kernel's own page tables, found from its VMCOREINFO in guest memory:
    /// `crashed` (the kernel a kdump capture kernel was started for), `running` (the kernel
    /// the first vCPU with paging on runs, or the only one), or an index from `guestcore
    /// kernels`. Works without CPU state (raw images) and with paging off.
    #[arg(long, value_name = "SELECTOR", conflicts_with_all = ["cpu", "all_cpus", "cr3", "mode"])]
    pub kernel: Option<String>,
    /// Stop a walk when its merged list holds this many mappings (mem, dump --paging).
    #[arg(long, value_parser = num, value_name = "N")]
    pub max_mappings: Option<u64>,
}

/// One vCPU to work on and the mode it translates with.
pub struct Selected {
    pub cpu: X86CpuState,
    pub mode: PagingMode,
}

/// An opened input with the selected vCPUs.
pub struct Source {
    pub image: GuestImage,
    /// Every vCPU of the input, after --registers/--mode/--cr0/--cr4/--efer.
    pub all_cpus: Vec<X86CpuState>,
    pub selected: Vec<Selected>,
    /// The command's walk budget (`--max-*`), shared by all its walks (`--all-cpus` on a file
    /// with thousands of vCPUs gets one budget, not one each): see [`budget`](Self::budget).
    pub limits: WalkLimits,
    /// What the walks so far used of `limits`: entries, leaves, mappings.
    spent: std::cell::Cell<(u64, u64, u64)>,
    /// The kernel `--kernel` selected (its tables are `selected[0]`).
    pub kernel: Option<Kernel>,
    /// `--quiet` (for the pause-time note when a live guest is resumed on drop).
    quiet: bool,
}

impl Source {
    /// Walks `sel`'s page tables, sending every leaf to `sink`. Walk problems (limits hit,
    /// tables outside RAM, reserved bits) are stated on stderr; a root table outside guest
    /// memory is an error naming the input and the vCPU.
    pub fn walk(
        &self,
        ctx: &Context,
        sel: &Selected,
        sink: impl FnMut(&Leaf),
    ) -> Result<WalkReport> {
        let report = walk(&*self.image.memory, &sel.mode, self.budget(), sink)
            .with_context(|| self.tables_of(sel))?;
        self.spend(&report, 0);
        self.note_walk(ctx, sel, &report);
        Ok(report)
    }

    /// The merged mapping list of `sel`, with the same reporting as [`walk`](Self::walk).
    pub fn mappings(&self, ctx: &Context, sel: &Selected) -> Result<(MappingList, WalkReport)> {
        let (list, report) = MappingList::from_walk(&*self.image.memory, &sel.mode, self.budget())
            .with_context(|| self.tables_of(sel))?;
        self.spend(&report, list.len() as u64);
        self.note_walk(ctx, sel, &report);
        Ok((list, report))
    }

    /// What is left of the command's walk limits after the walks so far.
    pub fn budget(&self) -> WalkLimits {
        let (e, l, m) = self.spent.get();
        WalkLimits {
            max_entries: self.limits.max_entries.saturating_sub(e),
            max_leaves: self.limits.max_leaves.saturating_sub(l),
            max_mappings: self.limits.max_mappings.saturating_sub(m),
        }
    }

    /// Counts a finished walk (and the mappings it kept) against the budget.
    pub fn spend(&self, report: &WalkReport, mappings: u64) {
        let (e, l, m) = self.spent.get();
        self.spent.set((
            e.saturating_add(report.entries_visited),
            l.saturating_add(report.leaves),
            m.saturating_add(mappings),
        ));
    }

    fn tables_of(&self, sel: &Selected) -> String {
        format!(
            "{}: vCPU {} page tables at {:#x}",
            self.image.path.display(),
            sel.cpu.index,
            sel.mode.root
        )
    }

    fn note_walk(&self, ctx: &Context, sel: &Selected, report: &WalkReport) {
        self.note_walk_of(ctx, sel.cpu.index, report);
    }

    /// States a walk's warnings and notes for the view labelled `cpu`.
    pub fn note_walk_of(&self, ctx: &Context, cpu: u32, report: &WalkReport) {
        for w in walk_warnings(report) {
            ctx.warn(format_args!("vCPU {cpu}: {w}"));
        }
        if let Some(n) = walk_notes(report) {
            ctx.note(format_args!("vCPU {cpu}: {n}"));
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        finish_live(self.quiet, &mut self.image);
    }
}

impl SourceArgs {
    /// Opens the input and selects the vCPU(s), stating on stderr which one when the choice
    /// was made for the user.
    pub fn open(&self, ctx: &Context) -> Result<Source> {
        self.open_with(ctx, true)
    }

    /// Like [`open`](Self::open); with `need_cpu` false an input without CPU state opens with
    /// no vCPU selected (physical reads need none).
    pub fn open_with(&self, ctx: &Context, need_cpu: bool) -> Result<Source> {
        let image = open_image(&self.input, self.layout.clone(), &self.live)?;
        let mut cpus = image.cpus.clone();
        if let Some(path) = &self.registers {
            let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
            cpus = guestcore::cpu::hmp::parse_info_registers(&text)
                .with_context(|| path.display().to_string())?;
        }
        if let Some(mode) = self.mode {
            let cr3 = self
                .cr3
                .context("--mode needs --cr3 (the physical address of the root page table)")?;
            cpus = vec![state_for_mode(mode, cr3)];
        }
        for c in &mut cpus {
            if let Some(v) = self.cr0 {
                c.cr[0] = v;
            }
            if let Some(v) = self.cr4 {
                c.cr[4] = v;
            }
            if let Some(v) = self.efer {
                c.efer = v;
                c.efer_inferred = false;
            }
        }
        let mut limits = WalkLimits::default();
        if let Some(n) = self.max_entries {
            limits.max_entries = n;
        }
        if let Some(n) = self.max_leaves {
            limits.max_leaves = n;
        }
        if let Some(n) = self.max_mappings {
            limits.max_mappings = n;
        }
        if let Some(selector) = &self.kernel {
            let input = self.input.display();
            let scan = find_kernels(&*image.memory, &cpus, image.vmcoreinfo.as_deref());
            let k = scan
                .select(selector, &cpus)
                .map_err(|e| anyhow!("{input}: --kernel {selector}: {e}"))?
                .clone();
            let layout = k.layout.clone().map_err(|e| {
                anyhow!(
                    "{input}: kernel {} ({}) has no usable page-table root: {e}",
                    k.index,
                    k.release
                )
            })?;
            let cpu = layout.cpu_state(k.cpus.first().copied().unwrap_or(0));
            let mode = PagingMode::from_cpu(&cpu)
                .with_context(|| format!("{input}: kernel {}", k.index))?;
            ctx.note(format_args!(
                "kernel {} ({}, {}): its page tables at {:#x}, {}",
                k.index,
                k.release,
                k.role.name(),
                layout.root,
                mode.kind.name()
            ));
            return Ok(Source {
                image,
                all_cpus: cpus,
                selected: vec![Selected { cpu, mode }],
                limits,
                spent: Default::default(),
                kernel: Some(k),
                quiet: ctx.quiet,
            });
        }
        if cpus.is_empty() && !need_cpu {
            return Ok(Source {
                image,
                all_cpus: Vec::new(),
                selected: Vec::new(),
                limits,
                spent: Default::default(),
                kernel: None,
                quiet: ctx.quiet,
            });
        }
        if cpus.is_empty() {
            bail!(
                "{}: no CPU state in this input; give --registers FILE (HMP `info registers -a`) or --mode MODE --cr3 ADDR",
                self.input.display()
            );
        }
        let all_cpus = cpus.clone();
        let chosen: Vec<X86CpuState> = if self.all_cpus {
            cpus
        } else if let Some(n) = self.cpu {
            let Some(c) = cpus.iter().find(|c| c.index as usize == n).or(cpus.get(n)) else {
                bail!(
                    "{}: there is no vCPU {n} (the input has {})",
                    self.input.display(),
                    cpus.len()
                );
            };
            vec![c.clone()]
        } else {
            match cpus.iter().find(|c| c.paging_enabled()) {
                Some(c) => {
                    if cpus.len() > 1 {
                        ctx.note(format_args!(
                            "using vCPU {} (the first with paging on; --cpu N or --all-cpus to choose)",
                            c.index
                        ));
                    }
                    vec![c.clone()]
                }
                None => {
                    ctx.note("no vCPU has paging on: virtual = physical");
                    vec![cpus[0].clone()]
                }
            }
        };
        let mut selected = Vec::with_capacity(chosen.len());
        for cpu in chosen {
            let mut mode = PagingMode::from_cpu(&cpu)
                .with_context(|| format!("{}: vCPU {}", self.input.display(), cpu.index))?;
            if let Some(cr3) = self.cr3 {
                mode = mode.with_cr3(cr3);
            }
            selected.push(Selected { cpu, mode });
        }
        Ok(Source {
            image,
            all_cpus,
            selected,
            limits,
            spent: Default::default(),
            kernel: None,
            quiet: ctx.quiet,
        })
    }
}

/// A vCPU state that puts the CPU in `mode` with the given root.
pub fn state_for_mode(mode: ModeArg, cr3: u64) -> X86CpuState {
    let kind = match mode {
        ModeArg::Off => ModeKind::Off,
        ModeArg::Bits32 | ModeArg::Pse => ModeKind::Bits32,
        ModeArg::Pae => ModeKind::Pae,
        ModeArg::Level4 => ModeKind::Level4,
        ModeArg::Level5 => ModeKind::Level5,
    };
    let mut c = guestcore::paging::state_for_mode(kind, cr3, 0);
    if mode == ModeArg::Bits32 {
        c.cr[4] &= !CR4_PSE;
    }
    c
}

/// What makes a walk's output differ from what was asked for: a limit cut it short, or the
/// tables refer to themselves (their leaves map page tables, often one page many times).
fn walk_warnings(r: &WalkReport) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(stop) = r.stopped {
        use guestcore::paging::StopReason;
        let flag = match stop {
            StopReason::EntryLimit => "--max-entries",
            StopReason::LeafLimit => "--max-leaves",
            StopReason::MappingLimit => "--max-mappings",
        };
        out.push(format!(
            "walk stopped early ({flag} limit) after {} entries and {} leaves: everything above the last address listed is left out (raise {flag})",
            r.entries_visited, r.leaves
        ));
    }
    if r.self_references > 0 {
        let frames = if r.loop_frames >= guestcore::paging::LOOP_FRAMES_COUNTED {
            format!("at least {}", r.loop_frames)
        } else {
            r.loop_frames.to_string()
        };
        out.push(format!(
            "the page tables refer to themselves ({} entries point at the root or at a table above them): {} leaves alias {frames} physical pages (page tables mapped as memory)",
            r.self_references, r.loop_leaves
        ));
    }
    out
}

/// Facts about a walk worth a note: entries the CPU would not follow either.
fn walk_notes(r: &WalkReport) -> Option<String> {
    let mut parts = Vec::new();
    if r.tables_outside_ram > 0 {
        parts.push(format!(
            "{} table pointers outside guest RAM skipped",
            r.tables_outside_ram
        ));
    }
    if r.reserved_entries > 0 {
        parts.push(format!(
            "{} entries with reserved bits skipped",
            r.reserved_entries
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
