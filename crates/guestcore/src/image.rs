//! Opening inputs: what every CLI subcommand starts with.
//!
//! [`GuestImage::open`] looks at the first bytes of a file and picks the reader, so users never
//! name the format: an ELF core carries its own RAM map, vCPU registers and VMCOREINFO; anything
//! without a known magic is a raw memory image (placed by an optional [`Layout`]), whose CPU state
//! has to come from elsewhere (the CLI's register flags or an HMP `info registers` file).
//! A LiME or AVML image ([`crate::phys::lime`]) carries its RAM ranges but, like a raw image,
//! no CPU state.
//! `qmp:SOCKET` is a running QEMU (`qmp::session`): registers over QMP, RAM read in place.

use crate::cpu::notes::cpus_of_machine;
use crate::cpu::vmstate::decode_any;
use crate::cpu::CpuState;
use crate::format::elf::ElfMachine;
use crate::format::kdump::{Compression, KdumpMachine, DUMP_DH_COMPRESSED_INCOMPLETE};
use crate::format::libvirt_save::LIBVIRT_MAGIC;
use crate::format::note::VMCOREINFO_NAME;
use crate::format::vmcoreinfo::vmcoreinfo_get;
use crate::format::ElfNote;
use crate::input::Input;
use crate::phys::elf::{ElfCore, EM_386, EM_X86_64};
use crate::phys::kdump::KdumpFile;
use crate::phys::layout::Layout;
use crate::phys::lime::LimeImage;
use crate::phys::live::LiveAccess;
use crate::phys::migration::file::{BlockInfo, StreamStats};
use crate::phys::migration::MigrationFile;
use crate::phys::raw::RawImage;
use crate::phys::PhysMemory;
use crate::progress::Progress;
use crate::qmp::unpaused::unpaused_note;
use crate::qmp::{LiveOptions, LiveSession};
use crate::{Error, Result};
use serde::Serialize;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The container format of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ImageFormat {
    /// Headerless guest RAM.
    Raw,
    /// An ELF core.
    Elf {
        /// 32 or 64 (from `EI_CLASS`).
        class: u8,
        /// The `e_machine` (3 `EM_386`, 62 `EM_X86_64`).
        machine: u16,
    },
    /// A kdump-compressed (diskdump) file.
    Kdump {
        /// True for makedumpfile's flattened stream (`-F`), read through a rebuilt index.
        flattened: bool,
        /// The header's `status` word: its `DUMP_DH_COMPRESSED_*` bits name the compression.
        status: u32,
    },
    /// A LiME memory image (`EMiL` range headers). Like a raw image it has no CPU state.
    Lime {
        /// True when any range is AVML's snappy-compressed kind (`AVML` headers).
        compressed: bool,
    },
    /// A running QEMU reached through QMP (`qmp:SOCKET`).
    Live {
        /// How guest RAM is read: a shared memory-backend file, `/proc/PID/mem`, or both.
        access: LiveAccess,
        /// False when the guest ran while it was read (`--no-pause`).
        consistent: bool,
    },
    /// A QEMU migration stream (`migrate file:`, snapshots).
    Migration {
        /// True when written with the `mapped-ram` capability (pages at fixed file offsets).
        mapped_ram: bool,
        /// True when the stream is inside a libvirt save image (`virsh save`).
        libvirt: bool,
    },
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ImageFormat::Raw => write!(f, "raw memory image"),
            ImageFormat::Elf { class, machine } => write!(
                f,
                "ELF{class} core, {}",
                match machine {
                    EM_X86_64 => "x86_64".to_string(),
                    EM_386 => "i386".to_string(),
                    m if ElfMachine::from_e_machine(m) == Some(ElfMachine::Aarch64) =>
                        "aarch64".to_string(),
                    m => format!("machine {m}"),
                }
            ),
            ImageFormat::Kdump { flattened, status } => {
                let comp = match Compression::from_page_flags(status) {
                    // An incomplete dump's status is not one method's flag.
                    _ if status & DUMP_DH_COMPRESSED_INCOMPLETE != 0 => "mixed",
                    Ok(Compression::None) => "uncompressed",
                    Ok(c) => c.name(),
                    Err(_) => "mixed",
                };
                write!(
                    f,
                    "kdump-compressed ({comp}{})",
                    if flattened { ", flattened" } else { "" }
                )
            }
            ImageFormat::Migration {
                mapped_ram,
                libvirt,
            } => write!(
                f,
                "QEMU migration stream{}{}",
                if mapped_ram { " (mapped-ram)" } else { "" },
                if libvirt {
                    " in a libvirt save image"
                } else {
                    ""
                }
            ),
            ImageFormat::Lime { compressed: false } => write!(f, "LiME image"),
            ImageFormat::Lime { compressed: true } => write!(f, "AVML (snappy) image"),
            ImageFormat::Live { access, consistent } => write!(
                f,
                "live QEMU guest ({access:?}{})",
                if consistent {
                    ""
                } else {
                    ", read while running"
                }
            ),
        }
    }
}

