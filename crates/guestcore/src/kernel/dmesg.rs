//! The kernel log, read out of the printk ring buffer that VMCOREINFO describes.
//!
//! Linux 5.10 and later keep the log in a lockless ring (`kernel/printk/printk_ringbuffer.h`):
//! `SYMBOL(prb)` points at a `printk_ringbuffer` holding a descriptor ring (`count_bits`,
//! `descs`, `infos`, `head_id`, `tail_id`) and a text data ring (`size_bits`, `data`). A
//! descriptor's `state_var` carries its id in the low bits and its state in the top two
//! (committed 1 and finalized 2 are readable); its `text_blk_lpos` gives the text block's
//! logical positions, whose block starts with the id (an unsigned long) and wraps to offset 0
//! when it would cross the end. Records are read from the tail id to the head id.
//!
//! Lines are printed as `makedumpfile --dump-dmesg` prints them (Debian's 1.7.2, the reference
//! of the tests): `[%5lu.%06lu] ` then the text; a newline inside a record continues on a new
//! line indented to the text; bytes that are neither printable nor space print as `\xNN`, where
//! makedumpfile sign-extends bytes ≥ 0x80 (C `char` is signed on x86), so they print as
//! `\xffffffNN`, and so do we.
//!
//! The ring belongs to the guest: its sizes are capped ([`MAX_RING_BYTES`]), the walk from tail
//! to head takes at most one lap of the descriptor ring, and every offset is checked.

use super::vread::{read_uint, read_virt, uint_at};
use crate::format::vmcoreinfo::{vmcoreinfo_field, vmcoreinfo_symbol};
use crate::paging::PagingMode;
use crate::phys::PhysMemory;
use crate::{Error, Result};

/// The most bytes read for the descriptor array, the info array, or the text ring.
pub(super) const MAX_RING_BYTES: u64 = 64 << 20;

/// The VMCOREINFO values the ring reader needs.
struct Layout {
    word: usize,
    prb: u64,
    size_prb: usize,
    off_desc_ring: usize,
    off_text_ring: usize,
    off_count_bits: usize,
    off_descs: usize,
    off_infos: usize,
    off_head_id: usize,
    off_tail_id: usize,
    size_desc: usize,
    off_state_var: usize,
    off_text_blk_lpos: usize,
    off_lpos_begin: usize,
    off_lpos_next: usize,
    size_info: usize,
    off_ts_nsec: usize,
    off_text_len: usize,
    off_size_bits: usize,
    off_data: usize,
    off_counter: usize,
}

fn field(text: &[u8], kind: &str, name: &str) -> Result<usize> {
    vmcoreinfo_field(text, kind, name, 1 << 20)
        .map(|v| v as usize)
        .ok_or_else(|| {
            Error::Unsupported(format!(
                "the kernel log needs {kind}({name}) in VMCOREINFO (printk ring buffer of Linux 5.10+)"
            ))
        })
}

impl Layout {
    fn from_vmcoreinfo(text: &[u8], word: usize) -> Result<Self> {
        let Some(prb) = vmcoreinfo_symbol(text, "prb") else {
            return Err(Error::Unsupported(
                if vmcoreinfo_symbol(text, "log_buf").is_some() {
                    "this kernel keeps its log in the pre-5.10 log_buf format, which guestcore does not read yet".into()
                } else {
                    "VMCOREINFO has no SYMBOL(prb): no kernel log to read".into()
                },
            ));
        };
        let o = |s: &str| field(text, "OFFSET", s);
        let z = |s: &str| field(text, "SIZE", s);
        Ok(Layout {
            word,
            prb,
            size_prb: z("printk_ringbuffer")?,
            off_desc_ring: o("printk_ringbuffer.desc_ring")?,
            off_text_ring: o("printk_ringbuffer.text_data_ring")?,
            off_count_bits: o("prb_desc_ring.count_bits")?,
            off_descs: o("prb_desc_ring.descs")?,
            off_infos: o("prb_desc_ring.infos")?,
            off_head_id: o("prb_desc_ring.head_id")?,
            off_tail_id: o("prb_desc_ring.tail_id")?,
            size_desc: z("prb_desc")?,
            off_state_var: o("prb_desc.state_var")?,
            off_text_blk_lpos: o("prb_desc.text_blk_lpos")?,
            off_lpos_begin: o("prb_data_blk_lpos.begin")?,
            off_lpos_next: o("prb_data_blk_lpos.next")?,
            size_info: z("printk_info")?,
            off_ts_nsec: o("printk_info.ts_nsec")?,
            off_text_len: o("printk_info.text_len")?,
            off_size_bits: o("prb_data_ring.size_bits")?,
            off_data: o("prb_data_ring.data")?,
            off_counter: o("atomic_long_t.counter")?,
        })
    }
}

fn corrupt(what: impl Into<String>) -> Error {
    Error::CorruptGuestData {
        structure: "printk ring buffer",
        detail: what.into(),
    }
}

/// Reads an array of `count × size` bytes at `va`, refusing sizes past [`MAX_RING_BYTES`].
fn read_array<M: PhysMemory + ?Sized>(
    mem: &M,
    mode: &PagingMode,
    va: u64,
    count: u64,
    size: usize,
    what: &str,
) -> Result<Vec<u8>> {
    let len = count
        .checked_mul(size as u64)
        .filter(|l| *l <= MAX_RING_BYTES)
        .ok_or_else(|| corrupt(format!("{what} would be {count} × {size} bytes")))?;
    let mut buf = vec![0u8; len as usize];
    read_virt(mem, mode, va, &mut buf)?;
    Ok(buf)
}

