//! The first VMCOREINFO note in guest RAM, for inputs that carry none of their own (a raw
//! image, a live guest): a page-start scan that stops at the first note.
//!
//! [`super::scan`] finds every kernel's note (and kdump core headers) in one parallel pass;
//! this is the cheap sequential question "which kernel is this", answered by the first hit.

use super::scan::{read_vmcoreinfo_note, PIECE};
use crate::addr::PAGE_SIZE;
use crate::format::vmcoreinfo::is_vmcoreinfo_note;
use crate::phys::PhysMemory;

/// Finds the guest's VMCOREINFO note by looking at the start of every page: Linux writes it
/// at the start of the page-aligned `vmcoreinfo_note` buffer at boot (namesz 11, type 0,
/// `VMCOREINFO\0`, text starting `OSRELEASE=`). Returns the note's text
/// ([`read_vmcoreinfo_note`]).
pub(crate) fn find_vmcoreinfo(mem: &dyn PhysMemory) -> Option<Vec<u8>> {
    let mut head = [0u8; 34];
    let mut found = None;
    for r in mem.ram().ranges() {
        let mut piece = r.start.next_multiple_of(PAGE_SIZE);
        while piece < r.end && found.is_none() {
            let piece_end = piece.saturating_add(PIECE).min(r.end);
            // Holes of the source's file are zero: no note there (see `phys::holes`).
            crate::phys::holes::for_each_data_run(mem, piece, piece_end, |s, e| {
                let mut a = piece + (s - piece) / PAGE_SIZE * PAGE_SIZE;
                while a < e && a + PAGE_SIZE <= r.end {
                    let hit = match mem.slice(a, head.len() as u64) {
                        Some(s) => is_vmcoreinfo_note(s),
                        None => mem.read_at(a, &mut head).is_ok() && is_vmcoreinfo_note(&head),
                    };
                    if hit {
                        if let Some(text) = read_vmcoreinfo_note(mem, a) {
                            found = Some(text);
                            return false;
                        }
                    }
                    a += PAGE_SIZE;
                }
                true
            });
            // Done with these pages: a mapped source drops them (O(piece) resident).
            mem.release(piece, piece_end - piece);
            piece = piece_end;
        }
        if found.is_some() {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::note::{ElfNote, VMCOREINFO_NAME};
    use crate::phys::VecMemory;

    #[test]
    fn vmcoreinfo_found_at_a_page_start() {
        let text = b"OSRELEASE=6.1.0-56-amd64\nPAGESIZE=4096\n";
        let mut ram = vec![0u8; 0x10000];
        // A decoy not at a page start.
        ram[0x100..0x100 + 11].copy_from_slice(b"VMCOREINFO\0");
        let mut note = Vec::new();
        ElfNote::new(VMCOREINFO_NAME, 0, text.to_vec()).encode_into(&mut note);
        ram[0x3000..0x3000 + note.len()].copy_from_slice(&note);
        let mem = VecMemory::flat(ram);
        assert_eq!(find_vmcoreinfo(&mem).unwrap(), text);
        assert!(find_vmcoreinfo(&VecMemory::flat(vec![0; 0x4000])).is_none());
    }
}
