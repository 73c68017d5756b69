//! sled holds what the journal implies, for queries: accounts, transfers by
//! id, each account's transfers and balance history by time, failed events,
//! and how far it has indexed. Every value is absolute, so indexing a record
//! twice (after a crash) changes nothing. sled is not the truth: a damaged or
//! missing index is rebuilt from a checkpoint and the journal.

use std::path::Path;

use crate::codec::{self, Dec, Enc};
use crate::error::StorageError;
use crate::reject::TransferReject;
use crate::state::{Cold, Effects};
use crate::types::*;

const META_INDEXED_SEQ: &[u8] = b"m/indexed_seq";

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

pub(crate) struct Index {
    db: sled::Db,
}

impl Index {
    pub(crate) fn open(path: &Path, cache_bytes: u64) -> Result<Index, StorageError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(Some(1000))
            .open()?;
        Ok(Index { db })
    }

    /// The last record indexed, if the index says.
    pub(crate) fn indexed_seq(&self) -> Result<Option<u64>, StorageError> {
        Ok(self
            .db
            .get(META_INDEXED_SEQ)?
            .map(|v| u64::from_le_bytes(v.as_ref().try_into().unwrap_or([0; 8]))))
    }

    /// Write what record `fx.seq` changed.
    pub(crate) fn write(&self, fx: &Effects, buf: &mut Vec<u8>) -> Result<(), StorageError> {
        for a in &fx.accounts {
            buf.clear();
            codec::put_account(&mut Enc(buf), a);
            self.db.insert(key(b'a', a.id), buf.as_slice())?;
        }
        for (t, created) in &fx.transfers {
            buf.clear();
            Enc(buf).u64(fx.seq);
            codec::put_transfer(&mut Enc(buf), t);
            self.db.insert(key(b't', t.id), buf.as_slice())?;
            if *created {
                let id = t.id.to_le_bytes();
                self.db
                    .insert(key_at(b'x', t.debit_account_id, t.timestamp), &id)?;
                self.db
                    .insert(key_at(b'x', t.credit_account_id, t.timestamp), &id)?;
            }
        }
        for (t, reject) in &fx.failed {
            buf.clear();
            Enc(buf).u64(fx.seq);
            codec::put_new_transfer(&mut Enc(buf), t);
            Enc(buf).u16(reject.code());
            self.db.insert(key(b'f', t.id), buf.as_slice())?;
        }
        for (account, b) in &fx.history {
            buf.clear();
            codec::put_balances(&mut Enc(buf), b);
            self.db
                .insert(key_at(b'h', *account, b.timestamp), buf.as_slice())?;
        }
        self.db.insert(META_INDEXED_SEQ, &fx.seq.to_le_bytes())?;
        Ok(())
    }

    /// Write accounts as a checkpoint restored them (index rebuild).
    pub(crate) fn write_accounts<'a>(
        &self,
        accounts: impl Iterator<Item = &'a Account>,
    ) -> Result<(), StorageError> {
        let mut buf = Vec::new();
        for a in accounts {
            buf.clear();
            codec::put_account(&mut Enc(&mut buf), a);
            self.db.insert(key(b'a', a.id), buf.as_slice())?;
        }
        Ok(())
    }

    /// Make everything written so far durable.
    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        Ok(())
    }

    fn corrupt(&self, what: &str, e: codec::Malformed) -> StorageError {
        StorageError::Index(format!("undecodable {what}: {}", e.0))
    }

    pub(crate) fn account(&self, id: u128) -> Result<Option<Account>, StorageError> {
        match self.db.get(key(b'a', id))? {
            None => Ok(None),
            Some(v) => codec::get_account(&mut Dec::new(&v))
                .map(Some)
                .map_err(|e| self.corrupt("account", e)),
        }
    }

    pub(crate) fn accounts(&self) -> impl Iterator<Item = Result<Account, StorageError>> + '_ {
        self.db.scan_prefix([b'a']).map(move |kv| {
            let (_, v) = kv?;
            codec::get_account(&mut Dec::new(&v)).map_err(|e| self.corrupt("account", e))
        })
    }

    /// The transfer and the record that last wrote it.
    pub(crate) fn transfer_at(&self, id: u128) -> Result<Option<(u64, Transfer)>, StorageError> {
        match self.db.get(key(b't', id))? {
            None => Ok(None),
            Some(v) => {
                let mut d = Dec::new(&v);
                let decoded = d
                    .u64()
                    .and_then(|seq| Ok((seq, codec::get_transfer(&mut d)?)));
                decoded.map(Some).map_err(|e| self.corrupt("transfer", e))
            }
        }
    }

    pub(crate) fn account_transfers(
        &self,
        account: u128,
        page: Page,
    ) -> Result<Vec<Transfer>, StorageError> {
        let ids = self.scan_account(b'x', account, page, |v| {
            v.try_into()
                .map(u128::from_le_bytes)
                .map_err(|_| codec::Malformed("transfer id"))
        })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let (_, t) = self.transfer_at(id)?.ok_or_else(|| {
                StorageError::Index(format!(
                    "account index names transfer {id} that is not indexed"
                ))
            })?;
            out.push(t);
        }
        Ok(out)
    }

    pub(crate) fn account_history(
        &self,
        account: u128,
        page: Page,
    ) -> Result<Vec<Balances>, StorageError> {
        self.scan_account(b'h', account, page, |v| {
            codec::get_balances(&mut Dec::new(v))
        })
    }

    fn scan_account<T>(
        &self,
        prefix: u8,
        account: u128,
        page: Page,
        decode: impl Fn(&[u8]) -> Result<T, codec::Malformed>,
    ) -> Result<Vec<T>, StorageError> {
        let limit = page.limit.min(Page::LIMIT_MAX) as usize;
        if page.timestamp_min > page.timestamp_max {
            return Ok(Vec::new());
        }
        let range = self.db.range(
            key_at(prefix, account, page.timestamp_min)
                ..=key_at(prefix, account, page.timestamp_max),
        );
        let mut out = Vec::with_capacity(limit.min(256));
        let mut push = |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool, StorageError> {
            let (_, v) = kv?;
            out.push(decode(&v).map_err(|e| self.corrupt("account index entry", e))?);
            Ok(out.len() < limit)
        };
        if page.reversed {
            for kv in range.rev() {
                if !push(kv)? {
                    break;
                }
            }
        } else {
            for kv in range {
                if !push(kv)? {
                    break;
                }
            }
        }
        Ok(out)
    }
}

impl Cold for Index {
    fn transfer(&self, id: u128, seq_before: u64) -> Result<Option<Transfer>, StorageError> {
        Ok(self
            .transfer_at(id)?
            .filter(|(seq, _)| *seq < seq_before)
            .map(|(_, t)| t))
    }

    fn failed(
        &self,
        id: u128,
        seq_before: u64,
    ) -> Result<Option<(NewTransfer, TransferReject)>, StorageError> {
        let Some(v) = self.db.get(key(b'f', id))? else {
            return Ok(None);
        };
        let mut d = Dec::new(&v);
        let seq = d.u64().map_err(|e| self.corrupt("failed event", e))?;
        if seq >= seq_before {
            return Ok(None);
        }
        let t = codec::get_new_transfer(&mut d).map_err(|e| self.corrupt("failed event", e))?;
        let r = codec::get_reject(&mut d).map_err(|e| self.corrupt("failed event", e))?;
        Ok(Some((t, r)))
    }
}
