//! The framing of a QEMU migration stream, read in one forward pass into [`Event`]s (the
//! format, from QEMU's `migration/savevm.c` and `migration/qemu-file.c`, is in
//! [`crate::format::migration`]; the loader this follows is `qemu_loadvm_state_main`).
//!
//! A stream is: the magic and version; a `CONFIGURATION` section (the machine type name, then
//! optional subsections such as the validated capabilities, e.g. `mapped-ram`); then sections.
//! RAM is an iterative section (`START`, `PART`s, `END`); each device's state is one `FULL`
//! section, written after RAM. `EOF` ends the device state; then the `VMDESCRIPTION` section:
//! a JSON description of every device's fields with their byte sizes
//! ([`crate::format::vmdesc`]). `COMMAND` sections (postcopy, return path) may appear between
//! sections; a `PACKAGED` command (postcopy) is refused.
//!
//! A device section does not say how long it is: only its vmstate description does, and that
//! comes at the end of the stream. So a device section is taken to end at the first footer
//! with its own id that is followed by a well-formed next section header; its bytes are
//! buffered (device state is small: all of a PC guest's is about 100 KiB) and checked against
//! the vmdesc sizes once it arrives ([`crate::format::vmdesc::DeviceDesc::check_section`]).
//!
//! Everything the stream declares is bounded before use: at most [`MAX_BLOCKS`] RAM blocks,
//! pages inside their block, at most [`Limits::max_page_records`] page records,
//! [`Limits::max_section`] bytes per device section and [`Limits::max_device_bytes`] in all,
//! [`Limits::max_vmdesc`] bytes of JSON, [`Limits::max_sections`] sections. A stream that
//! breaks any of them, or ends early, is an [`Error::Format`](crate::Error::Format) naming the
//! offset.

use super::input::Input;
use super::ram::{self, RamBlock, RamCaps, Record, PAGE_SIZE};
use crate::format::migration::{
    CAP_IGNORE_SHARED, CAP_MAPPED_RAM, CMD_PACKAGED, COMMAND, CONFIGURATION, MAGIC, RAM_FLAG_MASK,
    RAM_FLAG_MEM_SIZE, RAM_SECTION, SECTION_END, SECTION_EOF, SECTION_FOOTER, SECTION_FULL,
    SECTION_PART, SECTION_START, SUBSECTION, SUBSECTION_CAPABILITIES, SUBSECTION_TARGET_PAGE_BITS,
    SUBSECTION_UUID, VERSION, VMDESCRIPTION,
};
use crate::Result;
use serde::Serialize;
use std::io::{Read, Seek};
use std::path::PathBuf;

pub use super::ram::MAX_BLOCKS;

/// Commands are numbered below this (`MIG_CMD_MAX` is about 12 in QEMU 10).
const CMD_LIMIT: u16 = 64;

/// Caps on what a stream may declare (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of one device section.
    pub max_section: usize,
    /// Bytes of all device sections together.
    pub max_device_bytes: usize,
    /// Bytes of the vmdesc JSON.
    pub max_vmdesc: usize,
    /// Sections and commands in the stream.
    pub max_sections: usize,
    /// Page records per page of declared RAM (a precopy migration sends a page again each
    /// time the guest dirties it; a stopped guest or a snapshot sends each page once).
    pub max_sends_per_page: u64,
    /// Page records allowed whatever the RAM size.
    pub min_page_records: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_section: 16 << 20,
            max_device_bytes: 64 << 20,
            max_vmdesc: 16 << 20,
            max_sections: 100_000,
            max_sends_per_page: 16,
            min_page_records: 1 << 20,
        }
    }
}

impl Limits {
    /// Page records allowed for `pages` pages of declared RAM.
    pub fn max_page_records(&self, pages: u64) -> u64 {
        pages
            .saturating_mul(self.max_sends_per_page)
            .max(self.min_page_records)
    }
}

/// The stream's `CONFIGURATION` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Configuration {
    /// The machine type, e.g. `pc-i440fx-10.0`, `pc-q35-10.0`.
    pub machine: String,
    /// The capabilities QEMU asks the destination to validate (`x-ignore-shared`,
    /// `mapped-ram`).
    pub capabilities: Vec<String>,
}

