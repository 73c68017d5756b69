//! The switch's own records (beside the ledger, under `data/switch/`: the
//! journal in `journal/`, its fjall copy in `records/`): transactions, the per-terminal idempotency index, the
//! durable reversal queue, the provisioned network and daily totals.
//!
//! Anything a client is told is made durable first with
//! [`Store::durable`]: one journal fsync shared by every request that asked
//! for it meanwhile (group commit). The journal, the overlay and the
//! engine's lagging copy are [`kv`]'s business.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub mod console;
pub mod kv;
pub mod ledger;
pub mod pg_connect;
pub mod pg_kv;
pub mod pg_ledger;
pub mod recon;
pub mod records;
pub mod stats;
pub mod tree;
pub mod upgrade;
pub mod wire;

pub use records::*;

pub use kv::EngineError;
use kv::{Kv, Tree};

use crate::ids::TxId;

/// The switch's records. Cheap to clone (one shared [`Kv`]).
#[derive(Clone)]
pub struct Store {
    /// Every record below goes through the journaled key-value layer
    /// (trees named by [`Tree`]): `Tx` records by id; `Open` ids not yet final
    /// (recovery and deadlines read it); `Idempotency` (owner, request id) →
    /// id and fingerprint; `ByTerminal` listings; `Reversals` the durable
    /// queue; `Entities` the provisioned network; `Daily` totals; `Claims`
    /// what running and completed transactions hold (`order/{qr}`,
    /// `bill/{biller}/{customer}/{bill}` → id); `Orders` QR codes issued;
    /// `Payments` merchants' notifications by merchant and number;
    /// `Windows` settlement windows by id (big-endian); `Recon`
    /// reconciliation's reports, exceptions and audit trail (see
    /// [`recon`]).
    kv: Arc<Kv>,
    /// The node's own fjall database: the journal engine's lagging copy; on
    /// either engine the simulators' state and reconciliation's scratch.
    db: fjall::Database,
}

/// fjall's block cache for the switch's store.
const STORE_CACHE_BYTES: u64 = 256 << 20;

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

/// Why the store could not answer. Callers log it and answer `INTERNAL`:
/// neither is the client's doing, and neither may pass for "not found".
#[derive(Debug)]
pub enum StoreError {
    /// The engine failed (I/O, a journal that can no longer be written).
    Engine(EngineError),
    /// A stored record does not decode: damage, or a format this build does
    /// not know. Counted in `switch_store_undecodable_total{what}`.
    Undecodable {
        what: &'static str,
        key: String,
        why: String,
    },
}

