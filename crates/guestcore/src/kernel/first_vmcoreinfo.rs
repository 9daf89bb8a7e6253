//! The first VMCOREINFO note in guest RAM, for inputs that carry none of their own (a raw
//! image, a live guest): a page-start scan that stops at the first note.
//!
//! [`super::scan`] finds every kernel's note (and kdump core headers) in one parallel pass;
//! this is the cheap sequential question "which kernel is this", answered by the first hit.

use super::scan::{is_vmcoreinfo_note, PIECE};
use crate::addr::PAGE_SIZE;
use crate::phys::PhysMemory;

/// The longest note text taken.
const MAX_TEXT: u64 = 1 << 20;

/// Finds the guest's VMCOREINFO note by looking at the start of every page: Linux writes it
/// at the start of the page-aligned `vmcoreinfo_note` buffer at boot (namesz 11, type 0,
/// `VMCOREINFO\0`, text starting `OSRELEASE=`). Returns the note's text, trailing NULs
/// removed.
pub fn find_vmcoreinfo(mem: &dyn PhysMemory) -> Option<Vec<u8>> {
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
                        if let Some(text) = note_text(mem, a) {
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

/// The text of the note at `a`, when its length is sane and it lies in RAM.
fn note_text(mem: &dyn PhysMemory, a: u64) -> Option<Vec<u8>> {
    let len = u64::from(mem.read_u32(a + 4).ok()?);
    if len == 0 || len > MAX_TEXT || !mem.is_ram(a + 24, len) {
        return None;
    }
    let mut text = vec![0u8; len as usize];
    mem.read_at(a + 24, &mut text).ok()?;
    while text.last() == Some(&0) {
        text.pop();
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phys::VecMemory;

    #[test]
    fn vmcoreinfo_found_at_a_page_start() {
        let text = b"OSRELEASE=6.1.0-56-amd64\nPAGESIZE=4096\n";
        let mut ram = vec![0u8; 0x10000];
        // A decoy not at a page start.
        ram[0x100..0x100 + 11].copy_from_slice(b"VMCOREINFO\0");
        let at = 0x3000;
        ram[at..at + 4].copy_from_slice(&11u32.to_le_bytes());
        ram[at + 4..at + 8].copy_from_slice(&(text.len() as u32).to_le_bytes());
        ram[at + 12..at + 23].copy_from_slice(b"VMCOREINFO\0");
        ram[at + 24..at + 24 + text.len()].copy_from_slice(text);
        let mem = VecMemory::flat(ram);
        assert_eq!(find_vmcoreinfo(&mem).unwrap(), text);
        assert!(find_vmcoreinfo(&VecMemory::flat(vec![0; 0x4000])).is_none());
    }
}
