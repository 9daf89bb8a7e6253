//! Core-file writers.
pub mod kdump;