impl From<EngineError> for StoreError {
    fn from(e: EngineError) -> StoreError {
        StoreError::Engine(e)
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Engine(e) => write!(f, "storage engine: {e}"),
            StoreError::Undecodable { what, key, why } => {
                write!(f, "a stored {what} does not decode (key {key}): {why}")
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// The format of every record value the store writes: one version byte,
/// then the record as JSON. Values written before versions existed are bare
/// JSON objects (they start with `{`, never a version byte) and still read.
pub const FORMAT_VERSION: u8 = 1;

fn undecodable(what: &'static str, key: &[u8], why: impl std::fmt::Display) -> StoreError {
    metrics::counter!("switch_store_undecodable_total", "what" => what).increment(1);
    StoreError::Undecodable {
        what,
        key: String::from_utf8_lossy(key).escape_debug().to_string(),
        why: why.to_string(),
    }
}

/// How a record type is kept. Most are JSON after [`FORMAT_VERSION`]; a
/// transaction's record, written several times by every flow, is in the
/// binary schema of [`wire`] (its own first byte, [`wire::TX_FORMAT`]), and
/// its JSON from earlier versions still reads.
pub(crate) trait Record: Sized {
    fn to_value(&self) -> Vec<u8>;
    fn from_value(what: &'static str, key: &[u8], value: &[u8]) -> Result<Self, StoreError>;
}

/// `v` as the store keeps it.
fn encode<V: Record>(v: &V) -> Vec<u8> {
    v.to_value()
}

/// A record value as [`encode`] wrote it (or an earlier version did).
fn decode<V: Record>(what: &'static str, key: &[u8], value: &[u8]) -> Result<V, StoreError> {
    V::from_value(what, key, value)
}

fn json_value<V: Serialize>(v: &V) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(FORMAT_VERSION);
    serde_json::to_writer(&mut out, v).expect("records serialise");
    out
}

/// A JSON record value (or one from before versions existed).
fn json_decode<V: for<'de> Deserialize<'de>>(
    what: &'static str,
    key: &[u8],
    value: &[u8],
) -> Result<V, StoreError> {
    let body = match value.first() {
        Some(&FORMAT_VERSION) => &value[1..],
        Some(b'{') => value,
        Some(v) => {
            return Err(undecodable(
                what,
                key,
                format!("unknown format version {v}"),
            ));
        }
        None => return Err(undecodable(what, key, "empty value")),
    };
    serde_json::from_slice(body).map_err(|e| undecodable(what, key, e))
}

macro_rules! json_records {
    ($($t:ty),* $(,)?) => {
        $(impl Record for $t {
            fn to_value(&self) -> Vec<u8> {
                json_value(self)
            }
            fn from_value(what: &'static str, key: &[u8], value: &[u8]) -> Result<Self, StoreError> {
                json_decode(what, key, value)
            }
        })*
    };
}

json_records!(
    Payment,
    Order,
    WindowRecord,
    ReversalJob,
    ShiftRecord,
    PostOffice,
    Terminal,
    Merchant,
    Commune,
    ConsoleUser,
    Operator,
    BankClient,
    Revocation,
    Rotation,
    console::ConsoleSession,
    crate::secrets::SealedSecret,
);

impl Record for TxRecord {
    fn to_value(&self) -> Vec<u8> {
        wire::encode_tx(self)
    }
    fn from_value(what: &'static str, key: &[u8], value: &[u8]) -> Result<Self, StoreError> {
        match value.first() {
            Some(&wire::TX_FORMAT) => {
                wire::decode_tx(&value[1..]).map_err(|why| undecodable(what, key, why))
            }
            _ => json_decode(what, key, value),
        }
    }
}

/// An idempotency entry: the transaction id, then the request's fingerprint.
fn parse_entry(key: &[u8], entry: &[u8]) -> Result<(TxId, String), StoreError> {
    let id = parse_id("idempotency entry", key, entry.get(..16).unwrap_or(entry))?;
    let fingerprint = std::str::from_utf8(entry.get(16..).unwrap_or_default())
        .map_err(|e| undecodable("idempotency entry", key, e))?;
    Ok((id, fingerprint.to_string()))
}

/// A transaction id as the indexes hold it (16 bytes, big-endian).
fn parse_id(what: &'static str, key: &[u8], b: &[u8]) -> Result<TxId, StoreError> {
    <[u8; 16]>::try_from(b)
        .ok()
        .and_then(|b| TxId::from_u128(u128::from_be_bytes(b)))
        .ok_or_else(|| undecodable(what, key, "not a transaction id"))
}

impl Store {
    /// The embedded store in `dir`: the journal, fjall as its copy.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = Store::open_engine(dir)?;
        Ok(Store {
            kv: Arc::new(Kv::open(db.clone(), dir)?),
            db,
        })
    }

    /// The records in PostgreSQL at `url` (shared by every node; the schema
    /// migrated by [`pg_ledger::migrate`]), with the node's own fjall
    /// database in `dir` for what is the node's own (the simulators' state,
    /// reconciliation's scratch).
    pub fn open_postgres(url: &str, dir: &Path) -> Result<Store, StoreError> {
        let db = Store::open_engine(dir)?;
        Ok(Store {
            kv: Arc::new(Kv::Postgres(pg_kv::PgKv::open(url)?)),
            db,
        })
    }

    /// fjall in `dir/records`; an earlier version's sled database in `dir`
    /// itself is refused (see [`ledger::sled_import`]). Also the `bank-sim`
    /// binary's own database.
    pub fn open_engine(dir: &Path) -> Result<fjall::Database, StoreError> {
        let records = dir.join("records");
        ::ledger::sled_import::refuse_sled(dir, &records)
            .map_err(|e| EngineError::Io(std::io::Error::other(e.to_string())))?;
        Ok(fjall::Database::builder(records)
            .cache_size(STORE_CACHE_BYTES)
            .open()?)
    }

    fn db(&self) -> &fjall::Database {
        &self.db
    }

    /// Wait for the turn named `key` among every node sharing this store
    /// (on the embedded engine there is one node: nothing to wait for).
    pub async fn node_lock(&self, key: i64) -> Result<pg_kv::NodeLock, StoreError> {
        match self.kv.as_ref() {
            Kv::Journal(_) => Ok(pg_kv::NodeLock::none()),
            Kv::Postgres(k) => Ok(k.lock(key).await?),
        }
    }

    /// Whether other nodes share this store (PostgreSQL): what is
    /// unfinished here may be in flight on one of them.
    pub fn is_shared(&self) -> bool {
        matches!(*self.kv, Kv::Postgres(_))
    }

    /// On a shared store, call `on_notice` whenever any node stores a
    /// merchant's notice, until it answers false; on the embedded engine
    /// this node writes every notice itself, and nothing is called.
    pub fn listen_payments(&self, on_notice: impl Fn() -> bool + Send + Sync + 'static) {
        if let Kv::Postgres(pg) = self.kv.as_ref() {
            pg.listen_payments(on_notice);
        }
    }

    /// Record a request's nonce among every node sharing this store; false
    /// if one of them saw it already (on the embedded engine, the edge's
    /// memory is the whole record: always true).
    pub fn first_use_nonce(&self, key: &str, expires_ms: i64) -> Result<bool, StoreError> {
        match self.kv.as_ref() {
            Kv::Journal(_) => Ok(true),
            Kv::Postgres(k) => Ok(k.first_use(key, expires_ms)?),
        }
    }

    /// Forget the shared nonces past their window.
    pub async fn forget_nonces(&self, now_ms: i64) -> Result<u64, StoreError> {
        match self.kv.as_ref() {
            Kv::Journal(_) => Ok(0),
            Kv::Postgres(k) => Ok(k.forget_nonces(now_ms).await?),
        }
    }

    /// Is this node the one that runs the background jobs? Always on the
    /// embedded engine; on PostgreSQL, the holder of the worker lease
    /// (taken by the first node to ask, handed on when it dies).
    pub async fn worker_lease(&self) -> Result<bool, StoreError> {
        match self.kv.as_ref() {
            Kv::Journal(_) => Ok(true),
            Kv::Postgres(k) => Ok(k.worker_lease().await?),
        }
    }

    /// A keyspace for a bank simulator's state.
    pub fn sim_tree(&self, bin: &str) -> Result<fjall::Keyspace, StoreError> {
        Ok(self
            .db()
            .keyspace(&format!("sim/{bin}"), fjall::KeyspaceCreateOptions::default)?)
    }

    /// Make every record written so far durable (one journal fsync shared by
    /// every caller waiting meanwhile).
    pub async fn durable(&self) -> Result<(), StoreError> {
        Ok(crate::telemetry::stage("store_durable", self.kv.durable()).await?)
    }

    pub fn put_tx(&self, t: &TxRecord) -> Result<(), StoreError> {
        let id = t.tx_id().to_bytes();
        let record = encode(t);
        self.kv.commit(|w| {
            w.put(Tree::Tx, &id, record.clone());
            if t.stage == Stage::Done {
                w.remove(Tree::Open, &id);
            } else {
                w.put(Tree::Open, &id, Vec::new());
            }
            Ok::<_, StoreError>(())
        })
    }

    /// Record a new transaction, its idempotency entry (`owner`'s
    /// `request_id`, with the request's `fingerprint`), its indexes and its
    /// claims in one atomic write: the request id and the claims are taken
    /// only together with the record. `t` may replace a record that waits
    /// for payment (a bill paid by QR).
    pub fn create_tx(
        &self,
        t: &TxRecord,
        owner: &str,
        request_id: &str,
        fingerprint: &str,
    ) -> Result<Created, StoreError> {
        let key = idempotency_key(owner, request_id);
        let id = t.tx_id().to_bytes();
        let claims = t.claims();
        // Encoded before the commit: the store's lock is held only to check
        // and write.
        let record = encode(t);
        let mut entry = id.to_vec();
        entry.extend_from_slice(fingerprint.as_bytes());
        let taken = self.kv.commit(|w| {
            if let Some(existing) = w.get(Tree::Idempotency, &key)? {
                return Ok::<_, StoreError>(Err(Err(existing)));
            }
            for c in &claims {
                if let Some(holder) = w.get(Tree::Claims, c.as_bytes())?
                    && holder.as_ref() != id
                {
                    return Ok(Err(Ok(c.clone())));
                }
            }
            for c in &claims {
                w.put(Tree::Claims, c.as_bytes(), id.to_vec());
            }
            w.put(Tree::Idempotency, &key, entry.clone());
            w.put(Tree::Tx, &id, record.clone());
            w.put(
                Tree::ByTerminal,
                &terminal_key(&t.terminal_id, t.created_at_ms, t.tx_id()),
                id.to_vec(),
            );
            if owner != t.terminal_id {
                w.put(
                    Tree::ByTerminal,
                    &terminal_key(owner, t.created_at_ms, t.tx_id()),
                    id.to_vec(),
                );
            }
            w.put(Tree::Open, &id, Vec::new());
            Ok(Ok(()))
        })?;
        match taken {
            Ok(()) => Ok(Created::New),
            Err(Ok(claim)) => Ok(Created::Claimed(claim)),
            Err(Err(existing)) => {
                let (existing_id, fingerprint) = parse_entry(&key, &existing)?;
                match self.get_tx(existing_id)? {
                    Some(t) => Ok(Created::Existing(Box::new(t), fingerprint)),
                    None => Err(undecodable(
                        "idempotency entry",
                        &key,
                        "it names a transaction that is not stored",
                    )),
                }
            }
        }
    }

    /// Record a transaction's final state. A failed one gives back its
    /// claims; a completed QR payment to a merchant adds the merchant's
    /// notification (numbered by `notify::Notifier`), in the same atomic
    /// write.
    /// Write `t`'s final record, its merchant's notice, and the limits it
    /// gives back, in one write; answers the notice's number.
    ///
    /// A notice numbered 0 is numbered here, in the write, from its
    /// merchant's counter (the shared store): writes for one merchant take
    /// turns on that counter, so numbers become visible in order and
    /// without gaps, whichever node writes them, and a watcher on any node
    /// that resumes after `n` misses nothing. One process numbers its
    /// notices before the write instead ([`crate::flows::notify`]).
    ///
    /// `paid` is the final record of the bill payment `t` paid (an attempt
    /// at a teller's bill code that completed): both finish in one write,
    /// so a code is never paid without its bill payment saying so. It keeps
    /// its claims: the bills are paid.
    ///
    /// `stats` is what `t` (and `paid`) add to the pilot report's
    /// aggregates (`stats::contributions`): added in the same write, once.
    pub fn finish_tx(
        &self,
        t: &TxRecord,
        payment: Option<&Payment>,
        give_back: &[String],
        paid: Option<&TxRecord>,
        stats: &[stats::Contribution],
    ) -> Result<Option<u64>, StoreError> {
        debug_assert_eq!(t.stage, Stage::Done);
        debug_assert!(give_back.is_empty() || !t.limits_held);
        debug_assert!(paid.is_none_or(|b| b.stage == Stage::Done && b.status == Status::Completed));
        let id = t.tx_id().to_bytes();
        let paid = paid.map(|b| (b.tx_id().to_bytes(), encode(b)));
        let release = if matches!(t.status, Status::Failed | Status::Reversed) {
            t.claims()
        } else {
            Vec::new()
        };
        let notice_key = |merchant: &str, seq: u64| {
            let mut key = merchant.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(&seq.to_be_bytes());
            key
        };
        // Numbered already: encoded before the write, outside its lock.
        let numbered = payment
            .filter(|p| p.seq > 0)
            .map(|p| (notice_key(&p.merchant_id, p.seq), encode(p)));
        let record = encode(t);
        self.kv.commit(|w| {
            // Finished already (by another node finishing what a dead one
            // left, say): the second finish changes nothing, so claims and
            // limits are given back once.
            if w.get(Tree::Open, &id)?.is_none() {
                return Ok(None);
            }
            w.put(Tree::Tx, &id, record.clone());
            w.remove(Tree::Open, &id);
            // A bill payment that an attempt finishes is counted by the
            // write that finishes it, once.
            let mut count = true;
            if let Some((bill_id, bill_record)) = &paid {
                if w.get(Tree::Open, bill_id)?.is_some() {
                    w.put(Tree::Tx, bill_id, bill_record.clone());
                    w.remove(Tree::Open, bill_id);
                } else {
                    count = false;
                }
            }
            if count {
                stats::apply(w, stats)?;
            }
            for c in &release {
                if w.get(Tree::Claims, c.as_bytes())?
                    .is_some_and(|h| h.as_ref() == id)
                {
                    w.remove(Tree::Claims, c.as_bytes());
                }
            }
            let mut written = None;
            if let Some((k, v)) = numbered.clone() {
                w.put(Tree::Payments, &k, v);
                written = payment.map(|p| p.seq);
            } else if let Some(p) = payment {
                let counter = payment_counter_key(&p.merchant_id);
                let last = Store::daily_total(&counter, w.get(Tree::Payments, &counter)?)?;
                let seq = last + 1;
                w.put(Tree::Payments, &counter, seq.to_be_bytes().to_vec());
                let mut p = p.clone();
                p.seq = seq;
                w.put(Tree::Payments, &notice_key(&p.merchant_id, seq), encode(&p));
                written = Some(seq);
            }
            for key in give_back {
                let n = Store::daily_total(key.as_bytes(), w.get(Tree::Daily, key.as_bytes())?)?;
                let n = n.saturating_sub(t.amount);
                w.put(Tree::Daily, key.as_bytes(), n.to_be_bytes().to_vec());
            }
            Ok::<_, StoreError>(written)
        })
    }

    /// Count `t` against every total in `limits` (key, most allowed), all
    /// or none, and record `t` (which says `limits_held`) in the same
    /// write. Answers the index of the first total it would pass and what
    /// that total had counted already (then nothing is written).
    pub fn take_limits(
        &self,
        t: &TxRecord,
        limits: &[(String, u64)],
    ) -> Result<Option<(usize, u64)>, StoreError> {
        debug_assert!(t.limits_held);
        let id = t.tx_id().to_bytes();
        let record = encode(t);
        self.kv.commit(|w| {
            let mut totals = Vec::with_capacity(limits.len());
            for (i, (key, max)) in limits.iter().enumerate() {
                let n = Store::daily_total(key.as_bytes(), w.get(Tree::Daily, key.as_bytes())?)?;
                match n.checked_add(t.amount).filter(|n| n <= max) {
                    Some(n) => totals.push(n),
                    None => return Ok::<_, StoreError>(Some((i, n))),
                }
            }
            for ((key, _), n) in limits.iter().zip(totals) {
                w.put(Tree::Daily, key.as_bytes(), n.to_be_bytes().to_vec());
            }
            w.put(Tree::Tx, &id, record.clone());
            Ok(None)
        })
    }

    /// Take `claim` for good unless someone holds it (a QR code that
    /// expired unpaid); answers whether it was free.
    pub fn close_claim(&self, claim: &str) -> Result<bool, StoreError> {
        self.kv.commit(|w| {
            if w.get(Tree::Claims, claim.as_bytes())?.is_some() {
                return Ok::<_, StoreError>(false);
            }
            w.put(Tree::Claims, claim.as_bytes(), b"closed".to_vec());
            Ok(true)
        })
    }

    /// Who holds `claim`: a transaction id, or "closed".
    pub fn claim_holder(&self, claim: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .kv
            .get(Tree::Claims, claim.as_bytes())?
            .map(|v| v.to_vec()))
    }

    /// The transaction a request id names, with its request's fingerprint.
    pub fn request(
        &self,
        owner: &str,
        request_id: &str,
    ) -> Result<Option<(TxRecord, String)>, StoreError> {
        let Some(entry) = self
            .kv
            .get(Tree::Idempotency, &idempotency_key(owner, request_id))?
        else {
            return Ok(None);
        };
        let key = idempotency_key(owner, request_id);
        let (id, fingerprint) = parse_entry(&key, &entry)?;
        match self.get_tx(id)? {
            Some(t) => Ok(Some((t, fingerprint))),
            None => Err(undecodable(
                "idempotency entry",
                &key,
                "it names a transaction that is not stored",
            )),
        }
    }

    /// The QR id a merchant's request id names, with its fingerprint.
    pub fn order_request(
        &self,
        merchant: &str,
        request_id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let key = [b"req\0".as_slice(), &idempotency_key(merchant, request_id)].concat();
        let Some(v) = self.kv.get(Tree::Orders, &key)? else {
            return Ok(None);
        };
        std::str::from_utf8(&v)
            .ok()
            .and_then(|text| text.split_once('\n'))
            .map(|(qr, fp)| Some((qr.to_string(), fp.to_string())))
            .ok_or_else(|| undecodable("order request", &key, "not `qr\\nfingerprint`"))
    }

    /// Record a new order with its request id, unless the request id was
    /// taken (then answers the QR id it names).
    pub fn put_order_once(
        &self,
        o: &Order,
        merchant: &str,
        request_id: &str,
        fingerprint: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = [b"req\0".as_slice(), &idempotency_key(merchant, request_id)].concat();
        let (entry, order) = (
            format!("{}\n{fingerprint}", o.qr_id).into_bytes(),
            encode(o),
        );
        self.kv.commit(|w| {
            if let Some(v) = w.get(Tree::Orders, &key)? {
                let text = String::from_utf8_lossy(&v).into_owned();
                let qr = text
                    .split_once('\n')
                    .map_or(text.clone(), |(q, _)| q.to_string());
                return Ok::<_, StoreError>(Some(qr));
            }
            w.put(Tree::Orders, &key, entry.clone());
            w.put(Tree::Orders, o.qr_id.as_bytes(), order.clone());
            Ok(None)
        })
    }

    pub fn put_window(&self, w: &WindowRecord) -> Result<(), StoreError> {
        self.put_windows(&[w])
    }

    /// Several windows in one atomic write (a close and the next opening).
    pub fn put_windows(&self, ws: &[&WindowRecord]) -> Result<(), StoreError> {
        let records: Vec<([u8; 8], Vec<u8>)> = ws
            .iter()
            .map(|w| (w.id.to_be_bytes(), encode(*w)))
            .collect();
        self.kv.commit(|t| {
            for (k, v) in records.clone() {
                t.put(Tree::Windows, &k, v);
            }
            Ok::<_, StoreError>(())
        })
    }

    pub fn windows(&self) -> Result<Vec<WindowRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in self.kv.scan_prefix(Tree::Windows, b"") {
            let (k, v) = kv?;
            out.push(decode("settlement window", &k, &v)?);
        }
        Ok(out)
    }

