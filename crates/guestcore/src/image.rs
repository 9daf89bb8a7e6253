//! Opening an input (PROVISIONAL: replaced by the sources branch).

use crate::cpu::X86CpuState;
use crate::format::ElfNote;
use crate::phys::{PhysMemory, VecMemory};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// What kind of file an input is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageFormat {
    Raw,
}

/// Options for [`GuestImage::open`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub layout: Option<String>,
}

/// An opened input.
pub struct GuestImage {
    pub path: PathBuf,
    pub format: ImageFormat,
    pub memory: Box<dyn PhysMemory>,
    pub cpus: Vec<X86CpuState>,
    pub notes: Vec<ElfNote>,
    pub vmcoreinfo: Option<Vec<u8>>,
}

impl GuestImage {
    /// Opens `path`.
    pub fn open(path: &Path, _opts: &OpenOptions) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        Ok(GuestImage {
            path: path.to_path_buf(),
            format: ImageFormat::Raw,
            memory: Box::new(VecMemory::flat(bytes)),
            cpus: Vec::new(),
            notes: Vec::new(),
            vmcoreinfo: None,
        })
    }
}
