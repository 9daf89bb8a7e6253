//! Writes seed corpora for every fuzz target into the directory given as the first argument,
//! one sub-directory per target, built with the library's own writers and the testkit's
//! page-table builder (so seeds are valid files the fuzzer then mutates).

use guestcore::codec::{PageCompressor, PAGE};
use guestcore::dump::kdump::{
    write_kdump, write_kdump_to, Compression, KdumpOptions, KdumpRequest,
};
use guestcore::format::ElfNote;
use guestcore::paging::ModeKind;
use guestcore::phys::PhysMemory;
use guestcore::NoProgress;
use guestcore_testkit::fixture::write_qemu_like_core;
use guestcore_testkit::{GuestBuilder, MapFlags};
use std::path::Path;

const VMCOREINFO: &[u8] =
    b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=ffffffff82a0a000\nNUMBER(phys_base)=-16777216\n";

/// A LiME file, an AVML file (compressed and stored chunks) and one mixing both.
fn lime_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use guestcore::format::{avml, lime};
    let text: Vec<u8> = (0..0x12000).map(|j| b"guestcore "[j % 10]).collect();
    let noise: Vec<u8> = (0..0x3000u32)
        .map(|j| (j.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut plain = lime::encode_range(0x1000, &text[..0x2000]);
    plain.extend(lime::encode_range(0, &noise[..0x1000]));
    let mut compressed = avml::encode_range(0, &text);
    compressed.extend(avml::encode_range(0x100000, &noise));
    let mut mixed = lime::encode_range(0x2000, &noise);
    mixed.extend(avml::encode_range(0, &text[..0x2000]));
    vec![("lime", plain), ("avml", compressed), ("mixed", mixed)]
}

/// kdump files of 16 KiB and 64 KiB blocks (arm64 kernels' pages; QEMU's aarch64 dumps, with
/// their `Unknown` machine and aarch64 PRSTATUS notes) in every compression, from the test-side
/// encoder (guestcore's writer writes 4 KiB blocks only).
fn kdump_block_seeds() -> Vec<(String, Vec<u8>)> {
    use guestcore::format::kdump_blocks::{KdumpBlocksFile, StoredBlock};
    use guestcore::format::prstatus::{CORE_NOTE_NAME, PRSTATUS_AARCH64_SIZE};
    let notes = ElfNote::encode_all(&[
        ElfNote::new(CORE_NOTE_NAME, 1, vec![0; PRSTATUS_AARCH64_SIZE]),
        ElfNote::new(
            b"VMCOREINFO",
            0,
            b"OSRELEASE=6.1.0-arm64\nPAGESIZE=65536\n".to_vec(),
        ),
    ]);
    let mut out = Vec::new();
    for block in [16usize << 10, 64 << 10] {
        let text: Vec<u8> = (0..block).map(|j| b"guestcore "[j % 10]).collect();
        let mut sparse = vec![0u8; block];
        sparse[..8].copy_from_slice(&0x1234_5678u64.to_le_bytes());
        let frames: [(u64, &[u8]); 3] = [(0, &vec![0u8; block]), (1, &text), (4, &sparse)];
        for c in Compression::ALL {
            let mut comp = PageCompressor::for_block(c, block);
            let stored: Vec<(u64, u32, Vec<u8>)> = frames
                .iter()
                .map(|&(pfn, raw)| match comp.compress(raw) {
                    Some(z) => (pfn, c.flag(), z.to_vec()),
                    None => (pfn, 0, raw.to_vec()),
                })
                .collect();
            let blocks: Vec<StoredBlock<'_>> = stored
                .iter()
                .map(|(pfn, flags, data)| StoredBlock {
                    pfn: *pfn,
                    flags: *flags,
                    data,
                })
                .collect();
            let file = KdumpBlocksFile {
                block_size: block as u32,
                machine: "Unknown",
                release: "",
                status: c.flag(),
                nr_cpus: 1,
                max_mapnr: 5,
                notes: &notes,
                blocks: &blocks,
            };
            out.push((format!("{}k-{}", block >> 10, c.name()), file.encode()));
        }
    }
    out
}

fn put(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), bytes).unwrap();
}

