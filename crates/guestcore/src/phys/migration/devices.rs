//! The device state a dump needs from a stream: the `cpu` sections (one per vCPU) and the
//! `vmcoreinfo` section, kept as they pass and decoded once the vmdesc, which describes their
//! fields and comes last, has arrived. Every other device section is dropped as it passes.
//!
//! Both the offline reader ([`super::file`]) and the live dump (`crate::live_dump`) collect
//! through this, so a stream's registers and VMCOREINFO pointer mean the same thing wherever it
//! is read.

use super::cpu::decode_cpu;
use super::stream::SectionHeader;
use super::vmcoreinfo::{self, VmcoreinfoPointer};
use super::vmdesc::Vmdesc;
use crate::cpu::X86CpuState;
use crate::Result;
use std::path::Path;

/// Device sections kept for decoding, and the vmdesc JSON.
#[derive(Debug, Default)]
pub struct DeviceState {
    sections: Vec<(SectionHeader, Vec<u8>)>,
    vmdesc: Option<Vec<u8>>,
}

impl DeviceState {
    /// Keeps `data` when `header` is a section a dump needs (bounded by the parser's limits on
    /// device sections).
    pub fn add(&mut self, header: &SectionHeader, data: &[u8]) {
        if header.name == "cpu" || header.name == "vmcoreinfo" {
            self.sections.push((header.clone(), data.to_vec()));
        }
    }

    /// The stream's vmdesc JSON.
    pub fn set_vmdesc(&mut self, json: &[u8]) {
        self.vmdesc = Some(json.to_vec());
    }

    /// True when the stream had a vmdesc.
    pub fn has_vmdesc(&self) -> bool {
        self.vmdesc.is_some()
    }

    /// The vCPUs (sorted by index; none without a vmdesc, which alone says where a `cpu`
    /// section's fields are) and where the guest registered its VMCOREINFO note.
    pub fn decode(&self, path: &Path) -> Result<(Vec<X86CpuState>, Option<VmcoreinfoPointer>)> {
        let vmdesc = self
            .vmdesc
            .as_deref()
            .map(|j| Vmdesc::parse(j, path))
            .transpose()?;
        let mut cpus = Vec::new();
        let mut pointer = None;
        for (header, data) in &self.sections {
            let desc = vmdesc
                .as_ref()
                .and_then(|v| v.device(&header.name, header.instance));
            if header.name == "cpu" {
                if let Some(d) = desc {
                    cpus.push(decode_cpu(d, data, path)?);
                }
            } else {
                pointer = vmcoreinfo::decode(desc, data, path)?;
            }
        }
        cpus.sort_by_key(|c| c.index);
        Ok((cpus, pointer))
    }
}
