//! The flat-view parser on real `info mtree -f` text.

use super::*;

/// QEMU 10, `-machine pc -m 4G`, before the BIOS ran (trimmed: i/o lines kept for realism).
const MTREE_4G: &str = "FlatView #0
 AS \"I/O\", root: io
 Root memory region: io
  0000000000000000-0000000000000007 (prio 0, i/o): dma-chan
  0000000000000070-0000000000000070 (prio 0, i/o): rtc-index

FlatView #1
 AS \"memory\", root: system
 AS \"cpu-memory-0\", root: system
 Root memory region: system
  0000000000000000-000000000009ffff (prio 0, ram): pc.ram
  00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem
  00000000000c0000-00000000000dffff (prio 1, rom): pc.rom
  00000000000e0000-00000000000fffff (prio 0, rom): pc.bios @0000000000020000
  0000000000100000-00000000bfffffff (prio 0, ram): pc.ram @0000000000100000
  00000000febf0400-00000000febf041f (prio 0, i/o): vga ioports remapped
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
  0000000100000000-000000013fffffff (prio 0, ram): pc.ram @00000000c0000000

FlatView #3
 AS \"cpu-smm-0\", root: memory
 Root memory region: memory
  0000000000000000-00000000000bffff (prio 0, ram): pc.ram
";

/// QEMU 10, a running guest with `-machine memory-backend=mem` (256 MiB): the BIOS routed
/// 0xc0000-0xfffff to RAM (PAM), partly read-only.
const MTREE_SHARED: &str = "FlatView #1
 AS \"memory\", root: system
 Root memory region: system
  0000000000000000-000000000009ffff (prio 0, ram): mem
  00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem
  00000000000c0000-00000000000c9fff (prio 0, rom): mem @00000000000c0000
  00000000000ca000-00000000000ccfff (prio 0, ram): mem @00000000000ca000
  00000000000cd000-00000000000e3fff (prio 0, rom): mem @00000000000cd000
  00000000000e4000-00000000000effff (prio 0, ram): mem @00000000000e4000
  00000000000f0000-00000000000fffff (prio 0, rom): mem @00000000000f0000
  0000000000100000-000000000fffffff (prio 0, ram): mem @0000000000100000
  00000000fd000000-00000000fdffffff (prio 1, ram): vga.vram
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
";

fn piece(start: u64, end: u64, block: &str, offset: u64) -> RamPiece {
    RamPiece {
        phys: PhysRange { start, end },
        block: block.into(),
        offset,
    }
}

#[test]
fn pc_4g_split_around_the_pci_hole() {
    let flat = parse_memory_flat_view(MTREE_4G).unwrap();
    assert_eq!(flat.len(), 8, "only the memory address space: {flat:#?}");
    assert_eq!(flat[5].block, "vga ioports remapped");
    let pieces = ram_pieces(&flat, &["pc.ram".into()]);
    assert_eq!(
        pieces,
        vec![
            piece(0, 0xa0000, "pc.ram", 0),
            piece(0x100000, 0xc000_0000, "pc.ram", 0x100000),
            piece(0x1_0000_0000, 0x1_4000_0000, "pc.ram", 0xc000_0000),
        ]
    );
}

#[test]
fn pam_pieces_of_one_backend_join() {
    let flat = parse_memory_flat_view(MTREE_SHARED).unwrap();
    let pieces = ram_pieces(&flat, &["mem".into()]);
    assert_eq!(
        pieces,
        vec![
            piece(0, 0xa0000, "mem", 0),
            piece(0xc0000, 0x1000_0000, "mem", 0xc0000),
        ]
    );
    assert!(parse_memory_flat_view("FlatView #0\n AS \"I/O\", root: io\n").is_err());
}
