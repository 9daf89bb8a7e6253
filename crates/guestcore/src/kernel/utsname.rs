//! A kernel's `uname` strings, read from its `init_uts_ns` in guest RAM.
//!
//! Why: a kdump header's `utsname` is what crash and libkdumpfile read first (the release to
//! match a vmlinux, the machine, the build `version` string). VMCOREINFO carries only the
//! release; the rest lives in the kernel's `init_uts_ns.name` (`struct new_utsname`: six
//! 65-byte fields, sysname to domainname). Its address is `SYMBOL(init_uts_ns)` plus
//! `OFFSET(uts_namespace.name)` (0 since Linux 5.11 dropped the leading `kref`; older kernels
//! put 4 or 8 bytes before it, and not all export the offset), and it lies in the kernel
//! image, whose physical place the layout gives without a page walk.
//!
//! Guest data: the text is accepted only when it is what a kernel writes there — `sysname`
//! is `Linux` and `release` equals VMCOREINFO's `OSRELEASE` — so a wrong offset or a page
//! overwritten since boot yields nothing rather than garbage in a header.

use super::layout::KernelLayout;
use crate::format::kdump::{NewUtsname, UTS_FIELD_LEN};
use crate::format::vmcoreinfo::{vmcoreinfo_field, vmcoreinfo_get, vmcoreinfo_symbol};
use crate::phys::PhysMemory;

/// The utsname of the kernel `vmcoreinfo` describes, from RAM; `None` when it cannot be found
/// or is not a kernel's.
pub(crate) fn read_utsname(
    mem: &(impl PhysMemory + ?Sized),
    vmcoreinfo: &[u8],
) -> Option<NewUtsname> {
    let layout = KernelLayout::from_vmcoreinfo(vmcoreinfo).ok()?;
    let sym = vmcoreinfo_symbol(vmcoreinfo, "init_uts_ns")?;
    let release = vmcoreinfo_get(vmcoreinfo, "OSRELEASE")?.trim();
    let offsets: Vec<u64> = match vmcoreinfo_field(vmcoreinfo, "OFFSET", "uts_namespace.name", 4096)
    {
        Some(o) => vec![o],
        None => vec![0, 4, 8],
    };
    offsets.into_iter().find_map(|off| {
        let pa = layout.image_phys(sym.checked_add(off)?)?;
        let mut raw = [0u8; 6 * UTS_FIELD_LEN];
        mem.read_at(pa, &mut raw).ok()?;
        let field = |i: usize| -> [u8; UTS_FIELD_LEN] {
            let mut f = [0u8; UTS_FIELD_LEN];
            f.copy_from_slice(&raw[i * UTS_FIELD_LEN..(i + 1) * UTS_FIELD_LEN]);
            // A NUL always ends a field, as the kernel keeps it.
            f[UTS_FIELD_LEN - 1] = 0;
            f
        };
        let u = NewUtsname {
            sysname: field(0),
            nodename: field(1),
            release: field(2),
            version: field(3),
            machine: field(4),
            domainname: field(5),
        };
        (NewUtsname::text(&u.sysname) == "Linux" && NewUtsname::text(&u.release) == release)
            .then_some(u)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phys::VecMemory;

    fn uts(version: &str) -> Vec<u8> {
        ["Linux", "guest", "6.1.0-t", version, "x86_64", "(none)"]
            .iter()
            .flat_map(|s| NewUtsname::field(s))
            .collect()
    }

    #[test]
    fn the_kernels_strings_at_its_offset_and_nothing_else() {
        let mut ram = vec![0u8; 1 << 20];
        // init_uts_ns at 0xffffffff81002000, phys_base −16 MiB: physical 0x2000; its name 8 in.
        ram[0x2008..][..390].copy_from_slice(&uts("#1 SMP Debian"));
        let mem = VecMemory::flat(ram);
        let text = |extra: &str| {
            format!(
                "OSRELEASE=6.1.0-t\nSYMBOL(swapper_pg_dir)=ffffffff81010000\nNUMBER(phys_base)=-16777216\nSYMBOL(init_uts_ns)=ffffffff81002000\n{extra}"
            )
        };
        let u = read_utsname(&mem, text("").as_bytes()).unwrap();
        assert_eq!(NewUtsname::text(&u.version), "#1 SMP Debian");
        assert_eq!(NewUtsname::text(&u.nodename), "guest");
        let u = read_utsname(&mem, text("OFFSET(uts_namespace.name)=8\n").as_bytes()).unwrap();
        assert_eq!(NewUtsname::text(&u.machine), "x86_64");
        // The offset the kernel names wins; a wrong one finds no utsname, not garbage.
        assert!(read_utsname(&mem, text("OFFSET(uts_namespace.name)=0\n").as_bytes()).is_none());
        // Another release than VMCOREINFO's: not this kernel's.
        let other = text("").replace("OSRELEASE=6.1.0-t", "OSRELEASE=6.2");
        assert!(read_utsname(&mem, other.as_bytes()).is_none());
    }
}
