//! The switch's key-value layer: a checksummed write-ahead journal as the
//! truth, an in-memory overlay for what is not yet in the engine, and the
//! engine (fjall, an LSM) as a lagging copy.
//!
//! Why: a write is a group of puts and removes ([`Kv::commit`]) made atomic
//! and durable by being one journal record, group-committed with one
//! `fdatasync` for every writer waiting meanwhile; the engine receives the
//! records as write batches, without syncing, only after they are on disk,
//! so it never holds a write the journal could lose, and what a crash kept
//! from it is replayed from the journal at open. (The journal was first
//! built because sled 0.34's transactions cost half of a cash-in; it stays
//! because one fsync per group is cheaper than the engine's per batch.)
//!
//! Where the records become durable ([`Log`]): in a switch node, in the
//! node's ledger's own journal records (issue #26: one log per node), so
//! that a flow step's record and its ledger transfers are one write and one
//! fsync; the ledger's writer takes every record encoded so far into the
//! record it is about to write ([`LedgerLink`]), and the ledger keeps its
//! journal until the engine here has persisted what it took. A store opened
//! alone (tests, tools) keeps its own segments in `dir/journal`, which is
//! also what an earlier version left there: replayed into the engine at
//! open, then deleted.
//!
//! Threads (both bounded by the work they are given, both stopped on drop):
//! - with a journal of its own, the journal writer takes every record
//!   encoded so far, writes them with one `write` and one `fdatasync`
//!   (group commit), and publishes the highest durable record number;
//! - the applier copies durable records into the engine, drops them from
//!   the overlay, and, once the engine has persisted them, deletes journal
//!   segments no longer needed.
//!
//! Record layout (little-endian): magic `SWKV`, payload length u32, CRC-32
//! of the rest of the header and the payload u32, reserved u32, record
//! number u64; payload: op count u32, then per op `tree:u8 kind:u8
//! key_len:u32 key [value_len:u32 value]` (kind 1 put, 2 remove).

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use ledger::{Ledger, Outcome, Request};

use super::ledger::Applied;
use super::pg_kv::{PgKv, PgTxn};
use super::pg_records::RecordWrite;
pub use super::tree::{EngineError, Merge, Merged, Tree, Value};

const TREES: [(Tree, &str); 13] = [
    (Tree::Tx, "tx"),
    (Tree::Open, "open"),
    (Tree::Idempotency, "idempotency"),
    (Tree::ByTerminal, "by_terminal"),
    (Tree::Reversals, "reversals"),
    (Tree::Entities, "entities"),
    (Tree::Daily, "daily"),
    (Tree::Claims, "claims"),
    (Tree::Orders, "orders"),
    (Tree::Payments, "payments"),
    (Tree::Windows, "windows"),
    (Tree::Recon, "reconciliation"),
    (Tree::Stats, "stats"),
];

const MAGIC: &[u8; 4] = b"SWKV";
const HEADER_SIZE: usize = 24;
/// No record is larger: a length beyond it is damage, not data.
const PAYLOAD_SIZE_MAX: usize = 16 << 20;
/// A segment is closed (and becomes deletable) past this size.
const SEGMENT_SIZE_MAX_BYTES: u64 = 64 << 20;
/// Records committed but not yet in the engine before [`Kv::durable`] makes its
/// callers wait for the applier (bounds the overlay's memory).
const LAG_RECORDS_MAX: usize = 100_000;
/// How often the applier persists the engine to let go of journal segments.
const ENGINE_PERSIST_INTERVAL_MS: u64 = 1_000;
/// How long durable records wait to be copied into the engine, so that one
/// copy takes a transaction's successive writes of its record (three per
/// cash-in, 86% of the store's bytes) and the engine receives the last.
/// Reads do not wait: the overlay serves what the engine has not received.
const APPLY_INTERVAL_MS: u64 = 50;
/// ...unless this many records wait (bounds the overlay between copies).
const APPLY_RECORDS_MAX: usize = 20_000;
/// Ids reserved per persisted step of [`JournalKv::next_id`]'s counter.
const ID_RESERVE_STEP: u64 = 1 << 20;
/// The engine's keyspace for the store's own bookkeeping (the id counter).
const META_KEYSPACE: &str = "meta";
const ID_RESERVED_KEY: &[u8] = b"ids_reserved";
const SEGMENT_SUFFIX: &str = ".wal";

/// Per tree: key → (record number, value or removal) not yet in the engine.
type Overlay = BTreeMap<Vec<u8>, (u64, Option<Value>)>;
/// A tree held whole in memory besides the engine.
type Resident = BTreeMap<Vec<u8>, Value>;

/// Trees read whole from memory: small (open transactions only), and
/// scanned every second by the expiry tasks. In the engine each
/// transaction leaves a put and a removal behind, so a scan there walks
/// every tombstone since the last compaction: 5% of the switch's CPU under
/// load, in bursts of tens of milliseconds on a request thread. The engine
/// still receives every write (it is what a restart loads them from).
const RESIDENT: [Tree; 1] = [Tree::Open];
/// The engine's side of a scan.
type BaseIter = Box<dyn Iterator<Item = Result<(fjall::Slice, fjall::Slice), EngineError>> + Send>;

#[derive(Debug)]
/// One put or removal in a write: what a journal record holds.
pub struct Change {
    tree: Tree,
    key: Vec<u8>,
    /// `None` removes.
    value: Option<Value>,
}

/// The journal engine: one handle per store; dropping it stops the threads
/// after they wrote and applied everything committed.
pub struct JournalKv {
    shared: Arc<Shared>,
    /// The writer (own journal only) and the applier, joined on drop.
    threads: Vec<JoinHandle<()>>,
    log: Log,
}

/// Where a journal store's records become durable.
enum Log {
    /// Segments of its own in `dir/journal`, written by its own thread.
    Own,
    /// The node's ledger's records, through the [`LedgerLink`] it was
    /// opened with.
    Ledger(Arc<Ledger>),
}

/// The store's side of the node's one log: given to the ledger at open
/// (before the store exists), bound to the store once it has replayed what
/// the ledger's journal holds for it. Until then it takes nothing and holds
/// the whole journal.
#[derive(Default)]
pub struct LedgerLink {
    kv: std::sync::OnceLock<Arc<Shared>>,
    /// The last store record taken into the ledger record being written
    /// (0: none). `take` and `durable` alternate on the writer thread.
    taken_last: AtomicU64,
    /// Ledger records holding store records the engine has not persisted:
    /// (ledger record, last store record in it), oldest first.
    held: Mutex<VecDeque<(u64, u64)>>,
}

impl LedgerLink {
    pub fn new() -> Arc<LedgerLink> {
        Arc::new(LedgerLink::default())
    }
}

impl ledger::Attachments for LedgerLink {
    fn take(&self, out: &mut Vec<u8>) {
        let Some(shared) = self.kv.get() else {
            return;
        };
        let mut st = shared.lock();
        if st.unwritten.is_empty() {
            return;
        }
        debug_assert!(out.is_empty());
        std::mem::swap(out, &mut st.unwritten);
        self.taken_last.store(st.unwritten_last, Ordering::Release);
    }

    fn durable(&self, seq: u64) {
        let (Some(shared), last) = (self.kv.get(), self.taken_last.swap(0, Ordering::AcqRel))
        else {
            return;
        };
        if last == 0 {
            return;
        }
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((seq, last));
        {
            // Under the lock, so that the applier cannot miss it between
            // its check and its wait.
            let _st = shared.lock();
            shared.durable.send_modify(|d| *d = (*d).max(last));
        }
        shared.apply_wanted.notify_one();
    }

    fn needed_from(&self) -> u64 {
        let Some(shared) = self.kv.get() else {
            // Not yet replayed: everything is needed.
            return 0;
        };
        let persisted = shared.engine_persisted.load(Ordering::Acquire);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while held.front().is_some_and(|(_, last)| *last <= persisted) {
            held.pop_front();
        }
        held.front().map_or(u64::MAX, |(seq, _)| *seq)
    }
}

