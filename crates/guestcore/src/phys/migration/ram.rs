//! The `ram` section: QEMU's RAM blocks and their pages, read (the record layout, from QEMU's
//! `migration/ram.c` and `docs/devel/migration/mapped-ram.rst`, is in
//! [`crate::format::migration`]; the loader this follows is `ram_load_precopy`).
//!
//! Each record names its block or continues the block of the record before; the section's
//! first part is the block list (with the `mapped-ram` capability, each block's header says
//! where its bitmap and pages lie in the file); zero pages carry one fill byte, pages their
//! 4096 bytes, `EOS` ends each part. Compressed, XBZRLE and multifd pages need state this
//! reader does not keep: they are refused by name rather than misread.

use super::input::Input;
use crate::format::migration::{
    mapped_ram_bitmap_len, MappedRamHeader, MAPPED_RAM_HEADER_LEN, MAPPED_RAM_VERSION,
    RAM_FLAG_COMPRESS_PAGE, RAM_FLAG_CONTINUE, RAM_FLAG_EOS, RAM_FLAG_FULL, RAM_FLAG_HOOK,
    RAM_FLAG_MASK, RAM_FLAG_MEM_SIZE, RAM_FLAG_MULTIFD_FLUSH, RAM_FLAG_PAGE, RAM_FLAG_XBZRLE,
    RAM_FLAG_ZERO,
};
use crate::Result;
use serde::Serialize;
use std::io::Read;

/// The page size of x86 migration streams (`TARGET_PAGE_SIZE`): the guest's page.
pub(crate) use crate::addr::PAGE_SIZE;

/// At most this many RAM blocks (a PC guest has about ten; each hot-plugged DIMM adds one).
pub const MAX_BLOCKS: usize = 1024;
/// No block or RAM total above 64 TiB.
pub(crate) const MAX_RAM: u64 = 1 << 46;

/// One RAM block as the stream declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RamBlock {
    /// The block's idstr: `pc.ram`, `pc.bios`, `0000:00:02.0/vga.vram`, …
    pub name: String,
    /// Its used length in bytes (a multiple of the page size).
    pub length: u64,
    /// Where its bitmap and pages lie, with `mapped-ram`.
    pub mapped: Option<MappedRam>,
}

impl RamBlock {
    /// Pages in the block.
    pub fn pages(&self) -> u64 {
        self.length / PAGE_SIZE
    }
}

/// A block's mapped-ram header: file offsets of its page bitmap (one bit per page, in
/// little-endian 64-bit words, set when the page's bytes are in the file) and of its pages
/// (page `i` at `pages_offset + i * 4096`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MappedRam {
    /// File offset of the page bitmap, in bytes.
    pub bitmap_offset: u64,
    /// File offset of page 0 of the block, in bytes.
    pub pages_offset: u64,
}

/// What the RAM records need from the stream's configuration.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RamCaps {
    pub mapped_ram: bool,
    /// `x-ignore-shared`: each block also carries its guest address.
    pub ignore_shared: bool,
}

/// A record of a RAM section part, as [`read_record`] decodes it.
pub(crate) enum Record {
    /// End of this part of the section.
    Eos,
    /// A zero page (filled with this byte); the cursor sits after the fill byte.
    Fill { block: usize, offset: u64, fill: u8 },
    /// A page whose 4096 bytes follow at the cursor.
    Page { block: usize, offset: u64 },
}

/// Names a flag the reader refuses.
fn refused(flags: u64) -> Option<&'static str> {
    [
        (RAM_FLAG_XBZRLE, "XBZRLE (capability xbzrle)"),
        (
            RAM_FLAG_COMPRESS_PAGE,
            "COMPRESS_PAGE (capability compress)",
        ),
        (RAM_FLAG_MULTIFD_FLUSH, "MULTIFD_FLUSH (capability multifd)"),
        (RAM_FLAG_HOOK, "HOOK (RDMA migration)"),
        (RAM_FLAG_FULL, "FULL (obsolete)"),
    ]
    .into_iter()
    .find(|(f, _)| flags & f != 0)
    .map(|(_, n)| n)
}

