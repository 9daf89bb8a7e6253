//! The QEMU migration stream format: what `migrate file:PATH`, `savevm`-style and
//! background-snapshot migrations write, and what a `virsh save` image wraps
//! ([`super::libvirt_save`]). Facts from QEMU's `migration/savevm.c`
//! (`qemu_savevm_state_header`, `save_section_header`, `save_section_footer`),
//! `migration/ram.c` (`ram_save_setup`, `save_page_header`), `hw/misc/vmcoreinfo.c` and
//! `docs/devel/migration/mapped-ram.rst`. All multi-byte fields are big-endian.
//!
//! * The stream: [`MAGIC`] and [`VERSION`] (`u32`s); a [`CONFIGURATION`] section (the machine
//!   type name, then subsections such as [`SUBSECTION_CAPABILITIES`]); then sections, each a
//!   type byte: [`SECTION_START`] and [`SECTION_FULL`] carry a header (`u32` section id, a
//!   length-prefixed idstr, `u32` instance id, `u32` version), [`SECTION_PART`] and
//!   [`SECTION_END`] only the id; each ends with a footer ([`SECTION_FOOTER`] and its id
//!   again). [`SECTION_EOF`] ends the device state; the [`VMDESCRIPTION`] section (a `u32`
//!   length and the JSON of [`super::vmdesc`]) follows. [`COMMAND`] sections (a `u16` command,
//!   a `u16` length, its bytes) may come between sections.
//! * The `ram` section ([`RAM_SECTION`]): records that each start with a `u64` holding a page
//!   offset inside a RAM block and flags in its low 12 bits ([`RAM_FLAG_MASK`], the x86 target
//!   page is [`TARGET_PAGE_SIZE`]). A record without [`RAM_FLAG_CONTINUE`] names its block
//!   (one length byte, the idstr). The first part is one [`RAM_FLAG_MEM_SIZE`] record whose
//!   "offset" is the total RAM size, then every block (idstr, `u64` used length, and with the
//!   `mapped-ram` capability a [`MappedRamHeader`]); [`RAM_FLAG_ZERO`] pages carry one fill
//!   byte, [`RAM_FLAG_PAGE`] pages the page's bytes, [`RAM_FLAG_EOS`] ends each part.
//! * The `vmcoreinfo` device section: where the guest registered its VMCOREINFO note
//!   ([`VmcoreinfoSection`]).
//!
//! The read side is the reader in [`crate::phys::migration`] (a one-pass parser over any
//! `Read`, which needs the reader's input buffering and limits) built on these constants and
//! on [`MappedRamHeader::decode`] and [`VmcoreinfoSection::decode`]; the write side is
//! [`StreamWriter`], which makes streams for tests and fuzz seeds.

/// `QEMU_VM_FILE_MAGIC`: the bytes `QEVM`.
pub const MAGIC: u32 = 0x5145_564d;
/// `QEMU_VM_FILE_VERSION`.
pub const VERSION: u32 = 3;

/// `QEMU_VM_EOF`: the end of the device state.
pub const SECTION_EOF: u8 = 0x00;
/// `QEMU_VM_SECTION_START`: the first part of an iterative section (RAM), with a header.
pub const SECTION_START: u8 = 0x01;
/// `QEMU_VM_SECTION_PART`: a further part of an iterative section, by id.
pub const SECTION_PART: u8 = 0x02;
/// `QEMU_VM_SECTION_END`: the last part of an iterative section, by id.
pub const SECTION_END: u8 = 0x03;
/// `QEMU_VM_SECTION_FULL`: a device's whole state, with a header.
pub const SECTION_FULL: u8 = 0x04;
/// `QEMU_VM_SUBSECTION`: a subsection (of the configuration section, here).
pub const SUBSECTION: u8 = 0x05;
/// `QEMU_VM_VMDESCRIPTION`: the JSON description of the device sections, last.
pub const VMDESCRIPTION: u8 = 0x06;
/// `QEMU_VM_CONFIGURATION`: the configuration section, first.
pub const CONFIGURATION: u8 = 0x07;
/// `QEMU_VM_COMMAND`: a command (postcopy, return path).
pub const COMMAND: u8 = 0x08;
/// `QEMU_VM_SECTION_FOOTER`: the byte before a section's id at its end.
pub const SECTION_FOOTER: u8 = 0x7e;

