//! A kernel's log, from the view a caller selected: which kernel's printk buffer to read is
//! the facade's choice, so every caller reads the same one.

use super::{Guest, View};
use crate::kernel::{kernel_log, tables_run, KernelSelector};
use crate::{Error, Result};

impl Guest {
    /// The log of the kernel `view` looks at, as `makedumpfile --dump-dmesg` prints it.
    ///
    /// A kernel view reads that kernel. Otherwise: the input's own VMCOREINFO when the selected
    /// tables run it (no scan of RAM: a few page reads), else the kernel the scan finds those
    /// tables run, else the kernel that is `running` (or the only one found).
    pub fn kernel_log(&self, view: &View) -> Result<String> {
        let input = self.image.path.display().to_string();
        let mem = &*self.image.memory;
        let (vmcoreinfo, mode) = if let Some(k) = &view.kernel {
            (k.vmcoreinfo.clone(), view.first()?.mode.clone())
        } else {
            let sel = view.selected.iter().find(|s| s.cpu.paging_enabled());
            match (sel, self.image.vmcoreinfo.as_deref()) {
                (Some(s), Some(v)) if tables_run(mem, &s.mode, v) => (v.to_vec(), s.mode.clone()),
                _ => {
                    let scan = self.kernels();
                    let k = match sel.and_then(|s| {
                        scan.kernels
                            .iter()
                            .find(|k| k.cpus.contains(&s.cpu.index()))
                    }) {
                        Some(k) => k,
                        None => scan
                            .select(KernelSelector::Running, self.cpus())
                            .map_err(|e| e.context(input.clone()))?,
                    };
                    let mode = k.paging_mode().ok_or_else(|| {
                        Error::Unsupported(format!(
                            "{input}: kernel {} has no usable page-table root",
                            k.index
                        ))
                    })?;
                    (k.vmcoreinfo.clone(), mode)
                }
            }
        };
        kernel_log(mem, &mode, &vmcoreinfo)
            .map_err(|e| e.context(format!("{input}: reading the kernel log")))
    }
}