/// Reads the block list of a `MEM_SIZE` record whose total is `total`. With mapped-ram the
/// stream continues after each block's pages region, so the input skips there.
pub(crate) fn read_block_list<R: Read>(
    input: &mut Input<R>,
    total: u64,
    caps: RamCaps,
) -> Result<Vec<RamBlock>> {
    if total > MAX_RAM {
        return Err(input.err(format!(
            "RAM size {total:#x} is absurd (more than {MAX_RAM:#x})"
        )));
    }
    let mut blocks: Vec<RamBlock> = Vec::new();
    let mut sum = 0u64;
    while sum < total {
        if blocks.len() == MAX_BLOCKS {
            return Err(input.err(format!("more than {MAX_BLOCKS} RAM blocks")));
        }
        let name = input.short_str("a RAM block name")?;
        let length = input.be64("a RAM block length")?;
        if length == 0 || length % PAGE_SIZE != 0 || length > total - sum {
            return Err(input.err(format!(
                "RAM block {name:?} has length {length:#x}: not a whole number of pages within \
                 the declared RAM size {total:#x}"
            )));
        }
        if blocks.iter().any(|b| b.name == name) {
            return Err(input.err(format!("RAM block {name:?} declared twice")));
        }
        sum += length;
        if caps.ignore_shared {
            input.be64("a RAM block address")?;
        }
        let mapped = if caps.mapped_ram {
            Some(read_mapped_header(input, &name, length)?)
        } else {
            None
        };
        blocks.push(RamBlock {
            name,
            length,
            mapped,
        });
    }
    Ok(blocks)
}

fn read_mapped_header<R: Read>(input: &mut Input<R>, name: &str, length: u64) -> Result<MappedRam> {
    let MappedRamHeader {
        version,
        page_size,
        bitmap_offset,
        pages_offset,
    } = MappedRamHeader::decode(input.take(MAPPED_RAM_HEADER_LEN, "a mapped-ram header")?)
        .expect("a whole header");
    if version == 0 || version > MAPPED_RAM_VERSION {
        return Err(input.err(format!(
            "mapped-ram header version {version} of block {name:?} (this reader knows {MAPPED_RAM_VERSION})"
        )));
    }
    if page_size != PAGE_SIZE {
        return Err(input.err(format!(
            "mapped-ram block {name:?} has page size {page_size:#x}, not 4 KiB"
        )));
    }
    let here = input.pos();
    let bitmap_end = bitmap_offset.checked_add(mapped_ram_bitmap_len(length / PAGE_SIZE));
    let pages_end = pages_offset.checked_add(length);
    match (bitmap_end, pages_end) {
        (Some(be), Some(pe))
            if bitmap_offset >= here && be <= pages_offset && pe <= MAX_RAM * 2 =>
        {
            // QEMU continues the stream right after the block's pages region.
            input.skip(pe - here, "a mapped-ram pages region")?;
        }
        _ => {
            return Err(input.err(format!(
                "mapped-ram block {name:?}: bitmap at {bitmap_offset:#x} and pages at \
                 {pages_offset:#x} do not follow the header in order"
            )))
        }
    }
    Ok(MappedRam {
        bitmap_offset,
        pages_offset,
    })
}

/// Reads one record of a RAM section part (not the first `MEM_SIZE` one). `current` is the
/// block of the previous record, for `CONTINUE`; it is updated.
pub(crate) fn read_record<R: Read>(
    input: &mut Input<R>,
    blocks: &[RamBlock],
    current: &mut Option<usize>,
) -> Result<Record> {
    let word = input.be64("a RAM record header")?;
    let flags = word & RAM_FLAG_MASK;
    let offset = word & !RAM_FLAG_MASK;
    if let Some(name) = refused(flags) {
        return Err(input.err(format!(
            "RAM page record with flag {name}: compressed or delta-encoded pages are not supported"
        )));
    }
    if flags & RAM_FLAG_EOS != 0 {
        return Ok(Record::Eos);
    }
    if flags & RAM_FLAG_MEM_SIZE != 0 {
        return Err(input.err("a second RAM block list (MEM_SIZE) in one stream"));
    }
    let kind = flags & (RAM_FLAG_ZERO | RAM_FLAG_PAGE);
    if kind != RAM_FLAG_ZERO && kind != RAM_FLAG_PAGE {
        return Err(input.err(format!("RAM record with flags {flags:#x}")));
    }
    let block = if flags & RAM_FLAG_CONTINUE != 0 {
        current.ok_or_else(|| input.err("RAM record continues a block but none came before"))?
    } else {
        let name = input.short_str("a RAM block name")?;
        let i = blocks
            .iter()
            .position(|b| b.name == name)
            .ok_or_else(|| input.err(format!("RAM record for undeclared block {name:?}")))?;
        *current = Some(i);
        i
    };
    let b = &blocks[block];
    if offset >= b.length {
        return Err(input.err(format!(
            "RAM page at offset {offset:#x} past the end of block {:?} (length {:#x})",
            b.name, b.length
        )));
    }
    if b.mapped.is_some() {
        return Err(input.err(format!(
            "a page of mapped-ram block {:?} inside the stream",
            b.name
        )));
    }
    if kind == RAM_FLAG_ZERO {
        let fill = input.u8("a zero page's fill byte")?;
        Ok(Record::Fill {
            block,
            offset,
            fill,
        })
    } else {
        Ok(Record::Page { block, offset })
    }
}
