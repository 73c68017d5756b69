//! The ledger's threads and their contract.
//!
//! - Callers queue requests on a bounded channel (backpressure, not memory).
//! - The writer takes everything queued (up to `record_events_max` events),
//!   applies it, appends one journal record, fsyncs once, and answers every
//!   caller of that record. A storage error stops it for good.
//! - The indexer writes each committed record's effects to the index (fjall), publishes
//!   how far it got (queries wait for it, so they never miss an acknowledged
//!   write), and checkpoints the state every `checkpoint_interval_bytes` of
//!   journal. The writer then removes segments older than the oldest kept
//!   checkpoint (and than what an [`Attachments`] still needs).
//! - An embedding application may make its own records durable in the
//!   ledger's records ([`Attachments`]): one log, one fsync for both.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checkpoint;
use crate::clock::Clock;
use crate::error::{StorageError, SubmitError};
use crate::index::{Index, IndexStore, Page};
use crate::journal::{self, Dropped};
use crate::reject::{AccountReject, TransferReject};
use crate::state::{Effects, Outcome, Request, State};
use crate::types::*;

/// Everything the ledger needs to know, passed explicitly.
#[derive(Clone, Debug)]
pub struct Config {
    /// Holds `journal/`, `checkpoints/` and `index/`.
    pub dir: PathBuf,
    /// A journal segment is closed once it would grow past this.
    pub segment_size_max_bytes: u64,
    /// Requests waiting for the writer; a full queue blocks `submit`.
    pub queue_requests_max: usize,
    /// Events in one request (a linked chain must fit in one request).
    pub request_events_max: usize,
    /// Events the writer puts in one record (one fsync).
    pub record_events_max: usize,
    /// Committed records the indexer may lag behind before the writer waits.
    pub index_lag_records_max: usize,
    /// Effects (transfers, failures, account values, history points) the
    /// indexer may lag behind before the writer waits: bounds the memory
    /// held for indexing, about 150 bytes each.
    pub index_lag_events_max: u64,
    /// Journal bytes between checkpoints.
    pub checkpoint_interval_bytes: u64,
    /// Checkpoints kept; the journal keeps every record after the oldest.
    pub checkpoints_retained: usize,
    /// Accounts the ledger will hold (all of them live in memory).
    pub accounts_max: usize,
    /// The index engine's block cache.
    pub index_cache_bytes: u64,
}

impl Config {
    pub fn new(dir: impl Into<PathBuf>) -> Config {
        Config {
            dir: dir.into(),
            segment_size_max_bytes: 64 << 20,
            queue_requests_max: 4096,
            request_events_max: 8190,
            record_events_max: 16 * 1024,
            index_lag_records_max: 4096,
            index_lag_events_max: 2 << 20,

            checkpoint_interval_bytes: 256 << 20,
            checkpoints_retained: 2,
            accounts_max: 4 << 20,
            index_cache_bytes: 256 << 20,
        }
    }
}

/// What one commit cost, for metrics.
#[derive(Clone, Copy, Debug)]
pub struct RecordStats {
    pub seq: u64,
    pub requests: usize,
    pub events: usize,
    pub bytes: usize,
    pub apply_ns: u64,
    pub fsync_ns: u64,
}

/// Told about every commit (from the writer thread: keep it cheap).
pub trait Observer: Send + Sync {
    fn committed(&self, stats: &RecordStats);
}

/// The state recovery started from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    /// The empty ledger before record 1.
    Genesis,
    /// A checkpoint after record `seq`.
    Checkpoint { seq: u64, path: PathBuf },
}

/// What [`Ledger::open`] found and did.
#[derive(Clone, Debug)]
pub struct RecoveryReport {
    pub base: Base,
    /// Records applied again after the base.
    pub records_replayed: u64,
    /// The last record in the journal.
    pub last_seq: u64,
    /// Why the index was rebuilt from the base and the journal, if it was.
    pub index_rebuilt: Option<String>,
    /// Damage found in the journal and moved aside.
    pub dropped: Option<Dropped>,
    /// Checkpoints ignored: damaged, or ahead of what the journal supports.
    pub checkpoints_ignored: Vec<(PathBuf, String)>,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.base {
            Base::Genesis => write!(f, "from genesis")?,
            Base::Checkpoint { seq, .. } => write!(f, "from checkpoint {seq}")?,
        }
        write!(
            f,
            ", replayed {} records to {}",
            self.records_replayed, self.last_seq
        )?;
        if let Some(why) = &self.index_rebuilt {
            write!(f, "; index rebuilt ({why})")?;
        }
        if let Some(d) = &self.dropped {
            write!(
                f,
                "; dropped {} bytes at {}:{} ({}; {} checksummed records after it), kept at {}",
                d.bytes,
                d.segment.display(),
                d.offset,
                d.reason,
                d.whole_records_after,
                d.kept_at.display()
            )?;
        }
        for (path, why) in &self.checkpoints_ignored {
            write!(f, "; ignored {} ({why})", path.display())?;
        }
        Ok(())
    }
}

