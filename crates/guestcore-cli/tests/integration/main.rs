//! The CLI's integration tests, one binary (one link) with a module per subject: `cli` (every
//! listing and error on generated guests, insta snapshots in `snapshots/`), `signals`, `live`
//! (a running QEMU) and `real_guests` (captured Linux guests, checked against QEMU, crash,
//! drgn, gdb, makedumpfile). Filter by module: `cargo test -p guestcore-cli --test integration
//! cli::`.

mod cli;
mod live;
mod real_guests;
mod signals;