/// The `kernels` target's input: VMCOREINFO text, NUL, then RAM from physical 4096 holding
/// 4-level tables that map the kernel image at 0xffffffff80000000 onto physical 0.
fn kernels_seed(kind: ModeKind) -> Vec<u8> {
    let mut b = GuestBuilder::new(kind, 0x40_0000).tables_at(0x20_0000);
    let (base, top_name) = if kind == ModeKind::Bits32 || kind == ModeKind::Pae {
        (0xc000_0000u64, "swapper_pg_dir")
    } else {
        (0xffff_ffff_8000_0000u64, "init_top_pgt")
    };
    b.map(base, 0, 0x20_0000, MapFlags::WRITE);
    let root = b.root();
    let (mem, _) = b.build_vec();
    let mut text = format!(
        "OSRELEASE=6.1.0-fuzz\nPAGESIZE=4096\nSYMBOL({top_name})={:x}\nNUMBER(phys_base)=0\nSYMBOL(prb)={:x}\n{}",
        base + root,
        base + 0x3000,
        guestcore_testkit::vmcoreinfo::PRINTK_RING_LAYOUT
    );
    if kind == ModeKind::Level5 {
        text.push_str("NUMBER(pgtable_l5_enabled)=1\n");
    }
    if kind == ModeKind::Pae {
        text.push_str("CONFIG_X86_PAE=y\n");
    }
    let mut out = text.into_bytes();
    out.push(0);
    let mut ram = vec![0u8; 0x40_0000 - 4096];
    mem.read_at(4096, &mut ram).unwrap();
    out.extend_from_slice(&ram);
    out
}

