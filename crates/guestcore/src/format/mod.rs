//! Raw on-disk structures.
