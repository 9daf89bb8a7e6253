//! The arguments every subcommand shares — which input, which vCPU, which page-table root — and
//! turning them into guest memory plus a list of (vCPU, paging mode) to work on.

use crate::output::Context;
use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use guestcore::{CpuOverrides, Guest, GuestOptions, Input, Selected, View, ViewSpec};
use guestcore::{ModeKind, WalkLimits};
use guestcore::{X86CpuState, CR4_PSE};
use std::path::PathBuf;

/// Parses numbers as users type them (decimal, 0x hex, K/M/G/T suffixes).
pub fn num(s: &str) -> Result<u64, String> {
    guestcore::parse_u64(s).map_err(|e| e.to_string())
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
    /// `libvirt:` input: libvirt's connection URI (default: `LIBVIRT_DEFAULT_URI`, else
    /// qemu:///system).
    #[arg(long, value_name = "URI")]
    pub connect: Option<String>,
}

impl LiveArgs {
    /// How a dump holds a live guest for these flags.
    pub fn capture(&self) -> guestcore::LiveCapture {
        match (self.pause, self.no_pause) {
            (true, _) => guestcore::LiveCapture::Pause,
            (_, true) => guestcore::LiveCapture::NoPause,
            _ => guestcore::LiveCapture::Auto,
        }
    }

    /// The library's options for these flags.
    pub fn options(&self) -> guestcore::LiveOptions {
        guestcore::LiveOptions {
            pause: !self.no_pause,
            connect: self.connect.clone(),
            ..Default::default()
        }
    }
}

/// Opens INPUT as a [`Guest`] whose notices go to stderr (see [`prepare`]).
pub fn open_guest(ctx: &Context, input: &Input, opts: &GuestOptions) -> Result<Guest> {
    let opts = prepare(ctx, input, opts.clone());
    Guest::open(input, &opts).map_err(|e| naming(e, input))
}

/// `opts` with the guest's notices rendered on stderr; for a live input first makes Ctrl-C a
/// cancel request (so the guest is resumed on the way out instead of the process dying with
/// the guest stopped).
pub fn prepare(ctx: &Context, input: &Input, opts: GuestOptions) -> GuestOptions {
    if input.is_live() {
        crate::progress::cancel_flag();
    }
    let quiet = ctx.quiet;
    opts.with_notices(move |n| crate::notices::render(quiet, n))
}

/// `e` as an anyhow error that names `input`: as context, unless its own text names it
/// already (so `guestcore: FILE: No such file…` says FILE once).
pub fn naming(e: guestcore::Error, input: &impl std::fmt::Display) -> anyhow::Error {
    let name = input.to_string();
    if e.to_string().contains(&name) {
        anyhow::Error::new(e)
    } else {
        anyhow::Error::new(e).context(name)
    }
}

/// Resumes a live guest this guest holds stopped and says for how long it was stopped.
pub fn finish_live(quiet: bool, guest: &mut Guest) {
    match guest.resume() {
        Ok(Some(d)) if !quiet => {
            eprintln!("guestcore: guest paused for {:.3} s", d.as_secs_f64())
        }
        Ok(_) => {}
        Err(e) => eprintln!("guestcore: could not resume the guest: {e}"),
    }
}

// -------------------------------------------------------------------------------------------

/// Which input, and how to open it: what every subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Guest memory: ELF core (QEMU dump-guest-memory, kdump /proc/vmcore), kdump file, QEMU
    /// migration stream, LiME/AVML image, raw image, `qmp:SOCKET` — a running QEMU's QMP
    /// socket (see --pause/--no-pause) — or `libvirt:DOMAIN` — a running QEMU started by
    /// libvirt (a domain's name, UUID or id; see --connect), through libvirt's own monitor.
    #[arg(value_name = "INPUT")]
    pub input: Input,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Layout of a raw image that is not flat from physical 0: `PHYS:LEN,PHYS:LEN,…` pieces
    /// in file order, or `BASE@` for a file that starts at physical BASE.
    #[arg(long, value_name = "LAYOUT")]
    pub layout: Option<guestcore::Layout>,
}

impl InputArgs {
    /// The library's options for these flags (no CPU overrides, default walk limits).
    pub fn options(&self) -> GuestOptions {
        GuestOptions {
            layout: self.layout.clone(),
            live: self.live.options(),
            ..Default::default()
        }
    }

    /// Opens the input (see [`open_guest`]).
    pub fn open(&self, ctx: &Context) -> Result<Guest> {
        open_guest(ctx, &self.input, &self.options())
    }
}

/// Input and CPU-selection arguments.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    #[command(flatten)]
    pub input: InputArgs,
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
    pub kernel: Option<guestcore::KernelSelector>,
    /// Stop a walk when its merged list holds this many mappings (mem, dump --paging).
    #[arg(long, value_parser = num, value_name = "N")]
    pub max_mappings: Option<u64>,
}

/// An opened input with the selected view; resumes a live guest it holds stopped when dropped.
pub struct Source {
    pub guest: Guest,
    pub view: View,
    /// `--quiet` (for the pause-time note when a live guest is resumed on drop).
    quiet: bool,
}

impl Source {
    /// Walks `sel`'s tables within the command's budget (the walk's report is a notice).
    pub fn walk(
        &self,
        _ctx: &Context,
        sel: &Selected,
        sink: impl FnMut(&guestcore::Leaf),
    ) -> Result<guestcore::WalkReport> {
        Ok(self.guest.walk(sel, sink)?)
    }

    /// `sel`'s merged mapping list, within the command's budget.
    pub fn mappings(
        &self,
        _ctx: &Context,
        sel: &Selected,
    ) -> Result<(guestcore::MappingList, guestcore::WalkReport)> {
        Ok(self.guest.mappings(sel)?)
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        finish_live(self.quiet, &mut self.guest);
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
        let guest = open_guest(ctx, &self.input.input, &self.options()?)?;
        let view = guest.select(&self.view_spec(), self.cr3)?;
        let source = Source {
            guest,
            view,
            quiet: ctx.quiet,
        };
        if need_cpu && source.view.selected.is_empty() {
            bail!(
                "{}: no CPU state in this input; {}",
                self.input.input,
                crate::output::NO_CPU_HINT
            );
        }
        Ok(source)
    }

    /// The view the flags name.
    pub fn view_spec(&self) -> ViewSpec {
        if let Some(k) = &self.kernel {
            ViewSpec::Kernel(*k)
        } else if self.all_cpus {
            ViewSpec::AllCpus
        } else if let Some(n) = self.cpu {
            ViewSpec::Cpu(n)
        } else {
            ViewSpec::FirstPaging
        }
    }

    /// The library's options for these flags (reads the --registers file).
    pub fn options(&self) -> Result<GuestOptions> {
        let mut cpus = CpuOverrides {
            registers: None,
            cr0: self.cr0,
            cr4: self.cr4,
            efer: self.efer,
        };
        if let Some(path) = &self.registers {
            let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
            cpus.registers = Some(
                guestcore::parse_info_registers(&text)
                    .with_context(|| path.display().to_string())?,
            );
        }
        if let Some(mode) = self.mode {
            let cr3 = self
                .cr3
                .context("--mode needs --cr3 (the physical address of the root page table)")?;
            cpus.registers = Some(vec![state_for_mode(mode, cr3)]);
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
        Ok(GuestOptions {
            cpus,
            limits,
            ..self.input.options()
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
    let mut c = guestcore::state_for_mode(kind, cr3, 0);
    if mode == ModeArg::Bits32 {
        c.cr[4] &= !CR4_PSE;
    }
    c
}
