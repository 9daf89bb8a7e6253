//! One module per subcommand.

pub mod dmesg;
pub mod dump;
pub mod info;
pub mod kernels;
pub mod mem;
pub mod read;
pub mod tlb;
pub mod translate;
