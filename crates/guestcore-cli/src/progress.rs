//! The indicatif adapter for [`guestcore::Progress`], and Ctrl-C / SIGTERM as
//! cancellation.

use guestcore::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The process's cancel flag, set by Ctrl-C (SIGINT), SIGTERM and SIGHUP; the first call
/// installs the handler (only one handler can exist per process). Live inputs install it
/// before pausing a guest, so a signal cancels the work and the guest is resumed instead of
/// the process dying with it stopped; writers install it (through [`Bar`]) before creating
/// their temporary file, so a signal makes them remove it. SIGTERM is what `kill`, systemd
/// and `timeout` send, so it is a cancel too, not an instant death. A second signal exits at
/// once (status 130), for work that does not check the flag.
pub fn cancel_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    Arc::clone(FLAG.get_or_init(|| {
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
        cancel
    }))
}

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
        Bar {
            bar,
            cancel: cancel_flag(),
        }
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