/// What the first bytes of a file say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Magic {
    /// An ELF file (`\x7fELF`).
    Elf,
    /// `KDUMP   ` (kdump-compressed) or `DISKDUMP`.
    Kdump,
    /// makedumpfile's flattened stream (`makedumpfile` signature).
    FlattenedKdump,
    /// A QEMU migration stream (`QEVM`), or libvirt's save image around one.
    Migration,
    /// A LiME range header (`EMiL`) or AVML's compressed one (`AVML`).
    Lime,
    /// No known magic: a raw image.
    None,
}

impl Magic {
    /// Classifies the first bytes of a file (at least 16 wanted; fewer is fine).
    pub(crate) fn of(head: &[u8]) -> Magic {
        if head.starts_with(b"\x7fELF") {
            Magic::Elf
        } else if head.starts_with(b"KDUMP   ") || head.starts_with(b"DISKDUMP") {
            Magic::Kdump
        } else if head.starts_with(b"makedumpfile") {
            Magic::FlattenedKdump
        } else if head.starts_with(b"QEVM") || head.starts_with(LIBVIRT_MAGIC) {
            Magic::Migration
        } else if crate::format::lime::is_lime(head) {
            Magic::Lime
        } else {
            Magic::None
        }
    }
}

/// Options for [`GuestImage::open`].
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Placement of a raw image in guest-physical memory; an error for other formats.
    pub layout: Option<Layout>,
    /// For `qmp:SOCKET` inputs: pause or not, QMP timeout.
    pub live: LiveOptions,
}

/// An opened input: guest memory plus whatever CPU state and metadata it carries.
pub struct GuestImage {
    /// The path it was opened from (`qmp:SOCKET` for a live guest), as error messages name it.
    pub path: PathBuf,
    /// Its container format.
    pub format: ImageFormat,
    /// Its guest-physical memory.
    pub memory: Box<dyn PhysMemory>,
    /// vCPUs described by the input (empty for raw, LiME and AVML images).
    pub cpus: Vec<CpuState>,
    /// All ELF notes (empty for raw, LiME and AVML images).
    pub notes: Vec<ElfNote>,
    /// The guest's VMCOREINFO text, when the input has it.
    pub vmcoreinfo: Option<Vec<u8>>,
    /// The QMP session of a live input; dropping it resumes a guest it paused.
    pub live: Option<LiveSession>,
    /// Machine type and RAM blocks of a migration stream.
    pub migration: Option<MigrationInfo>,
}

/// What a migration stream says about the machine (for `guestcore info`).
#[derive(Clone, Debug, Serialize)]
pub struct MigrationInfo {
    /// The machine type, e.g. `pc-i440fx-10.0`.
    pub machine: String,
    /// The migration capabilities QEMU recorded in the stream (`mapped-ram`, `x-ignore-shared`).
    pub capabilities: Vec<String>,
    /// Every RAM block, with its guest-physical ranges (empty when not placed).
    pub blocks: Vec<BlockInfo>,
    /// Page records seen in the stream: with data, zero, and runs in the page index.
    pub stats: StreamStats,
    /// Where the `vmcoreinfo` device said the guest's note is.
    pub vmcoreinfo_paddr: Option<u64>,
    /// False when the stream had no vmdesc (then it has no CPU state).
    pub vmdesc: bool,
}

