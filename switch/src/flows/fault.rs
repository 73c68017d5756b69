//! Failures below the flows (the store, the ledger, a record that does not
//! decode), as a caller is told of them: an operator's problem, or the
//! shared store out of reach from this node.

use crate::error::{ErrorCode, SwitchError};
use crate::store;

/// Log a failure below the flows where it is handled, and say what the
/// caller may do.
pub(crate) fn storage(e: impl StorageFault) -> SwitchError {
    if e.unreachable() {
        // The store logged it at ERROR once, where it found it.
        tracing::warn!(error = %e, "the store is unreachable");
        return SwitchError::new(
            ErrorCode::StoreUnavailable,
            "the switch cannot reach its database just now; try again (with the same request id)",
        );
    }
    tracing::error!(error = %e, "storage failed");
    SwitchError::new(
        ErrorCode::Internal,
        "the switch could not record the transaction; try again later",
    )
}

/// A failure below the flows, as [`storage`] reports it: an operator's
/// problem (`internal`), unless the shared store is only out of reach from
/// this node (`store_unavailable`: the caller may try again, here or on
/// another node).
pub(crate) trait StorageFault: std::fmt::Display {
    fn unreachable(&self) -> bool {
        false
    }
}

impl StorageFault for store::StoreError {
    fn unreachable(&self) -> bool {
        self.is_unreachable()
    }
}
impl StorageFault for store::EngineError {
    fn unreachable(&self) -> bool {
        store::StoreError::unreachable_engine(self)
    }
}
impl StorageFault for fjall::Error {}
impl StorageFault for store::ledger::LedgerError {}
impl StorageFault for SwitchError {
    fn unreachable(&self) -> bool {
        self.code == ErrorCode::StoreUnavailable
    }
}
impl StorageFault for &str {}
impl StorageFault for String {}
impl StorageFault for serde_json::Error {}
impl StorageFault for tokio::task::JoinError {}
impl StorageFault for std::num::TryFromIntError {}
impl StorageFault for std::array::TryFromSliceError {}