struct Shared {
    db: fjall::Database,
    /// The engine's keyspaces in `Tree` order.
    trees: Vec<fjall::Keyspace>,
    /// Bookkeeping: the id counter's reserved ceiling.
    meta: fjall::Keyspace,
    /// The next id to hand out and the ceiling persisted for it: ids up to
    /// the ceiling may have been handed out before a crash, none past it.
    ids: Mutex<(u64, u64)>,
    dir: PathBuf,
    state: Mutex<State>,
    /// Wakes the journal writer (records to write, or shutdown).
    write_wanted: Condvar,
    /// Wakes the applier (records durable, or shutdown).
    apply_wanted: Condvar,
    /// The highest record number on disk.
    durable: watch::Sender<u64>,
    /// The highest record number copied into the engine.
    applied: watch::Sender<u64>,
    /// Set when a write or fsync failed: nothing is acknowledged after it
    /// (an operator must look; the journal may hold less than memory).
    failed: AtomicBool,
    /// Records whose engine copy is persisted (journal bytes before it are
    /// deletable).
    engine_persisted: AtomicU64,
    /// See [`SEGMENT_SIZE_MAX_BYTES`].
    segment_size_max_bytes: u64,
}

struct State {
    /// The last record number handed out.
    seq: u64,
    /// Per tree: key → (record number, value or removal) not yet in the
    /// engine. Never used for a [`RESIDENT`] tree.
    overlay: Vec<Overlay>,
    /// Per tree, `Some` for a [`RESIDENT`] one: its every entry, committed
    /// writes included (durable or not, as the overlay's).
    resident: Vec<Option<Resident>>,
    /// Records not yet in the engine, oldest first.
    log: VecDeque<(u64, Vec<Change>)>,
    /// Encoded records not yet written, and the last number among them.
    unwritten: Vec<u8>,
    unwritten_last: u64,
    /// Closed segments: path and the last record number in each.
    closed: Vec<(PathBuf, u64)>,
    stopping: bool,
}

fn io_error(e: io::Error) -> EngineError {
    EngineError::Io(e)
}

/// Every write after the journal failed (a full disk, say): an I/O error
/// that sends an operator to the first one.
fn failed_error() -> EngineError {
    EngineError::Io(io::Error::other(
        "the switch's journal failed earlier (see the first error); restart the switch",
    ))
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SEGMENT_SUFFIX}"))
}

