//! fjall (an LSM) holds what the journal implies, for queries and for the
//! writer's lookups of transfers that left its memory. Every value is
//! absolute and keyed by what produced it, so indexing a record twice (after
//! a crash) changes nothing; each record's entries and `m/indexed_seq` are
//! one atomic write batch. The index is not the truth: a damaged or missing
//! index is rebuilt from a checkpoint and the journal.
//!
//! Layout (chosen when the engine was sled, whose every insert copied a
//! leaf; kept because it is also few entries per transfer for an LSM):
//!
//! | key                                  | value                                   |
//! |--------------------------------------|-----------------------------------------|
//! | `r` block_ts chunk                   | seq, then up to 32 transfers as created |
//! | `i` id                               | `L` seq, block_ts, position in the block; or `F` seq, the failed event, its reject |
//! | `s` id                               | seq, status, amount posted (a pending transfer's resolution) |
//! | `x` account block_ts                 | positions of the account's transfers in the block |
//! | `h` account timestamp                | balances after that change (`HISTORY`)   |
//! | `a` id                               | the account (written at checkpoints)     |
//! | `m/indexed_seq`                      | the last record indexed                  |
//!
//! A block is the transfers one record created; `block_ts` is the first
//! one's timestamp, so blocks sort in time order and every transfer of a
//! block is at or after its `block_ts` and before the next block's.

use std::path::Path;

use crate::codec::{self, Dec, Enc};
use crate::error::StorageError;
use crate::reject::TransferReject;
use crate::state::{Cold, ColdEntry, Effects};
use crate::types::*;

const META_INDEXED_SEQ: &[u8] = b"m/indexed_seq";
/// The one keyspace every entry lives in (prefixes keep kinds apart).
pub(crate) const KEYSPACE: &str = "index";
/// Transfers per `r` value: a look-up reads one chunk, not the whole block.
const CHUNK: usize = 32;
const TRANSFER_SIZE: usize = 16 * 5 + 8 * 3 + 4 + 2 + 2 + 1;

fn key(prefix: u8, id: u128) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn key_at(prefix: u8, id: u128, timestamp: u64) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[0] = prefix;
    k[1..17].copy_from_slice(&id.to_be_bytes());
    k[17..].copy_from_slice(&timestamp.to_be_bytes());
    k
}

fn key_block(block_ts: u64, chunk: u16) -> [u8; 11] {
    let mut k = [0u8; 11];
    k[0] = b'r';
    k[1..9].copy_from_slice(&block_ts.to_be_bytes());
    k[9..].copy_from_slice(&chunk.to_be_bytes());
    k
}

/// A window of an account's history, by ledger time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// Only entries at or after this time.
    pub timestamp_min: u64,
    /// Only entries at or before this time.
    pub timestamp_max: u64,
    /// At most this many entries (capped at [`Page::LIMIT_MAX`]).
    pub limit: u32,
    /// Newest first.
    pub reversed: bool,
}

impl Page {
    pub const LIMIT_MAX: u32 = 8190;
    /// The first `limit` entries, oldest first.
    pub fn first(limit: u32) -> Page {
        Page {
            timestamp_min: 0,
            timestamp_max: u64::MAX,
            limit,
            reversed: false,
        }
    }
}

impl Default for Page {
    fn default() -> Page {
        Page::first(Page::LIMIT_MAX)
    }
}

/// An id's entry: a transfer, or a failed event.
enum Used {
    Transfer(Locator),
    Failed(u64, NewTransfer, TransferReject),
}

/// Where the ledger keeps what the journal implies: the narrow interface
/// between the engine and its storage. fjall ([`Index`]) is the embedded
/// default; a server-backed store (PostgreSQL) implements the same trait.
/// Every write is of absolute values keyed by what produced them, so writing
/// a record twice is harmless; every entry remembers the record that wrote
/// it, so [`Cold::lookup`] can ignore what a replay has not reached yet.
pub(crate) trait IndexStore: Cold + Send + Sync {
    /// The last record fully written, if the store says.
    fn indexed_seq(&self) -> Result<Option<u64>, StorageError>;
    /// Write what record `fx.seq` changed (called by one thread at a time).
    fn write(&self, fx: &Effects) -> Result<(), StorageError>;
    /// Store a pending transfer a checkpoint restored into an empty store.
    fn write_restored(&self, t: &Transfer, seq: u64) -> Result<(), StorageError>;
    /// Store every account (at checkpoints, and when rebuilding).
    fn write_accounts(
        &self,
        accounts: &mut dyn Iterator<Item = &Account>,
    ) -> Result<(), StorageError>;
    /// Make everything written so far durable.
    fn flush(&self) -> Result<(), StorageError>;
    /// The transfer `id` as it stands now.
    fn transfer(&self, id: u128) -> Result<Option<Transfer>, StorageError>;
    fn account_transfers(&self, account: u128, page: Page) -> Result<Vec<Transfer>, StorageError>;
    fn account_history(&self, account: u128, page: Page) -> Result<Vec<Balances>, StorageError>;
}

