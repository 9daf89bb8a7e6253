//! Progress reporting without printing: the library calls a [`Progress`] and the CLI turns
//! it into a terminal bar. A progress sink can also cancel long work (Ctrl-C).

/// Receives progress events of long operations.
pub trait Progress: Send + Sync {
    /// Work of `total` units (bytes, pages) starts; `what` names it ("writing", "compressing").
    fn start(&self, _what: &str, _total: u64) {}
    /// `done` more units finished.
    fn advance(&self, _done: u64) {}
    /// The operation ended (successfully or not).
    fn finish(&self) {}
    /// True when the user asked to stop; long loops check it and return [`crate::Error::Cancelled`].
    fn cancelled(&self) -> bool {
        false
    }
}

/// A progress sink that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
