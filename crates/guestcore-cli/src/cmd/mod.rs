//! One module per subcommand.

pub mod info;
pub mod mem;
pub mod read;
pub mod tlb;
pub mod translate;