impl MigrationInfo {
    /// What the stream lacks that a reader would otherwise take for granted, given the `cpus`
    /// vCPUs decoded from it: blocks clipped at their last held page (see
    /// [`BlockInfo::held`]), and `cpu` sections that the vmdesc does not describe (or no
    /// `cpu` sections at all). The facade reports each as a warning.
    pub fn shortfalls(&self, cpus: usize) -> Vec<String> {
        let mut out = Vec::new();
        for b in &self.blocks {
            match b.held.filter(|&h| h < b.block.length) {
                Some(0) => out.push(format!(
                    "RAM block {:?} is declared as {:#x} bytes, but the stream holds none of \
                     its pages: it is left out of guest RAM",
                    b.block.name, b.block.length
                )),
                Some(held) => out.push(format!(
                    "RAM block {:?} is declared as {:#x} bytes, but the stream holds pages only \
                     in its first {held:#x}: the rest is left out of guest RAM",
                    b.block.name, b.block.length
                )),
                None => {}
            }
        }
        let sections = self.stats.cpu_sections;
        if cpus == 0 {
            out.push(if sections == 0 {
                "the stream has no `cpu` device sections: no vCPU state (no registers, no \
                 CPU notes in a dump)"
                    .to_string()
            } else if !self.vmdesc {
                format!(
                    "the stream has {sections} `cpu` sections but no vmdesc, which alone says \
                     where their registers are: no vCPU state"
                )
            } else {
                format!(
                    "the stream's vmdesc describes none of its {sections} `cpu` sections: no \
                     vCPU state"
                )
            });
        } else if (cpus as u64) < sections {
            out.push(format!(
                "the stream's vmdesc describes {cpus} of its {sections} `cpu` sections: the \
                 other vCPUs' registers are left out"
            ));
        }
        out
    }
}

impl fmt::Debug for GuestImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestImage")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("ram", &self.memory.ram())
            .field("cpus", &self.cpus.len())
            .field("notes", &self.notes.len())
            .field("vmcoreinfo", &self.vmcoreinfo.as_ref().map(Vec::len))
            .field(
                "live",
                &self.live.as_ref().map(|l| l.socket().to_path_buf()),
            )
            .finish()
    }
}

impl GuestImage {
    /// Opens `input`: a file, its format detected from its magic bytes, or a running QEMU
    /// ([`GuestImage::open_live`]).
    pub fn open(input: impl Into<Input>, opts: &OpenOptions) -> Result<Self> {
        let path = match input.into() {
            Input::File(path) => path,
            Input::Qmp(socket) => {
                if opts.layout.is_some() {
                    return Err(Error::Unsupported(
                        "a layout applies to raw memory images only, not to live guests".into(),
                    ));
                }
                return Self::open_live(&socket, &opts.live);
            }
            Input::Libvirt(domain) => {
                if opts.layout.is_some() {
                    return Err(Error::Unsupported(
                        "a layout applies to raw memory images only, not to live guests".into(),
                    ));
                }
                return Self::open_libvirt(&domain, &opts.live);
            }
        };
        let path = path.as_path();
        let len = std::fs::metadata(path).map(|m| m.len()).ok();
        Self::open_file(path, opts).map_err(|e| match e {
            // A parser that failed on the zeros a file cut under its mapping reads as: the cut
            // is the error (see `phys::mmap`).
            Error::InputCut { .. } => e,
            e => match (len, std::fs::metadata(path).map(|m| m.len())) {
                (Some(len), Ok(now)) if now < len => Error::InputCut {
                    path: path.to_path_buf(),
                    len,
                    now: Some(now),
                    offset: None,
                },
                _ => e,
            },
        })
    }

    /// [`open`](Self::open) of a file.
    fn open_file(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let magic = Magic::of(&read_head(path)?);
        if magic != Magic::None && opts.layout.is_some() {
            return Err(Error::Unsupported(format!(
                "{}: a layout applies to raw memory images only; this file has its own headers",
                path.display()
            )));
        }
        match magic {
            Magic::Elf => Self::from_elf(ElfCore::open(path)?),
            Magic::Kdump | Magic::FlattenedKdump => Self::from_kdump(KdumpFile::open(path)?),
            Magic::Migration => Self::from_migration(MigrationFile::open(path, None)?),
            Magic::Lime => {
                let lime = LimeImage::open(path)?;
                Ok(GuestImage {
                    path: path.to_path_buf(),
                    format: ImageFormat::Lime {
                        compressed: lime.compressed(),
                    },
                    memory: Box::new(lime),
                    cpus: Vec::new(),
                    notes: Vec::new(),
                    vmcoreinfo: None,
                    live: None,
                    migration: None,
                })
            }
            Magic::None => {
                no_memory_if_tiny(path)?;
                Ok(GuestImage {
                    path: path.to_path_buf(),
                    format: ImageFormat::Raw,
                    memory: Box::new(RawImage::open(path, opts.layout.as_ref())?),
                    cpus: Vec::new(),
                    notes: Vec::new(),
                    vmcoreinfo: None,
                    live: None,
                    migration: None,
                })
            }
        }
    }

