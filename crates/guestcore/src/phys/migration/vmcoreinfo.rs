//! The `vmcoreinfo` device section (QEMU's `hw/misc/vmcoreinfo.c`, `vmstate_vmcoreinfo`):
//! where the guest said its VMCOREINFO note is. A Linux guest with the `qemu_fw_cfg` driver
//! writes `{guest_format, size, paddr}` to fw_cfg `etc/vmcoreinfo` at boot; QEMU keeps it and
//! migrates it. The note itself stays in guest RAM, so it is read from the stream's memory.
//!
//! Section fields (big-endian): `has_vmcoreinfo` (bool), `vmcoreinfo.host_format` (u16),
//! `vmcoreinfo.guest_format` (u16, 1 = ELF note), `vmcoreinfo.size` (u32),
//! `vmcoreinfo.paddr` (u64). Located by vmdesc names when there is a vmdesc, else by that
//! fixed 17-byte layout (version 1 of the section).

use crate::format::vmdesc::DeviceDesc;
use crate::phys::PhysMemory;
use crate::{Error, Result};
use std::path::Path;

/// `FW_CFG_VMCOREINFO_FORMAT_ELF`.
const FORMAT_ELF: u64 = 1;
/// A VMCOREINFO note larger than this is not read.
const MAX_NOTE: u64 = 1 << 20;

/// Where the guest registered its VMCOREINFO note.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmcoreinfoPointer {
    /// Guest-physical address of the ELF note (the device's `paddr`).
    pub paddr: u64,
    /// Size of the note in bytes (the device's `size`).
    pub size: u32,
}

/// Decodes the section; `None` when the guest registered nothing (or not an ELF note).
pub fn decode(
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
        None if data.len() == 17 => (
            data[0] as u64,
            u16::from_be_bytes([data[3], data[4]]) as u64,
            u32::from_be_bytes(data[5..9].try_into().expect("4")) as u64,
            u64::from_be_bytes(data[9..17].try_into().expect("8")),
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
    };
    if has == 0 || format != FORMAT_ELF || size == 0 {
        return Ok(None);
    }
    Ok(Some(VmcoreinfoPointer {
        paddr,
        size: u32::try_from(size).unwrap_or(u32::MAX),
    }))
}

/// Reads the note at `ptr` from `mem` and returns its text (trailing NULs dropped); `None`
/// when it is not in RAM or is not a `VMCOREINFO` note.
pub fn read_note(mem: &dyn PhysMemory, ptr: VmcoreinfoPointer) -> Option<Vec<u8>> {
    if !mem.is_ram(ptr.paddr, (ptr.size as u64).min(MAX_NOTE)) {
        return None;
    }
    read_note_with(ptr, |addr, buf| mem.read_at(addr, buf))
}

/// [`read_note`] over any reader of guest-physical memory (`read(addr, buf)`), e.g. a dump
/// still being written from a stream.
pub fn read_note_with(
    ptr: VmcoreinfoPointer,
    read: impl FnOnce(u64, &mut [u8]) -> Result<()>,
) -> Option<Vec<u8>> {
    let size = (ptr.size as u64).min(MAX_NOTE);
    if size < 12 {
        return None;
    }
    let mut b = vec![0u8; size as usize];
    read(ptr.paddr, &mut b).ok()?;
    let namesz = u32::from_le_bytes(b[0..4].try_into().ok()?) as usize;
    let descsz = u32::from_le_bytes(b[4..8].try_into().ok()?) as usize;
    let name = b.get(12..12 + namesz)?;
    if name.strip_suffix(b"\0").unwrap_or(name) != b"VMCOREINFO" {
        return None;
    }
    let start = 12 + namesz.next_multiple_of(4);
    let mut text = b.get(start..start.checked_add(descsz)?)?.to_vec();
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
    fn fixed_layout_and_note() {
        let mut data = vec![1, 0, 1, 0, 1];
        data.extend_from_slice(&0x100u32.to_be_bytes());
        data.extend_from_slice(&0x2000u64.to_be_bytes());
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

        let mut ram = vec![0u8; 0x4000];
        let text = b"OSRELEASE=6.1.0\n";
        ram[0x2000..0x2004].copy_from_slice(&11u32.to_le_bytes());
        ram[0x2004..0x2008].copy_from_slice(&(text.len() as u32).to_le_bytes());
        ram[0x200c..0x2017].copy_from_slice(b"VMCOREINFO\0");
        ram[0x2018..0x2018 + text.len()].copy_from_slice(text);
        let mem = VecMemory::flat(ram);
        assert_eq!(read_note(&mem, p).unwrap(), text);
        let outside = VmcoreinfoPointer {
            paddr: 0x3f80,
            size: 0x100,
        };
        assert_eq!(read_note(&mem, outside), None);
    }
}
