//! Every memory mapping guestcore makes of a file, and the one `madvise` it sends: the `unsafe`
//! of mapping lives here, so the readers above it are safe code.
//!
//! # The mmap contract
//!
//! A mapping shows the file's current bytes, not a copy taken at open. If another process
//! **changes** a mapped file, later reads see the new bytes (a `&[u8]` borrowed from the map
//! may observe them change, which Rust's aliasing rules do not allow for a `&[u8]`); if it
//! **truncates** the file, touching a page past the new end raises `SIGBUS`, whose default
//! action kills the process without a word and leaves a dump's temporary file behind.
//! `memmap2` marks mapping `unsafe` for exactly this reason.
//!
//! guestcore accepts *changed* bytes for its inputs because they are finished files: a dump,
//! an image, a saved migration stream, opened read-only. A file rewritten in place while
//! guestcore reads it is not a supported input (the result is undefined, as for `cp` or
//! `crash`; the copy-based readers would give torn data too). A file **cut** while it is read
//! (a copy still being written then restarted, a cleanup script, a full disk's `truncate`)
//! must not kill the process, nor end up in a dump as zeros: it is an [`Error::InputCut`]
//! naming the file.
//!
//! # How a cut becomes an error
//!
//! Every input mapping ([`InputMap`], made by [`map_file`]) is registered in a fixed table
//! of address ranges. The first registration installs one process-wide `SIGBUS` handler
//! (`sigaction` with `SA_SIGINFO | SA_ONSTACK`), keeping the handler it replaced. On a fault
//! the kernel raised (`si_code > 0`) at an address inside a registered mapping, the handler
//! maps an anonymous zero page over the faulting page (`MAP_FIXED`, inside the mapping, which
//! stays one range that `munmap` removes whole) and records the cut on that mapping; the
//! faulting load re-executes and reads zeros. Readers then ask [`InputMap::intact`] after
//! each piece they copy or lend (`read_at`, and [`PhysMemory::intact`](super::PhysMemory::intact)
//! after each piece of a pass and before a dump is renamed into place), so zeros read from a
//! cut file stop the command with an error instead of being written.
//!
//! Why a handler rather than the alternatives: checking the size before each access cannot
//! close the race (the file can be cut between the check and the load), and reading every
//! input with `pread` instead would give up the borrowed slices that let a dump compress and
//! copy straight from the page cache (see `ARCHITECTURE.md`, "Memory is O(buffers)").
//!
//! Because guestcore is also a library inside other programs, the handler is careful:
//! - every fault it does not own (not `SIGBUS` from the kernel, or an address outside every
//!   registered mapping, or a zero page it could not map) goes to the handler it replaced,
//!   called as that handler asked (`SA_SIGINFO` or not); a replaced `SIG_DFL` or `SIG_IGN`
//!   is restored as `SIG_DFL` and the signal raised again, so the process dies of it as it
//!   would have without guestcore (Rust's own stack-overflow handler, when it is the one
//!   replaced, is chained to the same way);
//! - it is async-signal-safe: atomics on a static table, `mmap`, `sigaction`, `raise`, and it
//!   keeps `errno` as it found it. No allocation, no lock;
//! - a program that installs its own `SIGBUS` handler *after* guestcore mapped a file must
//!   chain to the one it replaces, as with any handler.
//!
//! The table holds [`MAX_MAPS`] mappings at once; one more is refused with an error rather
//! than mapped unprotected. Live guest RAM, which *does* change underneath, is never mapped
//! here as a slice: [`map_shared_ram`] returns a raw mapping that is only copied out of
//! through pointers ([`super::live`]).

use crate::addr::PAGE_SIZE;
use crate::{Error, Result};
use memmap2::{Mmap, MmapOptions, MmapRaw};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Once, OnceLock};

/// How many input mappings may be open at once: each command maps one input; a program or a
/// test suite opening many at once stays far below it. 1024 slots of 32 bytes, static.
pub(crate) const MAX_MAPS: usize = 1024;

