//! The store's trees: named key spaces, the same on every engine (the
//! journal engine's keyspaces, PostgreSQL's `tree` column). Data only.

use std::sync::Arc;

/// Why the storage engine failed, shaped by what a caller can do about it:
/// this node's disk or index (an operator must look), PostgreSQL's refusal
/// (likewise), or PostgreSQL out of reach (the request may be tried again,
/// here later or on another node).
#[derive(Debug)]
pub enum EngineError {
    /// fjall, the rebuildable index.
    Fjall(fjall::Error),
    /// A file of ours: the journal, damage found reading it, a full disk.
    Io(std::io::Error),
    /// PostgreSQL answered with an error, or the store's side of it failed.
    Postgres(String),
    /// The link to PostgreSQL broke during a call (its outcome, for a
    /// commit, is unknown: the idempotency key settles it on a retry).
    LinkLost(String),
    /// PostgreSQL is unreachable from this node: refused before anything
    /// was sent, so nothing was recorded.
    Unreachable,
}

impl EngineError {
    /// PostgreSQL out of reach from this node (refused, or a link lost):
    /// the caller may try again, with the same request id.
    pub fn unreachable(&self) -> bool {
        matches!(self, EngineError::Unreachable | EngineError::LinkLost(_))
    }
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Fjall(e) => write!(f, "fjall: {e}"),
            EngineError::Io(e) => write!(f, "i/o: {e}"),
            EngineError::Postgres(e) => write!(f, "postgres: {e}"),
            EngineError::LinkLost(e) => write!(f, "postgres: the link broke: {e}"),
            EngineError::Unreachable => {
                write!(
                    f,
                    "postgres: unreachable from this node; nothing was recorded"
                )
            }
        }
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EngineError::Fjall(e) => Some(e),
            EngineError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<fjall::Error> for EngineError {
    fn from(e: fjall::Error) -> EngineError {
        EngineError::Fjall(e)
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> EngineError {
        EngineError::Io(e)
    }
}

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

impl Tree {
    /// Its name, as metrics label it.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Tx => "tx",
            Tree::Open => "open",
            Tree::Idempotency => "idempotency",
            Tree::ByTerminal => "by_terminal",
            Tree::Reversals => "reversals",
            Tree::Entities => "entities",
            Tree::Daily => "daily",
            Tree::Claims => "claims",
            Tree::Orders => "orders",
            Tree::Payments => "payments",
            Tree::Windows => "windows",
            Tree::Recon => "recon",
            Tree::Stats => "stats",
        }
    }
}

/// A change to a key computed from its value at commit time, not when the
/// write ran: `f(value, arg)` (`value` absent: `None`). A merge never
/// conflicts with another write to the key (PostgreSQL applies it under
/// the key's lock, after the writes accepted before it), so counters that
/// every flow adds to (the pilot report's aggregates) do not send writes
/// into the rerun-alone path. A merged key reads, within its own write, as
/// it was before the merge. `f` failing (a stored value that does not
/// decode) fails the write.
///
/// A merge may also refuse its write ([`Merged::Refuse`]): a guard, such as
/// a limit's total that the addition would pass. The write is then refused
/// whole, as if a key it read had changed, and its caller runs it again,
/// reading what won. So a total that every flow at a post office counts in
/// is not a read every such write depends on: only a write that would pass
/// the limit is refused (issue #26).
#[derive(Clone, Debug)]
pub struct Merge {
    pub f: MergeFn,
    pub arg: Vec<u8>,
}

/// What a merge makes of a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Merged {
    /// Its new value.
    Set(Vec<u8>),
    /// Leave it as it is (nothing written).
    Keep,
    /// Refuse the whole write (a guard that does not hold).
    Refuse,
}

/// A merge's function: the key's value (if any) and the merge's argument
/// to what it makes of the key, or why the value does not decode.
pub type MergeFn = fn(Option<&[u8]>, &[u8]) -> Result<Merged, String>;

impl Merge {
    pub fn apply(&self, value: Option<&[u8]>) -> Result<Merged, EngineError> {
        (self.f)(value, &self.arg)
            .map_err(|e| EngineError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
    }

    /// Add `amount` to a total (8 bytes, big-endian; absent is 0) unless
    /// it would pass `max`: then the write is refused.
    pub fn add_within(amount: u64, max: u64) -> Merge {
        let mut arg = amount.to_be_bytes().to_vec();
        arg.extend_from_slice(&max.to_be_bytes());
        Merge { f: add_within, arg }
    }

    /// Take `amount` from a total (8 bytes, big-endian; absent is 0), down
    /// to 0 at most.
    pub fn take_back(amount: u64) -> Merge {
        Merge {
            f: take_back,
            arg: amount.to_be_bytes().to_vec(),
        }
    }
}

/// A total as stored: 8 bytes, big-endian; absent is 0.
pub fn total_of(value: Option<&[u8]>) -> Result<u64, String> {
    match value {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v)
            .map(u64::from_be_bytes)
            .map_err(|_| format!("a total of {} bytes, not 8", v.len())),
    }
}

fn add_within(value: Option<&[u8]>, arg: &[u8]) -> Result<Merged, String> {
    let (amount, max) = (total_of(Some(&arg[..8]))?, total_of(Some(&arg[8..]))?);
    Ok(
        match total_of(value)?.checked_add(amount).filter(|n| *n <= max) {
            Some(n) => Merged::Set(n.to_be_bytes().to_vec()),
            None => Merged::Refuse,
        },
    )
}

fn take_back(value: Option<&[u8]>, arg: &[u8]) -> Result<Merged, String> {
    let n = total_of(value)?.saturating_sub(total_of(Some(arg))?);
    Ok(Merged::Set(n.to_be_bytes().to_vec()))
}

/// A stored value, shared without copying.
pub type Value = Arc<[u8]>;