fn encode(buf: &mut Vec<u8>, seq: u64, ops: &[Change]) {
    let start = buf.len();
    buf.resize(start + HEADER_SIZE, 0);
    buf.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        buf.push(op.tree as u8);
        buf.push(if op.value.is_some() { 1 } else { 2 });
        buf.extend_from_slice(&(op.key.len() as u32).to_le_bytes());
        buf.extend_from_slice(&op.key);
        if let Some(v) = &op.value {
            buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
            buf.extend_from_slice(v);
        }
    }
    let payload_len = buf.len() - start - HEADER_SIZE;
    assert!(
        payload_len <= PAYLOAD_SIZE_MAX,
        "journal record over its limit"
    );
    let header = &mut buf[start..start + HEADER_SIZE];
    header[0..4].copy_from_slice(MAGIC);
    header[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    header[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc(&buf[start..]);
    buf[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// The checksum covers the length, the number and the payload.
fn crc(record: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&record[4..8]);
    h.update(&record[12..]);
    h.finalize()
}

/// Decode the records of one segment; stops at the first that does not
/// check out (a torn tail) and says where.
fn decode_segment(bytes: &[u8]) -> (Vec<(u64, Vec<Change>)>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((seq, ops, len)) = decode_record(&bytes[at..]) {
        out.push((seq, ops));
        at += len;
    }
    (out, at)
}

fn decode_record(b: &[u8]) -> Option<(u64, Vec<Change>, usize)> {
    let header = b.get(..HEADER_SIZE)?;
    if &header[0..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    if len > PAYLOAD_SIZE_MAX {
        return None;
    }
    let record = b.get(..HEADER_SIZE + len)?;
    if u32::from_le_bytes(header[8..12].try_into().ok()?) != crc(record) {
        return None;
    }
    let seq = u64::from_le_bytes(header[16..24].try_into().ok()?);
    let mut p = &record[HEADER_SIZE..];
    let mut take = |n: usize| -> Option<&[u8]> {
        let (a, rest) = (p.get(..n)?, p.get(n..)?);
        p = rest;
        Some(a)
    };
    let u32_at = |s: &[u8]| u32::from_le_bytes(s.try_into().expect("four bytes")) as usize;
    let count = u32_at(take(4)?);
    let mut ops = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let head = take(6)?;
        let tree = TREES.get(head[0] as usize)?.0;
        let key = take(u32_at(&head[2..6]))?.to_vec();
        let value = match head[1] {
            1 => {
                let n = u32_at(take(4)?);
                Some(Value::from(take(n)?))
            }
            2 => None,
            _ => return None,
        };
        ops.push(Change { tree, key, value });
    }
    // A checksummed record that does not parse exactly is damage.
    if !p.is_empty() {
        return None;
    }
    Some((seq, ops, HEADER_SIZE + len))
}

/// The store's engine: the journal with fjall as its lagging copy (one
/// node), or PostgreSQL (every node). Both give the same operations the
/// same meaning; [`Kv::commit`] runs its closure again after a conflict with
/// another node's write (PostgreSQL only), so the closure must be safe to
/// repeat: it reads through the [`Txn`] and writes nothing else.
pub enum Kv {
    Journal(JournalKv),
    Postgres(PgKv),
}

/// A scan's entries, in order, on either engine.
pub type Scan = Box<dyn Iterator<Item = Result<(Vec<u8>, Value), EngineError>> + Send>;

/// An atomic write in progress (see [`Kv::commit`]).
pub enum Txn<'t, 'a> {
    Journal(&'t mut JournalTxn<'a>),
    Postgres(&'t mut PgTxn<'a>),
}

impl Txn<'_, '_> {
    /// The value as this write would leave it so far (on PostgreSQL the row
    /// stays locked until the write ends).
    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Value>, EngineError> {
        match self {
            Txn::Journal(t) => t.get(tree, key),
            Txn::Postgres(t) => t.get(tree, key),
        }
    }

    /// The value as committed (or as this write changed it), without the
    /// write depending on it on PostgreSQL: a later change to it does not
    /// refuse the write. Only for a value a merge's guard checks again at
    /// commit ([`Merged::Refuse`]). The journal's one writer reads it as
    /// [`Txn::get`].
    pub fn peek(&self, tree: Tree, key: &[u8]) -> Result<Option<Value>, EngineError> {
        match self {
            Txn::Journal(t) => t.get(tree, key),
            Txn::Postgres(t) => t.peek(tree, key),
        }
    }

    pub fn put(&mut self, tree: Tree, key: &[u8], value: Vec<u8>) {
        match self {
            Txn::Journal(t) => t.put(tree, key, value),
            Txn::Postgres(t) => t.put(tree, key, value),
        }
    }

    pub fn remove(&mut self, tree: Tree, key: &[u8]) {
        match self {
            Txn::Journal(t) => t.remove(tree, key),
            Txn::Postgres(t) => t.remove(tree, key),
        }
    }

    /// Read `keys` ahead, in one round trip where the engine has them
    /// far (PostgreSQL): a write that will read several keys says so first.
    /// Reading them after is as if each were read then.
    pub fn prefetch(&self, keys: &[(Tree, &[u8])]) -> Result<(), EngineError> {
        match self {
            Txn::Journal(_) => Ok(()),
            Txn::Postgres(t) => t.prefetch(keys),
        }
    }

    /// Change `key` by `merge` at commit time (see [`Merge`]). The journal
    /// engine has one writer: it applies the merge at once.
    pub fn merge(&mut self, tree: Tree, key: &[u8], merge: Merge) -> Result<(), EngineError> {
        match self {
            Txn::Journal(t) => {
                match merge.apply(t.get(tree, key)?.as_deref())? {
                    Merged::Set(value) => t.put(tree, key, value),
                    Merged::Keep => {}
                    // One writer, reading what it holds: a write checks
                    // what a guard would before it merges.
                    Merged::Refuse => {
                        return Err(EngineError::Io(std::io::Error::other(format!(
                            "a merge's guard refused a write on the journal ({} key)",
                            tree.name()
                        ))));
                    }
                }
                Ok(())
            }
            Txn::Postgres(t) => {
                t.merge(tree, key, merge);
                Ok(())
            }
        }
    }
}

impl Kv {
    /// The journal engine writing into `ledger`'s records (the node's one
    /// log), `db` as the copy: replays into `db` what a journal of its own
    /// in `dir/journal` (an earlier version's) and then the ledger's
    /// journal hold, then binds `link`, which `ledger` was opened with.
    pub fn open_logged(
        db: fjall::Database,
        dir: &Path,
        ledger: Arc<Ledger>,
        link: &LedgerLink,
    ) -> Result<Kv, EngineError> {
        Ok(Kv::Journal(JournalKv::open_logged(db, dir, ledger, link)?))
    }

    /// The journal engine: `db` as the copy with the journal in
    /// `dir/journal`, replaying whatever the journal holds into `db` first.
    pub fn open(db: fjall::Database, dir: &Path) -> Result<Kv, EngineError> {
        Ok(Kv::Journal(JournalKv::open_with(
            db,
            dir,
            SEGMENT_SIZE_MAX_BYTES,
        )?))
    }

    /// [`Kv::open`] with another segment size (tests make it small).
    pub fn open_with(
        db: fjall::Database,
        dir: &Path,
        segment_size_max_bytes: u64,
    ) -> Result<Kv, EngineError> {
        Ok(Kv::Journal(JournalKv::open_with(
            db,
            dir,
            segment_size_max_bytes,
        )?))
    }

    /// Run `f` as one atomic write: what it reads is what it overwrites (no
    /// other write to those keys commits meanwhile), and its puts and
    /// removes land together or not at all. Nothing is written if `f`
    /// fails. On the journal, not yet durable: await [`Kv::durable`] before
    /// telling anyone; on PostgreSQL, committed when this returns.
    pub fn commit<R, E: From<EngineError>>(
        &self,
        mut f: impl FnMut(&mut Txn<'_, '_>) -> Result<R, E>,
    ) -> Result<R, E> {
        match self {
            Kv::Journal(k) => k.commit(f),
            Kv::Postgres(k) => k.commit(|t| f(&mut Txn::Postgres(t))),
        }
    }

    /// Run `f` as [`Kv::commit`] would, but hand back what it would write,
    /// uncommitted, to commit in the ledger's batch (see
    /// [`super::pg_records`]) or by [`Kv::commit_prepared`]. PostgreSQL
    /// only: `None` on the journal, whose records ride in the ledger's own
    /// records instead ([`Kv::write_with`]).
    pub fn prepare<R, E: From<EngineError>>(
        &self,
        mut f: impl FnMut(&mut Txn<'_, '_>) -> Result<R, E>,
    ) -> Option<Result<(R, RecordWrite), E>> {
        match self {
            Kv::Journal(_) => None,
            Kv::Postgres(k) => Some(k.prepare(|t| f(&mut Txn::Postgres(t)))),
        }
    }

    /// Commit a write [`Kv::prepare`] made: false, and nothing written,
    /// when a key it read changed meanwhile.
    pub fn commit_prepared(&self, records: RecordWrite) -> Result<bool, EngineError> {
        match self {
            Kv::Journal(_) => unreachable!("only PostgreSQL prepares writes"),
            Kv::Postgres(k) => k.commit_prepared(records),
        }
    }

    /// One put, as its own write.
    pub fn put(&self, tree: Tree, key: &[u8], value: Vec<u8>) -> Result<(), EngineError> {
        self.commit(|t| {
            t.put(tree, key, value.clone());
            Ok::<_, EngineError>(())
        })
    }

    /// One removal, as its own write.
    pub fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), EngineError> {
        self.commit(|t| {
            t.remove(tree, key);
            Ok::<_, EngineError>(())
        })
    }

    /// Wait until every write committed so far is durable.
    pub async fn durable(&self) -> Result<(), EngineError> {
        match self {
            Kv::Journal(k) => k.durable().await,
            // A PostgreSQL write is durable when its commit returns.
            Kv::Postgres(_) => Ok(()),
        }
    }

    /// The node's ledger when this store's records ride in its records.
    pub fn logged_in(&self) -> Option<&Arc<Ledger>> {
        match self {
            Kv::Journal(JournalKv {
                log: Log::Ledger(l),
                ..
            }) => Some(l),
            _ => None,
        }
    }

    /// Submit `request` to the ledger this store writes into (see
    /// [`Kv::logged_in`]; `None` when it does not), in one durable write
    /// with every store write committed before, and with whatever
    /// `applied` commits once the request is applied. Answers its outcome
    /// once that write is durable.
    pub async fn write_with(
        &self,
        request: Request,
        applied: Option<Applied>,
    ) -> Option<Result<Outcome, EngineError>> {
        match self {
            Kv::Journal(
                k @ JournalKv {
                    log: Log::Ledger(_),
                    ..
                },
            ) => Some(k.write_with(request, applied).await),
            _ => None,
        }
    }

    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Value>, EngineError> {
        match self {
            Kv::Journal(k) => k.get(tree, key),
            Kv::Postgres(k) => k.get(tree, key),
        }
    }

    /// Keys and values in `range`, ascending (or descending with `rev`).
    pub fn scan(&self, tree: Tree, range: (Bound<Vec<u8>>, Bound<Vec<u8>>), rev: bool) -> Scan {
        match self {
            Kv::Journal(k) => Box::new(k.scan(tree, range, rev)),
            Kv::Postgres(k) => Box::new(k.scan(tree, range, rev)),
        }
    }

    /// Keys and values starting with `prefix`, ascending.
    pub fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Scan {
        let hi = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        self.scan(tree, (Bound::Included(prefix.to_vec()), hi), false)
    }

    /// A number never handed out before.
    pub fn next_id(&self) -> Result<u64, EngineError> {
        match self {
            Kv::Journal(k) => k.shared.next_id(),
            Kv::Postgres(k) => k.next_id(),
        }
    }
}

impl JournalKv {
    /// [`Kv::open`] with another segment size (tests make it small).
    pub fn open_with(
        db: fjall::Database,
        dir: &Path,
        segment_size_max_bytes: u64,
    ) -> Result<JournalKv, EngineError> {
        let jdir = dir.join("journal");
        fs::create_dir_all(&jdir).map_err(io_error)?;
        let (shared, last) = JournalKv::recover(db, &jdir, segment_size_max_bytes, None)?;
        let first = last + 1;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(&jdir, first))
            .map_err(io_error)?;
        File::open(&jdir)
            .and_then(|d| d.sync_all())
            .map_err(io_error)?;
        let writer = {
            let s = shared.clone();
            std::thread::Builder::new()
                .name("store-journal".into())
                .spawn(move || s.write_loop(file, first))
                .map_err(io_error)?
        };
        let applier = Shared::spawn_applier(&shared)?;
        Ok(JournalKv {
            shared,
            threads: vec![writer, applier],
            log: Log::Own,
        })
    }

    /// See [`Kv::open_logged`].
    fn open_logged(
        db: fjall::Database,
        dir: &Path,
        ledger: Arc<Ledger>,
        link: &LedgerLink,
    ) -> Result<JournalKv, EngineError> {
        let jdir = dir.join("journal");
        let (shared, _) = JournalKv::recover(db, &jdir, SEGMENT_SIZE_MAX_BYTES, Some(&ledger))?;
        // An earlier version's journal is in the engine now: its directory
        // goes, so that the node keeps one journal (the ledger's).
        if jdir.exists() {
            fs::remove_dir(&jdir).map_err(io_error)?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error)?;
        }
        if link.kv.set(shared.clone()).is_err() {
            return Err(io_error(io::Error::other(
                "the ledger link is bound to another store already",
            )));
        }
        let applier = Shared::spawn_applier(&shared)?;
        Ok(JournalKv {
            shared,
            threads: vec![applier],
            log: Log::Ledger(ledger),
        })
    }

    /// Replay what the journals hold into the engine (a journal of its own
    /// in `jdir` if there is one, then `ledger`'s attachments), persist it,
    /// and answer the store's shared state and the last record number.
    fn recover(
        db: fjall::Database,
        jdir: &Path,
        segment_size_max_bytes: u64,
        ledger: Option<&Ledger>,
    ) -> Result<(Arc<Shared>, u64), EngineError> {
        let trees = TREES
            .iter()
            .map(|(_, name)| db.keyspace(name, fjall::KeyspaceCreateOptions::default))
            .collect::<Result<Vec<_>, _>>()?;
        let meta = db.keyspace(META_KEYSPACE, fjall::KeyspaceCreateOptions::default)?;
        let first_id = first_free_id(&db, &meta)?;
        let mut last = if jdir.exists() {
            replay(&db, &trees, jdir)?
        } else {
            0
        };
        if let Some(ledger) = ledger {
            last = last.max(replay_attached(&db, &trees, ledger)?);
        }
        let mut resident: Vec<Option<Resident>> = vec![None; TREES.len()];
        for tree in RESIDENT {
            let mut entries = Resident::new();
            for kv in trees[tree as usize].iter() {
                let (k, v) = kv.into_inner()?;
                entries.insert(k.to_vec(), Value::from(v.as_ref()));
            }
            resident[tree as usize] = Some(entries);
        }
        let shared = Arc::new(Shared {
            db,
            trees,
            meta,
            ids: Mutex::new((first_id, first_id)),
            dir: jdir.to_path_buf(),
            state: Mutex::new(State {
                seq: last,
                overlay: vec![BTreeMap::new(); TREES.len()],
                resident,
                log: VecDeque::new(),
                unwritten: Vec::new(),
                unwritten_last: last,
                closed: Vec::new(),
                stopping: false,
            }),
            write_wanted: Condvar::new(),
            apply_wanted: Condvar::new(),
            durable: watch::Sender::new(last),
            applied: watch::Sender::new(last),
            failed: AtomicBool::new(false),
            engine_persisted: AtomicU64::new(last),
            segment_size_max_bytes,
        });
        Ok((shared, last))
    }

    /// See [`Kv::write_with`].
    async fn write_with(
        &self,
        request: Request,
        applied: Option<Applied>,
    ) -> Result<Outcome, EngineError> {
        let Log::Ledger(ledger) = &self.log else {
            unreachable!("only a store logged in the ledger writes with it");
        };
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(failed_error());
        }
        let target = self.shared.lock().seq;
        let outcome = super::ledger::submit_embedded(ledger, request, applied)
            .await
            .map_err(|e| {
                self.shared.fail("ledger write", &e);
                failed_error()
            })?;
        // The record that answered took every store record committed before
        // the request was queued, and is durable: so are they.
        let durable = *self.shared.durable.borrow();
        assert!(
            durable >= target,
            "store record {target} committed before a ledger write is not durable with it ({durable})"
        );
        self.wait_for_applier(target).await?;
        Ok(outcome)
    }

    /// See [`Kv::commit`]: no other commit runs meanwhile, and the puts and
    /// removes become one journal record.
    pub fn commit<R, E: From<EngineError>>(
        &self,
        mut f: impl FnMut(&mut Txn<'_, '_>) -> Result<R, E>,
    ) -> Result<R, E> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(failed_error().into());
        }
        let mut st = self.shared.lock();
        let mut txn = JournalTxn {
            shared: &self.shared,
            state: &st,
            ops: Vec::new(),
        };
        let r = f(&mut Txn::Journal(&mut txn))?;
        let ops = txn.ops;
        if ops.is_empty() {
            return Ok(r);
        }
        st.seq += 1;
        let seq = st.seq;
        encode(&mut st.unwritten, seq, &ops);
        st.unwritten_last = seq;
        for op in &ops {
            let tree = op.tree as usize;
            match (&mut st.resident[tree], &op.value) {
                (Some(entries), Some(v)) => {
                    entries.insert(op.key.clone(), v.clone());
                }
                (Some(entries), None) => {
                    entries.remove(&op.key);
                }
                (None, _) => {
                    st.overlay[tree].insert(op.key.clone(), (seq, op.value.clone()));
                }
            }
        }
        st.log.push_back((seq, ops));
        drop(st);
        self.shared.write_wanted.notify_one();
        Ok(r)
    }

    /// Wait until every record committed so far is on disk (group commit:
    /// one fsync covers every caller waiting meanwhile).
    pub async fn durable(&self) -> Result<(), EngineError> {
        if let Log::Ledger(_) = &self.log {
            // (The lock is let go before the watch is read: the ledger's
            // writer takes them the other way round.)
            let target = self.shared.lock().seq;
            if *self.shared.durable.borrow() >= target {
                return Ok(());
            }
            // A ledger record with no transfers of its own carries them.
            return self
                .write_with(Request::Transfers(Vec::new()), None)
                .await
                .map(|_| ());
        }
        let target = self.shared.lock().seq;
        let mut rx = self.shared.durable.subscribe();
        loop {
            if self.shared.failed.load(Ordering::Acquire) {
                return Err(failed_error());
            }
            if *rx.borrow_and_update() >= target {
                break;
            }
            if rx.changed().await.is_err() {
                return Err(failed_error());
            }
        }
        self.wait_for_applier(target).await
    }

    /// Under overload, wait for the engine to catch up a little, so that
    /// the overlay's memory stays bounded.
    async fn wait_for_applier(&self, target: u64) -> Result<(), EngineError> {
        let lag = self.shared.lock().log.len();
        if lag > LAG_RECORDS_MAX {
            // The engine fell behind: wait for it to catch up a little, so that
            // memory stays bounded under overload.
            let goal = target.saturating_sub(LAG_RECORDS_MAX as u64 / 2);
            let mut rx = self.shared.applied.subscribe();
            while *rx.borrow_and_update() < goal {
                if self.shared.failed.load(Ordering::Acquire) || rx.changed().await.is_err() {
                    return Err(failed_error());
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Value>, EngineError> {
        {
            let st = self.shared.lock();
            if let Some(entries) = &st.resident[tree as usize] {
                return Ok(entries.get(key).cloned());
            }
            if let Some((_, v)) = st.overlay[tree as usize].get(key) {
                return Ok(v.clone());
            }
        }
        self.shared.engine_get(tree, key)
    }

    /// Keys and values in `range`, ascending (or descending with `rev`):
    /// the engine's and the overlay's merged, the overlay winning.
    pub fn scan(
        &self,
        tree: Tree,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        rev: bool,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Value), EngineError>> + use<> {
        let st = self.shared.lock();
        if let Some(entries) = &st.resident[tree as usize] {
            // Copied out, as the overlay's part is: the lock is not held
            // while the caller iterates.
            let mut found: Vec<(Vec<u8>, Value)> = entries
                .range::<Vec<u8>, _>(range)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if rev {
                found.reverse();
            }
            let base: BaseIter = Box::new(std::iter::empty());
            return Overlaid {
                over: found.into_iter().rev().map(|(k, v)| (k, Some(v))).collect(),
                base: base.peekable(),
                rev,
            };
        }
        let mut over: Vec<(Vec<u8>, Option<Value>)> = st.overlay[tree as usize]
            .range::<Vec<u8>, _>(range.clone())
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect();
        drop(st);
        if !rev {
            over.reverse();
        }
        let base = self.shared.trees[tree as usize].range(range);
        let base: BaseIter = if rev {
            Box::new(
                base.rev()
                    .map(|g| g.into_inner().map_err(EngineError::from)),
            )
        } else {
            Box::new(base.map(|g| g.into_inner().map_err(EngineError::from)))
        };
        Overlaid {
            over,
            base: base.peekable(),
            rev,
        }
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Drop for JournalKv {
    fn drop(&mut self) {
        if let Log::Ledger(ledger) = &self.log {
            // What is committed but not yet durable goes into one more
            // ledger record (the ledger's writer is a thread of its own).
            let target = self.shared.lock().seq;
            let durable = *self.shared.durable.borrow();
            if durable < target && !self.shared.failed.load(Ordering::Acquire) {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                if ledger
                    .submit(Request::Transfers(Vec::new()), move |r| {
                        let _ = tx.send(r.is_ok());
                    })
                    .is_ok()
                {
                    let _ = rx.recv_timeout(Duration::from_secs(10));
                }
            }
        }
        self.shared.lock().stopping = true;
        self.shared.write_wanted.notify_all();
        self.shared.apply_wanted.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // A clean stop: the engine holds and has persisted every record, so
        // the journal is not needed at the next open.
        let s = &self.shared;
        let seq = s.lock().seq;
        if matches!(self.log, Log::Own)
            && !s.failed.load(Ordering::Acquire)
            && s.engine_persisted.load(Ordering::Acquire) == seq
            && let Ok(segments) = segments(&s.dir)
        {
            let _ = remove_segments(&s.dir, &segments);
        }
    }
}

/// A journal write in progress (see [`Kv::commit`]).
pub struct JournalTxn<'a> {
    shared: &'a Shared,
    state: &'a State,
    ops: Vec<Change>,
}

impl JournalTxn<'_> {
    /// The value as this write would leave it so far.
    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Value>, EngineError> {
        if let Some(op) = self
            .ops
            .iter()
            .rev()
            .find(|o| o.tree == tree && o.key == key)
        {
            return Ok(op.value.clone());
        }
        if let Some(entries) = &self.state.resident[tree as usize] {
            return Ok(entries.get(key).cloned());
        }
        if let Some((_, v)) = self.state.overlay[tree as usize].get(key) {
            return Ok(v.clone());
        }
        self.shared.engine_get(tree, key)
    }

    pub fn put(&mut self, tree: Tree, key: &[u8], value: Vec<u8>) {
        self.ops.push(Change {
            tree,
            key: key.to_vec(),
            value: Some(Value::from(value)),
        });
    }

    pub fn remove(&mut self, tree: Tree, key: &[u8]) {
        self.ops.push(Change {
            tree,
            key: key.to_vec(),
            value: None,
        });
    }
}

struct Overlaid {
    /// The overlay's entries in range, in reverse of the order wanted (so
    /// that `pop` yields the next).
    over: Vec<(Vec<u8>, Option<Value>)>,
    base: std::iter::Peekable<BaseIter>,
    rev: bool,
}

impl Iterator for Overlaid {
    type Item = Result<(Vec<u8>, Value), EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_over = match (self.over.last(), self.base.peek()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(_), Some(Err(_))) => false,
                (Some((ok, _)), Some(Ok((bk, _)))) => {
                    let ord = ok.as_slice().cmp(bk.as_ref());
                    if ord == std::cmp::Ordering::Equal {
                        // The overlay is newer: the engine's copy is skipped.
                        self.base.next();
                        true
                    } else {
                        (ord == std::cmp::Ordering::Less) != self.rev
                    }
                }
            };
            if take_over {
                let (k, v) = self.over.pop().expect("peeked");
                match v {
                    Some(v) => return Some(Ok((k, v))),
                    None => continue,
                }
            }
            return match self.base.next().expect("peeked") {
                Ok((k, v)) => Some(Ok((k.to_vec(), Value::from(v.as_ref())))),
                Err(e) => Some(Err(e)),
            };
        }
    }
}