/// One registered mapping: `[start, start + len)`, free when `start` is 0. `cut_at` is the
/// first faulting offset plus one, 0 while the mapping is intact.
struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    cut: AtomicBool,
    cut_at: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)] // only used as the array's initializer
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    cut: AtomicBool::new(false),
    cut_at: AtomicU64::new(0),
};

static SLOTS: [Slot; MAX_MAPS] = [FREE; MAX_MAPS];

/// The `SIGBUS` disposition guestcore's handler replaced, to chain to.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
/// The host's page size, for the zero page the handler maps (set before the handler is).
static HOST_PAGE: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

/// A read-only mapping of a whole input file, registered with the `SIGBUS` handler for as
/// long as it lives. Derefs to the file's bytes; [`intact`](Self::intact) says whether they
/// still are the file's.
pub(crate) struct InputMap {
    map: Mmap,
    slot: usize,
    path: PathBuf,
    /// A handle on the file, to tell its size when a cut is reported.
    file: File,
}

impl std::fmt::Debug for InputMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputMap")
            .field("path", &self.path)
            .field("len", &self.map.len())
            .finish()
    }
}

impl std::ops::Deref for InputMap {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl InputMap {
    /// `Ok` while every byte read through this mapping was the file's; an
    /// [`Error::InputCut`] naming the file once a read faulted because the file was cut.
    /// One atomic load: cheap enough for every `read_at`.
    pub(crate) fn intact(&self) -> Result<()> {
        let s = &SLOTS[self.slot];
        if !s.cut.load(SeqCst) {
            return Ok(());
        }
        let now = self.file.metadata().ok().map(|m| m.len());
        Err(self.cut_error(now, s.cut_at.load(SeqCst).checked_sub(1)))
    }

    /// [`intact`](Self::intact), and the file still as long as what was mapped (one `fstat`):
    /// for the end of each piece of a pass, which may also have read the file with `pread` or
    /// `copy_file_range` (a short read there raises no signal).
    pub(crate) fn whole(&self) -> Result<()> {
        self.intact()?;
        match self.file.metadata() {
            Ok(m) if m.len() < self.map.len() as u64 => Err(self.cut_error(Some(m.len()), None)),
            Ok(_) => Ok(()),
            Err(e) => Err(Error::io(format!("{}: stat", self.path.display()), e)),
        }
    }

    fn cut_error(&self, now: Option<u64>, offset: Option<u64>) -> Error {
        Error::InputCut {
            path: self.path.clone(),
            len: self.map.len() as u64,
            now,
            offset,
        }
    }
}

impl Drop for InputMap {
    fn drop(&mut self) {
        // Unregistered before `map` is unmapped (fields drop after this body): no fault in
        // this range can be attributed to a mapping that is gone.
        let s = &SLOTS[self.slot];
        s.len.store(0, SeqCst);
        s.start.store(0, SeqCst);
    }
}

/// Takes a free slot for `map`, or `None` when all [`MAX_MAPS`] are in use.
fn register(map: &Mmap) -> Option<usize> {
    let start = map.as_ptr() as usize;
    (0..MAX_MAPS).find(|&i| {
        let s = &SLOTS[i];
        if s.start.compare_exchange(0, start, SeqCst, SeqCst).is_err() {
            return false;
        }
        s.cut.store(false, SeqCst);
        s.cut_at.store(0, SeqCst);
        s.len.store(map.len(), SeqCst);
        true
    })
}

/// The registered mapping holding `addr`.
fn slot_of(addr: usize) -> Option<&'static Slot> {
    SLOTS.iter().find(|s| {
        let start = s.start.load(SeqCst);
        let len = s.len.load(SeqCst);
        start != 0 && addr >= start && addr - start < len
    })
}

