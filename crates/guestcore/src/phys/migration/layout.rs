//! Where a stream's RAM blocks sit in guest-physical memory.
//!
//! A stream names RAM blocks and their lengths, not addresses: the destination QEMU knows
//! them from the same machine type. For an offline file guestcore does the same, for the
//! layouts it knows (QEMU's `hw/i386/pc_piix.c` `pc_init1`, `hw/i386/pc_q35.c`
//! `pc_q35_init`, `hw/i386/pc.c`):
//!
//! * **`pc-i440fx-*`** (`pc`): RAM below 4 GiB is `min(ram, 0xe0000000)` (3.5 GiB, the
//!   default `max-ram-below-4g`); when the RAM is at least that large it is cut to 3 GiB
//!   (`gigabyte_align`, every machine type since 1.7). The rest lies from 4 GiB up.
//! * **`pc-q35-*`** (`q35`): below 4 GiB is 2 GiB when the RAM is at least 2.75 GiB
//!   (`0xb0000000`), else all of it; the rest from 4 GiB.
//! * Both: the RAM block is `pc.ram` (its bytes are the low part, then the high part). With a
//!   VGA device (a video RAM block, `vga.vram`, `qxl.vram`…) the legacy VGA window
//!   `0xa0000..0xc0000` is the device's, not RAM; without one (a libvirt domain without
//!   `<video>`) `pc.ram` shows through it, as QEMU's own dump shows. `0xc0000..0x100000` is RAM
//!   either way (the BIOS shadow). `pc.bios` ends at 4 GiB.
//!
//! * **`virt-*`** (`virt`, aarch64): the RAM block `mach-virt.ram` lies whole from
//!   guest-physical 1 GiB (`hw/arm/virt.c`: `base_memmap[VIRT_MEM]` starts at `GiB`; RAM is one
//!   contiguous region whatever its size, the high MMIO regions being placed after it). The
//!   flash blocks (`virt.flash0`, `virt.flash1`, at 0 and 64 MiB) are ROM devices, not RAM, and
//!   QEMU's own dump leaves them out: not placed either.
//!
//! Blocks without a known place (video RAM at a PCI BAR, option ROMs, ACPI tables in
//! fw_cfg) are not placed. A layout that differs from these defaults (`max-ram-below-4g`,
//! `-machine memory-backend=` with another block name, `-numa` memory devices, an AMD host's
//! RAM above 1 TiB) cannot be told from the stream: the caller supplies the pieces (for a
//! live guest, from `info mtree -f`), and any other machine type is an error.

use super::ram::RamBlock;
use crate::addr::PhysRange;
use crate::phys::RamPiece;
use crate::{Error, Result};
use std::path::Path;

const GIB: u64 = 1 << 30;
const FOUR_GIB: u64 = 4 * GIB;
const VGA_START: u64 = 0xa0000;
const VGA_END: u64 = 0xc0000;

/// The machine families with a known layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Machine {
    /// `pc-i440fx-*` (and `pc`): up to 3.5 GiB of RAM below 4 GiB, only 3 GiB once there is
    /// at least 3.5 GiB; the rest above 4 GiB.
    I440fx,
    /// `pc-q35-*` (and `q35`): up to 2.75 GiB of RAM below 4 GiB, only 2 GiB once there is
    /// at least 2.75 GiB; the rest above 4 GiB.
    Q35,
    /// `virt-*` (and `virt`), aarch64: all RAM from 1 GiB.
    Virt,
}

/// The RAM block of a PC machine.
const PC_RAM: &str = "pc.ram";
/// The RAM block of an aarch64 `virt` machine.
pub(crate) const VIRT_RAM: &str = "mach-virt.ram";
/// Where an aarch64 `virt` machine's RAM starts (`VIRT_MEM`).
pub(crate) const VIRT_RAM_BASE: u64 = GIB;

impl Machine {
    /// The family of a machine type name (`pc-i440fx-10.0`, `pc-q35-9.2`, …).
    pub(crate) fn of(name: &str) -> Option<Machine> {
        if name.starts_with("pc-i440fx-") || name == "pc" {
            Some(Machine::I440fx)
        } else if name.starts_with("pc-q35-") || name == "q35" {
            Some(Machine::Q35)
        } else if name.starts_with("virt-") || name == "virt" {
            Some(Machine::Virt)
        } else {
            None
        }
    }

