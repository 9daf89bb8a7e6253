//! Hostile inputs at the CLI: small generated files that claim far more than they hold. Each
//! test bounds what the command costs (wall time, peak RSS of the child, the output's size
//! and allocated blocks), checks what it says, and that it leaves no file behind.

mod migration;
