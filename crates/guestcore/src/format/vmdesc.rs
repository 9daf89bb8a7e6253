//! The vmdesc: the JSON description QEMU writes at the end of a stream (`QEMU_VM_VMDESCRIPTION`)
//! of every device section's fields, in save order, each with its name, type and the byte
//! size it took (facts from QEMU's `migration/vmstate.c`: `vmsd_desc_field_start`,
//! `vmsd_desc_field_end`, `vmstate_subsection_save`; `scripts/analyze-migration.py` reads the
//! same JSON).
//!
//! The sizes are measured while QEMU writes, so a section's bytes are exactly its fields
//! (`size` × `array_len`, in order) followed by its subsections, each as `0x05`, a length
//! byte, the subsection's name, a big-endian version and its own fields. That lets a device
//! section be decoded by field name (see `cpu::vmstate`) and checked: a vmdesc whose sizes do
//! not add up to the section's length is an error for every section guestcore decodes,
//! rather than registers read from the wrong offsets.

use crate::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// Nesting deeper than this (structs in structs in subsections …) is refused.
const MAX_DEPTH: usize = 16;

/// The whole vmdesc.
#[derive(Clone, Debug, Deserialize)]
pub struct Vmdesc {
    /// The target page size.
    #[serde(default)]
    pub page_size: Option<u64>,
    /// Every device section, in the order QEMU saved them.
    #[serde(default)]
    pub devices: Vec<DeviceDesc>,
}

/// One device section.
#[derive(Clone, Debug, Deserialize)]
pub struct DeviceDesc {
    /// The section's idstr.
    pub name: String,
    /// The section's instance id (the vCPU number for `cpu` sections).
    pub instance_id: u32,
    /// The name of the `VMStateDescription` that saved the section.
    #[serde(default)]
    pub vmsd_name: Option<String>,
    /// The section's version (`version_id`).
    #[serde(default)]
    pub version: Option<u32>,
    /// Its top-level fields, in save order.
    #[serde(default)]
    pub fields: Vec<FieldDesc>,
    /// Its subsections that were saved, in save order after the fields.
    #[serde(default)]
    pub subsections: Vec<VmsdDesc>,
}

/// A nested description: a struct's or a subsection's.
#[derive(Clone, Debug, Deserialize)]
pub struct VmsdDesc {
    /// The `VMStateDescription` name (a subsection's name in the stream).
    pub vmsd_name: String,
    /// Its `version_id`.
    #[serde(default)]
    pub version: u32,
    /// Its fields, in save order.
    #[serde(default)]
    pub fields: Vec<FieldDesc>,
    /// Its saved subsections, after the fields.
    #[serde(default)]
    pub subsections: Vec<VmsdDesc>,
}

/// One field: `size` bytes per element, `array_len` elements (1 when absent).
#[derive(Clone, Debug, Deserialize)]
pub struct FieldDesc {
    /// The field's name in QEMU's `VMStateField` (`regs`, `eip`, `cr`, …).
    pub name: String,
    /// QEMU's type name for it (`uint64`, `struct`, `buffer`, …), JSON key `type`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Bytes one element took in the stream.
    pub size: u64,
    /// Elements, for an array field.
    #[serde(default)]
    pub array_len: Option<u64>,
    /// The element description of a `struct` field.
    #[serde(default, rename = "struct")]
    pub structure: Option<VmsdDesc>,
    /// The inline fields of a `tmp` field.
    #[serde(default)]
    pub fields: Vec<FieldDesc>,
}

/// Where one top-level field lies in a section's bytes.
#[derive(Clone, Copy, Debug)]
pub struct FieldAt<'a> {
    /// The field's description.
    pub field: &'a FieldDesc,
    /// Byte offset of its first element.
    pub offset: u64,
    /// Bytes per element.
    pub size: u64,
    /// Elements.
    pub count: u64,
}

impl Vmdesc {
    /// Parses the JSON (serde_json bounds its own nesting depth).
    pub fn parse(json: &[u8], path: &Path) -> Result<Self> {
        serde_json::from_slice(json)
            .map_err(|e| Error::format(path, format!("the vmdesc JSON is not valid: {e}")))
    }

    /// The description of section `name` instance `instance`.
    pub fn device(&self, name: &str, instance: u32) -> Option<&DeviceDesc> {
        self.devices
            .iter()
            .find(|d| d.name == name && d.instance_id == instance)
    }
}

impl FieldDesc {
    fn count(&self) -> u64 {
        self.array_len.unwrap_or(1)
    }
}

/// Total bytes of `fields`, or `None` on overflow.
fn fields_len(fields: &[FieldDesc]) -> Option<u64> {
    fields.iter().try_fold(0u64, |acc, f| {
        acc.checked_add(f.size.checked_mul(f.count())?)
    })
}

/// Bytes of a subsection in the stream: its header, fields and own subsections.
fn subsection_len(s: &VmsdDesc, depth: usize) -> Option<u64> {
    if depth > MAX_DEPTH || s.vmsd_name.len() > 255 {
        return None;
    }
    let mut n = (1 + 1 + s.vmsd_name.len() + 4) as u64;
    n = n.checked_add(fields_len(&s.fields)?)?;
    for sub in &s.subsections {
        n = n.checked_add(subsection_len(sub, depth + 1)?)?;
    }
    Some(n)
}

impl DeviceDesc {
    /// The section length these fields and subsections add up to.
    pub fn section_len(&self) -> Option<u64> {
        let mut n = fields_len(&self.fields)?;
        for s in &self.subsections {
            n = n.checked_add(subsection_len(s, 1)?)?;
        }
        Some(n)
    }

