//! The CLI's integration tests, one binary (one link) with a module per subject: `cli` (every
//! listing and error on generated guests, insta snapshots in `snapshots/`), `hostile_inputs`
//! (small generated files that claim far more than they hold: time, RSS, output size), `signals`, `live`
//! (a running QEMU) and `real_guests` (captured Linux guests, checked against QEMU, crash,
//! drgn, gdb, makedumpfile). Filter by module: `cargo test -p guestcore-cli --test integration
//! cli::`.
//!
//! `live` and `real_guests` boot QEMU guests (and libvirt) for minutes: they run only with
//! `GUESTCORE_REAL_GUESTS=1` (`scripts/test.sh` sets it) and otherwise return at once, saying
//! so in one line (`guestcore_testkit::tools::real_guests_wanted`).

mod cli;
mod dump_output;
mod hostile_inputs;
mod live;
mod real_guests;
mod shrinking;
mod signals;
mod special_outputs;
