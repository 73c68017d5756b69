//! The store's trees: named key spaces, the same on every engine (the
//! journal engine's keyspaces, PostgreSQL's `tree` column). Data only.

use std::sync::Arc;

/// Why the storage engine failed: an I/O error, damage, or a journal that
/// can no longer be written. PostgreSQL's errors travel as its I/O errors.
pub type EngineError = fjall::Error;

/// The store's trees (a key space each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Tree {
    Tx = 0,
    Open,
    Idempotency,
    ByTerminal,
    Reversals,
    Entities,
    Daily,
    Claims,
    Orders,
    Payments,
    Windows,
    Recon,
    /// The pilot report's aggregates (`store::stats`).
    Stats,
}

/// A stored value, shared without copying.
pub type Value = Arc<[u8]>;
