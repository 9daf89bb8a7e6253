#![no_main]
//! VMCOREINFO `KEY=VALUE` text: entries, numbers (decimal, may be negative), symbols, phys_base,
//! and an arm64 kernel's layout with its address arithmetic.
use guestcore::format::arm64_layout::Arm64Layout;
use guestcore::format::vmcoreinfo::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vmcoreinfo_entries(data).count();
    let _ = vmcoreinfo_get(data, "OSRELEASE");
    let _ = vmcoreinfo_number(data, "phys_base");
    let _ = vmcoreinfo_symbol(data, "init_top_pgt");
    let _ = vmcoreinfo_phys_base(data);
    if let Ok(l) = Arm64Layout::from_vmcoreinfo(data) {
        for va in [0, u64::MAX, 0xffff_0000_0000_0000, 0xffff_8000_0800_0000] {
            let _ = (l.virt_to_phys(va), l.page_struct(va >> 12, 64));
        }
        let _ = (l.swapper_pg_dir_phys(), l.vmemmap_start(), l.va_bits_actual());
    }
});
