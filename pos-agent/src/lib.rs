//! The agent's library: what the command line and the counter's screen
//! share, and what tests read back (receipts and the printer's bytes).

pub mod client;
pub mod counter;
pub mod desk;
pub mod receipt;
pub mod report;
