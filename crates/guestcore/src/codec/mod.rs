//! Page codecs of kdump files: compress one page, decompress one page, for every
//! [`Compression`] a kdump file names.
//!
//! They sit here, beside neither the reader (`phys::kdump`) nor the writer (`dump::kdump`),
//! because both use them: a reader must not depend on a writer. What each compression flag
//! means on disk is in [`crate::format::kdump`]; this module is only the byte transforms.

mod lzo1x;
mod page;

pub use page::{decompress_page, Compression, PageCompressor, MAX_BLOCK, PAGE};
