//! A double-entry ledger with TigerBeetle-like semantics: 128-bit ids that
//! are idempotency keys, two-phase transfers with timeouts, linked chains
//! that commit all-or-nothing, and limits that no balance can break.
//!
//! Durability: one writer thread takes every queued request, applies them in
//! memory, appends one checksummed record to the journal, fsyncs once and only
//! then answers (group commit). The journal is the truth; an indexer thread
//! writes what each record changed to fjall (an LSM) for queries, and checkpoints the
//! state so that recovery replays only the journal's tail. See
//! ARCHITECTURE.md at the repository root for the invariants.
//!
//! Errors are shaped by who handles them: storage failures are
//! [`StorageError`] (an operator's problem), business outcomes are
//! [`TransferReject`] / [`AccountReject`] inside `Ok`.

pub mod batch;
mod checkpoint;
mod clock;
mod codec;
mod engine;
mod error;
mod index;
mod journal;
mod reject;
pub mod sled_import;
mod state;
mod types;

pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{
    Attachments, Base, CheckReport, Config, CurrencyTotals, Ledger, Observer, RecordStats,
    RecoveryReport,
};
pub use error::{StorageError, SubmitError};
pub use index::Page;
pub use journal::Dropped;
pub use reject::{AccountReject, TransferReject};
pub use state::{Outcome, Request};
pub use types::*;
