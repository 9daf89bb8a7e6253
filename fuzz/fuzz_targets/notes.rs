#![no_main]
//! ELF note streams, and the CPU-state codecs (NT_PRSTATUS x86 and aarch64, QEMU CPU state)
//! over each note, by every machine the notes may be read as.
use guestcore::cpu::notes::{
    cpus_from_notes, cpus_of_machine, decode_prstatus, decode_prstatus_aarch64, decode_qemu_note,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(notes) = guestcore::format::ElfNote::parse_all(data) {
        for machine in [62, 3] {
            let _ = cpus_from_notes(&notes, machine);
        }
        for machine in [62, 3, 183, 40] {
            let _ = cpus_of_machine(&notes, machine);
        }
        for n in &notes {
            let _ = decode_prstatus(&n.desc);
            let _ = decode_prstatus_aarch64(&n.desc);
            let _ = decode_qemu_note(&n.desc);
        }
        let again = guestcore::format::ElfNote::encode_all(&notes);
        let _ = guestcore::format::ElfNote::parse_all(&again);
    }
});