    /// Checks that this description accounts for exactly `data.len()` bytes.
    pub fn check_section(&self, data: &[u8], path: &Path) -> Result<()> {
        match self.section_len() {
            Some(n) if n == data.len() as u64 => Ok(()),
            n => Err(Error::format(
                path,
                format!(
                    "the vmdesc describes {} bytes for device {:?} instance {}, but its section \
                     has {} bytes",
                    n.map_or("an impossible number of".to_string(), |n| n.to_string()),
                    self.name,
                    self.instance_id,
                    data.len()
                ),
            )),
        }
    }

    /// The top-level field called `name`, with its offset.
    pub fn field(&self, name: &str) -> Option<FieldAt<'_>> {
        let mut offset = 0u64;
        for f in &self.fields {
            if f.name == name {
                return Some(FieldAt {
                    field: f,
                    offset,
                    size: f.size,
                    count: f.count(),
                });
            }
            offset = offset.checked_add(f.size.checked_mul(f.count())?)?;
        }
        None
    }
}

impl<'a> FieldAt<'a> {
    /// The bytes of element `i` in `data`, when the field is that long and lies inside `data`.
    pub fn element(&self, data: &'a [u8], i: u64) -> Option<&'a [u8]> {
        if i >= self.count {
            return None;
        }
        let start = self.offset.checked_add(i.checked_mul(self.size)?)?;
        let end = start.checked_add(self.size)?;
        data.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    /// Element `i` as a big-endian unsigned number of its size (1, 2, 4 or 8 bytes).
    pub fn uint(&self, data: &[u8], i: u64) -> Option<u64> {
        let b = self.element(data, i)?;
        be_uint(b)
    }

    /// Offset and size of member `name` inside one element of a `struct` field.
    pub fn member(&self, name: &str) -> Option<(u64, u64)> {
        let s = self.field.structure.as_ref()?;
        let mut off = 0u64;
        for f in &s.fields {
            if f.name == name {
                return (f.count() == 1).then_some((off, f.size));
            }
            off = off.checked_add(f.size.checked_mul(f.count())?)?;
        }
        None
    }
}

/// A big-endian unsigned integer of 1, 2, 4 or 8 bytes.
pub(crate) fn be_uint(b: &[u8]) -> Option<u64> {
    match b.len() {
        1 => Some(b[0] as u64),
        2 => Some(u16::from_be_bytes(b.try_into().ok()?) as u64),
        4 => Some(u32::from_be_bytes(b.try_into().ok()?) as u64),
        8 => Some(u64::from_be_bytes(b.try_into().ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"page_size": 4096, "devices": [
        {"name": "cpu", "instance_id": 1, "vmsd_name": "cpu", "version": 12, "fields": [
            {"name": "env.regs", "array_len": 16, "type": "uint64", "size": 8},
            {"name": "env.segs", "array_len": 6, "type": "struct", "size": 20, "struct":
                {"vmsd_name": "segment", "version": 1, "fields": [
                    {"name": "selector", "type": "uint32", "size": 4},
                    {"name": "base", "type": "uint64", "size": 8},
                    {"name": "limit", "type": "uint32", "size": 4},
                    {"name": "flags", "type": "uint32", "size": 4}]}},
            {"name": "env.eip", "type": "uint64", "size": 8}],
         "subsections": [{"vmsd_name": "cpu/x", "version": 1, "fields": [
            {"name": "x", "type": "uint16", "size": 2}]}]}]}"#;

    #[test]
    fn offsets_sizes_and_check() {
        let d = Vmdesc::parse(JSON.as_bytes(), Path::new("t")).unwrap();
        assert_eq!(d.page_size, Some(4096));
        let cpu = d.device("cpu", 1).unwrap();
        assert!(d.device("cpu", 0).is_none());
        let eip = cpu.field("env.eip").unwrap();
        assert_eq!((eip.offset, eip.size, eip.count), (128 + 120, 8, 1));
        let segs = cpu.field("env.segs").unwrap();
        assert_eq!(segs.member("base"), Some((4, 8)));
        assert_eq!(segs.member("nope"), None);
        // fields 256 bytes + subsection 1 + 1 + 5 + 4 + 2.
        assert_eq!(cpu.section_len(), Some(256 + 13));
        let data = vec![0u8; 269];
        cpu.check_section(&data, Path::new("t")).unwrap();
        let e = cpu.check_section(&data[..268], Path::new("t")).unwrap_err();
        assert!(e.to_string().contains("describes 269 bytes"), "{e}");
        assert_eq!(eip.uint(&data, 0), Some(0));
        assert_eq!(eip.uint(&data, 1), None);
    }

    #[test]
    fn lying_sizes_are_errors_not_panics() {
        let j = r#"{"devices": [{"name": "cpu", "instance_id": 0, "fields": [
            {"name": "a", "type": "uint64", "size": 18446744073709551615, "array_len": 4},
            {"name": "env.eip", "type": "uint64", "size": 8}]}]}"#;
        let d = Vmdesc::parse(j.as_bytes(), Path::new("t")).unwrap();
        let cpu = d.device("cpu", 0).unwrap();
        assert_eq!(cpu.section_len(), None);
        assert!(cpu.field("env.eip").is_none());
        assert!(cpu.check_section(&[0; 8], Path::new("t")).is_err());
        assert!(Vmdesc::parse(b"{\"devices\": 3}", Path::new("t")).is_err());
        let deep = "[".repeat(10_000);
        assert!(Vmdesc::parse(deep.as_bytes(), Path::new("t")).is_err());
    }
}
