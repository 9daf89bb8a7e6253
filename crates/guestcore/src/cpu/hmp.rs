//! placeholder
pub fn parse_info_registers(_t: &str) -> crate::Result<Vec<crate::cpu::X86CpuState>> {
    Err(crate::Error::Unsupported("todo".into()))
}
