//! Live guests: a small synchronous QMP client ([`client`]) and a session on a running QEMU
//! ([`session`]) — stop, capture the vCPU state and the RAM layout ([`mtree`], [`gpa2hva`]),
//! read RAM in place ([`crate::phys::live`]), and resume the guest on every path out — a
//! [`watchdog`] process resumes it even when this process is killed. [`snapshot`] takes a QEMU
//! background snapshot instead: one consistent instant, streamed, with a stop of milliseconds.
//! An image read without pausing carries the [`unpaused`] note.

pub mod client;
pub mod gpa2hva;
pub mod mtree;
pub mod session;
pub mod snapshot;
pub mod unpaused;
pub mod watchdog;

pub use client::QmpClient;
pub use session::{LiveOptions, LiveSession};

/// The paths of the module that once held the session, the parsers and the VMCOREINFO
/// scanner, kept so code written against them still compiles.
pub mod live {
    pub use super::gpa2hva::parse_gpa2hva;
    pub use super::mtree::{parse_memory_flat_view, ram_pieces, FlatRange, RamPiece};
    pub use super::session::{LiveOptions, LiveSession};
    pub use super::unpaused::{
        unpaused_note, UNPAUSED_NOTE_NAME, UNPAUSED_NOTE_TEXT, UNPAUSED_NOTE_TYPE,
    };
    pub use crate::kernel::find_vmcoreinfo;
}