/// Per-currency sums over all accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrencyTotals {
    pub currency: u16,
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
}

/// The result of [`Ledger::check`]: empty `violations` means all is well.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The record the check saw the state after.
    pub seq: u64,
    pub accounts: usize,
    pub pending_transfers: usize,
    pub currencies: Vec<CurrencyTotals>,
    /// Whether the index's accounts were compared with the state (only when no
    /// record was committed while the check ran).
    pub index_compared: bool,
    pub violations: Vec<String>,
}

type Reply = Box<dyn FnOnce(Result<Outcome, StorageError>) + Send>;
/// Runs on the writer thread once the request is applied, before its record
/// is written (see [`Ledger::submit_applied`]).
type Applied = Box<dyn FnOnce(&Outcome) + Send>;

/// What an embedding application makes durable in the ledger's own records,
/// so that a node has one log and one fsync per group commit (the switch
/// keeps its transaction records this way). Every method runs on the
/// writer thread: keep them short and never submit to the ledger from them.
pub trait Attachments: Send + Sync {
    /// After a record's requests are applied (and their
    /// [`Ledger::submit_applied`] hooks ran), before it is written: append
    /// to `out` whatever must become durable with it (nothing is fine).
    fn take(&self, out: &mut Vec<u8>);
    /// Record `seq`, holding what the last `take` gave, is durable.
    fn durable(&self, seq: u64);
    /// The oldest record whose attachment the application still needs (it
    /// has not made its own copy durable): the journal keeps it and every
    /// later one. `u64::MAX` when it needs none.
    fn needed_from(&self) -> u64;
}

struct StateView {
    seq: u64,
    now_last: u64,
    accounts: Vec<Account>,
    pendings: Vec<Transfer>,
    totals: Vec<(u16, crate::state::Totals)>,
}

enum Msg {
    Submit(Request, Reply, Option<Applied>),
    /// Commit a record now if a pending transfer is due to expire.
    Tick(mpsc::SyncSender<()>),
    Snapshot(mpsc::SyncSender<StateView>),
    Close,
}

struct Shared {
    /// Storage behind its narrow interface (fjall when embedded).
    index: Box<dyn IndexStore>,
    /// Every account as of `indexed_seq`, kept by the indexer from the
    /// records' effects; account queries read it.
    accounts: RwLock<HashMap<u128, Account>>,
    /// The last record that is durable (fsync'd).
    durable_seq: AtomicU64,
    /// The last record written to the index; queries wait for it.
    indexed_seq: Mutex<u64>,
    indexed_changed: Condvar,
    /// Why the ledger stopped, once it has.
    stopped: Mutex<Option<String>>,
    /// The oldest checkpoint kept: the journal needs nothing before it.
    oldest_checkpoint_seq: AtomicU64,
    /// Events committed but not yet indexed.
    lag_events: AtomicU64,
}