/// Installs the `SIGBUS` handler once per process; `Err` when the OS refused it.
fn install_handler() -> Result<()> {
    static FAILED: OnceLock<i32> = OnceLock::new();
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        HOST_PAGE.store(usize::try_from(page).unwrap_or(4096), SeqCst);
        // SAFETY: zeroed is a valid `sigaction` (no handler, empty flags); querying with a null
        // new action changes nothing.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to a local `sigaction`.
        if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) } != 0 {
            let _ = FAILED.set(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
            return;
        }
        // Stored before the handler is installed, so the handler always finds it.
        let _ = PREVIOUS.set(old);
        // SAFETY: as above.
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        new.sa_sigaction = on_sigbus as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
        // SAFETY: `new` is a valid local `sigaction`; `on_sigbus` has the SA_SIGINFO signature
        // and is async-signal-safe (see its docs).
        unsafe {
            libc::sigemptyset(&mut new.sa_mask);
            if libc::sigaction(libc::SIGBUS, &new, std::ptr::null_mut()) != 0 {
                let _ = FAILED.set(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
            }
        }
    });
    match FAILED.get() {
        None => Ok(()),
        Some(&e) => Err(Error::io(
            "installing the SIGBUS handler for mapped inputs",
            std::io::Error::from_raw_os_error(e),
        )),
    }
}

/// The `SIGBUS` handler: a fault in a registered input mapping gets a zero page and marks
/// the mapping cut; anything else goes to the handler this one replaced. Async-signal-safe:
/// atomics, `mmap`, `sigaction`, `raise`; `errno` is restored before returning.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local; reading and restoring it is what a handler must do.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid `siginfo_t` to an SA_SIGINFO handler; `si_addr` is
    // meaningful for kernel-raised SIGBUS (si_code > 0), which is checked first.
    let addr = unsafe {
        if info.is_null() || (*info).si_code <= 0 {
            None
        } else {
            Some((*info).si_addr() as usize)
        }
    };
    let handled = addr.is_some_and(|addr| {
        let Some(slot) = slot_of(addr) else {
            return false;
        };
        let page = HOST_PAGE.load(SeqCst).max(1);
        let base = addr & !(page - 1);
        // SAFETY: `base..base + page` lies inside a live registered mapping (a fault in it is
        // being handled, so a reader is borrowing it and it cannot be unmapped meanwhile).
        // MAP_FIXED replaces that one page of it with a private anonymous zero page, read-only
        // like the rest; the mapping's `munmap` later removes it with the rest.
        let r = unsafe {
            libc::mmap(
                base as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if r == libc::MAP_FAILED {
            return false;
        }
        let offset = (addr - slot.start.load(SeqCst)) as u64;
        let _ = slot.cut_at.compare_exchange(0, offset + 1, SeqCst, SeqCst);
        slot.cut.store(true, SeqCst);
        true
    });
    if !handled {
        chain(sig, info, ctx);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Hands a fault that is not guestcore's to the handler [`on_sigbus`] replaced.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let handler = PREVIOUS
        .get()
        .filter(|p| p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN);
    match handler {
        Some(p) if p.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: an SA_SIGINFO disposition's `sa_sigaction` is a handler with this
            // signature, installed by whoever set it; called with what the kernel gave us.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(p.sa_sigaction) };
            f(sig, info, ctx);
        }
        Some(p) => {
            // SAFETY: a plain disposition's `sa_sigaction` is an `sa_handler`.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(p.sa_sigaction) };
            f(sig);
        }
        _ => {
            // The default action: restore it and raise the signal again (it is blocked while
            // this handler runs, so it is delivered, and kills, when the handler returns; a
            // hardware fault would also recur on the re-executed load).
            // SAFETY: a zeroed `sigaction` is SIG_DFL with no flags; sigaction and raise are
            // async-signal-safe.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
                libc::raise(sig);
            }
        }
    }
}

