#![no_main]
//! VMCOREINFO `KEY=VALUE` text: entries, numbers (decimal, may be negative), symbols, phys_base.
use guestcore::format::vmcoreinfo::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vmcoreinfo_entries(data).count();
    let _ = vmcoreinfo_get(data, "OSRELEASE");
    let _ = vmcoreinfo_number(data, "phys_base");
    let _ = vmcoreinfo_symbol(data, "init_top_pgt");
    let _ = vmcoreinfo_phys_base(data);
});
