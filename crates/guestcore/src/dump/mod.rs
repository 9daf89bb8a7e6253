//! Core-file writers.
