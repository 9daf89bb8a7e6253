//! Finding kernels' traces in guest-physical memory, in one pass over the start of every page.
//!
//! Linux keeps its VMCOREINFO as a ready ELF note in the page-aligned `vmcoreinfo_note` buffer
//! (`namesz 11`, type 0, `VMCOREINFO\0`, text starting `OSRELEASE=`), and a kdump capture
//! kernel is booted with the crashed kernel's ELF core header (`elfcorehdr=`) at the start of a
//! page inside the crashkernel reservation. Both sit at page starts, so the scan reads the first
//! 64 bytes of each page and nothing else: its cost is one small read per page (for a file
//! source, the page cache brings in each page once).
//!
//! Guest memory may be hostile: at most [`MAX_FOUND`] of each kind are kept, a note's text is
//! at most [`MAX_VMCOREINFO`](crate::format::vmcoreinfo::MAX_VMCOREINFO) bytes (the one
//! VMCOREINFO reader's cap), and counts read from memory are never trusted beyond that.

use crate::format::elf::ElfMachine;
use crate::format::vmcoreinfo::is_vmcoreinfo_note;
use crate::phys::PhysMemory;

/// The most VMCOREINFO notes, and the most ELF core headers, one scan keeps.
pub const MAX_FOUND: usize = 64;
use crate::addr::PAGE_SIZE as PAGE;

/// A VMCOREINFO note found in RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FoundVmcoreinfo {
    /// Physical address of the note (its header).
    pub addr: u64,
    /// The text, trailing NULs removed.
    pub text: Vec<u8>,
}

/// What a scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Found {
    /// Every VMCOREINFO note found, with its physical address.
    pub vmcoreinfo: Vec<FoundVmcoreinfo>,
    /// Physical addresses of pages that start with an ELF64 ET_CORE header.
    pub core_headers: Vec<u64>,
    /// True when more than [`MAX_FOUND`] of either kind were seen (the rest are ignored).
    pub truncated: bool,
    /// Pages of RAM the source could not give (a chunk or compressed page that fails to
    /// decode, an I/O error): a kernel's VMCOREINFO may be in them.
    pub unreadable: UnreadablePages,
}

/// Pages of RAM a pass could not read, other than those the source does not hold at all
/// (a kdump file's filtered-out pages are absent by design, not unreadable).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnreadablePages {
    /// How many pages.
    pub pages: u64,
    /// The first of them (by address) and why it could not be read.
    pub first: Option<(u64, String)>,
}

impl UnreadablePages {
    /// Counts `addr` when `e` says its page exists but could not be read.
    fn add(&mut self, addr: u64, e: &crate::Error) {
        if matches!(e, crate::Error::NotInMemory { .. }) {
            return;
        }
        self.pages += 1;
        self.keep_first(addr, || e.to_string());
    }

    fn join(&mut self, other: UnreadablePages) {
        self.pages += other.pages;
        if let Some((a, e)) = other.first {
            self.keep_first(a, || e);
        }
    }

    /// Makes `addr` the first unreadable page when it lies below the one kept.
    fn keep_first(&mut self, addr: u64, why: impl FnOnce() -> String) {
        if !self.first.as_ref().is_some_and(|(a, _)| *a <= addr) {
            self.first = Some((addr, why()));
        }
    }
}

/// True when `h` starts an ELF64 little-endian ET_CORE header for a machine guestcore reads
/// (x86's, written by kexec_file_load or kexec-tools; aarch64's, by kexec-tools).
fn is_core_header(h: &[u8]) -> bool {
    h.len() >= 20
        && &h[0..4] == b"\x7fELF"
        && h[4] == 2
        && h[5] == 1
        && h[16..18] == 4u16.to_le_bytes()
        && ElfMachine::from_e_machine(u16::from_le_bytes([h[18], h[19]])).is_some()
}

