//! The device state a dump needs from a stream: the `cpu` sections (one per vCPU) and the
//! `vmcoreinfo` section, kept as they pass and matched with their vmdesc entries once the
//! vmdesc, which describes their fields and comes last, has arrived. Every other device section
//! is dropped as it passes.
//!
//! Both the offline reader ([`super::file`]) and the background-snapshot dump (`crate::dump::from_stream`) collect
//! through this, so a stream's vCPUs and VMCOREINFO pointer mean the same wherever it is read.
//! Decoding a `cpu` section into registers is the CPU module's job
//! (`crate::cpu::vmstate::decode_cpu`): `phys` does not depend on `cpu`.

use super::stream::SectionHeader;
use super::vmcoreinfo::{self, VmcoreinfoPointer};
use crate::format::migration::VMCOREINFO_SECTION;
use crate::format::vmdesc::{DeviceDesc, Vmdesc};
use crate::Result;
use std::path::Path;

/// A vCPU's `cpu` section with its vmdesc entry.
#[derive(Clone, Debug)]
pub struct CpuSection {
    /// The section's entry in the vmdesc JSON (its fields and their sizes).
    pub desc: DeviceDesc,
    /// The section's bytes, as the stream held them.
    pub data: Vec<u8>,
}

/// Device sections kept for decoding, and the vmdesc JSON.
#[derive(Debug, Default)]
pub(crate) struct DeviceState {
    sections: Vec<(SectionHeader, Vec<u8>)>,
    vmdesc: Option<Vec<u8>>,
}

impl DeviceState {
    /// Keeps `data` when `header` is a section a dump needs (the parser bounds device sections).
    pub(crate) fn add(&mut self, header: &SectionHeader, data: &[u8]) {
        if header.name == "cpu" || header.name == VMCOREINFO_SECTION {
            self.sections.push((header.clone(), data.to_vec()));
        }
    }

    /// The stream's vmdesc JSON.
    pub(crate) fn set_vmdesc(&mut self, json: &[u8]) {
        self.vmdesc = Some(json.to_vec());
    }

    /// True when the stream had a vmdesc.
    pub(crate) fn has_vmdesc(&self) -> bool {
        self.vmdesc.is_some()
    }

    /// The `cpu` sections by instance (none without a vmdesc, which alone says where their
    /// fields are) and where the guest registered its VMCOREINFO note.
    pub(crate) fn decode(
        self,
        path: &Path,
    ) -> Result<(Vec<CpuSection>, Option<VmcoreinfoPointer>)> {
        let vmdesc = self
            .vmdesc
            .as_deref()
            .map(|j| Vmdesc::parse(j, path))
            .transpose()?;
        let mut cpus = Vec::new();
        let mut pointer = None;
        for (header, data) in self.sections {
            let desc = vmdesc
                .as_ref()
                .and_then(|v| v.device(&header.name, header.instance));
            if header.name == "cpu" {
                if let Some(d) = desc {
                    cpus.push(CpuSection {
                        desc: d.clone(),
                        data,
                    });
                }
            } else {
                pointer = vmcoreinfo::decode(desc, &data, path)?;
            }
        }
        cpus.sort_by_key(|c| c.desc.instance_id);
        Ok((cpus, pointer))
    }
}
