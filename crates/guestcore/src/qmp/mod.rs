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