impl Shared {
    fn stop(&self, why: &StorageError) {
        let mut s = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        s.get_or_insert_with(|| why.to_string());
        drop(s);
        self.indexed_changed.notify_all();
    }
    /// Block until `done(indexed_seq)` holds (woken as the indexer moves),
    /// or the ledger stops.
    fn wait_until(&self, done: impl Fn(u64) -> bool) -> Result<(), StorageError> {
        let mut indexed = self.indexed_seq.lock().unwrap_or_else(|e| e.into_inner());
        while !done(*indexed) {
            if let Some(e) = self.stopped() {
                return Err(e);
            }
            indexed = self
                .indexed_changed
                .wait_timeout(indexed, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }

    fn stopped(&self) -> Option<StorageError> {
        let s = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        s.as_ref()
            .map(|why| StorageError::WriterStopped(why.clone()))
    }
}

/// A handle to an open ledger. Cheap to share behind an `Arc`; dropping the
/// last handle drains the queue, flushes and joins the threads.
pub struct Ledger {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    request_events_max: usize,
    /// The journal's segments as recovery left them, for
    /// [`Ledger::read_attachments`] (an attached application holds them
    /// from removal until it has read them).
    opened: Vec<journal::Segment>,
}

impl Ledger {
    /// Open (or create) the ledger in `config.dir`, recovering from the
    /// journal as needed.
    pub fn open(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<(Ledger, RecoveryReport), StorageError> {
        Ledger::open_observed(config, clock, None)
    }

    pub fn open_observed(
        config: Config,
        clock: Arc<dyn Clock>,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<(Ledger, RecoveryReport), StorageError> {
        Ledger::open_attached(config, clock, observer, None)
    }

    /// Open with an application's [`Attachments`]: from the first record
    /// written, `attachments.take` is asked for what rides in it, and no
    /// segment is removed before `attachments.needed_from`.
    pub fn open_attached(
        config: Config,
        clock: Arc<dyn Clock>,
        observer: Option<Arc<dyn Observer>>,
        attachments: Option<Arc<dyn Attachments>>,
    ) -> Result<(Ledger, RecoveryReport), StorageError> {
        assert!(config.request_events_max <= config.record_events_max);
        assert!(config.checkpoints_retained >= 1);
        let journal_dir = config.dir.join("journal");
        let checkpoint_dir = config.dir.join("checkpoints");
        let index_dir = config.dir.join("index");
        for d in [&journal_dir, &checkpoint_dir] {
            std::fs::create_dir_all(d)
                .map_err(|e| StorageError::io(format!("create {}", d.display()), e))?;
        }
        let recovered = recover(&config, &journal_dir, &checkpoint_dir, &index_dir)?;
        let Recovered {
            state,
            index,
            report,
            scan,
        } = recovered;
        let journal = journal::Writer::open(&journal_dir, &scan, config.segment_size_max_bytes)?;
        let opened = scan.segments.clone();
        let oldest_checkpoint = checkpoint::list(&checkpoint_dir)?
            .first()
            .map_or(0, |(s, _)| *s);
        let shared = Arc::new(Shared {
            index: Box::new(index),
            accounts: RwLock::new(state.accounts().map(|a| (a.id, *a)).collect()),
            durable_seq: AtomicU64::new(state.seq()),
            indexed_seq: Mutex::new(state.seq()),
            indexed_changed: Condvar::new(),
            stopped: Mutex::new(None),
            oldest_checkpoint_seq: AtomicU64::new(oldest_checkpoint),
            lag_events: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::sync_channel(config.queue_requests_max);
        let (fx_tx, fx_rx) = mpsc::sync_channel::<Effects>(config.index_lag_records_max);
        let (back_tx, back_rx) = mpsc::channel::<Effects>();
        let mirror = Mirror {
            seq: state.seq(),
            last_timestamp: state.last_timestamp(),
            pendings: state.pendings().map(|t| (t.id, *t)).collect(),
            bytes_since_checkpoint: 0,
        };
        let writer = WriterThread {
            state,
            journal,
            rx,
            fx_tx,
            back_rx,
            shared: shared.clone(),
            clock,
            observer,
            record_events_max: config.record_events_max,
            index_lag_events_max: config.index_lag_events_max,
            removed_through: 0,
            attachments,
            attached: Vec::new(),
            requests: Vec::new(),
            replies: Vec::new(),
            applied: Vec::new(),
            events: 0,
            outcomes: Vec::new(),
            pool: Vec::new(),
            buf: Vec::new(),
            now_last: 0,
        };
        let indexer = IndexerThread {
            shared: shared.clone(),
            rx: fx_rx,
            back_tx,
            mirror,
            checkpoint_dir,
            checkpoint_interval_bytes: config.checkpoint_interval_bytes,
            checkpoints_retained: config.checkpoints_retained,
        };
        let threads = vec![
            std::thread::Builder::new()
                .name("ledger-writer".into())
                .spawn(move || writer.run())
                .map_err(|e| StorageError::io("spawn ledger-writer", e))?,
            std::thread::Builder::new()
                .name("ledger-indexer".into())
                .spawn(move || indexer.run())
                .map_err(|e| StorageError::io("spawn ledger-indexer", e))?,
        ];
        Ok((
            Ledger {
                tx,
                shared,
                threads,
                request_events_max: config.request_events_max,
                opened,
            },
            report,
        ))
    }

    fn message(
        &self,
        request: Request,
        reply: Reply,
        applied: Option<Applied>,
    ) -> Result<Msg, SubmitError> {
        if request.events() > self.request_events_max {
            return Err(SubmitError::TooManyEvents {
                events: request.events(),
                events_max: self.request_events_max,
            });
        }
        if let Some(e) = self.shared.stopped() {
            return Err(e.into());
        }
        Ok(Msg::Submit(request, reply, applied))
    }

    /// Queue a request; `reply` runs on the writer thread once the record
    /// holding it is durable (keep it short: send the outcome somewhere).
    /// Blocks while the queue is full.
    pub fn submit(
        &self,
        request: Request,
        reply: impl FnOnce(Result<Outcome, StorageError>) + Send + 'static,
    ) -> Result<(), SubmitError> {
        let msg = self.message(request, Box::new(reply), None)?;
        self.tx.send(msg).map_err(|_| self.stopped_error())
    }

    /// Like [`Ledger::submit`] but returns [`SubmitError::Busy`] instead of
    /// blocking when the queue is full (for async callers).
    pub fn try_submit(
        &self,
        request: Request,
        reply: impl FnOnce(Result<Outcome, StorageError>) + Send + 'static,
    ) -> Result<(), SubmitError> {
        let msg = self.message(request, Box::new(reply), None)?;
        self.try_send(msg)
    }

    /// Like [`Ledger::try_submit`], and `applied` runs on the writer thread
    /// with the request's outcome once it is applied, before the record
    /// holding it is written: what an [`Attachments`] application writes
    /// there (its record of the outcome) is durable in the same record.
    /// Keep it short, and never submit to the ledger from it.
    pub fn try_submit_applied(
        &self,
        request: Request,
        applied: impl FnOnce(&Outcome) + Send + 'static,
        reply: impl FnOnce(Result<Outcome, StorageError>) + Send + 'static,
    ) -> Result<(), SubmitError> {
        let msg = self.message(request, Box::new(reply), Some(Box::new(applied)))?;
        self.try_send(msg)
    }

    fn try_send(&self, msg: Msg) -> Result<(), SubmitError> {
        self.tx.try_send(msg).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Busy,
            TrySendError::Disconnected(_) => self.stopped_error(),
        })
    }

    /// Every attachment in the journal as it was opened, oldest first, with
    /// its record's number. The journal keeps them until the
    /// [`Attachments`] given at open releases them (`needed_from`); records
    /// written since open are not read (call this before attachments are
    /// given any).
    pub fn read_attachments(
        &self,
        f: impl FnMut(u64, &[u8]) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        journal::read_attachments(&self.opened, f)
    }

    fn stopped_error(&self) -> SubmitError {
        SubmitError::Storage(
            self.shared
                .stopped()
                .unwrap_or(StorageError::WriterStopped("ledger closed".into())),
        )
    }

    fn call(&self, request: Request) -> Result<Outcome, SubmitError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(request, move |r| {
            let _ = tx.send(r);
        })?;
        match rx.recv() {
            Ok(r) => r.map_err(SubmitError::Storage),
            Err(_) => Err(self.stopped_error()),
        }
    }

    /// Create accounts; one result per account, in order.
    pub fn create_accounts(
        &self,
        accounts: Vec<NewAccount>,
    ) -> Result<Vec<Result<Receipt, AccountReject>>, SubmitError> {
        match self.call(Request::Accounts(accounts))? {
            Outcome::Accounts(r) => Ok(r),
            Outcome::Transfers(_) => unreachable!("an accounts request answers with accounts"),
        }
    }

    /// Create transfers; one result per transfer, in order.
    pub fn create_transfers(
        &self,
        transfers: Vec<NewTransfer>,
    ) -> Result<Vec<Result<Receipt, TransferReject>>, SubmitError> {
        match self.call(Request::Transfers(transfers))? {
            Outcome::Transfers(r) => Ok(r),
            Outcome::Accounts(_) => unreachable!("a transfers request answers with transfers"),
        }
    }

    /// Expire every pending transfer whose timeout has passed by the clock's
    /// now (the writer also does this on its own, within a second).
    pub fn tick(&self) -> Result<(), SubmitError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Tick(tx))
            .map_err(|_| self.stopped_error())?;
        rx.recv().map_err(|_| self.stopped_error())
    }

    /// Wait until the index holds every record acknowledged before this call.
    fn caught_up(&self) -> Result<(), StorageError> {
        let target = self.shared.durable_seq.load(Ordering::Acquire);
        self.shared.wait_until(|indexed| indexed >= target)
    }

    pub fn lookup_account(&self, id: u128) -> Result<Option<Account>, StorageError> {
        self.caught_up()?;
        Ok(self
            .shared
            .accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied())
    }

    pub fn lookup_transfer(&self, id: u128) -> Result<Option<Transfer>, StorageError> {
        self.caught_up()?;
        self.shared.index.transfer(id)
    }

    /// An account's transfers (as debit or credit side) in time order.
    pub fn account_transfers(
        &self,
        account: u128,
        page: Page,
    ) -> Result<Vec<Transfer>, StorageError> {
        self.caught_up()?;
        self.shared.index.account_transfers(account, page)
    }

    /// An account's balances after each change (accounts with `HISTORY`).
    pub fn account_history(
        &self,
        account: u128,
        page: Page,
    ) -> Result<Vec<Balances>, StorageError> {
        self.caught_up()?;
        self.shared.index.account_history(account, page)
    }

    /// Verify the invariants: per currency, debits equal credits (pending
    /// and posted, recomputed from every account); every account within its
    /// limits; pending balances equal the unresolved pending transfers; no
    /// pending transfer past its timeout; the index's accounts equal the state.
    pub fn check(&self) -> Result<CheckReport, StorageError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx.send(Msg::Snapshot(tx)).map_err(|_| {
            self.shared
                .stopped()
                .unwrap_or(StorageError::WriterStopped("closed".into()))
        })?;
        let view = rx.recv().map_err(|_| {
            self.shared
                .stopped()
                .unwrap_or(StorageError::WriterStopped("closed".into()))
        })?;
        let mut report = check_view(&view);
        self.caught_up()?;
        if self.shared.durable_seq.load(Ordering::Acquire) == view.seq {
            // The indexer keeps its accounts from the records' effects, the
            // writer from applying their requests: they must agree.
            report.index_compared = true;
            let indexed = self
                .shared
                .accounts
                .read()
                .unwrap_or_else(|e| e.into_inner());
            for a in &view.accounts {
                match indexed.get(&a.id) {
                    Some(i) if i == a => {}
                    Some(_) => report.violations.push(format!(
                        "account {}: index differs from the journal's state",
                        a.id
                    )),
                    None => report
                        .violations
                        .push(format!("account {}: missing from the index", a.id)),
                }
            }
            if indexed.len() != view.accounts.len() {
                report.violations.push(format!(
                    "index holds {} accounts, the journal's state {}",
                    indexed.len(),
                    view.accounts.len()
                ));
            }
        }
        Ok(report)
    }