impl Configuration {
    /// True when the stream was written with `mapped-ram`.
    pub fn mapped_ram(&self) -> bool {
        self.capabilities.iter().any(|c| c == CAP_MAPPED_RAM)
    }
}

/// The header of a `START` or `FULL` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SectionHeader {
    /// The section id the stream gives the device (later `PART`/`END` sections refer to it).
    pub id: u32,
    /// The device's idstr: `cpu`, `apic`, `0000:00:01.1/ide`, `vmcoreinfo`, …
    pub name: String,
    /// The instance number of the device (`cpu` 0, 1, …).
    pub instance: u32,
    /// The version of the device's vmstate the section was written with.
    pub version: u32,
}

/// The bytes of a page record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageContent<'a> {
    /// A zero page: every byte is this one.
    Fill(u8),
    /// The page's 4096 bytes.
    Bytes(&'a [u8]),
    /// The page's bytes were skipped ([`Parser::set_page_bytes`]`(false)`); they lie at the
    /// record's `data_pos` in the stream.
    Skipped,
}

/// What the parser found next. Borrowed data lives until the next call to [`Parser::next`].
#[derive(Debug)]
pub enum Event<'a> {
    /// The `CONFIGURATION` section (the first thing after the magic, when present).
    Configuration(&'a Configuration),
    /// The RAM block list (the `ram` section's first part).
    RamBlocks(&'a [RamBlock]),
    /// A page of `blocks[block]` at byte `offset` in it. `data_pos` is the stream offset of
    /// the page bytes (of the fill byte for a zero page).
    Page {
        /// Index of the page's RAM block in the [`Event::RamBlocks`] list.
        block: usize,
        /// Byte offset of the page in its block.
        offset: u64,
        /// Stream offset of the page bytes (of the fill byte for a zero page).
        data_pos: u64,
        /// The page's bytes.
        content: PageContent<'a>,
    },
    /// A device section: its header and its bytes (without the footer); `data_pos` is the
    /// stream offset of `data`.
    Device {
        /// The section's header (the one of its `START`/`FULL` for a `PART`/`END`).
        header: &'a SectionHeader,
        /// The section's bytes, without the footer.
        data: &'a [u8],
        /// Stream offset of `data`.
        data_pos: u64,
    },
    /// A `COMMAND` section.
    Command {
        /// The command number (`MIG_CMD_*`).
        cmd: u16,
        /// The command's argument bytes.
        data: &'a [u8],
    },
    /// `QEMU_VM_EOF`: the end of the device state. The vmdesc may follow.
    Eof,
    /// The vmdesc JSON (parse it with [`crate::format::vmdesc::Vmdesc::parse`]). Nothing follows.
    Vmdesc(&'a [u8]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Magic,
    Sections,
    /// Inside a part of the ram section with this id.
    Ram(u32),
    /// After `EOF`: the vmdesc or the end.
    AfterEof,
    Done,
}

/// A one-pass parser of a migration stream from any [`Read`] (a pipe, a socket, a file).
///
/// ```no_run
/// use guestcore::phys::migration::stream::{Event, Parser};
/// let file = std::fs::File::open("snap.mig")?;
/// let mut p = Parser::new(std::io::BufReader::new(file), "snap.mig");
/// while let Some(ev) = p.next()? {
///     if let Event::Page { block, offset, content, .. } = ev {
///         let _ = (block, offset, content);
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Parser<R> {
    input: Input<R>,
    limits: Limits,
    state: State,
    config: Configuration,
    blocks: Vec<RamBlock>,
    ram_section: Option<u32>,
    current_block: Option<usize>,
    page_records: u64,
    max_page_records: u64,
    sections: usize,
    device_bytes: usize,
    page_bytes: bool,
    device: (SectionHeader, Vec<u8>),
    scratch: Vec<u8>,
}

/// Shows where the parser is and what it has counted, not its buffers.
impl<R: Read> std::fmt::Debug for Parser<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parser")
            .field("pos", &self.input.pos())
            .field("state", &self.state)
            .field("blocks", &self.blocks.len())
            .field("page_records", &self.page_records)
            .field("sections", &self.sections)
            .field("device_bytes", &self.device_bytes)
            .field("page_bytes", &self.page_bytes)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Parser<R> {
    /// A parser reading `r`; `name` (a path, `pipe`) names the stream in errors.
    pub fn new(r: R, name: impl Into<PathBuf>) -> Self {
        Self::with_input(Input::new(r, name.into()))
    }

    fn with_input(input: Input<R>) -> Self {
        Parser {
            input,
            limits: Limits::default(),
            state: State::Magic,
            config: Configuration::default(),
            blocks: Vec::new(),
            ram_section: None,
            current_block: None,
            page_records: 0,
            max_page_records: 0,
            sections: 0,
            device_bytes: 0,
            page_bytes: true,
            device: (
                SectionHeader {
                    id: 0,
                    name: String::new(),
                    instance: 0,
                    version: 0,
                },
                Vec::new(),
            ),
            scratch: Vec::new(),
        }
    }

    /// Replaces the default [`Limits`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// With `false`, page events carry [`PageContent::Skipped`] and the page bytes are skipped
    /// (by seeking, for a [`seekable`](Parser::seekable) parser).
    pub fn set_page_bytes(&mut self, on: bool) {
        self.page_bytes = on;
    }

    /// The configuration section (default until it was read).
    pub fn configuration(&self) -> &Configuration {
        &self.config
    }

    /// The RAM blocks (empty until the block list was read).
    pub fn blocks(&self) -> &[RamBlock] {
        &self.blocks
    }

    /// Stream offset of the next byte.
    pub fn position(&self) -> u64 {
        self.input.pos()
    }

    /// The next event; `None` once the stream is complete (after the vmdesc, or at the end of
    /// input right after `EOF`). Ending anywhere else is an error.
    #[allow(clippy::should_implement_trait)] // a lending iterator: events borrow the parser
    pub fn next(&mut self) -> Result<Option<Event<'_>>> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Magic => {
                    self.read_magic()?;
                    self.state = State::Sections;
                    if self.input.peek(1)?.first() == Some(&CONFIGURATION) {
                        self.input.consume(1);
                        self.read_configuration()?;
                        return Ok(Some(Event::Configuration(&self.config)));
                    }
                }
                State::Ram(id) => {
                    let rec =
                        ram::read_record(&mut self.input, &self.blocks, &mut self.current_block)?;
                    match rec {
                        Record::Eos => {
                            self.footer(id)?;
                            self.state = State::Sections;
                        }
                        Record::Fill {
                            block,
                            offset,
                            fill,
                        } => {
                            self.count_page()?;
                            let data_pos = self.input.pos() - 1;
                            return Ok(Some(Event::Page {
                                block,
                                offset,
                                data_pos,
                                content: PageContent::Fill(fill),
                            }));
                        }
                        Record::Page { block, offset } => {
                            self.count_page()?;
                            let data_pos = self.input.pos();
                            let content = if self.page_bytes {
                                PageContent::Bytes(
                                    self.input.take(PAGE_SIZE as usize, "a RAM page")?,
                                )
                            } else {
                                self.input.skip(PAGE_SIZE, "a RAM page")?;
                                PageContent::Skipped
                            };
                            return Ok(Some(Event::Page {
                                block,
                                offset,
                                data_pos,
                                content,
                            }));
                        }
                    }
                }
                State::AfterEof => {
                    self.state = State::Done;
                    if self.input.at_end()? {
                        return Ok(None);
                    }
                    let t = self.input.u8("the vmdesc section")?;
                    if t != VMDESCRIPTION {
                        return Err(self.input.err(format!(
                            "section type {t:#x} after the end of the device state (expected the vmdesc, {VMDESCRIPTION:#x})"
                        )));
                    }
                    let len = self.input.be32("the vmdesc length")? as usize;
                    if len > self.limits.max_vmdesc {
                        return Err(self.input.err(format!(
                            "vmdesc of {len} bytes (at most {} accepted)",
                            self.limits.max_vmdesc
                        )));
                    }
                    let json = self.input.take(len, "the vmdesc JSON")?;
                    return Ok(Some(Event::Vmdesc(json)));
                }
                State::Sections => {
                    self.sections += 1;
                    if self.sections > self.limits.max_sections {
                        return Err(self.input.err(format!(
                            "more than {} sections: the stream does not end",
                            self.limits.max_sections
                        )));
                    }
                    let t = self.input.u8("a section type")?;
                    match t {
                        SECTION_EOF => {
                            self.state = State::AfterEof;
                            return Ok(Some(Event::Eof));
                        }
                        SECTION_START | SECTION_FULL => {
                            let h = self.section_header()?;
                            if h.name == RAM_SECTION {
                                if t != SECTION_START || self.ram_section.is_some() {
                                    return Err(self
                                        .input
                                        .err("a second or non-iterative ram section"));
                                }
                                self.ram_section = Some(h.id);
                                self.read_block_list()?;
                                self.footer(h.id)?;
                                return Ok(Some(Event::RamBlocks(&self.blocks)));
                            }
                            if t == SECTION_START {
                                return Err(self.input.err(format!(
                                    "iterative section {:?} (only RAM is supported: no block migration, dirty bitmaps or VFIO state)",
                                    h.name
                                )));
                            }
                            let data_pos = self.input.pos();
                            let data = self.read_device(h.id, &h.name)?;
                            self.device = (h, data);
                            return Ok(Some(Event::Device {
                                header: &self.device.0,
                                data: &self.device.1,
                                data_pos,
                            }));
                        }
                        SECTION_PART | SECTION_END => {
                            let id = self.input.be32("a section id")?;
                            if Some(id) != self.ram_section {
                                return Err(self
                                    .input
                                    .err(format!("part of section {id}, which never started")));
                            }
                            self.state = State::Ram(id);
                        }
                        COMMAND => {
                            let cmd = self.input.be16("a command")?;
                            let len = self.input.be16("a command length")? as usize;
                            if cmd == CMD_PACKAGED {
                                return Err(self.input.err(
                                    "a packaged (postcopy) stream: postcopy migrations are not supported",
                                ));
                            }
                            let data = self.input.take(len, "a command")?;
                            self.scratch.clear();
                            self.scratch.extend_from_slice(data);
                            return Ok(Some(Event::Command {
                                cmd,
                                data: &self.scratch,
                            }));
                        }
                        CONFIGURATION => {
                            return Err(self
                                .input
                                .err("a configuration section after the first section"))
                        }
                        _ => {
                            // Undo the type byte's position for the message.
                            return Err(Self::err_at(
                                &self.input,
                                self.input.pos() - 1,
                                format!("unknown section type {t:#04x}"),
                            ));
                        }
                    }
                }
            }
        }
    }

    fn err_at(input: &Input<R>, at: u64, what: String) -> crate::Error {
        crate::Error::format(input.name.clone(), format!("at offset {at:#x}: {what}"))
    }

    fn count_page(&mut self) -> Result<()> {
        self.page_records += 1;
        if self.page_records > self.max_page_records {
            return Err(self.input.err(format!(
                "more than {} page records for {} pages of RAM: the stream does not end",
                self.max_page_records,
                self.blocks.iter().map(RamBlock::pages).sum::<u64>()
            )));
        }
        Ok(())
    }

    fn read_magic(&mut self) -> Result<()> {
        let magic = self.input.be32("the stream header")?;
        if magic != MAGIC {
            return Err(self.input.err(format!("magic {magic:#010x} is not QEVM")));
        }
        let version = self.input.be32("the stream header")?;
        if version != VERSION {
            return Err(self.input.err(format!(
                "stream version {version} (this reader knows version {VERSION})"
            )));
        }
        Ok(())
    }

    /// The configuration vmstate: be32 name length, the name; then subsections.
    fn read_configuration(&mut self) -> Result<()> {
        let len = self.input.be32("the machine type")? as usize;
        if len == 0 || len > 256 {
            return Err(self.input.err(format!("machine type name of {len} bytes")));
        }
        let name = self.input.take(len, "the machine type")?;
        self.config.machine = String::from_utf8_lossy(name).into_owned();
        while self.input.peek(1)?.first() == Some(&SUBSECTION) {
            self.input.consume(1);
            let sub = self.input.short_str("a configuration subsection")?;
            let _version = self.input.be32("a subsection version")?;
            match sub.as_str() {
                SUBSECTION_CAPABILITIES => {
                    let n = self.input.be32("the capability count")?;
                    if n > 256 {
                        return Err(self.input.err(format!("{n} capabilities")));
                    }
                    for _ in 0..n {
                        let c = self.input.short_str("a capability")?;
                        self.config.capabilities.push(c);
                    }
                }
                SUBSECTION_TARGET_PAGE_BITS => {
                    let bits = self.input.be32("the target page bits")?;
                    if bits != 12 {
                        return Err(self.input.err(format!(
                            "target page bits {bits}: only 4 KiB pages are supported"
                        )));
                    }
                }
                SUBSECTION_UUID => {
                    self.input.take(16, "the VM UUID")?;
                }
                // Like QEMU's loader: a subsection that is not known cannot be skipped.
                other => {
                    return Err(self
                        .input
                        .err(format!("unknown configuration subsection {other:?}")))
                }
            }
        }
        Ok(())
    }

    fn section_header(&mut self) -> Result<SectionHeader> {
        let id = self.input.be32("a section header")?;
        let name = self.input.short_str("a section header")?;
        let instance = self.input.be32("a section header")?;
        let version = self.input.be32("a section header")?;
        if name.is_empty() {
            return Err(self.input.err("a section without a name"));
        }
        Ok(SectionHeader {
            id,
            name,
            instance,
            version,
        })
    }

    fn footer(&mut self, id: u32) -> Result<()> {
        let t = self.input.u8("a section footer")?;
        let got = self.input.be32("a section footer")?;
        if t != SECTION_FOOTER || got != id {
            return Err(self.input.err(format!(
                "section {id} does not end with its footer (found {t:#04x} {got:#x}; streams \
                 without section footers, from machine types before 2.4, are not supported)"
            )));
        }
        Ok(())
    }

    fn read_block_list(&mut self) -> Result<()> {
        let word = self.input.be64("the RAM block list")?;
        if word & RAM_FLAG_MASK != RAM_FLAG_MEM_SIZE {
            return Err(self.input.err(format!(
                "the ram section starts with flags {:#x}, not the block list (MEM_SIZE)",
                word & RAM_FLAG_MASK
            )));
        }
        let caps = RamCaps {
            mapped_ram: self.config.mapped_ram(),
            ignore_shared: self
                .config
                .capabilities
                .iter()
                .any(|c| c == CAP_IGNORE_SHARED),
        };
        self.blocks = ram::read_block_list(&mut self.input, word & !RAM_FLAG_MASK, caps)?;
        let pages = self.blocks.iter().map(RamBlock::pages).sum();
        self.max_page_records = self.limits.max_page_records(pages);
        // The part ends with EOS.
        match ram::read_record(&mut self.input, &self.blocks, &mut self.current_block)? {
            Record::Eos => Ok(()),
            _ => Err(self.input.err("pages inside the RAM block list")),
        }
    }

    /// The bytes of device section `id` up to its footer (see the module docs).
    fn read_device(&mut self, id: u32, name: &str) -> Result<Vec<u8>> {
        let start = self.input.pos();
        let mut data = Vec::new();
        let footer = {
            let mut f = [SECTION_FOOTER, 0, 0, 0, 0];
            f[1..].copy_from_slice(&id.to_be_bytes());
            f
        };
        // Enough look-ahead for a footer and the longest next section header.
        const LOOK: usize = 5 + 1 + 4 + 1 + 255 + 8;
        loop {
            let buf = self.input.peek(LOOK)?;
            if buf.is_empty() {
                return Err(Self::err_at(
                    &self.input,
                    start,
                    format!("stream ends inside device section {name:?} (id {id})"),
                ));
            }
            // Bytes before the next possible footer are data.
            let n = match buf.iter().position(|&b| b == SECTION_FOOTER) {
                Some(0) => {
                    if buf.len() >= 5
                        && buf[..5] == footer
                        && next_is_plausible(&buf[5..], self.ram_section)
                    {
                        self.input.consume(5);
                        return Ok(data);
                    }
                    1
                }
                Some(k) => k,
                None => buf.len(),
            };
            if data.len() + n > self.limits.max_section
                || self.device_bytes + n > self.limits.max_device_bytes
            {
                return Err(Self::err_at(
                    &self.input,
                    start,
                    format!(
                        "device section {name:?} (id {id}) is longer than {} bytes, or all device \
                         state longer than {} bytes",
                        self.limits.max_section, self.limits.max_device_bytes
                    ),
                ));
            }
            data.extend_from_slice(&buf[..n]);
            self.device_bytes += n;
            self.input.consume(n);
        }
    }
}