    /// Wraps an opened ELF core.
    pub fn from_elf(core: ElfCore) -> Result<Self> {
        let notes = core.notes().to_vec();
        let cpus = cpus_of_machine(&notes, core.machine())?.into_states();
        let vmcoreinfo = notes
            .iter()
            .find(|n| n.name == VMCOREINFO_NAME)
            .map(|n| n.desc.clone());
        Ok(GuestImage {
            path: core.path().to_path_buf(),
            format: ImageFormat::Elf {
                class: core.class(),
                machine: core.machine(),
            },
            memory: Box::new(core),
            cpus,
            notes,
            vmcoreinfo,
            live: None,
            migration: None,
        })
    }

    /// Wraps an opened kdump-compressed file; CPU state comes from its notes.
    pub fn from_kdump(file: KdumpFile) -> Result<Self> {
        let notes = file.notes().to_vec();
        // The machine the header names, else the one its PRSTATUS notes are laid out for
        // (QEMU's aarch64 files name none); i386 when neither tells, as 32-bit x86 cores did
        // before the table had other machines.
        let machine = file
            .guest_machine()
            .map_or(ElfMachine::I386, KdumpMachine::elf_machine);
        let cpus = cpus_of_machine(&notes, machine.e_machine())?.into_states();
        // The reader already falls back to a VMCOREINFO note when the sub header has none.
        let vmcoreinfo = file.vmcoreinfo().map(<[u8]>::to_vec);
        Ok(GuestImage {
            path: file.path().to_path_buf(),
            format: ImageFormat::Kdump {
                flattened: file.info().flattened,
                status: file.info().status,
            },
            memory: Box::new(file),
            cpus,
            notes,
            vmcoreinfo,
            live: None,
            migration: None,
        })
    }

    /// Wraps an opened migration file: CPUs from its `cpu` sections, VMCOREINFO from where its
    /// `vmcoreinfo` device points (none when it points nowhere).
    pub fn from_migration(file: MigrationFile) -> Result<Self> {
        let cpus = file
            .cpu_sections()
            .iter()
            .map(|c| decode_any(&c.desc, &c.data, file.path()))
            .collect::<Result<Vec<_>>>()?;
        // Only the note the `vmcoreinfo` device points at is the input's own: a kernel found in
        // RAM is found by the kernel scan, and a dump says it came from there.
        let vmcoreinfo = file.vmcoreinfo().map(<[u8]>::to_vec);
        let info = MigrationInfo {
            machine: file.configuration().machine.clone(),
            capabilities: file.configuration().capabilities.clone(),
            blocks: file.blocks().to_vec(),
            stats: file.stats(),
            vmcoreinfo_paddr: file.vmcoreinfo_pointer().map(|p| p.paddr),
            vmdesc: file.has_vmdesc(),
        };
        Ok(GuestImage {
            path: file.path().to_path_buf(),
            format: ImageFormat::Migration {
                mapped_ram: file.mapped_ram(),
                libvirt: file.libvirt(),
            },
            cpus,
            memory: Box::new(file),
            notes: Vec::new(),
            vmcoreinfo,
            live: None,
            migration: Some(info),
        })
    }

    /// Attaches to the QEMU whose QMP socket is `socket`: stops the guest (with
    /// `opts.pause`), reads every vCPU's registers and the RAM layout, and opens RAM for
    /// in-place reads. The guest stays stopped until [`detach_live`](Self::detach_live), an
    /// explicit [`LiveSession::resume`] on [`live`](Self::live), or the image is dropped.
    /// Its VMCOREINFO is not the input's own (QEMU does not hand the `vmcoreinfo` device's
    /// note out over QMP): the kernel scan finds it in RAM.
    pub fn open_live(socket: &Path, opts: &LiveOptions) -> Result<Self> {
        // The RAM layout and its host side do not change while the guest runs: set them up
        // first, so the pause covers only the registers (and, for a dump, the RAM copy).
        let session = LiveSession::connect_running(socket, opts)?;
        Self::from_session(session, opts)
    }

