//! The switch's own records in sled (beside the ledger, under
//! `data/switch/`): transactions, the per-terminal idempotency index, the
//! durable reversal queue, the provisioned network and daily totals.
//!
//! Anything a client is told is made durable first with
//! [`Store::durable`]: one sled flush shared by every request that asked for
//! it while the previous flush ran (group commit).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::fees::Fee;
use crate::ids::{Secret, TxId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    CashIn,
    CashOut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Pending,
    Completed,
    Failed,
    Reversed,
}

impl Status {
    pub fn is_final(self) -> bool {
        self != Status::Pending
    }
}

/// Where an unfinished transaction stopped: what recovery must resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Recorded; the ledger may hold pending transfers; the bank was not asked.
    Reserved,
    /// The bank may have acted; its outcome decides.
    AtBank,
    /// Cash-out: the bank debited the customer; the teller pays out the cash
    /// and confirms, or cancels, before `confirm_deadline_ms`.
    AwaitingConfirm,
    /// Decided: the bank's part is being reversed (the job is queued) and the
    /// reservation released. Nothing may post it any more.
    Reversing,
    /// Final.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeParts {
    pub total: u64,
    pub commission: u64,
    pub switch: u64,
}

impl From<Fee> for FeeParts {
    fn from(f: Fee) -> FeeParts {
        FeeParts {
            total: f.total,
            commission: f.commission,
            switch: f.switch,
        }
    }
}

/// A transaction as the switch keeps it. The full account number is kept
/// (the bank needs it for inquiries and reversals) and never shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    pub id: String,
    pub kind: Kind,
    pub status: Status,
    pub stage: Stage,
    pub terminal_id: String,
    pub post_office_id: String,
    pub bank_bin: String,
    pub account: String,
    pub account_name: String,
    pub amount: u64,
    pub fee: FeeParts,
    pub client_request_id: String,
    /// SHA-256 of the request's content: a retry must match it.
    pub fingerprint: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub bank_reference: Option<String>,
    /// Cash-out: when an unconfirmed payout is cancelled by the switch.
    #[serde(default)]
    pub confirm_deadline_ms: Option<i64>,
}

