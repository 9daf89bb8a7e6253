//! The ELF core writer: plan ([`super::elf_layout`]), then write headers, notes and memory into
//! an atomic output file.

use super::copy::{copy_run, CopyStats};
use super::elf_headers::{
    file_header, push_program_header, push_section_header, ElfClass, ElfMachine, FileHeaderFields,
    Section,
};
use super::elf_layout::{plan, DumpLayout, ElfPlan, SHNUM, SHSTRTAB, SHSTRTAB_NAME};
use super::output::{check_target, AtomicOutput, OutputOptions};
use super::DumpSummary;
use crate::addr::PhysRange;
use crate::dump_level::FrameSet;
use crate::format::ElfNote;
use crate::phys::PhysMemory;
use crate::progress::Progress;
use crate::{Error, Result};
use object::elf;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// What to put in an ELF core.
#[derive(Clone, Copy)]
pub struct ElfDumpRequest<'a> {
    /// The guest's physical memory; its RAM map decides what exists.
    pub memory: &'a dyn PhysMemory,
    /// The notes, already built, in file order: NT_PRSTATUS per vCPU, QEMU per vCPU, VMCOREINFO.
    pub notes: &'a [ElfNote],
    /// `e_machine`.
    pub machine: ElfMachine,
    /// ELF64, or ELF32 when every value fits (checked; an error names the first that does not).
    pub class: ElfClass,
    /// Physical (paging off) or paging (one PT_LOAD per mapping).
    pub layout: DumpLayout<'a>,
    /// Only physical memory in this window (`--begin/--length`).
    pub filter: Option<PhysRange>,
    /// Frames a dump level leaves out (with zero pages, once
    /// [`PageFilter::exclude_zero_pages`](crate::dump_level::PageFilter::exclude_zero_pages)
    /// found them): they are not in the file.
    pub excluded: Option<&'a FrameSet>,
}

impl std::fmt::Debug for ElfDumpRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElfDumpRequest")
            .field("ram", self.memory.ram())
            .field("notes", &self.notes.len())
            .field("machine", &self.machine)
            .field("class", &self.class)
            .field("layout", &self.layout)
            .field("filter", &self.filter)
            .field("excluded", &self.excluded.map(FrameSet::len))
            .finish()
    }
}

/// Computes every header and offset of the core `req` describes, without any I/O: the file
/// size, the number of PT_LOADs, whether ELF32 can hold it.
pub fn plan_elf_core<'a>(req: &ElfDumpRequest<'a>) -> Result<ElfPlan<'a>> {
    let notes_len = req.notes.iter().map(|n| n.encoded_len() as u64).sum();
    plan(
        req.class,
        req.machine,
        req.memory.ram(),
        notes_len,
        req.layout,
        req.filter,
        req.excluded,
    )
}

/// Calls [`Progress::finish`] however the write ends.
struct Finish<'a>(&'a dyn Progress);
impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Writes an ELF core of `req` to `out`.
///
/// Everything that can be checked before writing is checked first, and no file is created
/// when it fails: the plan (filter outside RAM, ELF32 overflow, empty mapping list) and the
/// target (exists without `force`, is a directory). The data goes to a temporary file beside
/// `out`, which becomes `out` only when complete and synced; on any error or on cancel
/// ([`Progress::cancelled`], answered with [`Error::Cancelled`]) it is removed.
///
/// Progress: `start("writing", bytes of guest memory)`, then `advance` per chunk.
pub fn write_elf_core(
    req: &ElfDumpRequest<'_>,
    out: &Path,
    opts: &OutputOptions,
    progress: &dyn Progress,
) -> Result<DumpSummary> {
    let plan = plan_elf_core(req)?;
    check_target(out, opts)?;
    let output = AtomicOutput::create(out, opts)?;
    let name = output.path().display().to_string();
    let file = output.file();

    write_headers(&plan, req.notes, file, &name)?;

    let _finish = Finish(progress);
    progress.start("writing", plan.data_bytes());
    let mut stats = CopyStats::default();
    let mut buf = Vec::new();
    for run in plan.runs() {
        copy_run(req.memory, file, &name, run, &mut buf, progress, &mut stats)?;
    }
    if progress.cancelled() {
        return Err(Error::Cancelled);
    }

    write_sections(&plan, file, &name)?;
    file.set_len(plan.file_size())
        .map_err(|e| Error::io(format!("writing {name}"), e))?;
    // Notes and headers were read from the input too: nothing from a cut file is kept.
    req.memory.intact()?;
    output.commit()?;

    Ok(DumpSummary {
        segments: plan.load_count(),
        program_headers: plan.program_header_count() as usize,
        data_bytes: plan.data_bytes(),
        bytes_written: stats.written,
        zero_bytes_skipped: stats.skipped_zero,
        file_size: plan.file_size(),
        pn_xnum: plan.pn_xnum(),
        excluded_written: plan.excluded_written(),
    })
}

/// Writes the file header, the program headers (in 1 MiB batches) and the notes.
pub(crate) fn write_headers(
    plan: &ElfPlan<'_>,
    notes: &[ElfNote],
    file: &File,
    name: &str,
) -> Result<()> {
    let class = plan.class();
    let put = |bytes: &[u8], at: u64| {
        file.write_all_at(bytes, at)
            .map_err(|e| Error::io(format!("writing {name}"), e))
    };
    put(
        &file_header(&FileHeaderFields {
            class,
            machine: plan.machine,
            phnum: plan.program_header_count(),
            phoff: class.ehsize(),
            shoff: plan.shoff(),
            shnum: SHNUM,
            shstrndx: 1,
        }),
        0,
    )?;
    let mut at = class.ehsize();
    let mut batch = Vec::with_capacity(1 << 20);
    for s in plan.segments() {
        push_program_header(class, &s, &mut batch);
        if batch.len() >= 1 << 20 {
            put(&batch, at)?;
            at += batch.len() as u64;
            batch.clear();
        }
    }
    put(&batch, at)?;
    put(&ElfNote::encode_all(notes), plan.note_offset())
}

/// Writes `.shstrtab` and the section headers: the null section (whose `sh_info` holds the
/// program header count under PN_XNUM) and `.shstrtab`.
pub(crate) fn write_sections(plan: &ElfPlan<'_>, file: &File, name: &str) -> Result<()> {
    let class = plan.class();
    let mut bytes = Vec::new();
    let null = Section {
        info: if plan.pn_xnum() {
            plan.program_header_count() as u32
        } else {
            0
        },
        ..Section::default()
    };
    push_section_header(class, &null, &mut bytes);
    push_section_header(
        class,
        &Section {
            name: SHSTRTAB_NAME,
            sh_type: elf::SHT_STRTAB,
            offset: plan.shstrtab_offset,
            size: SHSTRTAB.len() as u64,
            info: 0,
            align: 1,
        },
        &mut bytes,
    );
    let put = |bytes: &[u8], at: u64| {
        file.write_all_at(bytes, at)
            .map_err(|e| Error::io(format!("writing {name}"), e))
    };
    put(SHSTRTAB, plan.shstrtab_offset)?;
    put(&bytes, plan.shoff())
}