/// Where a transfer's created form is stored.
#[derive(Clone, Copy)]
struct Locator {
    seq: u64,
    block_ts: u64,
    position: u16,
}

pub(crate) struct Index {
    db: fjall::Database,
    /// The one keyspace every entry lives in (prefixes keep kinds apart).
    entries: fjall::Keyspace,
    /// Buffers for `write`, reused from record to record (only the indexer
    /// writes, so the lock is never contended).
    scratch: std::sync::Mutex<Scratch>,
}

/// Buffers the indexer reuses from record to record.
#[derive(Default)]
struct Scratch {
    buf: Vec<u8>,
    /// (account, position) of every created transfer's two sides.
    sides: Vec<(u128, u16)>,
    /// Locators of the record's transfers.
    locators: Vec<([u8; 17], [u8; 19])>,
}

const LOCATOR: u8 = b'L';
const FAILED: u8 = b'F';

impl Index {
    pub(crate) fn open(path: &Path, cache_bytes: u64) -> Result<Index, StorageError> {
        let db = fjall::Database::builder(path)
            .cache_size(cache_bytes)
            .open()?;
        let entries = db.keyspace(KEYSPACE, fjall::KeyspaceCreateOptions::default)?;
        Ok(Index {
            db,
            entries,
            scratch: Default::default(),
        })
    }

    fn last_indexed(&self) -> Result<Option<u64>, StorageError> {
        Ok(self
            .entries
            .get(META_INDEXED_SEQ)?
            .map(|v| u64::from_le_bytes(v.as_ref().try_into().unwrap_or([0; 8]))))
    }

    /// Write what record `fx.seq` changed.
    fn write_with(&self, fx: &Effects, s: &mut Scratch) -> Result<(), StorageError> {
        let mut batch = self.db.batch();
        let entries = &self.entries;
        let created = fx
            .transfers
            .iter()
            .filter(|(_, created)| *created)
            .map(|(t, _)| t);
        let block_ts = created.clone().next().map(|t| t.timestamp);
        if let Some(block_ts) = block_ts {
            s.sides.clear();
            s.locators.clear();
            let mut chunk = 0u16;
            let mut in_chunk = 0;
            s.buf.clear();
            Enc(&mut s.buf).u64(fx.seq);
            for (position, t) in created.enumerate() {
                debug_assert!(t.timestamp >= block_ts);
                let position =
                    u16::try_from(position).expect("a record creates at most 65535 transfers");
                codec::put_transfer(&mut Enc(&mut s.buf), t);
                in_chunk += 1;
                if in_chunk == CHUNK {
                    batch.insert(entries, key_block(block_ts, chunk), s.buf.as_slice());
                    s.buf.clear();
                    Enc(&mut s.buf).u64(fx.seq);
                    chunk += 1;
                    in_chunk = 0;
                }
                let mut v = [0u8; 19];
                v[0] = LOCATOR;
                v[1..9].copy_from_slice(&fx.seq.to_le_bytes());
                v[9..17].copy_from_slice(&block_ts.to_le_bytes());
                v[17..].copy_from_slice(&position.to_le_bytes());
                s.locators.push((key(b'i', t.id), v));
                s.sides.push((t.debit_account_id, position));
                s.sides.push((t.credit_account_id, position));
            }
            if in_chunk > 0 {
                batch.insert(entries, key_block(block_ts, chunk), s.buf.as_slice());
            }
            for (k, v) in &s.locators {
                batch.insert(entries, k, v);
            }
            s.sides.sort_unstable();
            for group in s.sides.chunk_by(|a, b| a.0 == b.0) {
                s.buf.clear();
                for (_, position) in group {
                    s.buf.extend_from_slice(&position.to_le_bytes());
                }
                batch.insert(
                    entries,
                    key_at(b'x', group[0].0, block_ts),
                    s.buf.as_slice(),
                );
            }
        }
        for (t, created) in &fx.transfers {
            if !*created {
                let mut v = [0u8; 17];
                v[..8].copy_from_slice(&fx.seq.to_le_bytes());
                v[8] = codec::status_code(t.status);
                v[9..].copy_from_slice(&t.amount_posted.to_le_bytes());
                batch.insert(entries, key(b's', t.id), v);
            }
        }
        for (t, reject) in &fx.failed {
            s.buf.clear();
            Enc(&mut s.buf).u8(FAILED).u64(fx.seq);
            codec::put_new_transfer(&mut Enc(&mut s.buf), t);
            Enc(&mut s.buf).u16(reject.code());
            batch.insert(entries, key(b'i', t.id), s.buf.as_slice());
        }
        for (account, b) in &fx.history {
            s.buf.clear();
            codec::put_balances(&mut Enc(&mut s.buf), b);
            batch.insert(
                entries,
                key_at(b'h', *account, b.timestamp),
                s.buf.as_slice(),
            );
        }
        batch.insert(entries, META_INDEXED_SEQ, fx.seq.to_le_bytes());
        batch.commit()?;
        Ok(())
    }