/// `MIG_CMD_PACKAGED`: a whole nested stream (postcopy).
pub const CMD_PACKAGED: u16 = 7;

/// The configuration subsection listing the capabilities the destination must validate.
pub const SUBSECTION_CAPABILITIES: &str = "configuration/capabilities";
/// The configuration subsection holding the target's page bits (12 on x86).
pub const SUBSECTION_TARGET_PAGE_BITS: &str = "configuration/target-page-bits";
/// The configuration subsection holding the VM's 16-byte UUID.
pub const SUBSECTION_UUID: &str = "configuration/uuid";
/// The capability whose RAM lies at fixed file offsets with a page bitmap.
pub const CAP_MAPPED_RAM: &str = "mapped-ram";
/// The capability under which each RAM block also carries its guest address.
pub const CAP_IGNORE_SHARED: &str = "x-ignore-shared";

/// The idstr of the RAM section.
pub const RAM_SECTION: &str = "ram";
/// The version the RAM section is written with.
pub const RAM_SECTION_VERSION: u32 = 4;
/// The page size of x86 migration streams (`TARGET_PAGE_SIZE`).
pub const TARGET_PAGE_SIZE: u64 = 4096;
/// The flags of a RAM record's header word (below the page offset).
pub const RAM_FLAG_MASK: u64 = TARGET_PAGE_SIZE - 1;
/// `RAM_SAVE_FLAG_FULL` (obsolete).
pub const RAM_FLAG_FULL: u64 = 0x01;
/// `RAM_SAVE_FLAG_ZERO`: a page filled with one byte, which follows.
pub const RAM_FLAG_ZERO: u64 = 0x02;
/// `RAM_SAVE_FLAG_MEM_SIZE`: the block list; the offset bits hold the total RAM size.
pub const RAM_FLAG_MEM_SIZE: u64 = 0x04;
/// `RAM_SAVE_FLAG_PAGE`: a page whose bytes follow.
pub const RAM_FLAG_PAGE: u64 = 0x08;
/// `RAM_SAVE_FLAG_EOS`: the end of a part of the RAM section.
pub const RAM_FLAG_EOS: u64 = 0x10;
/// `RAM_SAVE_FLAG_CONTINUE`: the record is in the block of the record before.
pub const RAM_FLAG_CONTINUE: u64 = 0x20;
/// `RAM_SAVE_FLAG_XBZRLE`: a delta-encoded page (capability `xbzrle`).
pub const RAM_FLAG_XBZRLE: u64 = 0x40;
/// `RAM_SAVE_FLAG_HOOK`: RDMA migration.
pub const RAM_FLAG_HOOK: u64 = 0x80;
/// `RAM_SAVE_FLAG_COMPRESS_PAGE`: a compressed page (capability `compress`).
pub const RAM_FLAG_COMPRESS_PAGE: u64 = 0x100;
/// `RAM_SAVE_FLAG_MULTIFD_FLUSH`: a multifd synchronisation point.
pub const RAM_FLAG_MULTIFD_FLUSH: u64 = 0x200;

/// The mapped-ram header version known here (`MAPPED_RAM_HDR_VERSION`).
pub const MAPPED_RAM_VERSION: u32 = 1;
/// `sizeof(MappedRamHeader)`.
pub const MAPPED_RAM_HEADER_LEN: usize = 28;

/// A block's mapped-ram header (after its idstr and length in the block list): where the
/// block's page bitmap (one bit per page, little-endian 64-bit words, set when the page's
/// bytes are in the file) and its pages (page `i` at `pages_offset + i * page_size`) lie, as
/// stream offsets. QEMU continues the stream after the pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedRamHeader {
    /// `version`: [`MAPPED_RAM_VERSION`].
    pub version: u32,
    /// `page_size`: [`TARGET_PAGE_SIZE`].
    pub page_size: u64,
    /// `bitmap_offset`.
    pub bitmap_offset: u64,
    /// `pages_offset`.
    pub pages_offset: u64,
}