/// Opens `path` read-only and maps all of it (a private, read-only mapping registered with
/// the `SIGBUS` handler), for readers that borrow page tables and pages straight from the page
/// cache. Returns the open file (for `copy_file_range` and the like) and the mapping, `None`
/// for an empty file (mapping zero bytes is an error on most systems). See the module docs for
/// what a file changed or cut while mapped does.
pub(crate) fn map_file(path: &Path) -> Result<(File, Option<InputMap>)> {
    let file = File::open(path).map_err(|e| Error::io(format!("{}", path.display()), e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("{}: stat", path.display()), e))?
        .len();
    if len == 0 {
        return Ok((file, None));
    }
    install_handler()?;
    // SAFETY: a read-only private mapping of a file opened read-only. Its bytes may change
    // only if another process rewrites the file while it is mapped, which guestcore's inputs
    // are defined not to do; a truncation is caught by the SIGBUS handler once the mapping is
    // registered below, before any byte of it is read (the module docs state that contract).
    let map = unsafe { Mmap::map(&file) }
        .map_err(|e| Error::io(format!("{}: mmap", path.display()), e))?;
    let handle = file
        .try_clone()
        .map_err(|e| Error::io(format!("{}: dup", path.display()), e))?;
    let slot = register(&map).ok_or_else(|| Error::Limit {
        bound: "mapped inputs",
        detail: format!(
            "{}: more than {MAX_MAPS} input files are mapped at once",
            path.display()
        ),
    })?;
    Ok((
        file,
        Some(InputMap {
            map,
            slot,
            path: path.to_path_buf(),
            file: handle,
        }),
    ))
}

/// Maps the memory-backend file of a running guest read-only as raw memory (no `&[u8]` over
/// it can be formed: the guest writes it concurrently; see [`super::live::copy`]).
/// `MAP_POPULATE`: the whole file is faulted in now, while the guest still runs, not during
/// the pause (a cold 1 GiB backend costs seconds of page faults on the first pass).
pub(crate) fn map_shared_ram(path: &Path) -> Result<MmapRaw> {
    let file = File::open(path).map_err(|e| {
        Error::io(
            format!("{}: open the guest's memory-backend file", path.display()),
            e,
        )
    })?;
    MmapOptions::new()
        .populate()
        .map_raw_read_only(&file)
        .map_err(|e| Error::io(format!("{}: mmap", path.display()), e))
}

/// How far around a faulting page the kernel maps pages already in the page cache
/// (`fault_around_bytes`, 64 KiB by default): a release covers that much more on each side,
/// or a reader that faulted in the last page of a range would leave up to 15 more mapped.
const FAULT_AROUND: u64 = 64 * 1024;

