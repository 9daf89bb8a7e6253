//! Side-by-side benchmarks of guestcore against its peers.
//!
//! Every comparison runs the peers on the *same* input in the *same* process run, repeats each
//! measurement, and reports medians and ratios, because the machines these run on are small and
//! shared: absolute numbers move between runs, ratios measured together much less.
//!
//! * [`inputs`] — the inputs: Linux-like guests (sparse, any RAM size), synthetic tables with an
//!   exact number of non-mergeable 4 KiB leaves, and a filled 1 GiB image for copy benchmarks.
//! * [`measure`] — medians, peak RSS (`VmHWM`, reset through `clear_refs`), child rusage.
//! * [`peers`] — memflow's x86-64 translator over the same bytes (feature `peers`).
//! * [`table`] — Markdown output.

pub mod inputs;
pub mod measure;
#[cfg(feature = "peers")]
pub mod peers;
pub mod table;