impl MappedRamHeader {
    /// The header in `bytes` (its [`MAPPED_RAM_HEADER_LEN`] bytes; `None` when shorter).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let h = bytes.get(..MAPPED_RAM_HEADER_LEN)?;
        let be64 = |i: usize| u64::from_be_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        Some(MappedRamHeader {
            version: u32::from_be_bytes(h[0..4].try_into().expect("4 bytes")),
            page_size: be64(4),
            bitmap_offset: be64(12),
            pages_offset: be64(20),
        })
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; MAPPED_RAM_HEADER_LEN] {
        let mut h = [0u8; MAPPED_RAM_HEADER_LEN];
        h[0..4].copy_from_slice(&self.version.to_be_bytes());
        h[4..12].copy_from_slice(&self.page_size.to_be_bytes());
        h[12..20].copy_from_slice(&self.bitmap_offset.to_be_bytes());
        h[20..28].copy_from_slice(&self.pages_offset.to_be_bytes());
        h
    }
}

/// Bytes of a mapped-ram bitmap for `pages` pages (whole 64-bit words, as QEMU writes it).
pub(crate) fn mapped_ram_bitmap_len(pages: u64) -> u64 {
    pages.div_ceil(64) * 8
}

/// The idstr of the section that says where the guest's VMCOREINFO note is.
pub const VMCOREINFO_SECTION: &str = "vmcoreinfo";
/// `FW_CFG_VMCOREINFO_FORMAT_ELF`: the registered note is an ELF note.
pub const VMCOREINFO_FORMAT_ELF: u16 = 1;
/// Bytes of version 1 of the `vmcoreinfo` section.
pub const VMCOREINFO_SECTION_LEN: usize = 17;

/// The `vmcoreinfo` device section (`vmstate_vmcoreinfo`, version 1): a Linux guest with the
/// `qemu_fw_cfg` driver writes `{guest_format, size, paddr}` to fw_cfg `etc/vmcoreinfo` at
/// boot; QEMU keeps it and migrates it. Fields in order: `has_vmcoreinfo` (bool),
/// `vmcoreinfo.host_format` (u16), `vmcoreinfo.guest_format` (u16), `vmcoreinfo.size`
/// (u32), `vmcoreinfo.paddr` (u64). A stream's vmdesc locates them by these names; without a
/// vmdesc they are at this fixed layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmcoreinfoSection {
    /// `has_vmcoreinfo`: the guest registered a note.
    pub has_vmcoreinfo: bool,
    /// `vmcoreinfo.host_format`: the format QEMU asked for.
    pub host_format: u16,
    /// `vmcoreinfo.guest_format`: the format of the note ([`VMCOREINFO_FORMAT_ELF`]).
    pub guest_format: u16,
    /// `vmcoreinfo.size`: bytes of the note.
    pub size: u32,
    /// `vmcoreinfo.paddr`: guest-physical address of the note.
    pub paddr: u64,
}

impl VmcoreinfoSection {
    /// A guest's ELF note of `size` bytes at `paddr`.
    pub fn elf_note(paddr: u64, size: u32) -> Self {
        VmcoreinfoSection {
            has_vmcoreinfo: true,
            host_format: VMCOREINFO_FORMAT_ELF,
            guest_format: VMCOREINFO_FORMAT_ELF,
            size,
            paddr,
        }
    }

    /// The section at the fixed layout; `None` unless `data` has exactly
    /// [`VMCOREINFO_SECTION_LEN`] bytes.
    pub fn decode(data: &[u8]) -> Option<Self> {
        let d: &[u8; VMCOREINFO_SECTION_LEN] = data.try_into().ok()?;
        Some(VmcoreinfoSection {
            has_vmcoreinfo: d[0] != 0,
            host_format: u16::from_be_bytes([d[1], d[2]]),
            guest_format: u16::from_be_bytes([d[3], d[4]]),
            size: u32::from_be_bytes(d[5..9].try_into().expect("4 bytes")),
            paddr: u64::from_be_bytes(d[9..17].try_into().expect("8 bytes")),
        })
    }

    /// The section's bytes at the fixed layout.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = vec![u8::from(self.has_vmcoreinfo)];
        d.extend_from_slice(&self.host_format.to_be_bytes());
        d.extend_from_slice(&self.guest_format.to_be_bytes());
        d.extend_from_slice(&self.size.to_be_bytes());
        d.extend_from_slice(&self.paddr.to_be_bytes());
        d
    }
}

