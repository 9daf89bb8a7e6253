#![no_main]
//! Kernel discovery and the kernel log over guest-controlled memory: the input up to its first
//! NUL is VMCOREINFO text, written as a note at the start of page 0 (where Linux keeps it);
//! the rest is RAM from page 1 on (page tables, a printk ring, ELF core headers, anything).
//! `find_kernels` and `kernel_log` must end bounded with a result or an error, and a note
//! found in RAM (page 0's, or one the rest injects at a page start, lying about its sizes or
//! not) is only believed when its text is a kernel's VMCOREINFO: anything a dump would carry
//! from RAM passes `is_kernel_vmcoreinfo`.
use guestcore::format::note::ElfNote;
use guestcore::format::vmcoreinfo::is_kernel_vmcoreinfo;
use guestcore::kernel::{find_kernels, kernel_log};
use guestcore::phys::VecMemory;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (text, rest) = data.split_at(split);
    let mut ram = Vec::new();
    ElfNote::new(b"VMCOREINFO", 0, text.to_vec()).encode_into(&mut ram);
    ram.resize(ram.len().next_multiple_of(4096), 0);
    ram.extend_from_slice(rest.get(1..).unwrap_or(&[]));
    ram.resize(ram.len().next_multiple_of(4096).max(8192), 0);
    let mem = VecMemory::flat(ram);
    let scan = find_kernels(&mem, &[], Some(text));
    for k in &scan.kernels {
        assert!(
            k.vmcoreinfo_addr.is_none() || is_kernel_vmcoreinfo(&k.vmcoreinfo),
            "a note in RAM at {:?} believed: {:?}",
            k.vmcoreinfo_addr,
            String::from_utf8_lossy(&k.vmcoreinfo)
        );
        if let Some(mode) = k.paging_mode() {
            let _ = kernel_log(&mem, &mode, &k.vmcoreinfo);
        }
    }
});
