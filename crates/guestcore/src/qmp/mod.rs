//! Live guests: a small synchronous QMP client (`client`) and a session on a running QEMU
//! (`session`) — stop, capture the vCPU state and the RAM layout (`mtree`, `gpa2hva`),
//! read RAM in place ([`crate::phys::live`]), and resume the guest on every path out — a
//! `watchdog` process resumes it even when this process is killed. `snapshot` takes a QEMU
//! background snapshot instead: one consistent instant, streamed, with a stop of milliseconds.
//! An image read without pausing carries the `unpaused` note. A QEMU started by libvirt is
//! reached through libvirt's own monitor (`libvirt`).

mod client;
mod gpa2hva;
mod libvirt;
mod mtree;
mod session;
pub(crate) mod snapshot;
pub(crate) mod unpaused;
mod watchdog;

pub use client::QmpClient;
pub use session::{LiveOptions, LiveSession};
