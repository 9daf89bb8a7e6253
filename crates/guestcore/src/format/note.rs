//! ELF notes as bytes: `namesz`, `descsz`, `type`, then name and descriptor, each padded to
//! 4 bytes (the Linux core-file convention, also used in ELF64 cores).

use serde::Serialize;

/// `NT_PRSTATUS` (name `CORE`).
pub const NT_PRSTATUS: u32 = 1;
/// `NT_PRFPREG` (name `CORE`): the FP/SIMD registers (aarch64: V0–V31, FPSR, FPCR, 528 bytes).
pub const NT_PRFPREG: u32 = 2;
/// `NT_ARM_SVE` (name `LINUX`): an aarch64 vCPU's SVE registers.
pub const NT_ARM_SVE: u32 = 0x405;
/// The QEMU CPU-state note type (name `QEMU`).
pub const NT_QEMU_CPUSTATE: u32 = 0;
/// Note name of the guest's VMCOREINFO.
pub const VMCOREINFO_NAME: &[u8] = b"VMCOREINFO";

/// One note. `name` excludes the terminating NUL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ElfNote {
    /// The owner name (`CORE`, `QEMU`, `VMCOREINFO`), without its NUL.
    pub name: Vec<u8>,
    /// `n_type`: what the descriptor holds, within the name's namespace ([`NT_PRSTATUS`] …).
    pub n_type: u32,
    /// The descriptor bytes, without padding.
    pub desc: Vec<u8>,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

impl ElfNote {
    /// A note with `name` (no NUL), type and descriptor.
    pub fn new(name: &[u8], n_type: u32, desc: Vec<u8>) -> Self {
        ElfNote {
            name: name.to_vec(),
            n_type,
            desc,
        }
    }

    /// The name as text (lossy).
    pub fn name_str(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        12 + pad4(self.name.len() + 1) + pad4(self.desc.len())
    }

    /// Appends the encoded note to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let namesz = self.name.len() + 1;
        out.extend_from_slice(&(namesz as u32).to_le_bytes());
        out.extend_from_slice(&(self.desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.n_type.to_le_bytes());
        out.extend_from_slice(&self.name);
        out.resize(out.len() + pad4(namesz) - self.name.len(), 0);
        out.extend_from_slice(&self.desc);
        out.resize(out.len() + pad4(self.desc.len()) - self.desc.len(), 0);
    }

    /// Encodes a list of notes into one note segment.
    pub fn encode_all(notes: &[ElfNote]) -> Vec<u8> {
        let mut out = Vec::with_capacity(notes.iter().map(|n| n.encoded_len()).sum());
        for n in notes {
            n.encode_into(&mut out);
        }
        out
    }

    /// Parses a note segment. Stops with an error message at the first malformed note.
    pub fn parse_all(mut data: &[u8]) -> Result<Vec<ElfNote>, String> {
        let mut notes = Vec::new();
        while data.len() >= 12 {
            let word =
                |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().unwrap_or([0; 4])) as usize;
            let (namesz, descsz, n_type) = (word(0), word(4), word(8) as u32);
            let name_end = 12usize
                .checked_add(pad4(namesz))
                .ok_or("note name size overflows")?;
            let desc_end = name_end
                .checked_add(pad4(descsz))
                .ok_or("note descriptor size overflows")?;
            // The last note's descriptor padding may be missing; require only the real bytes.
            if name_end > data.len() || name_end + descsz > data.len() {
                return Err(format!(
                    "note {} (namesz {namesz}, descsz {descsz}) runs past the end of the note segment",
                    notes.len()
                ));
            }
            let mut name = &data[12..12 + namesz];
            if let Some(stripped) = name.strip_suffix(&[0]) {
                name = stripped;
            }
            notes.push(ElfNote {
                name: name.to_vec(),
                n_type,
                desc: data[name_end..name_end + descsz].to_vec(),
            });
            data = &data[desc_end.min(data.len())..];
        }
        Ok(notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding() {
        let notes = vec![
            ElfNote::new(b"CORE", NT_PRSTATUS, vec![1; 336]),
            ElfNote::new(b"QEMU", NT_QEMU_CPUSTATE, vec![2; 440]),
            ElfNote::new(VMCOREINFO_NAME, 0, b"OSRELEASE=6.1.0\n".to_vec()),
            ElfNote::new(b"X", 7, vec![3; 5]),
        ];
        let bytes = ElfNote::encode_all(&notes);
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(
            bytes.len(),
            notes.iter().map(|n| n.encoded_len()).sum::<usize>()
        );
        assert_eq!(ElfNote::parse_all(&bytes).unwrap(), notes);
    }

    #[test]
    fn truncated_is_an_error() {
        let bytes = ElfNote::encode_all(&[ElfNote::new(b"CORE", 1, vec![0; 64])]);
        assert!(ElfNote::parse_all(&bytes[..40]).is_err());
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(ElfNote::parse_all(&huge).is_err());
    }
}