/// Where [`JournalKv::next_id`] starts: past every id reserved before, and
/// past every id an earlier version's sled handed out (left by the import).
fn first_free_id(db: &fjall::Database, meta: &fjall::Keyspace) -> Result<u64, EngineError> {
    let read = |v: Option<fjall::Slice>, what: &str| -> Result<u64, EngineError> {
        match v {
            None => Ok(0),
            Some(v) => <[u8; 8]>::try_from(&v[..])
                .map(u64::from_le_bytes)
                .map_err(|_| {
                    EngineError::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{what} has {} bytes, not 8", v.len()),
                    ))
                }),
        }
    };
    let reserved = read(meta.get(ID_RESERVED_KEY)?, "the id counter")?;
    let imported = if db.keyspace_exists(::ledger::sled_import::IMPORT_KEYSPACE) {
        let ks = db.keyspace(
            ::ledger::sled_import::IMPORT_KEYSPACE,
            fjall::KeyspaceCreateOptions::default,
        )?;
        read(
            ks.get(::ledger::sled_import::NEXT_ID_KEY)?,
            "sled's next id",
        )?
    } else {
        0
    };
    Ok(reserved.max(imported))
}

impl Shared {
    /// A number never handed out before, even across crashes: the ceiling
    /// is persisted (synced) before any id under it is handed out, one step
    /// of [`ID_RESERVE_STEP`] at a time.
    fn next_id(&self) -> Result<u64, EngineError> {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let (next, reserved) = *ids;
        if next >= reserved {
            let ceiling = next + ID_RESERVE_STEP;
            self.meta.insert(ID_RESERVED_KEY, ceiling.to_le_bytes())?;
            self.db.persist(fjall::PersistMode::SyncAll)?;
            ids.1 = ceiling;
        }
        ids.0 = next + 1;
        debug_assert!(ids.0 <= ids.1);
        Ok(next)
    }