    fn corrupt(&self, what: &str, e: codec::Malformed) -> StorageError {
        StorageError::Index(format!("undecodable {what}: {}", e.0))
    }

    /// What the index knows of id: where its transfer is, or how it failed.
    fn used(&self, id: u128) -> Result<Option<Used>, StorageError> {
        let Some(v) = self.entries.get(key(b'i', id))? else {
            return Ok(None);
        };
        let mut d = Dec::new(&v);
        let decoded = (|| match d.u8()? {
            LOCATOR => Ok(Used::Transfer(Locator {
                seq: d.u64()?,
                block_ts: d.u64()?,
                position: d.u16()?,
            })),
            FAILED => {
                let seq = d.u64()?;
                let t = codec::get_new_transfer(&mut d)?;
                Ok(Used::Failed(seq, t, codec::get_reject(&mut d)?))
            }
            _ => Err(codec::Malformed("unknown id entry")),
        })();
        decoded.map(Some).map_err(|e| self.corrupt("id entry", e))
    }

    /// The transfer at `position` of a block, as created.
    fn created_at(
        &self,
        block_ts: u64,
        position: u16,
        cache: &mut Option<(u16, fjall::Slice)>,
    ) -> Result<Transfer, StorageError> {
        let chunk = position / CHUNK as u16;
        if cache.as_ref().is_none_or(|(c, _)| *c != chunk) {
            let v = self
                .entries
                .get(key_block(block_ts, chunk))?
                .ok_or_else(|| {
                    StorageError::Index(format!("block {block_ts} chunk {chunk} is missing"))
                })?;
            *cache = Some((chunk, v));
        }
        let (_, v) = cache.as_ref().expect("just filled");
        let at = 8 + usize::from(position) % CHUNK * TRANSFER_SIZE;
        let bytes = v.get(at..at + TRANSFER_SIZE).ok_or_else(|| {
            StorageError::Index(format!(
                "block {block_ts} chunk {chunk} has no position {position}"
            ))
        })?;
        codec::get_transfer(&mut Dec::new(bytes)).map_err(|e| self.corrupt("transfer", e))
    }

    /// A pending transfer's resolution, if written before `seq_before`.
    fn resolve(&self, t: &mut Transfer, seq_before: u64) -> Result<(), StorageError> {
        if !t.flags.contains(TransferFlags::PENDING) {
            return Ok(());
        }
        let Some(v) = self.entries.get(key(b's', t.id))? else {
            return Ok(());
        };
        if v.len() != 17 {
            return Err(StorageError::Index(format!(
                "resolution of {} has {} bytes",
                t.id,
                v.len()
            )));
        }
        if u64::from_le_bytes(v[..8].try_into().unwrap()) < seq_before {
            t.status = codec::status_from_code(v[8]).map_err(|e| self.corrupt("resolution", e))?;
            t.amount_posted = u64::from_le_bytes(v[9..].try_into().unwrap());
        }
        Ok(())
    }