/// Reads the VMCOREINFO note at `addr` (found at a page start) through the one reader
/// ([`crate::format::vmcoreinfo::read_vmcoreinfo_note`]), counting a page of the note that
/// could not be read.
fn read_note_counting(
    mem: &(impl PhysMemory + ?Sized),
    addr: u64,
    unreadable: &mut UnreadablePages,
) -> Option<Vec<u8>> {
    crate::format::vmcoreinfo::read_vmcoreinfo_note(addr, None, |a, buf| {
        mem.is_ram(a, buf.len() as u64)
            && mem
                .read_at(a, buf)
                .map_err(|e| unreadable.add(a / PAGE * PAGE, &e))
                .is_ok()
    })
}

/// What one piece of RAM holds at its page starts, before the caps are applied.
#[derive(Default)]
struct Piece {
    notes: Vec<u64>,
    headers: Vec<u64>,
    unreadable: UnreadablePages,
}

/// The page starts that may hold a kernel's traces, seen as pages pass by (a dump whose pages
/// a stream pushes): the scan then reads only these instead of every page again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PageHeads {
    notes: Vec<u64>,
    headers: Vec<u64>,
    truncated: bool,
}

impl PageHeads {
    /// Notes `h`, the first bytes (at least 64) of the page at `addr`, when it starts a
    /// VMCOREINFO note or a kdump core header. At most [`MAX_FOUND`] of each are kept.
    pub(crate) fn see(&mut self, addr: u64, h: &[u8]) {
        let list = if is_vmcoreinfo_note(h) {
            &mut self.notes
        } else if is_core_header(h) {
            &mut self.headers
        } else {
            return;
        };
        if list.contains(&addr) {
            return;
        }
        if list.len() >= MAX_FOUND {
            self.truncated = true;
            return;
        }
        list.push(addr);
    }
}

/// What the pages `heads` saw hold now: the notes read (and validated) from `mem`, in address
/// order, as [`scan`] would find them without reading any other page.
pub(crate) fn scan_heads(mem: &(impl PhysMemory + ?Sized), heads: &PageHeads) -> Found {
    let mut piece = Piece {
        notes: heads.notes.clone(),
        headers: heads.headers.clone(),
        unreadable: UnreadablePages::default(),
    };
    piece.notes.sort_unstable();
    piece.headers.sort_unstable();
    let mut head = [0u8; 64];
    // A page seen once may have been sent again since: keep what still starts a trace.
    let still = |a: &u64, is: fn(&[u8]) -> bool, head: &mut [u8; 64]| {
        mem.read_at(*a, head).is_ok() && is(&head[..])
    };
    piece
        .notes
        .retain(|a| still(a, is_vmcoreinfo_note, &mut head));
    piece
        .headers
        .retain(|a| still(a, is_core_header, &mut head));
    let mut out = join(mem, vec![piece]);
    out.truncated |= heads.truncated;
    out
}

/// The pages of RAM scanned by one task: enough to keep both cores busy, few enough that the
/// per-task cost does not show.
pub(super) const PIECE: u64 = 32 << 20;

/// Scans the start of every page of guest RAM, in parallel pieces. Each piece keeps at most
/// [`MAX_FOUND`] of each kind (so memory stays bounded), and the pieces are joined in address
/// order before the caps apply to the whole.
pub(crate) fn scan(mem: &(impl PhysMemory + ?Sized)) -> Found {
    use rayon::prelude::*;
    let pieces: Vec<(u64, u64)> = mem
        .ram()
        .ranges()
        .iter()
        .flat_map(|r| {
            let start = r.start.next_multiple_of(PAGE);
            let mut at = start;
            std::iter::from_fn(move || {
                (at.saturating_add(PAGE) <= r.end).then(|| {
                    let end = at.saturating_add(PIECE).min(r.end);
                    let piece = (at, end);
                    at = end.next_multiple_of(PAGE);
                    piece
                })
            })
        })
        .collect();
    let found: Vec<Piece> = pieces
        .par_iter()
        .map(|&(start, end)| scan_piece(mem, start, end))
        .collect();
    join(mem, found)
}

