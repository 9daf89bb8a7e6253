//! The `vmcoreinfo` device section (QEMU's `hw/misc/vmcoreinfo.c`, `vmstate_vmcoreinfo`):
//! where the guest said its VMCOREINFO note is. The note itself stays in guest RAM, so it is
//! read from the stream's memory.
//!
//! The section's fields are located by vmdesc names when there is a vmdesc, else by their
//! fixed layout ([`VmcoreinfoSection`], which has the format).

use crate::format::migration::{VmcoreinfoSection, VMCOREINFO_FORMAT_ELF};
use crate::format::vmcoreinfo::read_vmcoreinfo_note;
use crate::format::vmdesc::DeviceDesc;
use crate::phys::PhysMemory;
use crate::{Error, Result};
use std::path::Path;

/// Where the guest registered its VMCOREINFO note.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmcoreinfoPointer {
    /// Guest-physical address of the ELF note (the device's `paddr`).
    pub paddr: u64,
    /// Size of the note in bytes (the device's `size`).
    pub size: u32,
}

/// Decodes the section; `None` when the guest registered nothing (or not an ELF note).
pub(crate) fn decode(
    desc: Option<&DeviceDesc>,
    data: &[u8],
    path: &Path,
) -> Result<Option<VmcoreinfoPointer>> {
    let (has, format, size, paddr) = match desc {
        Some(d) => {
            d.check_section(data, path)?;
            let get = |name: &str| {
                d.field(name).and_then(|f| f.uint(data, 0)).ok_or_else(|| {
                    Error::format(
                        path,
                        format!("vmcoreinfo section: no field {name} in the vmdesc"),
                    )
                })
            };
            (
                get("has_vmcoreinfo")?,
                get("vmcoreinfo.guest_format")?,
                get("vmcoreinfo.size")?,
                get("vmcoreinfo.paddr")?,
            )
        }
        None => match VmcoreinfoSection::decode(data) {
            Some(v) => (
                u64::from(v.has_vmcoreinfo),
                u64::from(v.guest_format),
                u64::from(v.size),
                v.paddr,
            ),
            None => {
                return Err(Error::format(
                    path,
                    format!(
                        "vmcoreinfo section of {} bytes without a vmdesc",
                        data.len()
                    ),
                ))
            }
        },
    };
    if has == 0 || format != u64::from(VMCOREINFO_FORMAT_ELF) || size == 0 {
        return Ok(None);
    }
    Ok(Some(VmcoreinfoPointer {
        paddr,
        size: u32::try_from(size).unwrap_or(u32::MAX),
    }))
}

/// Reads the note at `ptr` from `mem` and returns its text; `None` when it is not in RAM or
/// is not a `VMCOREINFO` note ([`read_note_with`]).
pub(crate) fn read_note(mem: &dyn PhysMemory, ptr: VmcoreinfoPointer) -> Option<Vec<u8>> {
    read_note_with(ptr, |addr, buf| {
        if mem.is_ram(addr, buf.len() as u64) {
            mem.read_at(addr, buf)
        } else {
            Err(Error::NotInMemory {
                addr,
                len: buf.len() as u64,
            })
        }
    })
}

/// [`read_note`] over any reader of guest-physical memory (`read(addr, buf)`), e.g. a dump
/// still being written from a stream: the one VMCOREINFO reader
/// ([`crate::format::vmcoreinfo::read_vmcoreinfo_note`]), the note to end within the size the
/// device gave.
pub(crate) fn read_note_with(
    ptr: VmcoreinfoPointer,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<()>,
) -> Option<Vec<u8>> {
    read_vmcoreinfo_note(ptr.paddr, Some(u64::from(ptr.size)), |addr, buf| {
        read(addr, buf).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::note::{ElfNote, VMCOREINFO_NAME};
    use crate::phys::VecMemory;

    #[test]
    fn fixed_layout_and_note() {
        let mut data = VmcoreinfoSection::elf_note(0x2000, 0x100).encode();
        let p = decode(None, &data, Path::new("t")).unwrap().unwrap();
        assert_eq!(
            p,
            VmcoreinfoPointer {
                paddr: 0x2000,
                size: 0x100
            }
        );
        data[0] = 0;
        assert_eq!(decode(None, &data, Path::new("t")).unwrap(), None);
        assert!(decode(None, &data[1..], Path::new("t")).is_err());

        let text = b"OSRELEASE=6.1.0\nPAGESIZE=4096\n";
        let mut ram = vec![0u8; 0x2000];
        ElfNote::new(VMCOREINFO_NAME, 0, text.to_vec()).encode_into(&mut ram);
        ram.resize(0x4000, 0);
        let mem = VecMemory::flat(ram);
        assert_eq!(read_note(&mem, p).unwrap(), text);
        let outside = VmcoreinfoPointer {
            paddr: 0x3f80,
            size: 0x100,
        };
        assert_eq!(read_note(&mem, outside), None);
    }
}
