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
mod keys;
pub mod kv;
pub mod ledger;
mod node;
mod parties;
pub mod pg_connect;
pub mod pg_kv;
pub mod pg_ledger;
pub mod pg_records;
pub mod recon;
pub mod records;
mod settlement;
pub mod stats;
mod transactions;
pub mod tree;
pub mod upgrade;
pub mod wire;

pub use records::*;

pub use kv::{EngineError, LedgerLink};
use kv::{Kv, Tree};
pub use ledger::Applied;
pub use pg_records::Prepared;

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

impl StoreError {
    /// The shared store is out of reach from this node (PostgreSQL did not
    /// answer in time, or not at all): nothing was done, and the caller may
    /// try again, here or on another node.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Engine(e) => StoreError::unreachable_engine(e),
            StoreError::Undecodable { .. } => false,
        }
    }

    pub fn unreachable_engine(e: &EngineError) -> bool {
        e.unreachable()
    }
}

impl From<EngineError> for StoreError {
    fn from(e: EngineError) -> StoreError {
        StoreError::Engine(e)
    }
}

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> StoreError {
        StoreError::Engine(EngineError::Fjall(e))
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
    OutboxReport,
    FeeCatalogue,
    FeeRequest,
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

    /// The embedded store in `dir` writing its records into `ledger`'s (the
    /// node's one log; `ledger` was opened with `link`): a flow step's
    /// records and its ledger transfers are one durable write
    /// ([`Store::write_with`]). What an earlier version's journal in `dir`
    /// holds is taken into the engine first.
    pub fn open_logged(
        dir: &Path,
        ledger: Arc<::ledger::Ledger>,
        link: &kv::LedgerLink,
    ) -> Result<Store, StoreError> {
        let db = Store::open_engine(dir)?;
        Ok(Store {
            kv: Arc::new(Kv::open_logged(db.clone(), dir, ledger, link)?),
            db,
        })
    }

    /// Whether the records ride in the embedded ledger's records, so that
    /// [`Store::write_with`] can make a ledger request and them durable in
    /// one write.
    pub fn logs_in_ledger(&self) -> bool {
        self.kv.logged_in().is_some()
    }

    /// Submit `request` to the ledger in one durable write with every
    /// record committed before it and whatever `applied` commits once the
    /// request is applied (on the ledger's writer thread: keep it to store
    /// commits). `None` when the records do not ride in the ledger's
    /// ([`Store::logs_in_ledger`]).
    pub async fn write_with(
        &self,
        request: ::ledger::Request,
        applied: Option<Applied>,
    ) -> Option<Result<::ledger::Outcome, StoreError>> {
        let written = self.kv.write_with(request, applied);
        let r = crate::telemetry::stage("ledger", written).await?;
        Some(r.map_err(StoreError::from))
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
            teller: None,
            taken_at_ms: None,
        }
    }

    #[tokio::test]
    async fn a_finished_transaction_is_never_opened_again_by_a_late_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut t = tx(9);
        t.status = Status::Pending;
        t.stage = Stage::AtBank;
        assert!(matches!(
            store.create_tx(&t, "tho-tang-1", "r9", "f").unwrap(),
            Created::New
        ));
        // Open: updates land.
        t.stage = Stage::AwaitingConfirm;
        assert!(store.put_tx(&t).unwrap());
        // Finished (by another node, say)...
        let mut done = t.clone();
        done.status = Status::Failed;
        done.stage = Stage::Done;
        assert_eq!(
            store.finish_tx(&done, None, &[], None, &[]).unwrap(),
            Finished::Written { notice_seq: None }
        );
        // ...a late update, decision to reverse or final write changes
        // nothing, and the final write says so.
        assert!(!store.put_tx(&t).unwrap());
        let mut reversing = t.clone();
        reversing.stage = Stage::Reversing;
        let job = ReversalJob {
            reference: t.id.clone(),
            party: Party::Bank("970422".into()),
            attempts: 0,
            next_attempt_at_ms: 0,
        };
        assert!(!store.begin_reversal(&reversing, &[job]).unwrap());
        let mut completed = t.clone();
        completed.status = Status::Completed;
        completed.stage = Stage::Done;
        assert_eq!(
            store.finish_tx(&completed, None, &[], None, &[]).unwrap(),
            Finished::Already
        );
        let stored = store.get_tx(t.tx_id()).unwrap().unwrap();
        assert_eq!((stored.status, stored.stage), (Status::Failed, Stage::Done));
        assert!(store.unfinished().unwrap().is_empty());
        assert!(store.reversals().unwrap().is_empty());
    }

    /// A transaction taken under a shift is recorded only while the shift
    /// is open, checked in the write that records it; a retry of one
    /// recorded before the shift closed still gets its outcome.
    #[tokio::test]
    async fn a_transaction_under_a_shift_is_recorded_only_while_it_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let teller = "tho-tang-1";
        let create = |n: u128, request: &str| {
            let t = tx(n);
            store
                .create_tx_counted(&NewTx {
                    t: &t,
                    owner: teller,
                    request_id: request,
                    fingerprint: "f",
                    limits: &[],
                    shift: Some(teller),
                })
                .unwrap()
                .0
        };
        assert!(
            matches!(create(1, "r1"), Created::NoOpenShift),
            "no shift yet"
        );
        assert!(
            store.request(teller, "r1").unwrap().is_none(),
            "nothing written"
        );
        let mut shift = ShiftRecord::open("s1".into(), teller, 1_700_000_000_000, 0, 0);
        store.put_shift(&shift).unwrap();
        assert!(matches!(create(2, "r2"), Created::New));
        shift.closed_at_ms = Some(1_700_000_100_000);
        store.put_shift(&shift).unwrap();
        assert!(matches!(create(3, "r3"), Created::NoOpenShift), "closed");
        assert!(store.get_tx(tx(3).tx_id()).unwrap().is_none());
        assert!(
            matches!(create(2, "r2"), Created::Existing(..)),
            "a retry gets the outcome of what was recorded while open"
        );
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
