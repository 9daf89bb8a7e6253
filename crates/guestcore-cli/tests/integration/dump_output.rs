//! Seeing a dump's output from outside: it has no name while it is written (`O_TMPFILE`), so
//! tests that act "once the dump writes" look at the process's descriptors
//! ([`writing_into`]), and tests that check nothing was left list the directory
//! ([`names_in`]).

use std::path::Path;

/// Whether process `pid` holds an output file open in `dir`: an unnamed one (`O_TMPFILE`,
/// which `/proc/PID/fd` shows as `DIR/#INODE (deleted)`) or the named fallback's
/// `.NAME.guestcore-XXXXXX`.
pub fn writing_into(pid: u32, dir: &Path) -> bool {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            return false;
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        target.parent() == Some(dir.as_path())
            && (name.starts_with('#') || name.contains(".guestcore-"))
    })
}

/// Every name in `dir`, sorted: what a test compares before and after a dump to see that it
/// left nothing behind (or exactly its output).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