/// Drops the whole pages of `map[offset..offset + len]`, and the pages the kernel's
/// fault-around may have mapped with them ([`FAULT_AROUND`] on each side), from this process's
/// resident set (`MADV_DONTNEED`); they stay in the page cache and fault back in on the next
/// access. Errors are ignored: this is only a hint.
pub(crate) fn release_mapped(map: &InputMap, offset: u64, len: u64) {
    if len == 0 {
        return;
    }
    let start = offset
        .saturating_sub(FAULT_AROUND)
        .next_multiple_of(PAGE_SIZE);
    let end = offset
        .saturating_add(len)
        .saturating_add(FAULT_AROUND)
        .min(map.len() as u64)
        & !(PAGE_SIZE - 1);
    if start >= end {
        return;
    }
    // SAFETY: `map` is a read-only private file mapping (`Mmap`, never written, so it holds no
    // copy-on-write pages; the only anonymous pages in it are the SIGBUS handler's zero pages
    // over a cut file's tail, which read as zeros again after it). MADV_DONTNEED on such a
    // mapping only removes page-table entries: every later access — through any `&[u8]` still
    // borrowed from it too — faults the same bytes back in, so no reference ever observes
    // different contents. (That the file is
    // not modified underneath is already assumed by the mapping itself: see the module docs.)
    // The range is inside the mapping and page-aligned, as madvise requires.
    let _ = unsafe {
        map.map.unchecked_advise_range(
            memmap2::UncheckedAdvice::DontNeed,
            start as usize,
            (end - start) as usize,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn empty_file_has_no_mapping() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let (_, map) = map_file(f.path()).unwrap();
        assert!(map.is_none());
        let mut f = f;
        f.write_all(b"abc").unwrap();
        let (file, map) = map_file(f.path()).unwrap();
        assert_eq!(&map.unwrap()[..], b"abc");
        assert_eq!(file.metadata().unwrap().len(), 3);
        assert!(map_file(Path::new("/nonexistent/guestcore")).is_err());
    }

    /// A mapped file truncated under its reader: the read past the new end gets zeros instead
    /// of killing the process, and the mapping then reports the cut, naming the file.
    #[test]
    fn truncated_file_is_an_error_not_a_signal() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![0xa5u8; 64 << 10]).unwrap();
        let (_file, map) = map_file(f.path()).unwrap();
        let map = map.unwrap();
        assert!(map.intact().is_ok() && map.whole().is_ok());
        assert_eq!(map[40 << 10], 0xa5);
        f.as_file().set_len(8 << 10).unwrap();
        // Without the handler this load is SIGBUS and the test binary dies.
        let past = std::hint::black_box(&map[..])[40 << 10];
        assert_eq!(past, 0, "the cut page reads as zeros");
        assert_eq!(map[100], 0xa5, "the pages still in the file are its bytes");
        let e = map.intact().unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(
                e,
                Error::InputCut {
                    len: 65536,
                    now: Some(8192),
                    offset: Some(40960),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            text.contains(&f.path().display().to_string())
                && text.contains("shrank from 65536 to 8192 bytes"),
            "{text}"
        );
        // Released (MADV_DONTNEED) zero pages read as zeros again.
        release_mapped(&map, 0, 64 << 10);
        assert_eq!(map[40 << 10], 0);
    }

    /// A shorter file that no read through the mapping touched yet is still noticed by
    /// `whole` (a `pread` of it reads short, with no signal).
    #[test]
    fn whole_notices_a_shorter_file_without_a_fault() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![1u8; 16 << 10]).unwrap();
        let (_file, map) = map_file(f.path()).unwrap();
        let map = map.unwrap();
        f.as_file().set_len(4096).unwrap();
        assert!(map.intact().is_ok(), "nothing faulted yet");
        let e = map.whole().unwrap_err();
        assert!(e.to_string().contains("shrank from 16384 to 4096"), "{e}");
    }

    /// A SIGBUS that is not a fault in a registered mapping still reaches the handler that
    /// was there before (here Rust's, then the default): a child process that maps nothing
    /// of ours and truncates its own mapping dies of SIGBUS as before.
    #[test]
    fn foreign_faults_are_chained() {
        use std::os::unix::process::ExitStatusExt;
        if std::env::var_os("GUESTCORE_MMAP_FOREIGN_CHILD").is_some() {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(&vec![1u8; 16 << 10]).unwrap();
            // Our handler installed (a registered mapping of another file exists)...
            let mut g = tempfile::NamedTempFile::new().unwrap();
            g.write_all(b"x").unwrap();
            let _ours = map_file(g.path()).unwrap();
            // ...and a fault in a mapping that is not ours.
            // SAFETY: a test: the file is truncated under the mapping on purpose.
            let foreign = unsafe { Mmap::map(&f) }.unwrap();
            f.set_len(0).unwrap();
            let _ = std::hint::black_box(foreign[8192]);
            std::process::exit(0);
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "phys::mmap::tests::foreign_faults_are_chained"])
            .env("GUESTCORE_MMAP_FOREIGN_CHILD", "1")
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGBUS),
            "the child should die of SIGBUS: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