/// A small `migrate file:` stream: pc.ram of 1 MiB with two pages and a zero page, a cpu and a
/// vmcoreinfo section, EOF and a vmdesc (written by `format::migration::StreamWriter`).
fn migration_seed(mapped: bool) -> Vec<u8> {
    use guestcore::format::migration::{StreamWriter, VmcoreinfoSection, CAP_MAPPED_RAM};
    let caps: &[&str] = if mapped { &[CAP_MAPPED_RAM] } else { &[] };
    let mut w = StreamWriter::new("pc-i440fx-10.0", caps);
    let blocks = [("pc.ram", 1 << 20)];
    if mapped {
        let h = w.ram_start_mapped(&blocks)[0];
        w.out[h.bitmap_offset as usize] = 0b101;
    } else {
        w.ram_start(&blocks);
    }
    w.part();
    if !mapped {
        let page = |f: fn(usize) -> u8| (0..4096).map(f).collect::<Vec<u8>>();
        w.page(Some("pc.ram"), 0, &page(|i| i as u8));
        w.page(None, 0x1000, &page(|i| (i * 3) as u8));
        w.zero(None, 0x2000, 0);
    }
    w.part_end();
    w.device("cpu", 0, &[0u8; 16 * 8 + 8 + 8]);
    w.device(
        "vmcoreinfo",
        0,
        &VmcoreinfoSection::elf_note(0x1000, 0x1000).encode(),
    );
    w.eof();
    w.vmdesc(r#"{"page_size": 4096, "devices": [{"name": "cpu", "instance_id": 0, "fields": [{"name": "env.regs", "array_len": 16, "type": "uint64", "size": 8}, {"name": "env.eip", "type": "uint64", "size": 8}, {"name": "env.eflags", "type": "uint64", "size": 8}]}, {"name": "vmcoreinfo", "instance_id": 0, "fields": [{"name": "has_vmcoreinfo", "type": "bool", "size": 1}, {"name": "vmcoreinfo.host_format", "type": "uint16", "size": 2}, {"name": "vmcoreinfo.guest_format", "type": "uint16", "size": 2}, {"name": "vmcoreinfo.size", "type": "uint32", "size": 4}, {"name": "vmcoreinfo.paddr", "type": "uint64", "size": 8}]}]}"#);
    w.out
}

/// An aarch64 `virt` stream: `mach-virt.ram` with one page, an Arm `cpu` section (x0–x30 and
/// sp, pc, cpsr, and TTBR0/TTBR1/TCR/SCTLR/ID_AA64MMFR0_EL1 in the cpreg arrays after an
/// AArch32 one, by their KVM ids), EOF and its vmdesc.
fn aarch64_migration_seed() -> Vec<u8> {
    use guestcore::format::arm64_sysreg::{
        ID_AA64MMFR0_EL1, SCTLR_EL1, TCR_EL1, TTBR0_EL1, TTBR1_EL1,
    };
    use guestcore::format::migration::StreamWriter;
    let mut w = StreamWriter::new("virt-10.0", &[]);
    w.ram_start(&[("mach-virt.ram", 1 << 20)]);
    w.part();
    w.page(Some("mach-virt.ram"), 0, &[0x14u8; 4096]);
    w.part_end();
    let cpregs = [
        (0x4020_0000_000f_6800, 7),
        (TTBR0_EL1.kvm_id(), 0x4020_0000),
        (TTBR1_EL1.kvm_id(), 0x4030_0000),
        (TCR_EL1.kvm_id(), 0x32_b519_3510),
        (SCTLR_EL1.kvm_id(), 0x30d0_199d),
        (ID_AA64MMFR0_EL1.kvm_id(), 0x1125),
    ];
    let mut cpu = Vec::new();
    for i in 0..32u64 {
        cpu.extend_from_slice(&(0x1000 + i).to_be_bytes());
    }
    cpu.extend_from_slice(&0x4010_0000u64.to_be_bytes());
    cpu.extend_from_slice(&0x3c5u32.to_be_bytes());
    cpu.extend_from_slice(&(cpregs.len() as u32).to_be_bytes());
    for (id, _) in cpregs {
        cpu.extend_from_slice(&id.to_be_bytes());
    }
    for (_, v) in cpregs {
        cpu.extend_from_slice(&u64::to_be_bytes(v));
    }
    w.device("cpu", 0, &cpu);
    w.eof();
    w.vmdesc(&format!(
        r#"{{"page_size": 4096, "devices": [{{"name": "cpu", "instance_id": 0, "fields": [{{"name": "env.xregs", "array_len": 32, "type": "uint64", "size": 8}}, {{"name": "env.pc", "type": "uint64", "size": 8}}, {{"name": "cpsr", "type": "cpsr", "size": 4}}, {{"name": "cpreg_vmstate_array_len", "type": "int32 le", "size": 4}}, {{"name": "cpreg_vmstate_indexes", "array_len": {n}, "type": "uint64", "size": 8}}, {{"name": "cpreg_vmstate_values", "array_len": {n}, "type": "uint64", "size": 8}}]}}]}}"#,
        n = cpregs.len()
    ));
    w.out
}

/// Hostile `migrate file:` streams (issue 29; the CLI's `hostile_inputs::migration` tests
/// bound what they cost): `pc.ram` declared at the 64 TiB cap holding one page, two records
/// spanning all of it (refused), one zero record resent 5000 times, and `cpu` sections that
/// the vmdesc does not describe.
fn hostile_migration_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use guestcore::format::migration::StreamWriter;
    const CAP: u64 = 1 << 46;
    let stream = |records: &dyn Fn(&mut StreamWriter), tail: &dyn Fn(&mut StreamWriter)| {
        let mut w = StreamWriter::new("pc-i440fx-10.0", &[]);
        w.ram_start(&[("pc.ram", CAP)]);
        w.part();
        records(&mut w);
        w.part_end();
        tail(&mut w);
        w.eof();
        w.out
    };
    let page = [0x5au8; 4096];
    vec![
        (
            "declared-cap",
            stream(&|w| w.page(Some("pc.ram"), 0, &page), &|_| {}),
        ),
        (
            "span-cap",
            stream(
                &|w| {
                    w.page(Some("pc.ram"), 0, &page);
                    w.zero(None, CAP - 4096, 0);
                },
                &|_| {},
            ),
        ),
        (
            "resent",
            stream(
                &|w| {
                    for k in 0..5000 {
                        w.zero((k == 0).then_some("pc.ram"), 0x1000, (k % 2) as u8);
                    }
                },
                &|_| {},
            ),
        ),
        (
            "cpus-undescribed",
            {
                let mut out = stream(
                    &|w| w.page(Some("pc.ram"), 0, &page),
                    &|w| {
                        w.device("cpu", 0, &[0u8; 64]);
                        w.device("cpu", 1, &[0u8; 64]);
                    },
                );
                let mut w = StreamWriter::new("", &[]);
                w.out.clear();
                w.vmdesc(r#"{"page_size": 4096, "devices": []}"#);
                out.extend_from_slice(&w.out);
                out
            },
        ),
    ]
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or("corpus".into()));
    let tmp = tempfile::tempdir().unwrap();
    for kind in [
        ModeKind::Level4,
        ModeKind::Level5,
        ModeKind::Pae,
        ModeKind::Bits32,
    ] {
        put(&dir, "kernels", &format!("{kind:?}"), &kernels_seed(kind));
    }
    // Notes injected at page starts of RAM that look like a kernel's but lie: a size past the
    // page, text that is not VMCOREINFO after `OSRELEASE=`, no PAGESIZE.
    let mut injected = kernels_seed(ModeKind::Level4);
    let ram_at = injected.iter().position(|&b| b == 0).unwrap() + 1;
    let page = |n: usize| ram_at + (n - 1) * 4096;
    for (n, desc, size) in [
        (0x30usize, &b"OSRELEASE=6.6.6\nPAGESIZE=4096\n"[..], u32::MAX),
        (0x31, b"OSRELEASE=\xff\xfe\x00garbage", 40),
        (0x32, b"OSRELEASE=6.6.6\nSYMBOL(init_top_pgt)=ffffffff80001000\n", 60),
    ] {
        let mut note = Vec::new();
        note.extend_from_slice(&11u32.to_le_bytes());
        note.extend_from_slice(&size.to_le_bytes());
        note.extend_from_slice(&0u32.to_le_bytes());
        note.extend_from_slice(b"VMCOREINFO\0\0");
        note.extend_from_slice(desc);
        let at = page(n);
        injected[at..at + note.len()].copy_from_slice(&note);
    }
    put(&dir, "kernels", "injected-notes", &injected);
    for (i, kind) in [
        ModeKind::Level4,
        ModeKind::Pae,
        ModeKind::Level5,
        ModeKind::Bits32,
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = GuestBuilder::pc(kind, 0x18_0000);
        b.map(
            0x40_0000,
            0x10_0000,
            0x3000,
            MapFlags::WRITE | MapFlags::USER,
        );
        b.map(0x80_0000, 0x12_0000, 0x1000, MapFlags::NX);
        let (mem, cpu) = b.build_vec();
        // ELF core.
        let elf = tmp.path().join("core");
        write_qemu_like_core(&elf, &mem, std::slice::from_ref(&cpu), Some(VMCOREINFO)).unwrap();
        put(
            &dir,
            "elf_open",
            &format!("qemu-{i}"),
            &std::fs::read(&elf).unwrap(),
        );
        std::fs::remove_file(&elf).unwrap();
        // Walker: registers, then RAM from physical 0.
        let mut w = Vec::new();
        for v in [cpu.cr[0], cpu.cr[3], cpu.cr[4], cpu.efer] {
            w.extend_from_slice(&v.to_le_bytes());
        }
        w.push(0);
        let mut ram = vec![0u8; 0xa0000];
        mem.read_at(0, &mut ram).unwrap();
        w.extend_from_slice(&ram);
        put(&dir, "walker", &format!("{kind:?}"), &w);
        if i == 0 {
            aarch64_walker_seeds(&dir);
        }
        // Notes.
        let notes = vec![
            guestcore::cpu::notes::encode_prstatus_x86_64(&cpu, 1),
            guestcore::cpu::notes::encode_qemu_note(&cpu),
            ElfNote::new(b"VMCOREINFO", 0, VMCOREINFO.to_vec()),
        ];
        put(
            &dir,
            "notes",
            &format!("notes-{i}"),
            &ElfNote::encode_all(&notes),
        );
        // kdump, every compression, plain and flattened.
        if i == 0 {
            for (name, bytes) in kdump_block_seeds() {
                put(&dir, "kdump_open", &name, &bytes);
            }
            for c in [
                Compression::None,
                Compression::Zlib,
                Compression::Lzo,
                Compression::Snappy,
                Compression::Zstd,
            ] {
                let req = KdumpRequest {
                    notes: &notes,
                    vmcoreinfo: Some(VMCOREINFO),
                    force: true,
                    ..KdumpRequest::new(&mem, c)
                };
                let out = tmp.path().join("k");
                write_kdump(&req, &out, &KdumpOptions::default(), &NoProgress).unwrap();
                put(&dir, "kdump_open", c.name(), &std::fs::read(&out).unwrap());
                let mut stream = Vec::new();
                write_kdump_to(&req, &mut stream, &KdumpOptions::default(), &NoProgress).unwrap();
                put(&dir, "kdump_open", &format!("{}-flat", c.name()), &stream);
                put(&dir, "kdump_flat", c.name(), &stream[4096..]);
                // Stored pages: a text-like page through each codec.
                let page: Vec<u8> = (0..PAGE).map(|j| b"guestcore "[j % 10]).collect();
                let mut stored = vec![0u8; c.page_bound()];
                let n = PageCompressor::new(c)
                    .compress_into(&page, &mut stored)
                    .unwrap_or(0);
                let mut seed = vec![c as u8];
                seed.extend_from_slice(&stored[..n]);
                put(&dir, "page_codecs", c.name(), &seed);
            }
        }
    }
    put(
        &dir,
        "hmp",
        "cpu0",
        b"CPU#0\nRAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000000000\n\
RSI=0000000000000000 RDI=0000000000000000 RBP=0000000000000000 RSP=ffffffff82a03e80\n\
R8 =0000000000000000 R9 =0000000000000000 R10=0000000000000000 R11=0000000000000000\n\
R12=0000000000000000 R13=0000000000000000 R14=0000000000000000 R15=0000000000000000\n\
RIP=ffffffff81e3a1ce RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n\
ES =0000 0000000000000000 00000000 00000000\n\
CS =0010 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]\n\
GDT=     fffffe0000001000 0000007f\nIDT=     fffffe0000000000 00000fff\n\
CR0=80050033 CR2=0000000000000000 CR3=0000000002a0a000 CR4=000006f0\n\
EFER=0000000000000d01\n",
    );
    for (name, bytes) in lime_seeds() {
        put(&dir, "lime_open", name, &bytes);
    }
    put(&dir, "vmcoreinfo", "linux", VMCOREINFO);
    put(
        &dir,
        "vmcoreinfo",
        "linux-arm64",
        b"OSRELEASE=6.1.0-28-arm64\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffa8b0c3a8e000\n\
NUMBER(MAX_PHYSMEM_BITS)=48\nNUMBER(VA_BITS)=48\nNUMBER(kimage_voffset)=0xffffa8b07ea00000\n\
NUMBER(PHYS_OFFSET)=0x40000000\nNUMBER(TCR_EL1_T1SZ)=0x10\nKERNELOFFSET=28b03aa00000\n",
    );
    // An aarch64 vCPU's notes as QEMU writes them: NT_PRSTATUS, NT_PRFPREG, NT_ARM_SVE.
    let mut arm = guestcore::cpu::Aarch64CpuState::new(0);
    arm.x = std::array::from_fn(|i| 0xa0a0_0000_0000_1000 + i as u64);
    arm.pc = 0x4010_0124;
    arm.pstate = 0x4000_03c5;
    put(
        &dir,
        "notes",
        "notes-aarch64",
        &ElfNote::encode_all(&[
            guestcore::cpu::notes::encode_prstatus_aarch64(&arm, 1),
            ElfNote::new(b"CORE", guestcore::format::note::NT_PRFPREG, vec![0; 528]),
            ElfNote::new(b"LINUX", guestcore::format::note::NT_ARM_SVE, vec![0; 592]),
        ]),
    );
    put(&dir, "layout", "two", b"0:1G,4G:1G");
    put(&dir, "layout", "one", b"0x100000@0x1000:64K");
    put(&dir, "migration_stream", "plain", &migration_seed(false));
    put(&dir, "migration_stream", "mapped-ram", &migration_seed(true));
    put(&dir, "migration_stream", "aarch64-virt", &aarch64_migration_seed());
    for (name, bytes) in hostile_migration_seeds() {
        put(&dir, "migration_stream", name, &bytes);
    }
    // An input cut while it is read: a cut length, then a file of each kind that is mapped
    // (and a kdump file, read with pread), cut in its middle, at a page and inside a header.
    for (target, name) in [
        ("elf_open", "qemu-0"),
        ("lime_open", "lime"),
        ("lime_open", "avml"),
        ("migration_stream", "plain"),
        ("migration_stream", "mapped-ram"),
        ("kernels", "Level4"),
        ("kdump_open", "zlib"),
    ] {
        let file = std::fs::read(dir.join(target).join(name)).unwrap();
        for cut in [file.len() / 2, 4096, 40] {
            let mut seed = (cut as u32).to_le_bytes().to_vec();
            seed.extend_from_slice(&file);
            put(&dir, "shrinking_file", &format!("{target}-{name}-{cut}"), &seed);
        }
    }
}

