//! After the flows: settlement windows and their reports, post-office
//! liquidity ([`windows`]), and banks' statements reconciled against the
//! switch's records ([`reconcile`]).
//!
//! May import: `flows` (the engine's ledger helpers), `store`, the ledger,
//! and the vocabularies at the top of the crate. Never `edge` or `sim`.

pub mod pilot;
pub mod reconcile;
pub mod windows;

pub use crate::store::{Position, Report, WindowRecord, WindowState};
pub use windows::*;