impl<R: Read + Seek> Parser<R> {
    /// A parser that skips page bytes by seeking (with [`set_page_bytes`](Self::set_page_bytes)
    /// `(false)`), reading ahead only `chunk` bytes at a time (small for in-memory sources).
    pub fn seekable(r: R, name: impl Into<PathBuf>, chunk: usize) -> Self {
        Self::with_input(Input::seekable(r, name.into(), chunk))
    }
}

/// True when `b` (the bytes after a candidate footer) starts like what may follow a device
/// section: the end of the stream, `EOF` (then nothing or the vmdesc), a `FULL`/`START`
/// header with a printable idstr, a `PART`/`END` of the ram section, or a command.
fn next_is_plausible(b: &[u8], ram: Option<u32>) -> bool {
    let Some(&t) = b.first() else {
        return true; // the stream ends: the caller reports the truncation next
    };
    let be32 = |at: usize| {
        b.get(at..at + 4)
            .map(|s| u32::from_be_bytes(s.try_into().expect("4")))
    };
    match t {
        SECTION_EOF => match b.get(1) {
            None => true,
            Some(&VMDESCRIPTION) => b.get(6).map_or(true, |&c| c == b'{'),
            Some(_) => false,
        },
        SECTION_START | SECTION_FULL => {
            let Some(&len) = b.get(5) else {
                return b.len() < 6;
            };
            let len = len as usize;
            if len == 0 {
                return false;
            }
            let name = &b[6.min(b.len())..(6 + len).min(b.len())];
            name.iter().all(|c| c.is_ascii_graphic())
                && be32(6 + len + 4).map_or(true, |v| v < 0x1_0000)
        }
        SECTION_PART | SECTION_END => be32(1).map_or(true, |id| Some(id) == ram),
        COMMAND => b
            .get(1..3)
            .map_or(true, |c| u16::from_be_bytes([c[0], c[1]]) < CMD_LIMIT),
        _ => false,
    }
}

