//! The JSON shape of each listing's elements: `mem`'s mappings and per-vCPU objects, `tlb`'s
//! leaves, `kernels`' kernels.
//!
//! These are the CLI's JSON contract. Keys are in alphabetical order, the order the listings
//! had when they were built as `serde_json::Value` trees (whose maps sort their keys); the
//! tests below pin that order against such trees. Each view borrows or copies what it shows
//! and is serialized straight into the output by [`super::json`].

use super::json::Hex;
use guestcore::Kernel;
use guestcore::{Leaf, PageFlags, WalkReport};
use guestcore::{Mapping, MappingList};
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;

/// One merged mapping: an element of `mem --json`'s `mappings`, and with `cpu` one line of
/// `mem --json-lines`.
#[derive(Serialize)]
pub struct MappingJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<u32>,
    pa: Hex,
    perms: String,
    ram: bool,
    size: u64,
    va: Hex,
}

impl MappingJson {
    /// `m`, with the vCPU whose tables map it for a JSON line (`None` inside `--json`'s
    /// per-vCPU object, which names the vCPU once).
    pub fn new(cpu: Option<u32>, m: &Mapping) -> Self {
        MappingJson {
            cpu,
            pa: Hex(m.pa.0),
            perms: m.flags.mem_string(),
            ram: m.is_ram(),
            size: m.size,
            va: Hex(m.va.0),
        }
    }
}

/// `mem --json`'s object for one vCPU: `{cpu, mappings, mode, report, root}`. Owns its
/// mapping list (the walk's merged result), serialized element by element.
pub struct CpuMappingsJson {
    pub cpu: u32,
    pub mode: &'static str,
    pub root: u64,
    pub list: MappingList,
    pub report: WalkReport,
}

impl Serialize for CpuMappingsJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Mappings<'a>(&'a MappingList);
        impl Serialize for Mappings<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|m| MappingJson::new(None, m)))
            }
        }
        let mut st = s.serialize_struct("CpuMappings", 5)?;
        st.serialize_field("cpu", &self.cpu)?;
        st.serialize_field("mappings", &Mappings(&self.list))?;
        st.serialize_field("mode", self.mode)?;
        st.serialize_field("report", &ReportJson(&self.report))?;
        st.serialize_field("root", &Hex(self.root))?;
        st.end()
    }
}

/// A [`WalkReport`] with its keys sorted (its derived `Serialize` writes them in declaration
/// order).
struct ReportJson<'a>(&'a WalkReport);

impl Serialize for ReportJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut st = s.serialize_struct("WalkReport", 9)?;
        st.serialize_field("entries_visited", &r.entries_visited)?;
        st.serialize_field("io_leaves", &r.io_leaves)?;
        st.serialize_field("leaves", &r.leaves)?;
        st.serialize_field("loop_frames", &r.loop_frames)?;
        st.serialize_field("loop_leaves", &r.loop_leaves)?;
        st.serialize_field("reserved_entries", &r.reserved_entries)?;
        st.serialize_field("self_references", &r.self_references)?;
        st.serialize_field("stopped", &r.stopped)?;
        st.serialize_field("tables_outside_ram", &r.tables_outside_ram)?;
        st.end()
    }
}

/// One page-table leaf: a line of `tlb --json` / `--json-lines`.
#[derive(Serialize)]
pub struct LeafJson {
    cpu: u32,
    flags: String,
    pa: Hex,
    ram: bool,
    size: u64,
    va: Hex,
}

impl LeafJson {
    /// `leaf` of vCPU `cpu`'s tables.
    pub fn new(cpu: u32, leaf: &Leaf) -> Self {
        LeafJson {
            cpu,
            flags: leaf.flags.tlb_string(),
            pa: Hex(leaf.pa),
            ram: !leaf.flags.contains(PageFlags::IO),
            size: leaf.size,
            va: Hex(leaf.va),
        }
    }
}

/// One kernel found in RAM: an element of `kernels --json`, a line of `--json-lines`. The
/// layout fields are `null` when VMCOREINFO does not give them (`layout_error` says why);
/// `crash_cpus` and `elfcorehdr` appear for crashed kernels only, `capture_of` (the index of
/// the crashed kernel) for a kdump capture kernel only.
#[derive(Serialize)]
pub struct KernelJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    capture_of: Option<usize>,
    cpus: &'a [u32],
    #[serde(skip_serializing_if = "Option::is_none")]
    crash_cpus: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    elfcorehdr: Option<Hex>,
    in_input_notes: bool,
    index: usize,
    kaslr_offset: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    layout_error: Option<String>,
    mode: Option<&'static str>,
    phys_base: Option<Hex>,
    release: &'a str,
    role: &'static str,
    root: Option<Hex>,
    vmcoreinfo_addr: Option<Hex>,
}