    /// The RAM block this family's layout places.
    pub(crate) fn ram_block(self) -> &'static str {
        match self {
            Machine::I440fx | Machine::Q35 => PC_RAM,
            Machine::Virt => VIRT_RAM,
        }
    }

    /// Bytes of RAM below 4 GiB for `ram` bytes of RAM, with the default `max-ram-below-4g`
    /// (a PC's; `virt` has no hole below 4 GiB: all of its RAM is "below" the split).
    pub(crate) fn below_4g(self, ram: u64) -> u64 {
        let lowmem = match self {
            Machine::I440fx if ram >= 0xe000_0000 => 3 * GIB,
            Machine::I440fx => 0xe000_0000,
            Machine::Q35 if ram >= 0xb000_0000 => 2 * GIB,
            Machine::Q35 => 0xb000_0000,
            Machine::Virt => u64::MAX,
        };
        ram.min(lowmem)
    }
}

/// The pieces of `blocks` for machine type `machine` (see the module docs).
pub(super) fn machine_layout(
    machine: &str,
    blocks: &[RamBlock],
    path: &Path,
) -> Result<Vec<RamPiece>> {
    let Some(kind) = Machine::of(machine) else {
        return Err(Error::format(
            path,
            format!(
                "machine type {machine:?} has no known RAM layout (known: pc-i440fx-*, \
                 pc-q35-*, virt-*); supply the layout"
            ),
        ));
    };
    let ram_name = kind.ram_block();
    let Some(ram) = blocks.iter().find(|b| b.name == ram_name) else {
        return Err(Error::format(
            path,
            format!(
                "no {ram_name} block (blocks: {}): the guest's RAM came from a memory backend; \
                 supply the layout",
                blocks
                    .iter()
                    .map(|b| b.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    if kind == Machine::Virt {
        return Ok(vec![RamPiece {
            block: VIRT_RAM.into(),
            offset: 0,
            phys: PhysRange::new(VIRT_RAM_BASE, ram.length),
        }]);
    }
    let below = kind.below_4g(ram.length);
    let mut out = Vec::new();
    let piece = |offset: u64, start: u64, end: u64| RamPiece {
        block: PC_RAM.into(),
        offset,
        phys: PhysRange::new(start, end - start),
    };
    // Every VGA device QEMU has keeps its frame buffer in a RAM block named *vram.
    let vga = blocks.iter().any(|b| b.name.contains("vram"));
    if vga {
        out.push(piece(0, 0, below.min(VGA_START)));
        if below > VGA_END {
            out.push(piece(VGA_END, VGA_END, below));
        }
    } else {
        out.push(piece(0, 0, below));
    }
    if ram.length > below {
        out.push(piece(below, FOUR_GIB, FOUR_GIB + (ram.length - below)));
    }
    if let Some(bios) = blocks.iter().find(|b| b.name == "pc.bios") {
        if bios.length <= 16 << 20 {
            out.push(RamPiece {
                block: bios.name.clone(),
                offset: 0,
                phys: PhysRange::new(FOUR_GIB - bios.length, bios.length),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(ram: u64) -> Vec<RamBlock> {
        [
            ("pc.ram", ram),
            ("pc.bios", 0x40000),
            ("vga.vram", 16 << 20),
        ]
        .into_iter()
        .map(|(n, l)| RamBlock {
            name: n.into(),
            length: l,
            mapped: None,
        })
        .collect()
    }

    fn ranges(machine: &str, ram: u64) -> Vec<(u64, u64, u64)> {
        machine_layout(machine, &blocks(ram), Path::new("t"))
            .unwrap()
            .into_iter()
            .filter(|p| p.block == "pc.ram")
            .map(|p| (p.phys.start, p.phys.end, p.offset))
            .collect()
    }

    #[test]
    fn i440fx_splits() {
        // 256 MiB: all low, the VGA window cut out (what QEMU's dump shows).
        assert_eq!(
            ranges("pc-i440fx-10.0", 256 << 20),
            vec![(0, 0xa0000, 0), (0xc0000, 0x1000_0000, 0xc0000)]
        );
        // 3.25 GiB stays below 4 GiB (under max-ram-below-4g, no gigabyte alignment).
        assert_eq!(ranges("pc-i440fx-9.2", 0xd000_0000)[1].1, 0xd000_0000);
        // 4 GiB: 3 GiB low, 1 GiB from 4 GiB, stored after the low part.
        assert_eq!(
            ranges("pc-i440fx-10.0", 4 * GIB)[1..],
            [(0xc0000, 3 * GIB, 0xc0000), (4 * GIB, 5 * GIB, 3 * GIB)]
        );
        let bios = machine_layout("pc-i440fx-10.0", &blocks(4 * GIB), Path::new("t")).unwrap();
        assert_eq!(
            bios.last().unwrap().phys,
            PhysRange::new(0xfffc_0000, 0x40000)
        );
    }

    #[test]
    fn without_vga_the_legacy_window_is_ram() {
        let b: Vec<RamBlock> = blocks(256 << 20)
            .into_iter()
            .filter(|b| b.name != "vga.vram")
            .collect();
        let pieces = machine_layout("pc-i440fx-10.0", &b, Path::new("t")).unwrap();
        assert_eq!(pieces[0].phys, PhysRange::new(0, 256 << 20));
        assert_eq!(pieces[0].offset, 0);
    }

    #[test]
    fn q35_splits() {
        assert_eq!(ranges("pc-q35-10.0", 0xa000_0000)[1].1, 0xa000_0000);
        assert_eq!(
            ranges("pc-q35-10.0", 3 * GIB)[1..],
            [(0xc0000, 2 * GIB, 0xc0000), (4 * GIB, 5 * GIB, 2 * GIB)]
        );
    }

    #[test]
    fn virt_ram_from_one_gib() {
        // The blocks of a QEMU 10 `-M virt -cpu max -m 16` stream.
        let b: Vec<RamBlock> = [
            ("virt.flash0", 64 << 20),
            ("virt.flash1", 64 << 20),
            ("mach-virt.ram", 16 << 20),
            ("/rom@etc/acpi/tables", 0x20000),
        ]
        .into_iter()
        .map(|(n, l)| RamBlock {
            name: n.into(),
            length: l,
            mapped: None,
        })
        .collect();
        for machine in ["virt-10.0", "virt", "virt-9.2"] {
            let pieces = machine_layout(machine, &b, Path::new("t")).unwrap();
            assert_eq!(pieces.len(), 1, "{machine}: {pieces:?}");
            assert_eq!(pieces[0].block, "mach-virt.ram");
            assert_eq!(pieces[0].offset, 0);
            assert_eq!(pieces[0].phys, PhysRange::new(0x4000_0000, 16 << 20));
        }
        // 300 GiB: still one region from 1 GiB (no PC-style hole).
        let mut big = b.clone();
        big[2].length = 300 << 30;
        let pieces = machine_layout("virt-10.0", &big, Path::new("t")).unwrap();
        assert_eq!(pieces[0].phys, PhysRange::new(1 << 30, 300 << 30));
        // A PC block name does not make a virt machine, nor the other way.
        let e = machine_layout("virt-10.0", &blocks(1 << 30), Path::new("t")).unwrap_err();
        assert!(e.to_string().contains("no mach-virt.ram block"), "{e}");
        let e = machine_layout("pc-q35-10.0", &b, Path::new("t")).unwrap_err();
        assert!(e.to_string().contains("no pc.ram block"), "{e}");
        assert_eq!(Machine::of("virtual"), None);
    }

    #[test]
    fn unknown_machines_and_backends_are_errors() {
        let e = machine_layout("microvm", &blocks(1 << 30), Path::new("t")).unwrap_err();
        assert!(e.to_string().contains("no known RAM layout"), "{e}");
        let mut b = blocks(1 << 30);
        b[0].name = "mem0".into();
        let e = machine_layout("pc-q35-10.0", &b, Path::new("t")).unwrap_err();
        assert!(e.to_string().contains("no pc.ram block"), "{e}");
    }
}
