//! Errors shaped by who handles them. A [`StorageError`] is an operator's
//! problem (disk, corruption): the writer stops and a human must look. A
//! business reject ([`crate::TransferReject`], [`crate::AccountReject`]) is the
//! caller's outcome and travels inside the `Ok` side.

use std::fmt;
use std::path::PathBuf;

/// The disk or the stored state failed; the ledger cannot go on safely.
#[derive(Debug, Clone)]
pub enum StorageError {
    /// An I/O call failed (`what` names the operation and the file).
    Io {
        what: String,
        error: std::sync::Arc<std::io::Error>,
    },
    /// The index's engine (fjall) returned an error, or an index entry did
    /// not decode.
    Index(String),
    /// Stored bytes failed their checksum or layout where no torn write can
    /// explain it (not at the journal's tail).
    Corrupt { path: PathBuf, detail: String },
    /// Data this version cannot open (an earlier version's format): an
    /// operator has to take the step `detail` names; nothing was changed.
    Unsupported { path: PathBuf, detail: String },
    /// An earlier storage error stopped the writer; nothing is accepted.
    WriterStopped(String),
}

impl StorageError {
    pub(crate) fn io(what: impl Into<String>, error: std::io::Error) -> StorageError {
        StorageError::Io {
            what: what.into(),
            error: std::sync::Arc::new(error),
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { what, error } => write!(f, "{what}: {error}"),
            StorageError::Index(e) => write!(f, "index: {e}"),
            StorageError::Corrupt { path, detail } => {
                write!(f, "corrupt {}: {detail}", path.display())
            }
            StorageError::Unsupported { path, detail } => {
                write!(f, "cannot open {}: {detail}", path.display())
            }
            StorageError::WriterStopped(why) => write!(f, "ledger writer stopped after: {why}"),
        }
    }
}

impl std::error::Error for StorageError {}

impl From<fjall::Error> for StorageError {
    fn from(e: fjall::Error) -> StorageError {
        StorageError::Index(e.to_string())
    }
}

/// Why a request was not even queued: the caller's mistake or a closed
/// ledger, never a business outcome.
#[derive(Debug, Clone)]
pub enum SubmitError {
    /// The request holds more events than `Config::request_events_max`.
    TooManyEvents { events: usize, events_max: usize },
    /// `try_submit` found the queue full (`Config::queue_requests_max`).
    Busy,
    /// The ledger is closed or its writer stopped.
    Storage(StorageError),
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::TooManyEvents { events, events_max } => {
                write!(
                    f,
                    "request holds {events} events, at most {events_max} allowed"
                )
            }
            SubmitError::Busy => f.write_str("ledger queue is full"),
            SubmitError::Storage(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SubmitError {}

impl From<StorageError> for SubmitError {
    fn from(e: StorageError) -> SubmitError {
        SubmitError::Storage(e)
    }
}