    /// Drain the queue, flush, checkpoint and stop.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.shutdown();
        match self.shared.stopped() {
            Some(e) if !matches!(&e, StorageError::WriterStopped(w) if w == "ledger closed") => {
                Err(e)
            }
            _ => Ok(()),
        }
    }

    fn shutdown(&mut self) {
        let _ = self.tx.send(Msg::Close);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn check_view(view: &StateView) -> CheckReport {
    let mut violations = Vec::new();
    let mut sums: HashMap<u16, CurrencyTotals> = HashMap::new();
    let mut pending_debits: HashMap<u128, u128> = HashMap::new();
    let mut pending_credits: HashMap<u128, u128> = HashMap::new();
    for p in &view.pendings {
        *pending_debits.entry(p.debit_account_id).or_default() += u128::from(p.amount);
        *pending_credits.entry(p.credit_account_id).or_default() += u128::from(p.amount);
        if p.expires_at().is_some_and(|at| at <= view.now_last) {
            violations.push(format!("pending transfer {} is past its timeout", p.id));
        }
    }
    for a in &view.accounts {
        let s = sums.entry(a.currency).or_insert(CurrencyTotals {
            currency: a.currency,
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
        });
        s.debits_pending += a.debits_pending;
        s.debits_posted += a.debits_posted;
        s.credits_pending += a.credits_pending;
        s.credits_posted += a.credits_posted;
        if !a.within_limits() {
            violations.push(format!("account {} breaks its limit", a.id));
        }
        if a.debits_pending != pending_debits.get(&a.id).copied().unwrap_or(0)
            || a.credits_pending != pending_credits.get(&a.id).copied().unwrap_or(0)
        {
            violations.push(format!(
                "account {}: pending balances differ from its pending transfers",
                a.id
            ));
        }
    }
    let mut currencies: Vec<CurrencyTotals> = sums.into_values().collect();
    currencies.sort_by_key(|c| c.currency);
    for c in &currencies {
        if c.debits_pending != c.credits_pending || c.debits_posted != c.credits_posted {
            violations.push(format!(
                "currency {}: debits and credits differ",
                c.currency
            ));
        }
        let running = view
            .totals
            .iter()
            .find(|(cur, _)| *cur == c.currency)
            .map(|(_, t)| *t);
        let recomputed = crate::state::Totals {
            debits_pending: c.debits_pending,
            debits_posted: c.debits_posted,
            credits_pending: c.credits_pending,
            credits_posted: c.credits_posted,
        };
        if running != Some(recomputed) {
            violations.push(format!(
                "currency {}: running totals differ from the accounts",
                c.currency
            ));
        }
    }
    CheckReport {
        seq: view.seq,
        accounts: view.accounts.len(),
        pending_transfers: view.pendings.len(),
        currencies,
        index_compared: false,
        violations,
    }
}

struct Recovered {
    state: State,
    index: Index,
    report: RecoveryReport,
    scan: journal::Scan,
}

fn recover(
    config: &Config,
    journal_dir: &Path,
    checkpoint_dir: &Path,
    index_dir: &Path,
) -> Result<Recovered, StorageError> {
    let scan = journal::scan_and_repair(journal_dir)?;
    let end = scan.last_seq();
    let first = scan.first_seq().unwrap_or(1);
    let mut ignored = Vec::new();
    // Usable bases, oldest first: genesis if the journal starts at record 1,
    // then every sound checkpoint the journal supports and continues.
    let mut bases: Vec<(u64, Option<checkpoint::Checkpoint>, PathBuf)> = Vec::new();
    if first <= 1 {
        bases.push((0, None, PathBuf::new()));
    }
    for (seq, path) in checkpoint::list(checkpoint_dir)? {
        if seq > end {
            // The journal does not support it (its tail was lost): never
            // serve balances from it.
            let aside = path.with_extension("unsupported");
            std::fs::rename(&path, &aside)
                .map_err(|e| StorageError::io(format!("rename {}", path.display()), e))?;
            ignored.push((
                path,
                format!(
                    "after the journal's last record {end}; moved to {}",
                    aside.display()
                ),
            ));
            continue;
        }
        if seq + 1 < first {
            ignored.push((
                path,
                format!("older than the journal's first record {first}"),
            ));
            continue;
        }
        match checkpoint::load(&path)? {
            Ok(c) if c.seq == seq => bases.push((seq, Some(c), path)),
            Ok(_) => ignored.push((path, "names another record than its file".into())),
            Err(why) => ignored.push((path, why)),
        }
    }
    if bases.is_empty() {
        return Err(StorageError::Corrupt {
            path: journal_dir.to_path_buf(),
            detail: format!(
                "the journal starts at record {first} and no sound checkpoint precedes it"
            ),
        });
    }
    let newest = bases.last().map(|(s, _, _)| *s).unwrap_or(0);
    // Before anything could decide to rebuild it: a rebuild would lose the
    // transfers older than the oldest kept checkpoint.
    crate::sled_import::refuse_sled(index_dir, index_dir)?;
    let (mut index, mut rebuild) = match Index::open(index_dir, config.index_cache_bytes) {
        Ok(index) => match index.indexed_seq()? {
            Some(i) if i > end => (
                Some(index),
                Some(format!("index is at record {i}, past the journal's {end}")),
            ),
            Some(i) if i < newest => (
                Some(index),
                Some(format!(
                    "index is at record {i}, before checkpoint {newest}"
                )),
            ),
            None if newest > 0 => (Some(index), Some("index is empty".to_string())),
            _ => (Some(index), None),
        },
        Err(e) => (None, Some(format!("index did not open: {e}"))),
    };
    let base_at = if rebuild.is_some() {
        drop(index.take());
        if index_dir.exists() {
            std::fs::remove_dir_all(index_dir)
                .map_err(|e| StorageError::io(format!("remove {}", index_dir.display()), e))?;
        }
        0
    } else {
        bases.len() - 1
    };
    let index = match index {
        Some(i) => i,
        None => Index::open(index_dir, config.index_cache_bytes)?,
    };
    let (base_seq, base_checkpoint, base_path) = bases.swap_remove(base_at);
    let (state, base) = match base_checkpoint {
        None => (State::new(config.accounts_max), Base::Genesis),
        Some(c) => {
            if rebuild.is_some() {
                for p in &c.pendings {
                    index.write_restored(p, base_seq)?;
                }
            }
            let s = State::restore(
                config.accounts_max,
                c.seq,
                c.last_timestamp,
                c.accounts,
                c.pendings,
            );
            (
                s,
                Base::Checkpoint {
                    seq: base_seq,
                    path: base_path,
                },
            )
        }
    };
    let mut state = state;
    let mut fx = Effects::default();
    let mut outcomes = Vec::new();
    let mut replayed = 0;
    journal::replay(&scan.segments, base_seq, |seq, now, requests, _| {
        outcomes.clear();
        state.apply_record(seq, now, &requests, &index, &mut fx, &mut outcomes)?;
        index.write(&fx)?;
        state.indexed(&fx);
        replayed += 1;
        Ok(())
    })?;
    assert_eq!(state.seq(), end, "replay reached the journal's end");
    if replayed > 0 || rebuild.is_some() {
        index.write_accounts(&mut state.accounts())?;
        index.flush()?;
    }
    if rebuild.is_none() && replayed == 0 {
        rebuild = None;
    }
    let report = RecoveryReport {
        base,
        records_replayed: replayed,
        last_seq: end,
        index_rebuilt: rebuild,
        dropped: scan.dropped.clone(),
        checkpoints_ignored: ignored,
    };
    Ok(Recovered {
        state,
        index,
        report,
        scan,
    })
}

struct WriterThread {
    state: State,
    journal: journal::Writer,
    rx: Receiver<Msg>,
    fx_tx: SyncSender<Effects>,
    /// Effects the indexer is done with: prune memory, reuse the buffers.
    back_rx: Receiver<Effects>,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    observer: Option<Arc<dyn Observer>>,
    record_events_max: usize,
    index_lag_events_max: u64,
    /// Journal segments are removed through this record already.
    removed_through: u64,
    /// The application whose records ride in the ledger's, and the buffer
    /// they are taken into (reused).
    attachments: Option<Arc<dyn Attachments>>,
    attached: Vec<u8>,
    /// The record being gathered: requests, their callers, and the events
    /// they hold (at most `record_events_max`).
    requests: Vec<Request>,
    replies: Vec<Reply>,
    /// Per request, its hook to run once applied.
    applied: Vec<Option<Applied>>,
    events: usize,
    /// Reused across records.
    outcomes: Vec<Outcome>,
    pool: Vec<Effects>,
    buf: Vec<u8>,
    /// The `now` of the last record (for the expiry check in snapshots).
    now_last: u64,
}

impl WriterThread {
    fn run(mut self) {
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve()));
        let e = match served {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            // An assertion failed: stop rather than commit anything more.
            Err(panic) => {
                StorageError::WriterStopped(format!("writer panicked: {}", panic_message(&panic)))
            }
        };
        self.shared.stop(&e);
        for r in self.replies.drain(..) {
            r(Err(e.clone()));
        }
        // Dropping fx_tx lets the indexer finish, checkpoint and exit.
    }

    fn serve(&mut self) -> Result<(), StorageError> {
        let mut ticks: Vec<SyncSender<()>> = Vec::new();
        loop {
            while let Ok(fx) = self.back_rx.try_recv() {
                self.state.indexed(&fx);
                self.pool.push(fx);
            }
            let wait = match self.state.next_expiry() {
                Some(at) => Duration::from_nanos(at.saturating_sub(self.clock.now_ns()))
                    .clamp(Duration::from_millis(1), Duration::from_secs(1)),
                None => Duration::from_secs(1),
            };
            let mut snapshot = None;
            let mut closing = false;
            let mut next = match self.rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            // Take everything queued; a full record commits before more is taken.
            while let Some(m) = next.take() {
                match m {
                    Msg::Submit(request, reply, applied) => {
                        if self.events > 0
                            && self.events + request.events() > self.record_events_max
                        {
                            self.commit()?;
                        }
                        self.events += request.events();
                        self.requests.push(request);
                        self.replies.push(reply);
                        self.applied.push(applied);
                    }
                    Msg::Tick(reply) => ticks.push(reply),
                    Msg::Snapshot(reply) => {
                        snapshot = Some(reply);
                        break;
                    }
                    Msg::Close => {
                        closing = true;
                        break;
                    }
                }
                next = self.rx.try_recv().ok();
            }
            self.commit()?;
            for t in ticks.drain(..) {
                let _ = t.send(());
            }
            if let Some(reply) = snapshot {
                let mut accounts: Vec<Account> = self.state.accounts().copied().collect();
                accounts.sort_by_key(|a| a.id);
                let _ = reply.send(StateView {
                    seq: self.state.seq(),
                    now_last: self.now_last,
                    accounts,
                    pendings: self.state.pendings().copied().collect(),
                    totals: self.state.totals().to_vec(),
                });
            }
            if closing {
                return Ok(());
            }
        }
    }

    /// Backpressure: wait while the indexer lags too far behind.
    fn wait_for_indexer(&self) -> Result<(), StorageError> {
        let (shared, max) = (&self.shared, self.index_lag_events_max);
        shared.wait_until(|_| shared.lag_events.load(Ordering::Acquire) <= max)
    }

    /// Commit one record if there are requests or due expiries.
    fn commit(&mut self) -> Result<(), StorageError> {
        let now = self.clock.now_ns();
        let expiring = self.state.next_expiry().is_some_and(|at| at <= now);
        if self.requests.is_empty() && !expiring {
            return Ok(());
        }
        self.wait_for_indexer()?;
        let started = Instant::now();
        let seq = self.state.seq() + 1;
        let mut fx = self.pool.pop().unwrap_or_default();
        self.outcomes.clear();
        self.state.apply_record(
            seq,
            now,
            &self.requests,
            &*self.shared.index,
            &mut fx,
            &mut self.outcomes,
        )?;
        assert_eq!(self.applied.len(), self.outcomes.len());
        for (hook, outcome) in self.applied.drain(..).zip(&self.outcomes) {
            if let Some(hook) = hook {
                hook(outcome);
            }
        }
        self.attached.clear();
        if let Some(a) = &self.attachments {
            a.take(&mut self.attached);
        }
        journal::encode_record(&mut self.buf, seq, now, &self.requests, &self.attached);
        self.journal.append(seq, &self.buf)?;
        let applied = Instant::now();
        self.journal.sync()?;
        let fsync_ns = applied.elapsed().as_nanos() as u64;
        self.now_last = now;
        self.shared.durable_seq.store(seq, Ordering::Release);
        if let Some(a) = &self.attachments {
            a.durable(seq);
        }
        if let Some(o) = &self.observer {
            o.committed(&RecordStats {
                seq,
                requests: self.requests.len(),
                events: self.events,
                bytes: self.buf.len(),
                apply_ns: (applied - started).as_nanos() as u64,
                fsync_ns,
            });
        }
        fx.journal_bytes = self.buf.len() as u64;
        fx.events =
            (fx.transfers.len() + fx.failed.len() + fx.accounts.len() + fx.history.len()) as u64;
        self.shared
            .lag_events
            .fetch_add(fx.events, Ordering::AcqRel);
        if self.fx_tx.send(fx).is_err() {
            return Err(self
                .shared
                .stopped()
                .unwrap_or(StorageError::WriterStopped("indexer stopped".into())));
        }
        assert_eq!(self.replies.len(), self.outcomes.len());
        for (reply, outcome) in self.replies.drain(..).zip(self.outcomes.drain(..)) {
            reply(Ok(outcome));
        }
        self.requests.clear();
        self.events = 0;
        let mut oldest = self.shared.oldest_checkpoint_seq.load(Ordering::Acquire);
        if let Some(a) = &self.attachments {
            oldest = oldest.min(a.needed_from().saturating_sub(1));
        }
        if oldest > self.removed_through {
            self.journal.remove_through(oldest)?;
            self.removed_through = oldest;
        }
        Ok(())
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The state after the last indexed record, kept by the indexer for
/// checkpoints.
struct Mirror {
    seq: u64,
    last_timestamp: u64,
    pendings: HashMap<u128, Transfer>,
    bytes_since_checkpoint: u64,
}

struct IndexerThread {
    shared: Arc<Shared>,
    rx: Receiver<Effects>,
    back_tx: mpsc::Sender<Effects>,
    mirror: Mirror,
    checkpoint_dir: PathBuf,
    checkpoint_interval_bytes: u64,
    checkpoints_retained: usize,
}

impl IndexerThread {
    fn run(mut self) {
        while let Ok(fx) = self.rx.recv() {
            if let Err(e) = self.shared.index.write(&fx) {
                self.shared.stop(&e);
                return;
            }
            self.mirror.seq = fx.seq;
            self.mirror.last_timestamp = fx.last_timestamp;
            if !fx.accounts.is_empty() {
                let mut accounts = self
                    .shared
                    .accounts
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                for a in &fx.accounts {
                    accounts.insert(a.id, *a);
                }
            }
            for (t, _) in &fx.transfers {
                if t.status == TransferStatus::Pending {
                    self.mirror.pendings.insert(t.id, *t);
                } else if t.flags.contains(TransferFlags::PENDING) {
                    self.mirror.pendings.remove(&t.id);
                }
            }
            self.mirror.bytes_since_checkpoint += fx.journal_bytes;
            *self
                .shared
                .indexed_seq
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = fx.seq;
            self.shared
                .lag_events
                .fetch_sub(fx.events, Ordering::AcqRel);
            self.shared.indexed_changed.notify_all();

            if self.mirror.bytes_since_checkpoint >= self.checkpoint_interval_bytes
                && let Err(e) = self.checkpoint()
            {
                self.shared.stop(&e);
                return;
            }
            let _ = self.back_tx.send(fx);
        }
        if self.shared.stopped().is_none()
            && self.mirror.bytes_since_checkpoint > 0
            && let Err(e) = self.checkpoint()
        {
            self.shared.stop(&e);
        }
        if let Err(e) = self.shared.index.flush() {
            self.shared.stop(&e);
        }
    }

    fn checkpoint(&mut self) -> Result<(), StorageError> {
        // The index must hold everything up to the checkpoint before the
        // checkpoint lets the journal before it go.
        let accounts = self
            .shared
            .accounts
            .read()
            .unwrap_or_else(|e| e.into_inner());
        self.shared.index.write_accounts(&mut accounts.values())?;
        self.shared.index.flush()?;
        checkpoint::write(
            &self.checkpoint_dir,
            self.mirror.seq,
            self.mirror.last_timestamp,
            accounts.values(),
            self.mirror.pendings.values(),
        )?;
        drop(accounts);
        self.mirror.bytes_since_checkpoint = 0;
        let all = checkpoint::list(&self.checkpoint_dir)?;
        let excess = all.len().saturating_sub(self.checkpoints_retained);
        for (_, path) in &all[..excess] {
            std::fs::remove_file(path)
                .map_err(|e| StorageError::io(format!("remove {}", path.display()), e))?;
        }
        if let Some((oldest, _)) = all.get(excess) {
            self.shared
                .oldest_checkpoint_seq
                .store(*oldest, Ordering::Release);
        }
        Ok(())
    }
}