impl TxRecord {
    pub fn tx_id(&self) -> TxId {
        TxId::parse(&self.id).expect("stored ids are valid")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostOffice {
    pub id: String,
    pub name: String,
    /// Its number in ledger account ids.
    pub number: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terminal {
    pub id: String,
    pub post_office_id: String,
    pub number: u64,
    /// Hex; only the auth layer reads it.
    pub secret_hex: String,
}

impl Terminal {
    pub fn secret(&self) -> Option<Secret> {
        Secret::from_hex(&self.secret_hex)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub id: String,
    pub secret_hex: String,
}

/// A terminal's shift: the drawer counted at open and at close.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftRecord {
    pub id: String,
    pub terminal_id: String,
    pub opened_at_ms: i64,
    pub opening_cash: u64,
    /// What the ledger held at open, before the opening adjustment.
    pub opening_expected: u64,
    pub closed_at_ms: Option<i64>,
    pub expected_cash: Option<u64>,
    pub counted_cash: Option<u64>,
    pub variance: Option<i64>,
}

impl ShiftRecord {
    pub fn open(
        id: String,
        terminal_id: &str,
        now_ms: i64,
        opening_cash: u64,
        opening_expected: u64,
    ) -> ShiftRecord {
        ShiftRecord {
            id,
            terminal_id: terminal_id.to_string(),
            opened_at_ms: now_ms,
            opening_cash,
            opening_expected,
            closed_at_ms: None,
            expected_cash: None,
            counted_cash: None,
            variance: None,
        }
    }
    pub fn is_open(&self) -> bool {
        self.closed_at_ms.is_none()
    }
}

/// A reversal waiting for the bank to acknowledge it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalJob {
    pub tx_id: String,
    pub bank_bin: String,
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
}

pub type StoreError = sled::Error;

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    txs: sled::Tree,
    /// Ids of transactions not yet final (recovery and deadlines read it).
    open: sled::Tree,
    idempotency: sled::Tree,
    by_terminal: sled::Tree,
    reversals: sled::Tree,
    entities: sled::Tree,
    daily: sled::Tree,
    flusher: Arc<Flusher>,
}

struct Flusher {
    /// Flushes asked for so far (tickets).
    requested: AtomicU64,
    /// The highest ticket a completed flush covers.
    completed: watch::Sender<u64>,
    running: AtomicBool,
}

fn idempotency_key(terminal: &str, request_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(terminal.len() + request_id.len() + 1);
    k.extend_from_slice(terminal.as_bytes());
    k.push(0);
    k.extend_from_slice(request_id.as_bytes());
    k
}

fn terminal_key(terminal: &str, created_at_ms: i64, id: TxId) -> Vec<u8> {
    let mut k = idempotency_key(terminal, "");
    k.extend_from_slice(&(created_at_ms as u64).to_be_bytes());
    k.extend_from_slice(&id.to_bytes());
    k
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(500))
            .open()?;
        Ok(Store {
            txs: db.open_tree("tx")?,
            open: db.open_tree("open")?,
            idempotency: db.open_tree("idempotency")?,
            by_terminal: db.open_tree("by_terminal")?,
            reversals: db.open_tree("reversals")?,
            entities: db.open_tree("entities")?,
            daily: db.open_tree("daily")?,
            flusher: Arc::new(Flusher {
                requested: AtomicU64::new(0),
                completed: watch::Sender::new(0),
                running: AtomicBool::new(false),
            }),
            db,
        })
    }

    /// A tree for a bank simulator's state.
    pub fn sim_tree(&self, bin: &str) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(format!("sim/{bin}"))
    }

    /// Make every write so far durable (shared flushes).
    pub async fn durable(&self) -> Result<(), StoreError> {
        let f = &self.flusher;
        let ticket = f.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let mut rx = f.completed.subscribe();
        loop {
            if *rx.borrow_and_update() >= ticket {
                return Ok(());
            }
            if !f.running.swap(true, Ordering::AcqRel) {
                // Become the flusher, in a task of its own so that a caller
                // that goes away cannot leave it half done.
                let target = f.requested.load(Ordering::Acquire);
                let (db, flusher) = (self.db.clone(), self.flusher.clone());
                let done = tokio::spawn(async move {
                    let r = tokio::task::spawn_blocking(move || db.flush()).await;
                    flusher.running.store(false, Ordering::Release);
                    match r {
                        Ok(Ok(_)) => {
                            flusher.completed.send_modify(|c| *c = (*c).max(target));
                            Ok(())
                        }
                        Ok(Err(e)) => {
                            flusher.completed.send_modify(|_| {});
                            Err(e)
                        }
                        Err(join) => {
                            flusher.completed.send_modify(|_| {});
                            Err(sled::Error::ReportableBug(format!(
                                "flush task failed: {join}"
                            )))
                        }
                    }
                });
                done.await
                    .map_err(|e| sled::Error::ReportableBug(e.to_string()))??;
                continue;
            }
            if rx.changed().await.is_err() {
                return Err(sled::Error::ReportableBug("flusher gone".into()));
            }
        }
    }

    pub fn put_tx(&self, t: &TxRecord) -> Result<(), StoreError> {
        let id = t.tx_id();
        self.txs
            .insert(id.to_bytes(), serde_json::to_vec(t).expect("serialisable"))?;
        if t.stage == Stage::Done {
            self.open.remove(id.to_bytes())?;
        } else {
            self.open.insert(id.to_bytes(), &[])?;
        }
        Ok(())
    }

    /// Record a new transaction, its idempotency entry and its indexes in
    /// one sled transaction: the request id is taken only together with the
    /// record. Returns the existing transaction when the request id was
    /// taken already.
    pub fn create_tx(&self, t: &TxRecord) -> Result<Option<TxRecord>, StoreError> {
        use sled::Transactional;
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        let key = idempotency_key(&t.terminal_id, &t.client_request_id);
        let id = t.tx_id();
        let record = serde_json::to_vec(t).expect("serialisable");
        let result = (&self.idempotency, &self.txs, &self.by_terminal, &self.open).transaction(
            |(idempotency, txs, by_terminal, open)| {
                if let Some(existing) = idempotency.get(&key)? {
                    return Err(ConflictableTransactionError::Abort(existing));
                }
                idempotency.insert(key.as_slice(), &id.to_bytes())?;
                txs.insert(&id.to_bytes(), record.as_slice())?;
                by_terminal.insert(
                    terminal_key(&t.terminal_id, t.created_at_ms, id),
                    &id.to_bytes(),
                )?;
                open.insert(&id.to_bytes(), &[])?;
                Ok(())
            },
        );
        match result {
            Ok(()) => Ok(None),
            Err(TransactionError::Abort(existing)) => {
                let existing = <[u8; 16]>::try_from(existing.as_ref())
                    .ok()
                    .and_then(|b| TxId::from_u128(u128::from_be_bytes(b)));
                match existing.map(|id| self.get_tx(id)).transpose()?.flatten() {
                    Some(t) => Ok(Some(t)),
                    None => Err(sled::Error::Unsupported(
                        "an idempotency entry names no transaction".into(),
                    )),
                }
            }
            Err(TransactionError::Storage(e)) => Err(e),
        }
    }

    pub fn get_tx(&self, id: TxId) -> Result<Option<TxRecord>, StoreError> {
        Ok(self
            .txs
            .get(id.to_bytes())?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// A terminal's transactions, newest first, after `before` (exclusive).
    pub fn list_terminal(
        &self,
        terminal: &str,
        before: Option<(i64, TxId)>,
        limit: usize,
    ) -> Result<Vec<TxRecord>, StoreError> {
        let start = idempotency_key(terminal, "");
        let end = match before {
            Some((ms, id)) => terminal_key(terminal, ms, id),
            None => {
                let mut e = start.clone();
                e.extend_from_slice(&[0xff; 24]);
                e
            }
        };
        let mut out = Vec::with_capacity(limit);
        for kv in self.by_terminal.range(start..end).rev() {
            let (_, v) = kv?;
            let Some(id) = <[u8; 16]>::try_from(v.as_ref())
                .ok()
                .and_then(|b| TxId::from_u128(u128::from_be_bytes(b)))
            else {
                continue;
            };
            if let Some(t) = self.get_tx(id)? {
                out.push(t);
            }
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Transactions that did not finish (recovery resolves them).
    pub fn unfinished(&self) -> Result<Vec<TxRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in self.open.iter() {
            let (k, _) = kv?;
            let Some(id) = <[u8; 16]>::try_from(k.as_ref())
                .ok()
                .and_then(|b| TxId::from_u128(u128::from_be_bytes(b)))
            else {
                continue;
            };
            if let Some(t) = self.get_tx(id)?.filter(|t| t.stage != Stage::Done) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Record the decision to reverse: the transaction at stage `Reversing`
    /// and its reversal job, in one sled transaction (never one without the
    /// other).
    pub fn begin_reversal(&self, t: &TxRecord, job: &ReversalJob) -> Result<(), StoreError> {
        use sled::Transactional;
        debug_assert_eq!(t.stage, Stage::Reversing);
        let id = t.tx_id().to_bytes();
        let (record, job_bytes) = (
            serde_json::to_vec(t).expect("serialisable"),
            serde_json::to_vec(job).expect("serialisable"),
        );
        (&self.txs, &self.reversals, &self.open)
            .transaction(|(txs, reversals, open)| {
                txs.insert(&id, record.as_slice())?;
                reversals.insert(job.tx_id.as_bytes(), job_bytes.as_slice())?;
                open.insert(&id, &[])?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => e,
                sled::transaction::TransactionError::Abort(()) => unreachable!("never aborts"),
            })
    }

    pub fn queue_reversal(&self, job: &ReversalJob) -> Result<(), StoreError> {
        self.reversals.insert(
            job.tx_id.as_bytes(),
            serde_json::to_vec(job).expect("serialisable"),
        )?;
        Ok(())
    }

    pub fn reversals(&self) -> Result<Vec<ReversalJob>, StoreError> {
        let mut out = Vec::new();
        for kv in self.reversals.iter() {
            let (_, v) = kv?;
            if let Ok(j) = serde_json::from_slice(&v) {
                out.push(j);
            }
        }
        Ok(out)
    }

    pub fn finish_reversal(&self, tx_id: &str) -> Result<(), StoreError> {
        self.reversals.remove(tx_id.as_bytes())?;
        Ok(())
    }

    fn put_entity<T: Serialize>(&self, kind: &str, id: &str, v: &T) -> Result<(), StoreError> {
        self.entities.insert(
            format!("{kind}/{id}"),
            serde_json::to_vec(v).expect("serialisable"),
        )?;
        Ok(())
    }

    fn entities<T: for<'de> Deserialize<'de>>(&self, kind: &str) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for kv in self.entities.scan_prefix(format!("{kind}/")) {
            let (_, v) = kv?;
            if let Ok(e) = serde_json::from_slice(&v) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Record a shift: the terminal's current one, and its history.
    pub fn put_shift(&self, s: &ShiftRecord) -> Result<(), StoreError> {
        self.put_entity("shift", &s.terminal_id, s)?;
        self.put_entity(
            "shift_history",
            &format!("{}/{:020}/{}", s.terminal_id, s.opened_at_ms, s.id),
            s,
        )
    }

    /// The terminal's latest shift (open or closed).
    pub fn shift(&self, terminal: &str) -> Result<Option<ShiftRecord>, StoreError> {
        Ok(self
            .entities
            .get(format!("shift/{terminal}"))?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    pub fn put_post_office(&self, p: &PostOffice) -> Result<(), StoreError> {
        self.put_entity("post_office", &p.id, p)
    }
    pub fn post_offices(&self) -> Result<Vec<PostOffice>, StoreError> {
        self.entities("post_office")
    }
    pub fn put_terminal(&self, t: &Terminal) -> Result<(), StoreError> {
        self.put_entity("terminal", &t.id, t)
    }
    pub fn terminals(&self) -> Result<Vec<Terminal>, StoreError> {
        self.entities("terminal")
    }
    pub fn put_operator(&self, o: &Operator) -> Result<(), StoreError> {
        self.put_entity("operator", &o.id, o)
    }
    pub fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        self.entities("operator")
    }
    pub fn is_provisioned(&self) -> Result<bool, StoreError> {
        Ok(self.entities.get("meta/provisioned")?.is_some())
    }
    pub fn mark_provisioned(&self) -> Result<(), StoreError> {
        self.entities.insert("meta/provisioned", b"1".as_slice())?;
        Ok(())
    }

    /// Add `amount` to a daily total unless it would pass `max`; answers
    /// whether it was added. `key` names the counter and the day.
    pub fn add_daily(&self, key: &str, amount: u64, max: u64) -> Result<bool, StoreError> {
        let mut added = false;
        self.daily.fetch_and_update(key, |old| {
            let current = old
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map_or(0, u64::from_be_bytes);
            match current.checked_add(amount).filter(|n| *n <= max) {
                Some(n) => {
                    added = true;
                    Some(n.to_be_bytes().to_vec())
                }
                None => {
                    added = false;
                    Some(current.to_be_bytes().to_vec())
                }
            }
        })?;
        Ok(added)
    }

    /// Give back what `add_daily` took (a transaction that did not happen).
    pub fn sub_daily(&self, key: &str, amount: u64) -> Result<(), StoreError> {
        self.daily.fetch_and_update(key, |old| {
            let current = old
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map_or(0, u64::from_be_bytes);
            Some(current.saturating_sub(amount).to_be_bytes().to_vec())
        })?;
        Ok(())
    }
}