    /// [`open_live`](Self::open_live) for a QEMU started by libvirt: `domain` (a name, UUID
    /// or id) on `opts.connect`'s URI, through libvirt's own monitor; pauses go through
    /// libvirt. Nothing about the domain is changed.
    pub fn open_libvirt(domain: &str, opts: &LiveOptions) -> Result<Self> {
        let session = LiveSession::connect_libvirt_running(domain, opts)?;
        Self::from_session(session, opts)
    }

    fn from_session(mut session: LiveSession, opts: &LiveOptions) -> Result<Self> {
        let layout = session.ram_layout()?;
        let memory = session.open_memory(&layout)?;
        // Asked before the pause, so that it covers only the registers.
        session.arch()?;
        if opts.pause {
            session.pause()?;
        }
        let cpus = session.registers()?;
        let consistent = session.consistent();
        Ok(GuestImage {
            path: if session.is_libvirt() {
                session.socket().to_path_buf()
            } else {
                PathBuf::from(Input::Qmp(session.socket().to_path_buf()).to_string())
            },
            format: ImageFormat::Live {
                access: memory.access(),
                consistent,
            },
            memory: Box::new(memory),
            cpus,
            notes: if consistent {
                Vec::new()
            } else {
                vec![unpaused_note()]
            },
            vmcoreinfo: None,
            live: Some(session),
            migration: None,
        })
    }

    /// Before a long read of a live input (a dump): when this image holds the guest stopped,
    /// copies its RAM into private memory (`phys::live::copy_ram`) and resumes it,
    /// returning how long it was stopped. Does nothing
    /// for other inputs. On error the guest is still resumed (when the image is dropped).
    pub fn detach_live(&mut self, progress: &dyn Progress) -> Result<Option<std::time::Duration>> {
        let Some(live) = self.live.as_mut() else {
            return Ok(None);
        };
        let mut paused = None;
        if live.holds_pause() {
            let snap = crate::phys::live::copy_ram(&*self.memory, progress)?;
            paused = live.resume()?;
            self.memory = Box::new(snap);
        }
        Ok(paused)
    }

    /// A VMCOREINFO value (`OSRELEASE`, `NUMBER(phys_base)` …), when the input has VMCOREINFO.
    pub fn vmcoreinfo_get(&self, key: &str) -> Option<&str> {
        vmcoreinfo_get(self.vmcoreinfo.as_deref()?, key)
    }
}

/// The first 16 bytes of `path` (fewer for a shorter file).
/// Refuses a file with no known header that cannot hold one page of memory: an empty file
/// (what QEMU leaves after a failed `dump-guest-memory`) or a few bytes are not a raw image of
/// a guest, and describing them as one (0 bytes of RAM, exit status 0) hides the failure.
fn no_memory_if_tiny(path: &Path) -> Result<()> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("{}: stat", path.display()), e))?
        .len();
    let what = match len {
        0 => "empty file: no guest memory".to_string(),
        n if n < crate::addr::PAGE_SIZE => format!(
            "{n} bytes, no known format's header and less than one page of memory: no guest memory"
        ),
        _ => return Ok(()),
    };
    Err(Error::Format {
        path: path.to_path_buf(),
        what,
    })
}