/// The pieces' traces in order, the notes read, the caps applied to the whole.
fn join(mem: &(impl PhysMemory + ?Sized), found: Vec<Piece>) -> Found {
    let mut out = Found::default();
    for p in found {
        out.unreadable.join(p.unreadable);
        for a in p.notes {
            if out.vmcoreinfo.len() >= MAX_FOUND {
                out.truncated = true;
                break;
            }
            if let Some(text) = read_note_counting(mem, a, &mut out.unreadable) {
                out.vmcoreinfo.push(FoundVmcoreinfo { addr: a, text });
            }
        }
        for a in p.headers {
            if out.core_headers.len() >= MAX_FOUND {
                out.truncated = true;
                break;
            }
            out.core_headers.push(a);
        }
    }
    out
}

/// The page starts in `[start, end)` (page aligned) that begin a note or a core header. Pages
/// in holes of the source's file are not looked at (they are zero), and the piece is released
/// afterwards, so a scan of all RAM stays O(piece) resident.
fn scan_piece(mem: &(impl PhysMemory + ?Sized), start: u64, end: u64) -> Piece {
    let mut piece = Piece::default();
    let mut head = [0u8; 64];
    crate::phys::holes::for_each_data_run(mem, start, end, |s, e| {
        let mut a = start + (s - start) / PAGE * PAGE;
        while a < e && a.saturating_add(PAGE) <= end {
            let h: &[u8] = match mem.slice(a, head.len() as u64) {
                Some(s) => s,
                None => {
                    if let Err(e) = mem.read_at(a, &mut head) {
                        piece.unreadable.add(a, &e);
                        a += PAGE;
                        continue;
                    }
                    &head
                }
            };
            if is_vmcoreinfo_note(h) {
                if piece.notes.len() <= MAX_FOUND {
                    piece.notes.push(a);
                }
            } else if is_core_header(h) && piece.headers.len() <= MAX_FOUND {
                piece.headers.push(a);
            }
            a += PAGE;
        }
        true
    });
    mem.release(start, end - start);
    piece
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::elf::{EM_386, EM_AARCH64, EM_X86_64};

    fn core_header(class: u8, e_type: u16, e_machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[0..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = 1;
        h[16..18].copy_from_slice(&e_type.to_le_bytes());
        h[18..20].copy_from_slice(&e_machine.to_le_bytes());
        h
    }

    #[test]
    fn core_headers_of_every_machine_read_and_nothing_else() {
        // kexec-tools writes EM_AARCH64 for an arm64 kernel's crash header.
        for m in [EM_X86_64, EM_386, EM_AARCH64] {
            assert!(is_core_header(&core_header(2, 4, m)), "e_machine {m}");
        }
        assert!(!is_core_header(&core_header(2, 4, 40)), "EM_ARM");
        assert!(!is_core_header(&core_header(1, 4, EM_AARCH64)), "ELF32");
        assert!(!is_core_header(&core_header(2, 2, EM_AARCH64)), "ET_EXEC");
        assert!(
            !is_core_header(&core_header(2, 4, EM_AARCH64)[..19]),
            "short"
        );
    }

    #[test]
    fn an_aarch64_crash_header_at_a_page_start_is_found() {
        let mut ram = vec![0u8; 16 * PAGE as usize];
        ram[5 * PAGE as usize..][..64].copy_from_slice(&core_header(2, 4, EM_AARCH64));
        // Not at a page start: not where kexec puts it.
        ram[7 * PAGE as usize + 64..][..64].copy_from_slice(&core_header(2, 4, EM_AARCH64));
        let mem = crate::phys::VecMemory::flat(ram);
        assert_eq!(scan(&mem).core_headers, vec![5 * PAGE]);
    }
}