/// Test data for streams written with [`crate::format::migration::StreamWriter`] (here and
/// in [`super::file`]).
#[cfg(test)]
pub(crate) mod build {
    use super::PAGE_SIZE;

    /// A page whose bytes say which page it is.
    pub(crate) fn page_bytes(tag: u64) -> Vec<u8> {
        (0..PAGE_SIZE).map(|i| (i * 31 + tag * 7) as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use crate::format::migration::{StreamWriter, RAM_FLAG_XBZRLE};
    use std::io;

    /// A pipe-like reader: at most 7 bytes per read.
    struct Pipe<'a>(&'a [u8]);
    impl Read for Pipe<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(7).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// A short stream: two blocks, pages, zero pages, a device whose bytes contain a false
    /// footer, EOF, vmdesc.
    fn sample() -> Vec<u8> {
        let mut b = StreamWriter::new("pc-i440fx-10.0", &[]);
        b.ram_start(&[("pc.ram", 4 * PAGE_SIZE), ("pc.bios", PAGE_SIZE)]);
        b.part();
        b.page(Some("pc.ram"), 0, &page_bytes(0));
        b.page(None, PAGE_SIZE, &page_bytes(1));
        b.zero(None, 2 * PAGE_SIZE, 0);
        b.page(Some("pc.bios"), 0, &page_bytes(9));
        b.part_end();
        // 0x7e 00000002 inside the data, followed by something that is no section header.
        b.device("dev", 0, &[1, 0x7e, 0, 0, 0, 2, 0x99, 3]);
        b.eof();
        b.vmdesc(r#"{"devices": []}"#);
        b.out
    }

    /// Every event of `bytes`, summarised, or the first error.
    fn events(bytes: &[u8]) -> Result<Vec<String>> {
        events_of(Parser::new(Pipe(bytes), "t"))
    }

    fn events_of<R: Read>(mut p: Parser<R>) -> Result<Vec<String>> {
        let mut out = Vec::new();
        while let Some(ev) = p.next()? {
            out.push(match ev {
                Event::Configuration(c) => format!("config {}", c.machine),
                Event::RamBlocks(b) => format!("blocks {}", b.len()),
                Event::Page {
                    block,
                    offset,
                    content,
                    ..
                } => match content {
                    PageContent::Fill(f) => format!("fill {block} {offset:#x} {f}"),
                    PageContent::Bytes(d) => format!("page {block} {offset:#x} {}", d[1]),
                    PageContent::Skipped => format!("skipped {block} {offset:#x}"),
                },
                Event::Device { header, data, .. } => format!("device {} {:?}", header.name, data),
                Event::Command { cmd, .. } => format!("command {cmd}"),
                Event::Eof => "eof".into(),
                Event::Vmdesc(j) => format!("vmdesc {}", j.len()),
            });
        }
        Ok(out)
    }

    #[test]
    fn one_pass_through_a_pipe() {
        let got = events(&sample()).unwrap();
        assert_eq!(
            got,
            vec![
                "config pc-i440fx-10.0",
                "blocks 2",
                "page 0 0x0 31",
                "page 0 0x1000 38",
                "fill 0 0x2000 0",
                "page 1 0x0 94",
                "device dev [1, 126, 0, 0, 0, 2, 153, 3]",
                "eof",
                "vmdesc 15",
            ]
        );
    }

    #[test]
    fn seekable_parser_skips_page_bytes() {
        let s = sample();
        let mut p = Parser::seekable(io::Cursor::new(&s[..]), "t", 64);
        p.set_page_bytes(false);
        let mut positions = Vec::new();
        while let Some(ev) = p.next().unwrap() {
            if let Event::Page {
                data_pos,
                content: PageContent::Skipped,
                ..
            } = ev
            {
                positions.push(data_pos);
            }
        }
        assert_eq!(positions.len(), 3);
        assert_eq!(&s[positions[1] as usize..][..8], &page_bytes(1)[..8]);
        assert_eq!(positions[1] - positions[0], PAGE_SIZE + 8, "one stride");
    }

    /// Every truncation is an error, except one that ends right after EOF (a stream without
    /// its vmdesc is complete).
    #[test]
    fn every_truncation_is_an_error() {
        let s = sample();
        let eof_at = s.len() - 1 - 4 - 15;
        for n in 0..s.len() {
            match events_of(Parser::new(&s[..n], "t")) {
                Err(e) => assert!(
                    e.to_string().contains("offset") || e.to_string().contains("stream ends"),
                    "{n}: {e}"
                ),
                Ok(_) => assert_eq!(n, eof_at, "prefix of {n} bytes accepted"),
            }
        }
    }

    fn err_of(bytes: &[u8]) -> String {
        events(bytes).unwrap_err().to_string()
    }

    #[test]
    fn bad_inputs_are_named() {
        let mut b = StreamWriter::new("pc", &[]);
        b.out.push(0x42);
        assert!(err_of(&b.out).contains("unknown section type 0x42"));

        let mut bad = sample();
        bad[0] = b'X';
        assert!(err_of(&bad).contains("not QEVM"));

        let mut b = StreamWriter::new("pc", &[]);
        b.ram_start(&[("pc.ram", 2 * PAGE_SIZE)]);
        b.part();
        b.page(Some("pc.ram"), 2 * PAGE_SIZE, &page_bytes(0));
        assert!(err_of(&b.out).contains("past the end of block \"pc.ram\""));

        let mut b = StreamWriter::new("pc", &[]);
        b.ram_start(&[("pc.ram", 2 * PAGE_SIZE)]);
        b.part();
        b.be64(RAM_FLAG_XBZRLE);
        assert!(err_of(&b.out).contains("XBZRLE"));

        let mut b = StreamWriter::new("pc", &[]);
        b.ram_start(&[("pc.ram", 2 * PAGE_SIZE)]);
        b.part();
        b.page(Some("nope"), 0, &page_bytes(0));
        assert!(err_of(&b.out).contains("undeclared block"));

        // An absurd block count: 2000 one-page blocks.
        let names: Vec<String> = (0..2000).map(|i| format!("b{i}")).collect();
        let blocks: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), PAGE_SIZE)).collect();
        let mut b = StreamWriter::new("pc", &[]);
        b.ram_start(&blocks);
        assert!(err_of(&b.out).contains("more than 1024 RAM blocks"));