/// The kernel log of the kernel whose VMCOREINFO is `vmcoreinfo`, read through `mode` (its
/// page tables), as `makedumpfile --dump-dmesg` prints it.
pub fn kernel_log<M: PhysMemory + ?Sized>(
    mem: &M,
    mode: &PagingMode,
    vmcoreinfo: &[u8],
) -> Result<String> {
    let word = if mode.is_64bit() { 8 } else { 4 };
    let l = Layout::from_vmcoreinfo(vmcoreinfo, word)?;
    let prb_addr = read_uint(mem, mode, l.prb, word)?;
    let mut prb = vec![0u8; l.size_prb];
    read_virt(mem, mode, prb_addr, &mut prb)?;
    let bad = |what: &str| corrupt(format!("{what} lies outside struct printk_ringbuffer"));
    let get =
        |off: usize, width: usize, what: &str| uint_at(&prb, off, width).ok_or_else(|| bad(what));
    let dr = l.off_desc_ring;
    let count_bits = get(dr + l.off_count_bits, 4, "count_bits")?;
    if count_bits > 30 {
        return Err(corrupt(format!("count_bits {count_bits}")));
    }
    let count = 1u64 << count_bits;
    let descs_va = get(dr + l.off_descs, word, "descs")?;
    let infos_va = get(dr + l.off_infos, word, "infos")?;
    let head_id = get(dr + l.off_head_id + l.off_counter, word, "head_id")?;
    let tail_id = get(dr + l.off_tail_id + l.off_counter, word, "tail_id")?;
    let tr = l.off_text_ring;
    let size_bits = get(tr + l.off_size_bits, 4, "size_bits")?;
    if size_bits > 40 {
        return Err(corrupt(format!("size_bits {size_bits}")));
    }
    let text_size = 1u64 << size_bits;
    let data_va = get(tr + l.off_data, word, "data")?;

    let descs = read_array(
        mem,
        mode,
        descs_va,
        count,
        l.size_desc,
        "the descriptor array",
    )?;
    let infos = read_array(mem, mode, infos_va, count, l.size_info, "the info array")?;
    let text = read_array(mem, mode, data_va, text_size, 1, "the text ring")?;

    let bits = word as u32 * 8;
    let id_mask = if bits == 64 {
        !(3u64 << 62)
    } else {
        !(3u64 << 30) & 0xffff_ffff
    };
    // The records live from the tail id to the head id, ids counting up (modulo the id bits),
    // and the ring holds `count` descriptors: a head more than one lap past the tail — which
    // is also what a tail *after* the head looks like, once the subtraction wraps — is not a
    // ring the kernel wrote. Reading it anyway would print a lap of stale slots or nothing.
    let (head, tail) = (head_id & id_mask, tail_id & id_mask);
    let span = head.wrapping_sub(tail) & id_mask;
    if span >= count {
        return Err(corrupt(format!(
            "tail id {tail:#x} and head id {head:#x} are {span} records apart, \
             more than its {count} descriptors hold (a tail after the head?)"
        )));
    }
    let mut out = String::new();
    let mut id = tail;
    // One lap of the descriptor ring at most, whatever head and tail say.
    for _ in 0..=span {
        dump_record(
            &l, &descs, &infos, &text, count, text_size, id, bits, &mut out,
        )?;
        if id == head {
            break;
        }
        id = (id + 1) & id_mask;
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn dump_record(
    l: &Layout,
    descs: &[u8],
    infos: &[u8],
    text: &[u8],
    count: u64,
    text_size: u64,
    id: u64,
    bits: u32,
    out: &mut String,
) -> Result<()> {
    let w = l.word;
    let slot = (id % count) as usize;
    let d = slot * l.size_desc;
    let bad = || corrupt("a descriptor field lies outside struct prb_desc");
    let state_var = uint_at(descs, d + l.off_state_var + l.off_counter, w).ok_or_else(bad)?;
    let shift = bits - 2;
    let state_id = state_var & !(3u64 << shift) & (u64::MAX >> (64 - bits));
    let state = (state_var >> shift) & 3;
    if state_id != id || !(state == 1 || state == 2) {
        return Ok(());
    }
    let lpos = d + l.off_text_blk_lpos;
    let mut begin = uint_at(descs, lpos + l.off_lpos_begin, w).ok_or_else(bad)? % text_size;
    let next = uint_at(descs, lpos + l.off_lpos_next, w).ok_or_else(bad)? % text_size;
    if begin == next {
        return Ok(());
    }
    let i = slot * l.size_info;
    let info_bad = || corrupt("an info field lies outside struct printk_info");
    let mut text_len = uint_at(infos, i + l.off_text_len, 2).ok_or_else(info_bad)?;
    let ts_nsec = uint_at(infos, i + l.off_ts_nsec, 8).ok_or_else(info_bad)?;
    if begin > next {
        begin = 0;
    }
    begin += w as u64;
    // makedumpfile's unsigned arithmetic: a block shorter than its id leaves nothing.
    let room = next.saturating_sub(begin);
    text_len = text_len.min(room);
    let start = begin as usize;
    let body = text
        .get(start..start + text_len as usize)
        .ok_or_else(|| corrupt("a text block lies outside the text ring"))?;
    let prefix = format!(
        "[{:5}.{:06}] ",
        ts_nsec / 1_000_000_000,
        ts_nsec % 1_000_000_000 / 1000
    );
    out.push_str(&prefix);
    for &b in body {
        match b {
            b'\n' => {
                out.push('\n');
                out.extend(std::iter::repeat(' ').take(prefix.len()));
            }
            0x20..=0x7e | b'\t' | 0x0b | 0x0c | b'\r' => out.push(b as char),
            0x80.. => out.push_str(&format!("\\x{:x}", b as i8 as i32 as u32)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('\n');
    Ok(())
}