/// Writes a migration stream piece by piece, the way QEMU lays it out: for tests and fuzz
/// seeds, including malformed streams (callers may append to or cut [`out`](Self::out)).
/// The RAM section gets id [`StreamWriter::RAM_ID`]; device sections get ids from 2 up.
///
/// ```
/// use guestcore::format::migration::StreamWriter;
/// let mut w = StreamWriter::new("pc-i440fx-10.0", &[]);
/// w.ram_start(&[("pc.ram", 0x10_0000)]);
/// w.part();
/// w.page(Some("pc.ram"), 0, &[7; 4096]);
/// w.zero(None, 0x1000, 0);
/// w.part_end();
/// w.eof();
/// w.vmdesc(r#"{"devices": []}"#);
/// assert!(w.out.starts_with(b"QEVM"));
/// ```
#[derive(Clone, Debug)]
pub struct StreamWriter {
    /// The stream so far.
    pub out: Vec<u8>,
    next_id: u32,
}

impl StreamWriter {
    /// The section id of the RAM section.
    pub const RAM_ID: u32 = 1;

    /// Magic, version and a configuration section for `machine` with capabilities `caps`
    /// (a capabilities subsection only when there are some).
    pub fn new(machine: &str, caps: &[&str]) -> Self {
        let mut w = StreamWriter {
            out: Vec::new(),
            next_id: 2,
        };
        w.be32(MAGIC);
        w.be32(VERSION);
        w.out.push(CONFIGURATION);
        w.be32(machine.len() as u32);
        w.out.extend_from_slice(machine.as_bytes());
        if !caps.is_empty() {
            w.out.push(SUBSECTION);
            w.short_str(SUBSECTION_CAPABILITIES);
            w.be32(1);
            w.be32(caps.len() as u32);
            for c in caps {
                w.short_str(c);
            }
        }
        w
    }

    /// A big-endian `u32`.
    pub fn be32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// A big-endian `u64`.
    pub fn be64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// A string with a one-byte length (idstrs, block names, capabilities).
    pub fn short_str(&mut self, s: &str) {
        self.out.push(s.len() as u8);
        self.out.extend_from_slice(s.as_bytes());
    }

    /// The type byte and header of a `START` or `FULL` section.
    pub fn section_header(&mut self, ty: u8, id: u32, name: &str, instance: u32, version: u32) {
        self.out.push(ty);
        self.be32(id);
        self.short_str(name);
        self.be32(instance);
        self.be32(version);
    }

    /// The footer of section `id`.
    pub fn footer(&mut self, id: u32) {
        self.out.push(SECTION_FOOTER);
        self.be32(id);
    }

    /// The RAM section's first part: the block list (`(idstr, length)`, no mapped-ram
    /// headers), ended.
    pub fn ram_start(&mut self, blocks: &[(&str, u64)]) {
        self.ram_blocks(blocks, false);
    }

    /// The RAM section's first part under the `mapped-ram` capability: each block with its
    /// mapped-ram header, its bitmap right after the header and its pages from the next page
    /// boundary, all zero (set bits and page bytes in [`out`](Self::out) at the returned
    /// offsets); the stream goes on after the last block's pages.
    pub fn ram_start_mapped(&mut self, blocks: &[(&str, u64)]) -> Vec<MappedRamHeader> {
        self.ram_blocks(blocks, true)
    }

    fn ram_blocks(&mut self, blocks: &[(&str, u64)], mapped: bool) -> Vec<MappedRamHeader> {
        self.section_header(
            SECTION_START,
            Self::RAM_ID,
            RAM_SECTION,
            0,
            RAM_SECTION_VERSION,
        );
        let total: u64 = blocks.iter().map(|b| b.1).sum();
        self.be64(total | RAM_FLAG_MEM_SIZE);
        let mut headers = Vec::new();
        for &(name, len) in blocks {
            self.short_str(name);
            self.be64(len);
            if mapped {
                let bitmap_offset = (self.out.len() + MAPPED_RAM_HEADER_LEN) as u64;
                let bitmap = mapped_ram_bitmap_len(len / TARGET_PAGE_SIZE);
                let h = MappedRamHeader {
                    version: MAPPED_RAM_VERSION,
                    page_size: TARGET_PAGE_SIZE,
                    bitmap_offset,
                    pages_offset: (bitmap_offset + bitmap).next_multiple_of(TARGET_PAGE_SIZE),
                };
                self.out.extend_from_slice(&h.encode());
                self.out.resize((h.pages_offset + len) as usize, 0);
                headers.push(h);
            }
        }
        self.be64(RAM_FLAG_EOS);
        self.footer(Self::RAM_ID);
        headers
    }

