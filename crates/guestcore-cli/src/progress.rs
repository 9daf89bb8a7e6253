//! The indicatif adapter for [`guestcore::progress::Progress`], and Ctrl-C as cancellation.

use guestcore::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A terminal progress bar (hidden when not wanted) that also reports Ctrl-C.
pub struct Bar {
    bar: ProgressBar,
    cancel: Arc<AtomicBool>,
}

impl Bar {
    /// A bar drawn on stderr when `visible`; Ctrl-C sets the cancel flag either way.
    pub fn new(visible: bool) -> Self {
        let bar = if visible {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        // Only one handler can be installed per process; a second Bar keeps the first's.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
        Bar { bar, cancel }
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        self.bar.set_message(what.to_string());
        self.bar.set_length(total);
        self.bar.set_position(0);
    }
    fn advance(&self, done: u64) {
        self.bar.inc(done);
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}