    /// A number never handed out before (on every node, with PostgreSQL).
    pub fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.kv.next_id()?)
    }

    /// A scratch keyspace (dropped by the caller when done).
    pub fn scratch_tree(&self, name: &str) -> Result<fjall::Keyspace, StoreError> {
        Ok(self.db().keyspace(
            &format!("scratch/{name}"),
            fjall::KeyspaceCreateOptions::default,
        )?)
    }

    pub fn drop_tree(&self, t: fjall::Keyspace) -> Result<(), StoreError> {
        self.db().delete_keyspace(t)?;
        Ok(())
    }

    pub fn put_order(&self, o: &Order) -> Result<(), StoreError> {
        Ok(self.kv.put(Tree::Orders, o.qr_id.as_bytes(), encode(o))?)
    }

    pub fn order(&self, qr_id: &str) -> Result<Option<Order>, StoreError> {
        self.kv
            .get(Tree::Orders, qr_id.as_bytes())?
            .map(|v| decode("order", qr_id.as_bytes(), &v))
            .transpose()
    }

    /// A merchant's notifications after `after` (exclusive), oldest first.
    pub fn payments_after(
        &self,
        merchant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Payment>, StoreError> {
        let mut start = merchant.as_bytes().to_vec();
        start.push(0);
        let mut end = start.clone();
        end.extend_from_slice(&u64::MAX.to_be_bytes());
        start.extend_from_slice(&after.saturating_add(1).to_be_bytes());
        let range = (Bound::Included(start), Bound::Included(end));
        Store::decoded(
            "payment notice",
            self.kv.scan(Tree::Payments, range, false),
            limit,
        )
    }

    /// A merchant's notifications before `before` (exclusive), newest first.
    pub fn payments_before(
        &self,
        merchant: &str,
        before: u64,
        limit: usize,
    ) -> Result<Vec<Payment>, StoreError> {
        let mut start = merchant.as_bytes().to_vec();
        start.push(0);
        let mut end = start.clone();
        end.extend_from_slice(&before.to_be_bytes());
        let range = (Bound::Included(start), Bound::Excluded(end));
        Store::decoded(
            "payment notice",
            self.kv.scan(Tree::Payments, range, true),
            limit,
        )
    }

    /// Up to `limit` values of a scan, decoded (one that does not decode
    /// is an error, never skipped).
    fn decoded<V: Record>(
        what: &'static str,
        scan: impl Iterator<Item = Result<(Vec<u8>, Arc<[u8]>), EngineError>>,
        limit: usize,
    ) -> Result<Vec<V>, StoreError> {
        let mut out = Vec::new();
        for kv in scan {
            if out.len() == limit {
                break;
            }
            let (k, v) = kv?;
            out.push(decode(what, &k, &v)?);
        }
        Ok(out)
    }

    pub fn get_tx(&self, id: TxId) -> Result<Option<TxRecord>, StoreError> {
        let key = id.to_bytes();
        self.kv
            .get(Tree::Tx, &key)?
            .map(|v| decode("transaction", &key, &v))
            .transpose()
    }

    /// The newest transactions (ids begin with their time), up to `limit`
    /// of those `keep` takes, reading at most `scan_max` (the console's
    /// search: bounded whatever the store holds).
    pub fn recent_txs(
        &self,
        limit: usize,
        scan_max: usize,
        keep: impl Fn(&TxRecord) -> bool,
    ) -> Result<Vec<TxRecord>, StoreError> {
        let mut out = Vec::new();
        let range = (Bound::Unbounded, Bound::Unbounded);
        for kv in self.kv.scan(Tree::Tx, range, true).take(scan_max) {
            let (k, v) = kv?;
            let t: TxRecord = decode("transaction", &k, &v)?;
            if keep(&t) {
                out.push(t);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
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
        let range = (Bound::Included(start), Bound::Excluded(end));
        for kv in self.kv.scan(Tree::ByTerminal, range, true) {
            let (k, v) = kv?;
            let id = parse_id("terminal listing entry", &k, &v)?;
            match self.get_tx(id)? {
                Some(t) => out.push(t),
                None => {
                    return Err(undecodable(
                        "terminal listing entry",
                        &k,
                        "it names a transaction that is not stored",
                    ));
                }
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
        for kv in self.kv.scan_prefix(Tree::Open, b"") {
            let (k, _) = kv?;
            let id = parse_id("open transaction entry", &k, &k)?;
            if let Some(t) = self.get_tx(id)?.filter(|t| t.stage != Stage::Done) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Record the decision to reverse: the transaction at stage `Reversing`
    /// and its reversal jobs, in one atomic write (never one without the
    /// other).
    pub fn begin_reversal(&self, t: &TxRecord, jobs: &[ReversalJob]) -> Result<(), StoreError> {
        debug_assert_eq!(t.stage, Stage::Reversing);
        let id = t.tx_id().to_bytes();
        let record = encode(t);
        let jobs: Vec<(&str, Vec<u8>)> = jobs
            .iter()
            .map(|j| (j.reference.as_str(), encode(j)))
            .collect();
        self.kv.commit(|w| {
            w.put(Tree::Tx, &id, record.clone());
            for (k, v) in jobs.clone() {
                w.put(Tree::Reversals, k.as_bytes(), v);
            }
            w.put(Tree::Open, &id, Vec::new());
            Ok::<_, StoreError>(())
        })
    }

    pub fn queue_reversal(&self, job: &ReversalJob) -> Result<(), StoreError> {
        Ok(self
            .kv
            .put(Tree::Reversals, job.reference.as_bytes(), encode(job))?)
    }

    pub fn reversals(&self) -> Result<Vec<ReversalJob>, StoreError> {
        Store::decoded(
            "reversal job",
            self.kv.scan_prefix(Tree::Reversals, b""),
            usize::MAX,
        )
    }

    pub fn finish_reversal(&self, reference: &str) -> Result<(), StoreError> {
        Ok(self.kv.remove(Tree::Reversals, reference.as_bytes())?)
    }

    fn put_entity<V: Record>(&self, kind: &str, id: &str, v: &V) -> Result<(), StoreError> {
        Ok(self
            .kv
            .put(Tree::Entities, format!("{kind}/{id}").as_bytes(), encode(v))?)
    }

    fn entities<V: Record>(&self, kind: &str) -> Result<Vec<V>, StoreError> {
        Store::decoded(
            "provisioned entity",
            self.kv
                .scan_prefix(Tree::Entities, format!("{kind}/").as_bytes()),
            usize::MAX,
        )
    }

    fn entity<V: Record>(&self, kind: &str, id: &str) -> Result<Option<V>, StoreError> {
        let key = format!("{kind}/{id}");
        self.kv
            .get(Tree::Entities, key.as_bytes())?
            .map(|v| decode("provisioned entity", key.as_bytes(), &v))
            .transpose()
    }

    /// Record a shift: the terminal's current one, and its history.
    pub fn put_shift(&self, s: &ShiftRecord) -> Result<(), StoreError> {
        let record = encode(s);
        self.kv.commit(|w| {
            w.put(
                Tree::Entities,
                format!("shift/{}", s.terminal_id).as_bytes(),
                record.clone(),
            );
            w.put(
                Tree::Entities,
                format!(
                    "shift_history/{}/{:020}/{}",
                    s.terminal_id, s.opened_at_ms, s.id
                )
                .as_bytes(),
                record.clone(),
            );
            Ok::<_, StoreError>(())
        })
    }

    /// The terminal's latest shift (open or closed).
    pub fn shift(&self, terminal: &str) -> Result<Option<ShiftRecord>, StoreError> {
        self.entity("shift", terminal)
    }

    pub fn put_post_office(&self, p: &PostOffice) -> Result<(), StoreError> {
        self.put_entity("post_office", &p.id, p)
    }
    pub fn post_offices(&self) -> Result<Vec<PostOffice>, StoreError> {
        self.entities("post_office")
    }
    pub fn post_office(&self, id: &str) -> Result<Option<PostOffice>, StoreError> {
        self.entity("post_office", id)
    }
    pub fn put_commune(&self, c: &Commune) -> Result<(), StoreError> {
        self.put_entity("commune", &c.id, c)
    }
    pub fn communes(&self) -> Result<Vec<Commune>, StoreError> {
        self.entities("commune")
    }
    pub fn commune(&self, id: &str) -> Result<Option<Commune>, StoreError> {
        self.entity("commune", id)
    }
    pub fn put_terminal(&self, t: &Terminal) -> Result<(), StoreError> {
        self.put_entity("terminal", &t.id, t)
    }
    pub fn terminals(&self) -> Result<Vec<Terminal>, StoreError> {
        self.entities("terminal")
    }
    pub fn terminal(&self, id: &str) -> Result<Option<Terminal>, StoreError> {
        self.entity("terminal", id)
    }
    pub fn operator(&self, id: &str) -> Result<Option<Operator>, StoreError> {
        self.entity("operator", id)
    }
    pub fn bank_client(&self, bin: &str) -> Result<Option<BankClient>, StoreError> {
        self.entity("bank_client", bin)
    }
    pub fn put_revocation(&self, r: &Revocation) -> Result<(), StoreError> {
        self.put_entity("revoked", &r.key_id, r)
    }
    pub fn put_rotation(&self, r: &Rotation) -> Result<(), StoreError> {
        self.put_entity("rotated", &r.key_id, r)
    }
    pub fn rotations(&self) -> Result<Vec<Rotation>, StoreError> {
        self.entities("rotated")
    }
    pub fn rotation(&self, key_id: &str) -> Result<Option<Rotation>, StoreError> {
        self.entity("rotated", key_id)
    }
    pub fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        self.entities("revoked")
    }
    pub fn revocation(&self, key_id: &str) -> Result<Option<Revocation>, StoreError> {
        self.entity("revoked", key_id)
    }
    pub fn put_operator(&self, o: &Operator) -> Result<(), StoreError> {
        self.put_entity("operator", &o.id, o)
    }
    pub fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        self.entities("operator")
    }
    pub fn put_merchant(&self, m: &Merchant) -> Result<(), StoreError> {
        self.put_entity("merchant", &m.id, m)
    }
    pub fn merchants(&self) -> Result<Vec<Merchant>, StoreError> {
        self.entities("merchant")
    }
    pub fn merchant(&self, id: &str) -> Result<Option<Merchant>, StoreError> {
        self.entity("merchant", id)
    }
    pub fn put_bank_client(&self, b: &BankClient) -> Result<(), StoreError> {
        self.put_entity("bank_client", &b.bin, b)
    }
    pub fn bank_clients(&self) -> Result<Vec<BankClient>, StoreError> {
        self.entities("bank_client")
    }
    /// The value that tells whether a master key is the one this store's
    /// secrets are sealed with (`secrets.rs`).
    pub fn master_key_check(&self) -> Result<Option<crate::secrets::SealedSecret>, StoreError> {
        self.entity("meta", "master_key_check")
    }
    pub fn put_master_key_check(
        &self,
        check: &crate::secrets::SealedSecret,
    ) -> Result<(), StoreError> {
        self.put_entity("meta", "master_key_check", check)
    }
    pub fn is_provisioned(&self) -> Result<bool, StoreError> {
        Ok(self.kv.get(Tree::Entities, b"meta/provisioned")?.is_some())
    }
    pub fn mark_provisioned(&self) -> Result<(), StoreError> {
        Ok(self
            .kv
            .put(Tree::Entities, b"meta/provisioned", b"1".to_vec())?)
    }

    /// The totals at `keys`, as counted now (none yet is 0).
    pub fn totals(&self, keys: &[&str]) -> Result<Vec<u64>, StoreError> {
        keys.iter()
            .map(|k| Store::daily_total(k.as_bytes(), self.kv.get(Tree::Daily, k.as_bytes())?))
            .collect()
    }

    /// Add `amount` to a daily total unless it would pass `max`; answers
    /// whether it was added. `key` names the counter and the day.
    pub fn add_daily(&self, key: &str, amount: u64, max: u64) -> Result<bool, StoreError> {
        self.kv.commit(|w| {
            let current = Store::daily_total(key.as_bytes(), w.get(Tree::Daily, key.as_bytes())?)?;
            match current.checked_add(amount).filter(|n| *n <= max) {
                // A check only (a count of attempts): nothing to write.
                Some(_) if amount == 0 => Ok(true),
                Some(n) => {
                    w.put(Tree::Daily, key.as_bytes(), n.to_be_bytes().to_vec());
                    Ok::<_, StoreError>(true)
                }
                None => Ok(false),
            }
        })
    }

    /// A daily total (none yet is 0; a damaged one is an error, never 0,
    /// or a limit would start again).
    fn daily_total(key: &[u8], v: Option<Arc<[u8]>>) -> Result<u64, StoreError> {
        match v {
            None => Ok(0),
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| undecodable("daily total", key, "not 8 bytes")),
        }
    }
}

/// A merchant's notice counter (the shared store), beside its notices:
/// `merchant \x01` sorts after every `merchant \0 seq` and outside their
/// scans (merchant ids hold no control characters).
fn payment_counter_key(merchant: &str) -> Vec<u8> {
    let mut key = merchant.as_bytes().to_vec();
    key.push(1);
    key
}

/// A completed cash-in of `kind`, for other modules' tests.
#[cfg(test)]
pub(crate) fn test_record(kind: Kind) -> TxRecord {
    let mut r = tests::tx(1);
    r.kind = kind;
    r
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn tx(n: u128) -> TxRecord {
        let id = TxId::from_u128((1_700_000_000_000u128 << 80) | (n << 8)).expect("valid id");
        TxRecord {
            id: id.to_string(),
            kind: Kind::CashIn,
            status: Status::Completed,
            stage: Stage::Done,
            terminal_id: "tho-tang-1".into(),
            post_office_id: "tho-tang".into(),
            bank_bin: "970422".into(),
            account: "0123456789".into(),
            account_name: "NGUYEN VAN AN".into(),
            amount: 500_000,
            fee: FeeParts {
                total: 3_000,
                commission: 1_800,
                switch: 1_200,
            },
            client_request_id: format!("r{n}"),
            fingerprint: "f".into(),
            created_at_ms: 1_700_000_000_000 + n as i64,
            updated_at_ms: 1_700_000_000_000 + n as i64,
            error_code: None,
            error_message: None,
            bank_reference: Some("B1".into()),
            confirm_deadline_ms: None,
            steps: Vec::new(),
            qr_id: None,
            merchant: None,
            bill: None,
            limits_held: false,
            limit_keys: Vec::new(),
            pays_for: None,
            paid_by: None,
            card_token: None,
        }
    }

    /// Every kind of record the store decodes, written through the API.
    fn fill(store: &Store) -> (Vec<TxRecord>, PostOffice, ReversalJob, WindowRecord) {
        let txs: Vec<TxRecord> = (1..=3).map(tx).collect();
        for t in &txs {
            assert!(matches!(
                store.create_tx(t, &t.terminal_id, &t.client_request_id, &t.fingerprint),
                Ok(Created::New)
            ));
        }
        let office = PostOffice {
            id: "tho-tang".into(),
            name: "Buu dien Tho Tang".into(),
            number: 1,
            commune: "tho-tang".into(),
        };
        store.put_post_office(&office).unwrap();
        let job = ReversalJob {
            reference: "ref-1".into(),
            party: Party::Bank("970422".into()),
            attempts: 2,
            next_attempt_at_ms: 5,
        };
        store.queue_reversal(&job).unwrap();
        let window = WindowRecord::first(1_700_000_000_000);
        store.put_window(&window).unwrap();
        (txs, office, job, window)
    }

    fn reads_back(
        store: &Store,
        (txs, office, job, window): &(Vec<TxRecord>, PostOffice, ReversalJob, WindowRecord),
    ) {
        for t in txs {
            assert_eq!(store.get_tx(t.tx_id()).unwrap().as_ref(), Some(t));
            let (again, fp) = store
                .request(&t.terminal_id, &t.client_request_id)
                .unwrap()
                .expect("the request id names it");
            assert_eq!((&again, fp.as_str()), (t, t.fingerprint.as_str()));
        }
        let listed = store.list_terminal("tho-tang-1", None, 10).unwrap();
        assert_eq!(listed.len(), txs.len());
        assert_eq!(store.post_offices().unwrap(), vec![office.clone()]);
        assert_eq!(store.reversals().unwrap(), vec![job.clone()]);
        assert_eq!(store.windows().unwrap(), vec![window.clone()]);
    }

    /// Payment notices are numbered with these ids and resumed by them, so
    /// an id handed out once must never come again: not after a reopen
    /// (the counter's ceiling is persisted before ids under it are used, so
    /// a crash is no different), not after an upgrade from sled (whose
    /// import left sled's next id behind).
    #[test]
    fn ids_never_repeat_across_reopens_or_the_upgrade_from_sled() {
        let dir = tempfile::tempdir().unwrap();
        let sled_last = 5_000_000u64;
        {
            // As an import from sled left the records' database.
            let db = fjall::Database::builder(dir.path().join("records"))
                .open()
                .unwrap();
            db.keyspace(
                ::ledger::sled_import::IMPORT_KEYSPACE,
                fjall::KeyspaceCreateOptions::default,
            )
            .unwrap()
            .insert(
                ::ledger::sled_import::NEXT_ID_KEY,
                (sled_last + 1).to_le_bytes(),
            )
            .unwrap();
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        }
        let first: Vec<u64> = {
            let store = Store::open(dir.path()).unwrap();
            (0..10).map(|_| store.next_id().unwrap()).collect()
        };
        assert!(
            first[0] > sled_last,
            "{} after sled's {sled_last}",
            first[0]
        );
        assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
        let again = Store::open(dir.path()).unwrap().next_id().unwrap();
        assert!(again > first[9], "{again} after {}", first[9]);
    }

    #[test]
    fn records_carry_a_format_version_and_old_unversioned_records_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let filled;
        {
            let store = Store::open(dir.path()).unwrap();
            filled = fill(&store);
            // Every value written now starts with its format byte: a
            // transaction's the binary schema's, the others JSON's.
            for tree in [Tree::Tx, Tree::Entities, Tree::Reversals, Tree::Windows] {
                for kv in store.kv.scan_prefix(tree, b"") {
                    let (k, v) = kv.unwrap();
                    if tree == Tree::Entities && k.starts_with(b"meta/") {
                        continue;
                    }
                    let format = if tree == Tree::Tx {
                        wire::TX_FORMAT
                    } else {
                        FORMAT_VERSION
                    };
                    assert_eq!(v.first(), Some(&format), "{tree:?}");
                }
            }
            reads_back(&store, &filled);
            // Rewrite every record as the first format wrote it: bare JSON,
            // no version byte (transactions too).
            for tree in [Tree::Tx, Tree::Entities, Tree::Reversals, Tree::Windows] {
                let all: Vec<_> = store
                    .kv
                    .scan_prefix(tree, b"")
                    .map(Result::unwrap)
                    .collect();
                for (k, v) in all {
                    let bare = if tree == Tree::Tx {
                        let t: TxRecord = decode("transaction", &k, &v).unwrap();
                        serde_json::to_vec(&t).unwrap()
                    } else {
                        assert_eq!(v[0], FORMAT_VERSION);
                        v[1..].to_vec()
                    };
                    store.kv.put(tree, &k, bare).unwrap();
                }
            }
            futures_lite_block_on(store.durable()).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let legacy = store.kv.get(Tree::Windows, &1u64.to_be_bytes()).unwrap();
        assert_eq!(legacy.as_deref().and_then(|v| v.first()), Some(&b'{'));
        reads_back(&store, &filled);
    }

    #[test]
    fn a_record_that_does_not_decode_is_an_error_never_an_absence() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (txs, ..) = fill(&store);
        let damaged = txs[1].tx_id().to_bytes();
        // A record cut short, as a bad disk or a foreign writer would leave it.
        let whole = store.kv.get(Tree::Tx, &damaged).unwrap().unwrap();
        store
            .kv
            .put(Tree::Tx, &damaged, whole[..whole.len() / 2].to_vec())
            .unwrap();
        fn undecodable<T>(r: Result<T, StoreError>) -> &'static str {
            match r {
                Err(StoreError::Undecodable { what, .. }) => what,
                Err(e) => panic!("expected an undecodable record, got {e}"),
                Ok(_) => panic!("expected an undecodable record, got a value"),
            }
        }
        assert_eq!(undecodable(store.get_tx(txs[1].tx_id())), "transaction");
        assert_eq!(
            undecodable(store.request(&txs[1].terminal_id, &txs[1].client_request_id)),
            "transaction"
        );
        assert_eq!(
            undecodable(store.list_terminal("tho-tang-1", None, 10)),
            "transaction",
            "a listing does not skip it"
        );
        // The others still read.
        assert!(store.get_tx(txs[0].tx_id()).unwrap().is_some());
        // A version this build does not know is an error too.
        store
            .kv
            .put(
                Tree::Windows,
                &1u64.to_be_bytes(),
                vec![FORMAT_VERSION + 1, b'{', b'}'],
            )
            .unwrap();
        assert_eq!(undecodable(store.windows()), "settlement window");
        // A damaged daily total is an error, not a fresh zero.
        store.kv.put(Tree::Daily, b"t/x/1", vec![1, 2, 3]).unwrap();
        assert_eq!(undecodable(store.add_daily("t/x/1", 1, 10)), "daily total");
        // An index entry that names nothing is an error, not "not found".
        store
            .kv
            .put(
                Tree::Idempotency,
                &idempotency_key("tho-tang-1", "ghost"),
                vec![7; 20],
            )
            .unwrap();
        assert!(store.request("tho-tang-1", "ghost").is_err());
    }

    /// The store's `durable` is async; these tests have no runtime.
    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }
}