    /// The transfer `id` as records before `seq_before` left it.
    fn transfer_before(&self, id: u128, seq_before: u64) -> Result<Option<Transfer>, StorageError> {
        match self.used(id)? {
            Some(Used::Transfer(at)) if at.seq < seq_before => {
                self.load(id, at, seq_before).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn load(&self, id: u128, at: Locator, seq_before: u64) -> Result<Transfer, StorageError> {
        let mut t = self.created_at(at.block_ts, at.position, &mut None)?;
        if t.id != id {
            return Err(StorageError::Index(format!(
                "locator of {id} points at transfer {}",
                t.id
            )));
        }
        self.resolve(&mut t, seq_before)?;
        Ok(t)
    }

    fn transfers_of(&self, account: u128, page: Page) -> Result<Vec<Transfer>, StorageError> {
        let limit = page.limit.min(Page::LIMIT_MAX) as usize;
        let mut out = Vec::with_capacity(limit.min(256));
        if page.timestamp_min > page.timestamp_max || limit == 0 {
            return Ok(out);
        }
        // The block that began at or before timestamp_min may hold later
        // transfers, so start from it.
        let first = self
            .entries
            .range(key_at(b'x', account, 0)..=key_at(b'x', account, page.timestamp_min))
            .next_back()
            .map(|g| g.key())
            .transpose()?;
        let start = first.map_or_else(
            || key_at(b'x', account, page.timestamp_min).to_vec(),
            |k| k.to_vec(),
        );
        let range = self
            .entries
            .range(start..=key_at(b'x', account, page.timestamp_max).to_vec());
        let visit = |kv: fjall::Guard, out: &mut Vec<Transfer>| -> Result<bool, StorageError> {
            let (k, v) = kv.into_inner()?;
            if k.len() != 25 {
                return Err(StorageError::Index(format!("x key of {} bytes", k.len())));
            }
            let block_ts = u64::from_be_bytes(k[17..25].try_into().expect("x keys are 25 bytes"));
            let mut positions: Vec<u16> = v
                .chunks_exact(2)
                .map(|p| u16::from_le_bytes([p[0], p[1]]))
                .collect();
            if page.reversed {
                positions.reverse();
            }
            let mut cache = None;
            for position in positions {
                let mut t = self.created_at(block_ts, position, &mut cache)?;
                if (page.timestamp_min..=page.timestamp_max).contains(&t.timestamp) {
                    self.resolve(&mut t, u64::MAX)?;
                    out.push(t);
                    if out.len() == limit {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        };
        if page.reversed {
            for kv in range.rev() {
                if !visit(kv, &mut out)? {
                    break;
                }
            }
        } else {
            for kv in range {
                if !visit(kv, &mut out)? {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn history_of(&self, account: u128, page: Page) -> Result<Vec<Balances>, StorageError> {
        let limit = page.limit.min(Page::LIMIT_MAX) as usize;
        if page.timestamp_min > page.timestamp_max {
            return Ok(Vec::new());
        }
        let range = self.entries.range(
            key_at(b'h', account, page.timestamp_min)..=key_at(b'h', account, page.timestamp_max),
        );
        let decode = |kv: fjall::Guard| -> Result<Balances, StorageError> {
            let v = kv.value()?;
            codec::get_balances(&mut Dec::new(&v)).map_err(|e| self.corrupt("balances", e))
        };
        if page.reversed {
            range.rev().take(limit).map(decode).collect()
        } else {
            range.take(limit).map(decode).collect()
        }
    }
}

impl IndexStore for Index {
    fn indexed_seq(&self) -> Result<Option<u64>, StorageError> {
        self.last_indexed()
    }

    fn write(&self, fx: &Effects) -> Result<(), StorageError> {
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        self.write_with(fx, &mut scratch)
    }

    /// A block of its own at its own timestamp, so time order holds.
    fn write_restored(&self, t: &Transfer, seq: u64) -> Result<(), StorageError> {
        let fx = Effects {
            seq,
            last_timestamp: t.timestamp,
            transfers: vec![(*t, true)],
            ..Effects::default()
        };
        self.write(&fx)
    }

    fn write_accounts(
        &self,
        accounts: &mut dyn Iterator<Item = &Account>,
    ) -> Result<(), StorageError> {
        let mut buf = Vec::new();
        let mut batch = self.db.batch();
        for a in accounts {
            buf.clear();
            codec::put_account(&mut Enc(&mut buf), a);
            batch.insert(&self.entries, key(b'a', a.id), buf.as_slice());
        }
        batch.commit()?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    fn transfer(&self, id: u128) -> Result<Option<Transfer>, StorageError> {
        self.transfer_before(id, u64::MAX)
    }

    fn account_transfers(&self, account: u128, page: Page) -> Result<Vec<Transfer>, StorageError> {
        self.transfers_of(account, page)
    }

    fn account_history(&self, account: u128, page: Page) -> Result<Vec<Balances>, StorageError> {
        self.history_of(account, page)
    }
}

impl Cold for Index {
    fn lookup(&self, id: u128, seq_before: u64) -> Result<Option<ColdEntry>, StorageError> {
        Ok(match self.used(id)? {
            Some(Used::Transfer(at)) if at.seq < seq_before => {
                Some(ColdEntry::Transfer(self.load(id, at, seq_before)?))
            }
            Some(Used::Failed(seq, t, r)) if seq < seq_before => Some(ColdEntry::Failed(t, r)),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_size_matches_the_codec() {
        let t = Transfer {
            id: 1,
            debit_account_id: 2,
            credit_account_id: 3,
            pending_id: 0,
            user_data: 0,
            amount: 1,
            amount_posted: 0,
            timestamp: 1,
            timeout_ms: 0,
            code: 1,
            flags: TransferFlags::empty(),
            status: TransferStatus::Posted,
        };
        let mut buf = Vec::new();
        codec::put_transfer(&mut Enc(&mut buf), &t);
        assert_eq!(buf.len(), TRANSFER_SIZE);
    }
}