/// The `walker_aarch64` target's input: TCR_EL1, TTBR0_EL1, TTBR1_EL1, SCTLR_EL1,
/// ID_AA64MMFR0_EL1, then RAM from physical 0 holding tables of each granule (48-bit and
/// 52-bit formats) that map pages and blocks in both halves.
fn aarch64_walker_seeds(dir: &Path) {
    use guestcore_testkit::aarch64::{desc, Aarch64Builder};
    for (g, va_bits, pa_bits) in [
        (4096u64, 48u32, 48u32),
        (4096, 39, 40),
        (4096, 52, 52),
        (16384, 47, 48),
        (65536, 42, 48),
        (65536, 52, 52),
    ] {
        let ram = 0x8_0000u64;
        let mut b = Aarch64Builder::new(g, va_bits, pa_bits, &[(0, ram)], g);
        let high = !((1u64 << va_bits) - 1);
        b.map(high | (4 * g), 0, g, desc::UXN);
        b.map(high | (5 * g), g, g, desc::AP_RO | desc::PXN | desc::UXN);
        b.map(16 * g, 2 * g, g, desc::AP_EL0 | desc::PXN | desc::CONT);
        // The smallest block: a level-2 one, 2 MiB / 32 MiB / 512 MiB.
        let block = 1u64 << (2 * g.trailing_zeros() - 3);
        b.map(high | (2 * block), 0, block, desc::UXN);
        let cpu = b.cpu();
        let mut w = Vec::new();
        for v in [
            cpu.tcr_el1.unwrap_or(0),
            cpu.ttbr0_el1.unwrap_or(0),
            cpu.ttbr1_el1.unwrap_or(0),
            cpu.sctlr_el1.unwrap_or(0),
            cpu.id_aa64mmfr0_el1.unwrap_or(0),
        ] {
            w.extend_from_slice(&v.to_le_bytes());
        }
        let mut bytes = vec![0u8; ram as usize];
        b.memory().read_at(0, &mut bytes).unwrap();
        w.extend_from_slice(&bytes);
        put(dir, "walker_aarch64", &format!("{g}-{va_bits}"), &w);
    }
}
