//! The note that marks an image read from a running guest without pausing it (`--no-pause`):
//! its pages may be inconsistent with each other and with the registers, and the output says so.

use crate::format::ElfNote;

/// Name of the note that marks an image read from a running guest (`--no-pause`).
pub(crate) const UNPAUSED_NOTE_NAME: &[u8] = b"GUESTCORE";
/// Type of that note.
pub(crate) const UNPAUSED_NOTE_TYPE: u32 = 1;
/// Its text.
pub(crate) const UNPAUSED_NOTE_TEXT: &str = "live-no-pause: registers and memory were read while the guest ran; pages may be inconsistent with each other and with the registers\n";

/// The note that marks an image read without pausing the guest.
pub(crate) fn unpaused_note() -> ElfNote {
    ElfNote::new(
        UNPAUSED_NOTE_NAME,
        UNPAUSED_NOTE_TYPE,
        UNPAUSED_NOTE_TEXT.as_bytes().to_vec(),
    )
}