        // An absurd length, and one larger than the declared total.
        let mut b = StreamWriter::new("pc", &[]);
        b.ram_start(&[("pc.ram", 1 << 60)]);
        assert!(err_of(&b.out).contains("absurd"));
        let mut b = StreamWriter::new("pc", &[]);
        b.ram_start(&[("pc.ram", PAGE_SIZE)]);
        let at = b.out.len() - 5 - 8 - 8;
        b.out[at..at + 8].copy_from_slice(&(2 * PAGE_SIZE).to_be_bytes());
        assert!(err_of(&b.out).contains("not a whole number of pages within"));

        // A vmdesc longer than the cap.
        let mut b = StreamWriter::new("pc", &[]);
        b.eof();
        b.out.push(VMDESCRIPTION);
        b.out.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(err_of(&b.out).contains("vmdesc of"));

        // A device section that never finds its footer.
        let mut b = StreamWriter::new("pc", &[]);
        b.device("dev", 0, &[0u8; 100]);
        b.out.truncate(b.out.len() - 5);
        assert!(err_of(&b.out).contains("inside device section"));
    }

    /// A device section over the cap, and a stream that never ends, stop in bounded memory.
    #[test]
    fn caps_bound_endless_streams() {
        struct Endless(Vec<u8>, usize);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len() - self.1);
                buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 = (self.1 + n) % self.0.len();
                Ok(n)
            }
        }
        // Empty RAM parts forever.
        let mut b = StreamWriter::new("pc", &[]);
        b.ram_start(&[("pc.ram", PAGE_SIZE)]);
        let head = b.out.len();
        b.part();
        b.part_end();
        let chained = io::Read::chain(&b.out[..head], Endless(b.out[head..].to_vec(), 0));
        let mut p = Parser::new(chained, "pipe").with_limits(Limits {
            max_sections: 5000,
            ..Limits::default()
        });
        let e = loop {
            match p.next() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("ended"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(e.contains("the stream does not end"), "{e}");

        // One page sent forever.
        let mut b = StreamWriter::new("pc", &[]);
        b.ram_start(&[("pc.ram", PAGE_SIZE)]);
        b.part();
        b.page(Some("pc.ram"), 0, &page_bytes(0));
        let head = b.out.len();
        b.page(None, 0, &page_bytes(0));
        let chained = io::Read::chain(&b.out[..head], Endless(b.out[head..].to_vec(), 0));
        let mut p = Parser::new(chained, "pipe").with_limits(Limits {
            min_page_records: 1000,
            ..Limits::default()
        });
        p.set_page_bytes(false);
        let e = loop {
            match p.next() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("ended"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(e.contains("page records"), "{e}");

        // Device bytes forever.
        let mut b = StreamWriter::new("pc", &[]);
        b.device("dev", 0, &[]);
        b.out.truncate(b.out.len() - 5);
        let chained = io::Read::chain(&b.out[..], Endless(vec![0x7e, 1, 2, 3], 0));
        let mut p = Parser::new(chained, "pipe");
        let e = loop {
            match p.next() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("ended"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(e.contains("longer than"), "{e}");
    }
}
