//! How to open a guest: where its memory is placed, how a live guest is held, and which CPU
//! state replaces or corrects what the input says.
//!
//! The options are plain data so that a CLI maps its flags onto them one to one and a library
//! user fills them in code.

use super::{Notice, NoticeSink};
use crate::cpu::{CpuState, X86CpuState};
use crate::paging::WalkLimits;
use crate::phys::layout::Layout;
use crate::qmp::LiveOptions;

/// Options for [`Guest::open`](super::Guest::open).
#[derive(Clone, Default)]
pub struct GuestOptions {
    /// Placement of a raw image in guest-physical memory; an error for other formats.
    pub layout: Option<Layout>,
    /// For `qmp:SOCKET` inputs: pause or not, QMP timeout.
    pub live: LiveOptions,
    /// CPU state that replaces or corrects the input's.
    pub cpus: CpuOverrides,
    /// The budget of every walk this guest does, shared by all of them (a file with thousands
    /// of vCPUs walked one after the other gets one budget, not one each).
    pub limits: WalkLimits,
    /// Where the guest's [`Notice`]s go (none: dropped); also [`Guest::on_notice`](super::Guest::on_notice).
    pub notices: Option<NoticeSink>,
}

impl std::fmt::Debug for GuestOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestOptions")
            .field("layout", &self.layout)
            .field("live", &self.live)
            .field("cpus", &self.cpus)
            .field("limits", &self.limits)
            .field("notices", &self.notices.is_some())
            .finish()
    }
}

impl GuestOptions {
    /// These options with every notice sent to `sink`.
    pub fn with_notices(self, sink: impl Fn(&Notice) + Send + Sync + 'static) -> Self {
        GuestOptions {
            notices: Some(std::sync::Arc::new(sink)),
            ..self
        }
    }

    /// Sends `n` to the sink, if there is one.
    pub(crate) fn notify(&self, n: Notice) {
        if let Some(sink) = &self.notices {
            sink(&n);
        }
    }
}

/// CPU state given by the caller instead of, or on top of, the input's.
#[derive(Clone, Debug, Default)]
pub struct CpuOverrides {
    /// Every vCPU, replacing the input's (from HMP `info registers -a`
    /// ([`crate::cpu::hmp::parse_info_registers`]), or one built for a paging mode
    /// ([`crate::paging::state_for_mode`])).
    pub registers: Option<Vec<X86CpuState>>,
    /// CR0 for every vCPU.
    pub cr0: Option<u64>,
    /// CR4 for every vCPU.
    pub cr4: Option<u64>,
    /// EFER for every vCPU.
    pub efer: Option<u64>,
}

impl CpuOverrides {
    /// True when any CPU state comes from the caller: then a dump describes these registers,
    /// not the input's CPU notes.
    pub fn any(&self) -> bool {
        self.registers.is_some() || self.cr0.is_some() || self.cr4.is_some() || self.efer.is_some()
    }

    /// `cpus` with the overrides applied (the control registers are x86's: other vCPUs keep
    /// theirs).
    pub(crate) fn apply(&self, cpus: &[CpuState]) -> Vec<CpuState> {
        let mut cpus = match &self.registers {
            Some(r) => r.iter().cloned().map(CpuState::from).collect(),
            None => cpus.to_vec(),
        };
        for c in cpus.iter_mut().filter_map(|c| match c {
            CpuState::X86(c) => Some(c),
            CpuState::Aarch64(_) => None,
        }) {
            if let Some(v) = self.cr0 {
                c.cr[0] = v;
            }
            if let Some(v) = self.cr4 {
                c.cr[4] = v;
            }
            if let Some(v) = self.efer {
                c.efer = v;
                c.efer_inferred = false;
            }
        }
        cpus
    }
}