    /// Starts a further part of the RAM section.
    pub fn part(&mut self) {
        self.out.push(SECTION_PART);
        self.be32(Self::RAM_ID);
    }

    fn record(&mut self, block: Option<&str>, offset: u64, flag: u64) {
        match block {
            Some(name) => {
                self.be64(offset | flag);
                self.short_str(name);
            }
            None => self.be64(offset | flag | RAM_FLAG_CONTINUE),
        }
    }

    /// A page of [`TARGET_PAGE_SIZE`] bytes at `offset` of `block`; `None` continues the
    /// previous record's block.
    pub fn page(&mut self, block: Option<&str>, offset: u64, bytes: &[u8]) {
        assert_eq!(bytes.len() as u64, TARGET_PAGE_SIZE, "one page");
        self.record(block, offset, RAM_FLAG_PAGE);
        self.out.extend_from_slice(bytes);
    }

    /// A zero page filled with `fill`; `None` continues the previous record's block.
    pub fn zero(&mut self, block: Option<&str>, offset: u64, fill: u8) {
        self.record(block, offset, RAM_FLAG_ZERO);
        self.out.push(fill);
    }

    /// Ends a part of the RAM section.
    pub fn part_end(&mut self) {
        self.be64(RAM_FLAG_EOS);
        self.footer(Self::RAM_ID);
    }

    /// A device's `FULL` section (version 1) holding `data`.
    pub fn device(&mut self, name: &str, instance: u32, data: &[u8]) {
        let id = self.next_id;
        self.next_id += 1;
        self.section_header(SECTION_FULL, id, name, instance, 1);
        self.out.extend_from_slice(data);
        self.footer(id);
    }

    /// The end of the device state.
    pub fn eof(&mut self) {
        self.out.push(SECTION_EOF);
    }

    /// The vmdesc section holding `json`.
    pub fn vmdesc(&mut self, json: &str) {
        self.out.push(VMDESCRIPTION);
        self.be32(json.len() as u32);
        self.out.extend_from_slice(json.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let h = MappedRamHeader {
            version: 1,
            page_size: 4096,
            bitmap_offset: 0x100,
            pages_offset: 0x1000,
        };
        assert_eq!(MappedRamHeader::decode(&h.encode()), Some(h));
        assert_eq!(MappedRamHeader::decode(&h.encode()[..27]), None);
        let v = VmcoreinfoSection::elf_note(0x2000, 0x100);
        let bytes = v.encode();
        assert_eq!(bytes.len(), VMCOREINFO_SECTION_LEN);
        assert_eq!(&bytes[..5], &[1, 0, 1, 0, 1]);
        assert_eq!(VmcoreinfoSection::decode(&bytes), Some(v));
        assert_eq!(VmcoreinfoSection::decode(&bytes[1..]), None);
        assert_eq!(mapped_ram_bitmap_len(65), 16);
    }

    #[test]
    fn mapped_blocks_leave_room_for_bitmap_and_pages() {
        let mut w = StreamWriter::new("pc-q35-10.0", &[CAP_MAPPED_RAM]);
        let h = w.ram_start_mapped(&[("pc.ram", 0x10_0000)]);
        assert_eq!(h.len(), 1);
        let h = h[0];
        assert_eq!(
            MappedRamHeader::decode(&w.out[h.bitmap_offset as usize - MAPPED_RAM_HEADER_LEN..]),
            Some(h)
        );
        assert_eq!(h.pages_offset % TARGET_PAGE_SIZE, 0);
        assert!(h.pages_offset >= h.bitmap_offset + 32);
        // EOS and the footer follow the pages.
        assert_eq!(w.out.len() as u64, h.pages_offset + 0x10_0000 + 8 + 5);
    }
}