    /// The engine's copy of a key (what the overlay does not hold).
    fn engine_get(&self, tree: Tree, key: &[u8]) -> Result<Option<Value>, EngineError> {
        Ok(self.trees[tree as usize]
            .get(key)?
            .map(|v| Value::from(v.as_ref())))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every
        // change under it is a few pushes); go on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, what: &str, e: &dyn std::fmt::Display) {
        tracing::error!(error = %e, "switch store {what} failed; nothing more is acknowledged");
        self.failed.store(true, Ordering::Release);
        self.durable.send_modify(|_| {});
        self.applied.send_modify(|_| {});
    }

    fn write_loop(&self, mut file: File, mut first: u64) {
        let mut written: u64 = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut buf = Vec::new();
        loop {
            let last = {
                let mut st = self.lock();
                while st.unwritten.is_empty() && !st.stopping {
                    st = self
                        .write_wanted
                        .wait(st)
                        .unwrap_or_else(|p| p.into_inner());
                }
                if st.unwritten.is_empty() {
                    return;
                }
                std::mem::swap(&mut buf, &mut st.unwritten);
                st.unwritten_last
            };
            let started = Instant::now();
            // A slow disk, in fault drills (`sleep(ms)`).
            #[cfg(feature = "failpoints")]
            fail::fail_point!("switch-journal-fsync");
            if let Err(e) = file.write_all(&buf).and_then(|_| file.sync_data()) {
                self.fail("journal write", &e);
                return;
            }
            metrics::histogram!("switch_store_fsync_seconds").record(started.elapsed());
            written += buf.len() as u64;
            buf.clear();
            {
                // Under the lock, so that the applier cannot miss it
                // between its check and its wait.
                let _st = self.lock();
                self.durable.send_modify(|d| *d = (*d).max(last));
            }
            self.apply_wanted.notify_one();
            if written >= self.segment_size_max_bytes {
                let path = segment_path(&self.dir, last + 1);
                match OpenOptions::new().create(true).append(true).open(&path) {
                    Ok(f) => {
                        let closed = std::mem::replace(&mut file, f);
                        drop(closed);
                        if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
                            self.fail("journal directory sync", &e);
                            return;
                        }
                        self.lock()
                            .closed
                            .push((segment_path(&self.dir, first), last));
                        first = last + 1;
                        written = 0;
                    }
                    Err(e) => {
                        self.fail("journal segment", &e);
                        return;
                    }
                }
            }
        }
    }

    fn spawn_applier(shared: &Arc<Shared>) -> Result<JoinHandle<()>, EngineError> {
        let s = shared.clone();
        std::thread::Builder::new()
            .name("store-applier".into())
            .spawn(move || s.apply_loop())
            .map_err(io_error)
    }

    fn apply_loop(&self) {
        let interval = Duration::from_millis(ENGINE_PERSIST_INTERVAL_MS);
        let apply_interval = Duration::from_millis(APPLY_INTERVAL_MS);
        let mut last_flush = Instant::now();
        let mut last_apply = Instant::now();
        loop {
            let (records, stopping) = {
                let mut st = self.lock();
                loop {
                    let durable = *self.durable.borrow();
                    let waiting = st.log.front().is_some_and(|(s, _)| *s <= durable);
                    let ready = waiting
                        && (last_apply.elapsed() >= apply_interval
                            || st.log.len() >= APPLY_RECORDS_MAX
                            || st.stopping);
                    let finished = st.stopping && st.log.is_empty();
                    if ready
                        || finished
                        || last_flush.elapsed() >= interval
                        || self.failed.load(Ordering::Acquire)
                    {
                        break;
                    }
                    // Idle, only the persist is due (the journal writer
                    // wakes this thread when records become durable).
                    let mut wait = interval.saturating_sub(last_flush.elapsed());
                    if waiting {
                        wait = wait.min(apply_interval.saturating_sub(last_apply.elapsed()));
                    }
                    let wait = wait.max(Duration::from_millis(1));
                    st = self
                        .apply_wanted
                        .wait_timeout(st, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                if self.failed.load(Ordering::Acquire) {
                    return;
                }
                let durable = *self.durable.borrow();
                let n = st.log.iter().take_while(|(s, _)| *s <= durable).count();
                let records: Vec<(u64, Vec<Change>)> = st.log.drain(..n).collect();
                (records, st.stopping && st.log.is_empty())
            };
            if !records.is_empty() {
                last_apply = Instant::now();
            }
            if let Err(e) = self.apply(&records) {
                self.fail("engine apply", &e);
                return;
            }
            if last_flush.elapsed() >= interval || stopping {
                last_flush = Instant::now();
                if let Err(e) = self.flush_and_trim() {
                    self.fail("engine persist", &e);
                    return;
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// Copy durable records into the engine (one batch, not synced: the
    /// journal has them), then let the overlay forget them. A key written
    /// more than once among them is copied once, as the last wrote it.
    fn apply(&self, records: &[(u64, Vec<Change>)]) -> Result<(), EngineError> {
        let Some((last, _)) = records.last() else {
            return Ok(());
        };
        let mut batch = self.db.batch();
        let mut copied: std::collections::HashSet<(Tree, &[u8])> = Default::default();
        for op in records.iter().rev().flat_map(|(_, ops)| ops.iter().rev()) {
            if !copied.insert((op.tree, op.key.as_slice())) {
                continue;
            }
            let tree = &self.trees[op.tree as usize];
            match &op.value {
                Some(v) => batch.insert(tree, op.key.as_slice(), v.as_ref()),
                None => batch.remove(tree, op.key.as_slice()),
            }
        }
        batch.commit()?;
        let mut st = self.lock();
        for (_, ops) in records {
            for op in ops {
                let over = &mut st.overlay[op.tree as usize];
                // A later write of the key stays until it is applied too.
                if over.get(&op.key).is_some_and(|(s, _)| s <= last) {
                    over.remove(&op.key);
                }
            }
        }
        metrics::gauge!("switch_store_apply_lag_records").set(st.log.len() as f64);
        drop(st);
        self.applied.send_modify(|a| *a = (*a).max(*last));
        Ok(())
    }

    /// Persist the engine and delete closed journal segments it now covers.
    fn flush_and_trim(&self) -> Result<(), EngineError> {
        let applied = *self.applied.borrow();
        if self.engine_persisted.load(Ordering::Acquire) == applied {
            return Ok(());
        }
        self.db.persist(fjall::PersistMode::SyncAll)?;
        self.engine_persisted.store(applied, Ordering::Release);
        let done: Vec<PathBuf> = {
            let mut st = self.lock();
            let (done, keep): (Vec<_>, Vec<_>) =
                st.closed.drain(..).partition(|(_, last)| *last <= applied);
            st.closed = keep;
            done.into_iter().map(|(p, _)| p).collect()
        };
        remove_segments(&self.dir, &done)
    }
}

/// The journal's segments, oldest first.
fn segments(jdir: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let mut segments: Vec<PathBuf> = fs::read_dir(jdir)
        .map_err(io_error)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    Ok(segments)
}

/// Delete segments whose records the engine holds and has persisted, oldest first,
/// each deletion durable before the next: an older segment must never
/// outlive a newer one, or a replay would take keys back to older values.
fn remove_segments(jdir: &Path, oldest_first: &[PathBuf]) -> Result<(), EngineError> {
    debug_assert!(oldest_first.windows(2).all(|w| w[0] < w[1]));
    for p in oldest_first {
        fs::remove_file(p).map_err(io_error)?;
        File::open(jdir)
            .and_then(|d| d.sync_all())
            .map_err(io_error)?;
    }
    Ok(())
}

fn damaged(path: &Path, what: &str) -> EngineError {
    io_error(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("switch store journal {}: {what}", path.display()),
    ))
}

/// Copy one record's changes into the engine, as one batch.
fn apply_record(
    db: &fjall::Database,
    trees: &[fjall::Keyspace],
    ops: Vec<Change>,
) -> Result<(), EngineError> {
    let mut batch = db.batch();
    for op in ops {
        let tree = &trees[op.tree as usize];
        match op.value {
            Some(v) => batch.insert(tree, op.key, v.as_ref()),
            None => batch.remove(tree, op.key),
        }
    }
    Ok(batch.commit()?)
}

/// Copy every record of the journal in `jdir` into the engine, persist it
/// and delete the segments. Answers the last record number (0 if none).
fn replay(
    db: &fjall::Database,
    trees: &[fjall::Keyspace],
    jdir: &Path,
) -> Result<u64, EngineError> {
    let segments = segments(jdir)?;
    let mut last = 0u64;
    let mut replayed = 0usize;
    for (i, path) in segments.iter().enumerate() {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_error)?;
        let (records, good) = decode_segment(&bytes);
        if good < bytes.len() && i + 1 < segments.len() {
            return Err(damaged(path, "a damaged record before the last segment"));
        }
        for (seq, ops) in records {
            // Numbers follow each other; a gap or a step back is damage.
            if last != 0 && seq != last + 1 {
                return Err(damaged(path, "record numbers out of order"));
            }
            last = seq;
            replayed += 1;
            apply_record(db, trees, ops)?;
        }
    }
    db.persist(fjall::PersistMode::SyncAll)?;
    remove_segments(jdir, &segments)?;
    if replayed > 0 {
        tracing::info!(
            records = replayed,
            last,
            "switch store journal replayed into the engine"
        );
    }
    // Numbers continue from where the engine's copy is known to be (0 if the
    // journal was empty: numbers only need to follow within a journal).
    Ok(last)
}

/// Copy every store record the ledger's journal holds into the engine, in
/// order, and persist it. Answers the last record number (0 if none).
fn replay_attached(
    db: &fjall::Database,
    trees: &[fjall::Keyspace],
    ledger: &Ledger,
) -> Result<u64, EngineError> {
    let mut last = 0u64;
    let mut replayed = 0usize;
    let mut failure: Option<EngineError> = None;
    let mut apply = |ledger_seq: u64, bytes: &[u8]| -> Result<(), EngineError> {
        let (records, good) = decode_segment(bytes);
        if good != bytes.len() {
            return Err(io_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("ledger record {ledger_seq}: the switch's records in it do not decode"),
            )));
        }
        for (seq, ops) in records {
            // A step back is damage (numbers restart only when the journal
            // held none).
            if seq <= last {
                return Err(io_error(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("ledger record {ledger_seq}: store record {seq} after {last}"),
                )));
            }
            last = seq;
            replayed += 1;
            apply_record(db, trees, ops)?;
        }
        Ok(())
    };
    ledger
        .read_attachments(|seq, bytes| {
            apply(seq, bytes).map_err(|e| {
                let text = e.to_string();
                failure = Some(e);
                ledger::StorageError::WriterStopped(text)
            })
        })
        .map_err(|e| {
            failure
                .take()
                .unwrap_or_else(|| io_error(io::Error::other(e.to_string())))
        })?;
    db.persist(fjall::PersistMode::SyncAll)?;
    if replayed > 0 {
        tracing::info!(
            records = replayed,
            last,
            "the switch's records in the ledger's journal replayed into the engine"
        );
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The journal engine under a `Kv` (these tests are about it).
    fn journal(kv: &Kv) -> &JournalKv {
        match kv {
            Kv::Journal(j) => j,
            Kv::Postgres(_) => panic!("a journal store"),
        }
    }

    fn open_db(dir: &Path) -> fjall::Database {
        fjall::Database::builder(dir.join("records"))
            .open()
            .unwrap()
    }

    fn open(dir: &Path) -> Kv {
        Kv::open(open_db(dir), dir).unwrap()
    }

    fn v(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn keys(it: impl Iterator<Item = Result<(Vec<u8>, Value), EngineError>>) -> Vec<String> {
        it.map(|r| String::from_utf8(r.unwrap().0).unwrap())
            .collect()
    }

    #[test]
    fn records_round_trip_and_damage_stops_decoding() {
        let ops = vec![
            Change {
                tree: Tree::Tx,
                key: v("a"),
                value: Some(Value::from(v("1"))),
            },
            Change {
                tree: Tree::Claims,
                key: v("b"),
                value: None,
            },
        ];
        let mut buf = Vec::new();
        encode(&mut buf, 7, &ops);
        encode(&mut buf, 8, &ops[..1]);
        let (records, good) = decode_segment(&buf);
        assert_eq!(good, buf.len());
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].0, 7);
        assert_eq!(records[0].1[1].tree, Tree::Claims);
        assert!(records[0].1[1].value.is_none());
        // Any flipped byte in the second record ends decoding before it.
        let first_len = good - (HEADER_SIZE + 4 + 6 + 1 + 4 + 1);
        for i in first_len..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            let (records, good) = decode_segment(&bad);
            assert_eq!((records.len(), good), (1, first_len), "byte {i}");
        }
        // A torn tail too.
        let (records, _) = decode_segment(&buf[..buf.len() - 1]);
        assert_eq!(records.len(), 1);
    }

    #[tokio::test]
    async fn commits_are_atomic_visible_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let kv = open(dir.path());
            kv.commit(|t| {
                assert_eq!(t.get(Tree::Tx, b"k").unwrap(), None);
                t.put(Tree::Tx, b"k", v("1"));
                assert_eq!(
                    t.get(Tree::Tx, b"k").unwrap().as_deref(),
                    Some(b"1".as_slice())
                );
                t.put(Tree::Open, b"k", v(""));
                Ok::<_, EngineError>(())
            })
            .unwrap();
            // A failed commit writes nothing.
            let r: Result<(), EngineError> = kv.commit(|t| {
                t.put(Tree::Tx, b"x", v("2"));
                Err(EngineError::Io(io::Error::other("no")))
            });
            assert!(r.is_err());
            assert_eq!(kv.get(Tree::Tx, b"x").unwrap(), None);
            assert_eq!(
                kv.get(Tree::Tx, b"k").unwrap().as_deref(),
                Some(b"1".as_slice())
            );
            kv.durable().await.unwrap();
            kv.remove(Tree::Open, b"k").unwrap();
            kv.durable().await.unwrap();
            assert_eq!(kv.get(Tree::Open, b"k").unwrap(), None);
        }
        let kv = open(dir.path());
        assert_eq!(
            kv.get(Tree::Tx, b"k").unwrap().as_deref(),
            Some(b"1".as_slice())
        );
        assert_eq!(kv.get(Tree::Open, b"k").unwrap(), None);
    }

    /// A journal left behind by a crash (the engine never saw its records) is
    /// replayed at open; a torn last record is not.
    #[test]
    fn journal_replays_into_the_engine_at_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let jdir = dir.path().join("journal");
        let put = |k: &str, val: &str| Change {
            tree: Tree::Payments,
            key: v(k),
            value: Some(Value::from(v(val))),
        };
        let mut buf = Vec::new();
        encode(&mut buf, 1, &[put("a", "1"), put("b", "2")]);
        encode(&mut buf, 2, &[put("a", "3")]);
        let torn = buf.len();
        encode(&mut buf, 3, &[put("c", "4")]);
        fs::write(segment_path(&jdir, 1), &buf[..buf.len() - 3]).unwrap();
        assert!(torn < buf.len() - 3);
        let kv = open(dir.path());
        let got: Vec<(String, String)> = kv
            .scan_prefix(Tree::Payments, b"")
            .map(|r| {
                let (k, v) = r.unwrap();
                (
                    String::from_utf8(k).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(got, [("a".into(), "3".into()), ("b".into(), "2".into())]);
        // The replayed segment is gone; the new one starts after it.
        let names: Vec<_> = fs::read_dir(&jdir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [segment_path(&jdir, 3).file_name().unwrap()]);
    }

    #[tokio::test]
    async fn scans_merge_overlay_and_engine_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let kv = open(dir.path());
        for k in ["a", "b", "c", "d"] {
            kv.put(Tree::Entities, k.as_bytes(), v(k)).unwrap();
        }
        kv.durable().await.unwrap();
        // Wait until the engine has them, then change some in the overlay only.
        let mut rx = journal(&kv).shared.applied.subscribe();
        while *rx.borrow_and_update() < 4 {
            rx.changed().await.unwrap();
        }
        kv.commit(|t| {
            t.remove(Tree::Entities, b"b");
            t.put(Tree::Entities, b"bb", v("x"));
            t.put(Tree::Entities, b"d", v("y"));
            t.put(Tree::Entities, b"e", v("z"));
            Ok::<_, EngineError>(())
        })
        .unwrap();
        let all = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(
            keys(kv.scan(Tree::Entities, all.clone(), false)),
            ["a", "bb", "c", "d", "e"]
        );
        assert_eq!(
            keys(kv.scan(Tree::Entities, all, true)),
            ["e", "d", "c", "bb", "a"]
        );
        assert_eq!(keys(kv.scan_prefix(Tree::Entities, b"b")), ["bb"]);
        let (_, d) = kv
            .scan(
                Tree::Entities,
                (Bound::Included(v("d")), Bound::Included(v("d"))),
                false,
            )
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(d.as_ref(), b"y");
    }

    /// A ledger in `dir/ledger` with the store's link, and the store in
    /// `dir` writing into it.
    fn open_logged(dir: &Path) -> (Kv, Arc<Ledger>) {
        let link = LedgerLink::new();
        let (ledger, _) = Ledger::open_attached(
            ledger::Config::new(dir.join("ledger")),
            Arc::new(ledger::SystemClock),
            None,
            Some(link.clone()),
        )
        .unwrap();
        let ledger = Arc::new(ledger);
        let kv = Kv::open_logged(open_db(dir), dir, ledger.clone(), &link).unwrap();
        (kv, ledger)
    }

    #[tokio::test]
    async fn records_ride_in_the_ledgers_journal_and_rebuild_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (kv, ledger) = open_logged(dir.path());
            assert!(kv.logged_in().is_some());
            kv.put(Tree::Tx, b"a", v("1")).unwrap();
            kv.durable().await.unwrap();
            kv.put(Tree::Tx, b"b", v("2")).unwrap();
            // A hook's commit lands in the same ledger record as the request.
            let kv = Arc::new(kv);
            let k2 = kv.clone();
            let applied: Applied = Box::new(move |o| {
                assert!(matches!(o, Outcome::Transfers(r) if r.is_empty()));
                k2.put(Tree::Tx, b"c", v("3")).unwrap();
            });
            kv.write_with(Request::Transfers(Vec::new()), Some(applied))
                .await
                .unwrap()
                .unwrap();
            // Nothing of its own: the node keeps one journal.
            assert!(!dir.path().join("journal").exists());
            drop(Arc::try_unwrap(kv).ok().unwrap());
            drop(ledger);
        }
        // The engine is a copy: without it, the ledger's journal rebuilds it.
        std::fs::remove_dir_all(dir.path().join("records")).unwrap();
        let (kv, _ledger) = open_logged(dir.path());
        for (k, want) in [(b"a", "1"), (b"b", "2"), (b"c", "3")] {
            assert_eq!(
                kv.get(Tree::Tx, k).unwrap().as_deref(),
                Some(want.as_bytes())
            );
        }
    }

    #[tokio::test]
    async fn an_earlier_versions_journal_is_taken_in_and_goes() {
        let dir = tempfile::tempdir().unwrap();
        // What a version with a journal of its own left after a crash: a
        // segment whose records the engine never received.
        let jdir = dir.path().join("journal");
        std::fs::create_dir_all(&jdir).unwrap();
        let mut buf = Vec::new();
        encode(
            &mut buf,
            1,
            &[Change {
                tree: Tree::Tx,
                key: v("old"),
                value: Some(Value::from(v("kept"))),
            }],
        );
        std::fs::write(segment_path(&jdir, 1), &buf).unwrap();
        {
            let (kv, _ledger) = open_logged(dir.path());
            assert_eq!(
                kv.get(Tree::Tx, b"old").unwrap().as_deref(),
                Some(b"kept".as_slice())
            );
            assert!(!jdir.exists(), "the old journal outlived its replay");
            // Numbers go on after the old journal's.
            kv.put(Tree::Tx, b"new", v("1")).unwrap();
            kv.durable().await.unwrap();
            assert_eq!(journal(&kv).shared.lock().seq, 2);
        }
        let (kv, _ledger) = open_logged(dir.path());
        assert_eq!(
            kv.get(Tree::Tx, b"old").unwrap().as_deref(),
            Some(b"kept".as_slice())
        );
        assert_eq!(
            kv.get(Tree::Tx, b"new").unwrap().as_deref(),
            Some(b"1".as_slice())
        );
    }

    #[test]
    fn prefix_end_carries() {
        assert_eq!(prefix_end(b"ab"), Some(v("ac")));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
    }

    #[derive(Clone, Debug)]
    enum Action {
        /// One commit of (tree, key, value or removal) ops.
        Commit(Vec<(usize, u8, Option<u8>)>),
        /// Wait for durability and for the engine to catch up.
        Settle,
        /// Drop and open again.
        Reopen,
    }

    fn action() -> impl proptest::strategy::Strategy<Value = Action> {
        use proptest::prelude::*;
        let op = (
            0..MODEL_TREES.len(),
            0u8..8,
            proptest::option::of(any::<u8>()),
        );
        prop_oneof![
            8 => proptest::collection::vec(op, 1..4).prop_map(Action::Commit),
            2 => Just(Action::Settle),
            1 => Just(Action::Reopen),
        ]
    }

    /// Two trees through the overlay and one resident in memory.
    const MODEL_TREES: [Tree; 3] = [Tree::Tx, Tree::Orders, Tree::Open];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

        /// Against a model (a map per tree): every get and scan, in both
        /// directions, whatever the engine and the overlay hold between them,
        /// and for a resident tree whatever memory and the engine hold.
        #[test]
        fn reads_match_a_model(actions in proptest::collection::vec(action(), 1..60)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let mut kv = open(dir.path());
            let mut model: [BTreeMap<Vec<u8>, Vec<u8>>; MODEL_TREES.len()] = Default::default();
            for a in actions {
                match a {
                    Action::Commit(ops) => {
                        kv.commit(|t| {
                            for (tree, k, v) in &ops {
                                match v {
                                    Some(v) => t.put(MODEL_TREES[*tree], &[*k], vec![*v]),
                                    None => t.remove(MODEL_TREES[*tree], &[*k]),
                                }
                            }
                            Ok::<_, EngineError>(())
                        }).unwrap();
                        for (tree, k, v) in ops {
                            let m = &mut model[tree];
                            match v {
                                Some(v) => { m.insert(vec![k], vec![v]); }
                                None => { m.remove(&vec![k]); }
                            }
                        }
                    }
                    Action::Settle => rt.block_on(async {
                        kv.durable().await.unwrap();
                        let seq = journal(&kv).shared.lock().seq;
                        let mut rx = journal(&kv).shared.applied.subscribe();
                        while *rx.borrow_and_update() < seq {
                            rx.changed().await.unwrap();
                        }
                    }),
                    Action::Reopen => {
                        drop(kv);
                        kv = open(dir.path());
                    }
                }
                for (t, m) in MODEL_TREES.into_iter().zip(&model) {
                    for k in 0u8..8 {
                        let got = kv.get(t, &[k]).unwrap().map(|v| v.to_vec());
                        proptest::prop_assert_eq!(got.as_ref(), m.get(&vec![k]));
                    }
                    let want: Vec<(Vec<u8>, Vec<u8>)> =
                        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    let all = (Bound::Unbounded, Bound::Unbounded);
                    let fwd: Vec<(Vec<u8>, Vec<u8>)> = kv
                        .scan(t, all.clone(), false)
                        .map(|r| r.map(|(k, v)| (k, v.to_vec())).unwrap())
                        .collect();
                    proptest::prop_assert_eq!(&fwd, &want);
                    let mut back: Vec<(Vec<u8>, Vec<u8>)> = kv
                        .scan(t, all, true)
                        .map(|r| r.map(|(k, v)| (k, v.to_vec())).unwrap())
                        .collect();
                    back.reverse();
                    proptest::prop_assert_eq!(&back, &want);
                }
            }
        }
    }

    /// Read-modify-write commits from several threads while the applier
    /// copies into the engine and forgets the overlay: no update is lost, before
    /// or after a reopen.
    #[test]
    fn concurrent_increments_are_never_lost() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Arc::new(open(dir.path()));
        let add = |kv: &Kv, key: u8| {
            kv.commit(|t| {
                let n = t
                    .get(Tree::Daily, &[key])?
                    .map_or(0, |v| u64::from_be_bytes(v.as_ref().try_into().unwrap()));
                t.put(Tree::Daily, &[key], (n + 1).to_be_bytes().to_vec());
                t.put(Tree::Tx, &[key, (n % 251) as u8], vec![1]);
                Ok::<_, EngineError>(())
            })
            .unwrap()
        };
        let threads: Vec<_> = (0..4u8)
            .map(|i| {
                let kv = kv.clone();
                std::thread::spawn(move || {
                    for j in 0..2_000u32 {
                        add(&kv, ((u32::from(i) + j) % 8) as u8);
                    }
                })
            })
            .collect();
        // Reads meanwhile see every key once, in order.
        for _ in 0..50 {
            let keys: Vec<Vec<u8>> = kv
                .scan_prefix(Tree::Daily, b"")
                .map(|r| r.unwrap().0)
                .collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        }
        for t in threads {
            t.join().unwrap();
        }
        let total = |kv: &Kv| -> u64 {
            kv.scan_prefix(Tree::Daily, b"")
                .map(|r| u64::from_be_bytes(r.unwrap().1.as_ref().try_into().unwrap()))
                .sum()
        };
        assert_eq!(total(&kv), 8_000);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(kv.durable()).unwrap();
        drop(Arc::into_inner(kv).expect("the threads are done"));
        let kv = open(dir.path());
        assert_eq!(total(&kv), 8_000);
    }

    /// Segments close at their size; closed ones go once the engine has persisted
    /// what they hold; a reopen replays whatever is left, in order.
    #[tokio::test]
    async fn segments_rotate_and_are_deleted_once_the_engine_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("journal");
        let segments = || {
            fs::read_dir(&jdir)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "wal")
                })
                .count()
        };
        {
            let kv = Kv::open_with(open_db(dir.path()), dir.path(), 4096).unwrap();
            for i in 0..400u32 {
                kv.put(Tree::Payments, &i.to_be_bytes(), vec![7; 100])
                    .unwrap();
                // One record per write: each durable before the next.
                kv.durable().await.unwrap();
            }
            // ~130 bytes a record: about ten segments were closed...
            let mut rx = journal(&kv).shared.applied.subscribe();
            while *rx.borrow_and_update() < 400 {
                rx.changed().await.unwrap();
            }
            // ...and the applier's next flush lets them go.
            let deadline = Instant::now() + Duration::from_secs(10);
            while segments() > 1 {
                assert!(Instant::now() < deadline, "{} segments left", segments());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The one left is a later segment than the first.
            assert!(!segment_path(&jdir, 1).exists(), "no segment was closed");
            // Records after the flush stay in the journal until the next.
            for i in 400..420u32 {
                kv.put(Tree::Payments, &i.to_be_bytes(), vec![8; 100])
                    .unwrap();
            }
            kv.durable().await.unwrap();
            // Stop as a failure would: no final flush, no clean-up.
            journal(&kv).shared.lock().stopping = true;
            journal(&kv).shared.failed.store(true, Ordering::Release);
            journal(&kv).shared.write_wanted.notify_all();
            journal(&kv).shared.apply_wanted.notify_all();
        }
        let kv = open(dir.path());
        let n = kv
            .scan_prefix(Tree::Payments, b"")
            .map(|r| r.unwrap())
            .filter(|(_, v)| v.len() == 100)
            .count();
        assert_eq!(n, 420);
    }
}
