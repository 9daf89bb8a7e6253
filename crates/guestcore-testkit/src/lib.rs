//! Test support for guestcore.