fn read_head(path: &Path) -> Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).map_err(|e| Error::io(format!("{}", path.display()), e))?;
    let mut head = Vec::with_capacity(16);
    file.take(16)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(format!("{}: read", path.display()), e))?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::notes::{encode_prstatus_x86_64, encode_qemu_note};
    use crate::cpu::{X86CpuState, CR0_PG, CR4_PAE};
    use crate::phys::elf::test_core::{build, pattern, temp_file, CoreSpec, Load};
    use crate::phys::elf::EM_X86_64;

    #[test]
    fn raw_image_with_and_without_layout() {
        let data = pattern(0x2000, 4);
        let f = temp_file(&data);
        let img = GuestImage::open(f.path(), &OpenOptions::default()).unwrap();
        assert_eq!(img.format, ImageFormat::Raw);
        assert!(img.cpus.is_empty() && img.notes.is_empty() && img.vmcoreinfo.is_none());
        assert_eq!(
            img.memory.read_u64(0x10).unwrap(),
            u64::from_le_bytes(data[0x10..0x18].try_into().unwrap())
        );

        let opts = OpenOptions {
            layout: Some(Layout::parse("1M@").unwrap()),
            ..Default::default()
        };
        let img = GuestImage::open(f.path(), &opts).unwrap();
        assert!(img.memory.read_u64(0x10).is_err());
        assert!(img.memory.is_ram(1 << 20, 0x2000));
        assert!(format!("{img:?}").contains("Raw"));
    }

    #[test]
    fn elf_core_with_cpus_and_vmcoreinfo() {
        let mut cpu = X86CpuState::new(0);
        cpu.cr = [CR0_PG | 1, 0, 0, 0x9000, CR4_PAE];
        cpu.rip = 0xffff_ffff_8100_0000;
        let mut spec = CoreSpec::new(true, EM_X86_64);
        spec.notes = vec![
            encode_prstatus_x86_64(&cpu, 1),
            encode_qemu_note(&cpu),
            ElfNote::new(
                VMCOREINFO_NAME,
                0,
                b"OSRELEASE=6.1.0\nNUMBER(phys_base)=-2\n".to_vec(),
            ),
        ];
        spec.loads = vec![Load::at(0x1000, pattern(0x1000, 8))];
        let f = temp_file(&build(&spec));
        let img = GuestImage::open(f.path(), &OpenOptions::default()).unwrap();
        assert_eq!(
            img.format,
            ImageFormat::Elf {
                class: 64,
                machine: EM_X86_64
            }
        );
        assert_eq!(img.cpus.len(), 1);
        let c = img.cpus[0].as_x86().unwrap();
        assert_eq!(c.cr3(), 0x9000);
        assert!(c.long_mode() && c.efer_inferred);
        assert_eq!(img.notes.len(), 3);
        assert_eq!(img.vmcoreinfo_get("OSRELEASE"), Some("6.1.0"));
        assert_eq!(img.vmcoreinfo_get("NUMBER(phys_base)"), Some("-2"));
        assert_eq!(
            img.memory.slice(0x1000, 0x1000).unwrap(),
            &pattern(0x1000, 8)[..]
        );

        let opts = OpenOptions {
            layout: Some(Layout::parse("0@").unwrap()),
            ..Default::default()
        };
        assert!(matches!(
            GuestImage::open(f.path(), &opts),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn broken_kdump_is_a_format_error_not_raw() {
        for head in [&b"KDUMP   \x06\0\0\0"[..], b"makedumpfile\0\0\0\0\x01"] {
            let mut bytes = head.to_vec();
            bytes.resize(4096, 0);
            let f = temp_file(&bytes);
            let err = GuestImage::open(f.path(), &OpenOptions::default()).unwrap_err();
            assert!(matches!(err, Error::Format { .. }), "{err}");
        }
    }

    #[test]
    fn broken_elf_is_a_format_error_not_raw() {
        let f = temp_file(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x04\0");
        assert!(matches!(
            GuestImage::open(f.path(), &OpenOptions::default()),
            Err(Error::Format { .. })
        ));
        assert!(matches!(
            GuestImage::open("/nonexistent/guestcore", &OpenOptions::default()),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn qmp_prefix_is_a_live_guest() {
        let err =
            GuestImage::open("qmp:/nonexistent/qmp.sock", &OpenOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Qmp { .. }), "{err:?}");
        assert!(err.to_string().contains("cannot connect"), "{err}");
    }

    #[test]
    fn magic_detection() {
        assert_eq!(Magic::of(b"\x7fELF"), Magic::Elf);
        assert_eq!(Magic::of(b"\x7fEL"), Magic::None);
        assert_eq!(Magic::of(b"DISKDUMP"), Magic::Kdump);
        assert_eq!(Magic::of(b""), Magic::None);
        assert_eq!(Magic::of(b"EMiL\x01\0\0\0"), Magic::Lime);
        assert_eq!(Magic::of(b"AVML\x02\0\0\0"), Magic::Lime);
        assert_eq!(Magic::of(b"EMi"), Magic::None);
    }
}
