//! The library's integration tests, one binary (one link) with a module per subject; `common`
//! holds the walker tests' shared helpers. Filter by module: `cargo test -p guestcore --test
//! integration walk_props::`.

mod aarch64_mmu_qemu;
mod aarch64_payload;
mod aarch64_qemu;
mod common;
mod dump_elf;
mod dump_levels;
mod dump_levels_arm64;
mod dump_modes;
mod hostile_walk;
mod kdump;
mod kdump_readers;
mod kernel_log;
mod kernel_roles;
mod layers;
mod walk_aarch64;
mod walk_fuzz;
mod walk_modes;
mod walk_props;
