//! ELF header facts shared by the core reader (`phys::elf`), the CPU note codecs
//! (`cpu::notes`: a core's machine decides how its registers are read) and the writers, so
//! none of them takes constants from another's module.

/// `e_machine` of x86_64 cores.
pub const EM_X86_64: u16 = object::elf::EM_X86_64;
/// `e_machine` of i386 cores.
pub const EM_386: u16 = object::elf::EM_386;
