//! Live guests: a small synchronous QMP client ([`client`]) and a session on a running QEMU
//! ([`live`]) — stop, capture the vCPU state and the RAM layout, read RAM in place
//! ([`crate::phys::live`]), and resume the guest on every path out — a [`watchdog`] process
//! resumes it even when this process is killed. [`snapshot`] takes a QEMU background
//! snapshot instead: one consistent instant, streamed, with a stop of milliseconds.

pub mod client;
pub mod live;
pub mod snapshot;
pub mod watchdog;

pub use client::QmpClient;
pub use live::{LiveOptions, LiveSession};
