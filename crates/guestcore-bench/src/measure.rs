//! Timing and memory measurement.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// The median of `v` (upper median for an even count); zero for an empty slice.
pub fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s.get(s.len() / 2).copied().unwrap_or_default()
}

/// Runs `f` `reps` times and returns every duration plus the last result.
pub fn time_reps<T>(reps: usize, mut f: impl FnMut() -> T) -> (Vec<Duration>, T) {
    let mut times = Vec::with_capacity(reps);
    let mut last = None;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let r = f();
        times.push(t.elapsed());
        last = Some(std::hint::black_box(r));
    }
    (times, last.expect("at least one repetition"))
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`…); `None` where unavailable.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS (Linux `clear_refs` value 5).
/// Returns false where the kernel does not allow it; the peak then includes earlier phases.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// What a child process cost.
#[derive(Clone, Copy, Debug)]
pub struct ChildRun {
    /// Wall-clock time from spawn to reaping the child.
    pub wall: Duration,
    /// Peak resident set of the child (`ru_maxrss`), KiB.
    pub max_rss_kib: u64,
    /// The child's exit status, as `wait4` reported it.
    pub status: ExitStatus,
}

/// Runs `cmd` to completion and reports its wall time and its own peak RSS (through `wait4`,
/// so earlier children do not count).
pub fn run_child(cmd: &mut Command) -> io::Result<ChildRun> {
    let t = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; zeroed is a valid initial value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child by pid, with valid pointers to locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let wall = t.elapsed();
    // The child has been reaped by wait4; do not let `Child` try again.
    std::mem::forget(child);
    Ok(ChildRun {
        wall,
        max_rss_kib: usage.ru_maxrss as u64,
        status: ExitStatus::from_raw(status),
    })
}

/// Milliseconds with a sensible number of digits.
pub fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `a / b` as "1.23×".
pub fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "–".into();
    }
    let r = a.as_secs_f64() / b.as_secs_f64();
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

/// KiB as MiB text.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_format() {
        let d = |ms| Duration::from_millis(ms);
        assert_eq!(median(&[d(5), d(1), d(3)]), d(3));
        assert_eq!(median(&[]), Duration::ZERO);
        assert_eq!(ratio(d(300), d(100)), "3.00×");
        assert_eq!(ms(d(1500)), "1500");
        assert!(proc_status_kib("VmRSS").is_some_and(|k| k > 0));
    }

    #[test]
    fn child_rusage() {
        let r = run_child(&mut Command::new("true")).unwrap();
        assert!(r.status.success());
        assert!(r.max_rss_kib > 0);
    }
}
