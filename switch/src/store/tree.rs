//! The store's trees: named key spaces, the same on every engine (the
//! journal's sled trees, PostgreSQL's `tree` column). Data only.

use std::sync::Arc;

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
}

/// A stored value, shared without copying.
pub type Value = Arc<[u8]>;
