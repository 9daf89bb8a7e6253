//! One walk budget for everything a [`Guest`](super::Guest) walks.
//!
//! A guest controls its page tables, so every walk is bounded ([`WalkLimits`]). A command that
//! walks many roots (every vCPU of a file with thousands, then their union) must be bounded as
//! a whole, not per walk: each walk gets what the ones before it left.

use crate::paging::{WalkLimits, WalkReport};
use std::sync::atomic::{AtomicU64, Ordering};

/// The limits and what the walks so far spent of them.
#[derive(Debug, Default)]
pub(crate) struct WalkBudget {
    limits: WalkLimits,
    entries: AtomicU64,
    leaves: AtomicU64,
    mappings: AtomicU64,
}

impl WalkBudget {
    pub(crate) fn new(limits: WalkLimits) -> Self {
        WalkBudget {
            limits,
            ..Default::default()
        }
    }

    /// What is left.
    pub(crate) fn left(&self) -> WalkLimits {
        let spent = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WalkLimits {
            max_entries: self.limits.max_entries.saturating_sub(spent(&self.entries)),
            max_leaves: self.limits.max_leaves.saturating_sub(spent(&self.leaves)),
            max_mappings: self
                .limits
                .max_mappings
                .saturating_sub(spent(&self.mappings)),
        }
    }

    /// Counts a finished walk and the mappings it kept.
    pub(crate) fn spend(&self, report: &WalkReport, mappings: u64) {
        let add = |a: &AtomicU64, n: u64| {
            let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(n))
            });
        };
        add(&self.entries, report.entries_visited);
        add(&self.leaves, report.leaves);
        add(&self.mappings, mappings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_share_one_budget() {
        let b = WalkBudget::new(WalkLimits {
            max_entries: 10,
            max_leaves: 5,
            max_mappings: 3,
        });
        let r = WalkReport {
            entries_visited: 7,
            leaves: 6,
            ..Default::default()
        };
        b.spend(&r, 2);
        let left = b.left();
        assert_eq!(
            (left.max_entries, left.max_leaves, left.max_mappings),
            (3, 0, 1)
        );
        b.spend(&r, 2);
        assert_eq!(b.left().max_entries, 0);
    }
}