impl<'a> KernelJson<'a> {
    pub fn new(k: &'a Kernel) -> Self {
        let l = k.layout.as_ref().ok();
        KernelJson {
            capture_of: k.capture_of,
            cpus: &k.cpus,
            crash_cpus: k.crash.as_ref().map(|c| c.prstatus.len()),
            elfcorehdr: k.crash.as_ref().map(|c| Hex(c.addr)),
            in_input_notes: k.in_input_notes,
            index: k.index,
            kaslr_offset: l.map(|l| Hex(l.kaslr_offset)),
            layout_error: k.layout.as_ref().err().map(ToString::to_string),
            mode: l.map(|l| l.mode.name()),
            phys_base: l.map(|l| Hex(l.phys_base)),
            release: &k.release,
            role: k.role.name(),
            root: l.map(|l| Hex(l.root)),
            vmcoreinfo_addr: k.vmcoreinfo_addr.map(Hex),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each view against the `serde_json::Value` tree the listing used to build, keys sorted.

    use super::*;
    use crate::output::hex;
    use guestcore::{CrashHeader, KernelLayout, KernelRole};
    use guestcore::{ModeKind, StopReason};
    use guestcore::{PhysAddr, VirtAddr};
    use serde_json::json;

    /// Compact and pretty text of `view` equal those of `tree`.
    fn same(view: &impl Serialize, tree: serde_json::Value) {
        assert_eq!(serde_json::to_string(view).unwrap(), tree.to_string());
        assert_eq!(
            serde_json::to_string_pretty(view).unwrap(),
            serde_json::to_string_pretty(&tree).unwrap()
        );
    }

    fn report() -> WalkReport {
        WalkReport {
            entries_visited: 1,
            leaves: 2,
            io_leaves: 3,
            tables_outside_ram: 4,
            reserved_entries: 5,
            self_references: 6,
            loop_leaves: 7,
            loop_frames: 8,
            stopped: Some(StopReason::LeafLimit),
        }
    }

    #[test]
    fn report_keys_are_sorted_and_complete() {
        // A field added to WalkReport shows up in its Value and fails this until listed.
        for r in [report(), WalkReport::default()] {
            same(&ReportJson(&r), serde_json::to_value(&r).unwrap());
        }
    }

    fn mapping(flags: PageFlags) -> Mapping {
        Mapping {
            va: VirtAddr(0xffff_8880_0000_0000),
            pa: PhysAddr(0xa0000),
            size: 0x6_0000,
            flags,
        }
    }

    #[test]
    fn mappings_and_their_vcpu_object() {
        let m = mapping(PageFlags::WRITE | PageFlags::NX | PageFlags::IO);
        let item = |m: &Mapping| {
            json!({"pa": hex(m.pa.0), "perms": m.flags.mem_string(), "ram": m.is_ram(),
                   "size": m.size, "va": hex(m.va.0)})
        };
        same(&MappingJson::new(None, &m), item(&m));
        let mut line = item(&m);
        line["cpu"] = json!(3);
        same(&MappingJson::new(Some(3), &m), line);

        let ms = [m, mapping(PageFlags::USER)];
        let mut list = MappingList::new();
        for m in &ms {
            list.push_unmerged(m.va.0, m.pa.0, m.size, m.flags);
        }
        let cpu = CpuMappingsJson {
            cpu: 1,
            mode: ModeKind::Level4.name(),
            root: 0x1000,
            list,
            report: report(),
        };
        let mappings: Vec<_> = ms.iter().map(item).collect();
        same(
            &cpu,
            json!({"cpu": 1, "mappings": mappings, "mode": "4-level",
                   "report": serde_json::to_value(report()).unwrap(), "root": "0x1000"}),
        );
    }

    #[test]
    fn leaves() {
        for flags in [PageFlags::WRITE | PageFlags::GLOBAL, PageFlags::IO] {
            let leaf = Leaf {
                va: 0xffff_ffff_ff5f_c000,
                pa: 0xfee0_0000,
                size: 0x1000,
                flags,
                entry: 0xfee0_0013,
            };
            same(
                &LeafJson::new(2, &leaf),
                json!({
                    "cpu": 2, "va": hex(leaf.va), "pa": hex(leaf.pa), "size": leaf.size,
                    "flags": leaf.flags.tlb_string(), "ram": !leaf.flags.contains(PageFlags::IO),
                }),
            );
        }
    }

    fn kernel_tree(k: &Kernel) -> serde_json::Value {
        let l = k.layout.as_ref().ok();
        let mut v = json!({
            "index": k.index,
            "release": k.release,
            "role": k.role.name(),
            "root": l.map(|l| hex(l.root)),
            "mode": l.map(|l| l.mode.name()),
            "phys_base": l.map(|l| hex(l.phys_base)),
            "kaslr_offset": l.map(|l| hex(l.kaslr_offset)),
            "cpus": k.cpus,
            "vmcoreinfo_addr": k.vmcoreinfo_addr.map(hex),
            "in_input_notes": k.in_input_notes,
        });
        if let Err(e) = &k.layout {
            v["layout_error"] = json!(e.to_string());
        }
        if let Some(c) = &k.crash {
            v["elfcorehdr"] = json!(hex(c.addr));
            v["crash_cpus"] = json!(c.prstatus.len());
        }
        if let Some(c) = k.capture_of {
            v["capture_of"] = json!(c);
        }
        v
    }

    #[test]
    fn kernels_with_and_without_layout_and_crash() {
        let running = Kernel {
            index: 1,
            release: "6.1.0-test".into(),
            role: KernelRole::Running,
            vmcoreinfo_addr: Some(0x1cb4_2000),
            in_input_notes: false,
            vmcoreinfo: Vec::new(),
            layout: Ok(KernelLayout {
                root: 0x25a1_0000,
                mode: ModeKind::Level4,
                phys_base: 0xffff_ffff_f400_0000,
                kaslr_offset: 0x2f00_0000,
                arm64: None,
            }),
            cpus: vec![0, 1],
            crash: None,
            capture_of: Some(0),
        };
        let crashed = Kernel {
            index: 0,
            role: KernelRole::Crashed,
            vmcoreinfo_addr: None,
            in_input_notes: true,
            layout: Err(guestcore::LayoutError::NoRootSymbol),
            cpus: Vec::new(),
            crash: Some(CrashHeader {
                addr: 0x1c00_0000,
                prstatus: Vec::new(),
                note_addrs: vec![0x1000],
                vmcoreinfo: None,
                loads: vec![0x100_0000..0x1c00_0000, 0x2000_0000..0x3000_0000],
            }),
            capture_of: None,
            ..running.clone()
        };
        for k in [&running, &crashed] {
            same(&KernelJson::new(k), kernel_tree(k));
        }
    }
}
