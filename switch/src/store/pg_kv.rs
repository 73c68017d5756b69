//! The store's engine on PostgreSQL (issue #14): the trees of
//! [`super::kv::Tree`] as rows of one table, shared by every node.
//!
//! **Group commit, optimistically.** A write ([`PgKv::commit`]) runs the
//! caller's closure against plain reads (no locks held), noting the value
//! it saw for each key it read, then hands what it read and what it
//! changes to the node's committers. A committer takes every write
//! waiting (up to [`GROUP_WRITES_MAX`]) into one PostgreSQL transaction:
//!
//! 1. it takes an advisory transaction lock for every key the group reads
//!    or writes (a 32-bit hash of tree and key), all in one statement, in
//!    ascending order: every group on every node locks in that order, so
//!    groups wait for each other but never deadlock;
//! 2. it reads the current value of every key the group read;
//! 3. it takes the writes in arrival order: a write whose every read still
//!    holds (in the database as changed by the writes taken before it in
//!    the group) is accepted and its changes applied to that view; any
//!    other is refused;
//! 4. it writes the accepted changes (one delete, one upsert), commits,
//!    and answers: accepted writes are durable; a refused write runs its
//!    closure again, reading what won, and joins a later group.
//!
//! So two nodes creating the same key (the same request id, the same claim
//! on a QR code or a bill) cannot both succeed, a read-modify-write never
//! loses another's update, and a node commits once for many flows' writes
//! rather than once each. A value is compared whole: a key changed and
//! changed back reads as unchanged, which is the same state.
//!
//! The store's API is synchronous (the embedded engine answers from
//! memory); here each call waits for the server with
//! `tokio::task::block_in_place`, which needs the multi-threaded runtime
//! (the switch's; tests of this backend use it too). Making the store's
//! API async would remove that wait; it is not done yet.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

pub use super::pg_records::PAYMENTS_CHANNEL;
use super::pg_records::{
    self, GET_MANY, KEY_LOCK_CLASS, LOCK_KEYS, RecordWrite, Statements, key_lock,
};
use super::tree::{EngineError, Merge, Merged, Tree, Value};

/// Connections one node keeps at most.
const POOL_SIZE_MAX: usize = 32;
/// Turns held at once at most (each holds a connection).
const LOCK_POOL_SIZE_MAX: usize = 64;
/// Times a write runs again after another write changed what it read.
const ATTEMPTS_MAX: u32 = 64;
/// Committers per node: groups in flight at once (a second one commits
/// while the first waits for its fsync).
const COMMITTERS: usize = 2;
/// Writes one group takes at most (a group is one transaction).
const GROUP_WRITES_MAX: usize = 512;
/// Writes waiting for a committer at most; past it, writers wait to queue.
const QUEUE_WRITES_MAX: usize = 4_096;
/// How often a quiet listener checks that its owner is still there.
const LISTEN_OWNER_CHECK_MS: u64 = 30_000;
/// How long a lost listening connection waits before it connects again.
const LISTEN_RETRY_MS: u64 = 1_000;
/// Rows a scan fetches at a time.
const SCAN_PAGE_ROWS: i64 = 256;
/// How long a read or a nonce's record (what a signed request asks of
/// PostgreSQL before anything is done for it) may wait for the server,
/// once it has a connection, before this node calls PostgreSQL
/// unreachable: a node cut from its database refuses within this, and at
/// once while it stays cut (issue #31). Writes are not timed: whether an
/// unanswered commit happened is unknown, so they wait for the link's
/// own timeout.
const ANSWER_TIMEOUT_MS: u64 = 2_000;
/// How often an unreachable PostgreSQL is tried again, with a connection
/// of its own (bounded by the connect timeout, `store/pg_connect.rs`).
const PROBE_INTERVAL_MS: u64 = 1_000;

/// A key's value.
const GET: &str = "SELECT value FROM switch_kv WHERE tree = $1 AND key = $2";

/// `sql` prepared once per connection and kept: parsed and planned once,
/// not at every call, and each call one round trip (a statement given as
/// text is prepared, unnamed, at every call: a round trip more).
async fn prepared(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
    client.prepare_cached(sql).await
}

/// The engine's errors travel as the store's (`EngineError`), so that the
/// store has one engine error type; a broken link is told apart.
fn engine_error(e: impl PgFault) -> EngineError {
    Failure::of(&e).into()
}

/// A failure as the committers hand it to every write of a group (one
/// failure, many writers: it is cloned).
#[derive(Clone, Debug)]
struct Failure {
    message: String,
    link_lost: bool,
}

impl Failure {
    fn of(e: &dyn PgFault) -> Failure {
        Failure {
            message: e.describe(),
            link_lost: e.link_lost(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Failure> for EngineError {
    fn from(f: Failure) -> EngineError {
        if f.link_lost {
            EngineError::LinkLost(f.message)
        } else {
            EngineError::Postgres(f.message)
        }
    }
}

/// A failure on the way to PostgreSQL, as [`engine_error`] sorts it.
trait PgFault: std::fmt::Display {
    /// The connection broke (or could not be had) rather than PostgreSQL
    /// refusing: the store is out of reach, not wrong.
    fn link_lost(&self) -> bool {
        false
    }
    fn describe(&self) -> String {
        self.to_string()
    }
}

impl PgFault for tokio_postgres::Error {
    fn link_lost(&self) -> bool {
        self.is_closed()
            || (self.as_db_error().is_none()
                && std::error::Error::source(self).is_some_and(|s| s.is::<std::io::Error>()))
    }
    fn describe(&self) -> String {
        describe(self)
    }
}

impl PgFault for deadpool_postgres::PoolError {
    fn link_lost(&self) -> bool {
        match self {
            deadpool_postgres::PoolError::Backend(e) => e.link_lost(),
            deadpool_postgres::PoolError::Timeout(_) => true,
            _ => false,
        }
    }
}

impl PgFault for &str {}
impl PgFault for String {}
impl PgFault for super::pg_ledger::PgError {}
impl PgFault for tokio::task::JoinError {}
impl PgFault for deadpool_postgres::BuildError {}

/// The runtime the store's connections live on, apart from the switch's:
/// a caller that waits for the server may hold a lock that the switch's
/// other workers then wait for, and if the connections' I/O ran on those
/// workers, nobody would be left to answer it (seen: 64 clients on a
/// 2-core box stopped dead).
fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pg-io")
            .enable_all()
            .build()
            .expect("the store's I/O runtime")
    })
}

/// Wait for `f` (run on the I/O runtime) from synchronous code.
fn block<F: Future>(f: F) -> F::Output {
    let io = io_runtime().handle();
    match tokio::runtime::Handle::try_current() {
        // On a runtime's worker: let the runtime move its other tasks on.
        Ok(_) => tokio::task::block_in_place(|| io.block_on(f)),
        Err(_) => io.block_on(f),
    }
}

#[derive(Clone)]
pub struct PgKv {
    pool: Pool,
    /// Connections that hold turns ([`PgKv::lock`]) come from a pool of
    /// their own: a turn's holder also writes, and if turns could take every
    /// connection, holders would wait for writers that wait for holders.
    locks: Pool,
    url: String,
    /// The connection holding this node's worker lease (a session
    /// advisory lock: released by the server when the connection ends, so
    /// a node that dies hands the lease on).
    lease: Arc<tokio::sync::Mutex<Option<tokio_postgres::Client>>>,
    /// Writes on their way to the node's committers.
    writes: mpsc::Sender<Write>,
    /// Whether PostgreSQL answers: while it does not, calls are refused
    /// at once rather than left waiting on a link that does not answer.
    reach: Arc<Reach>,
}

/// PostgreSQL's reachability as this node last saw it: down after a call
/// that could not connect or did not answer in time, up again once a
/// probe connects (one probe at a time, every [`PROBE_INTERVAL_MS`]).
#[derive(Default)]
struct Reach {
    down: std::sync::atomic::AtomicBool,
    probing: std::sync::atomic::AtomicBool,
}

/// The error of a call refused because PostgreSQL is unreachable.
fn unreachable_error() -> EngineError {
    EngineError::Unreachable
}

/// The advisory lock that makes a node the one that runs the background
/// jobs (reversals, deadlines, scheduled closes, expiries).
const WORKER_LEASE_KEY: i64 = 0x5357_4954_4348_0001;

/// A turn that other nodes wait for: an advisory lock held by an open
/// transaction on a connection of its own, ended (and so released) when
/// dropped. On the journal engine there is one node: nothing to hold.
pub struct NodeLock(Option<deadpool_postgres::Object>);

impl Drop for NodeLock {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            // Ending the transaction releases the lock; a connection that
            // broke released it already.
            io_runtime().spawn(async move {
                let _ = client.batch_execute("ROLLBACK").await;
            });
        }
    }
}

impl NodeLock {
    /// No lock (one node).
    pub fn none() -> NodeLock {
        NodeLock(None)
    }
}

impl PgKv {
    /// A pool of connections to `url` (the schema is migrated by
    /// [`super::pg_ledger::migrate`], which holds every migration).
    pub fn open(url: &str) -> Result<PgKv, EngineError> {
        let (config, tls) = super::pg_connect::parse(url).map_err(engine_error)?;
        let pool = |size| {
            let manager = Manager::from_config(
                config.clone(),
                tls.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            // A new connection that takes longer than a query may wait
            // for its answer finds PostgreSQL unreachable too (a pooled
            // connection the cut killed is replaced by one that cannot
            // connect); waiting for a free connection is not bounded.
            Pool::builder(manager)
                .max_size(size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .create_timeout(Some(std::time::Duration::from_millis(ANSWER_TIMEOUT_MS)))
                .build()
                .map_err(engine_error)
        };
        let pool_main = pool(POOL_SIZE_MAX)?;
        let (writes, queue) = mpsc::channel(QUEUE_WRITES_MAX);
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..COMMITTERS {
            io_runtime().spawn(committer(pool_main.clone(), queue.clone()));
        }
        Ok(PgKv {
            pool: pool_main,
            locks: pool(LOCK_POOL_SIZE_MAX)?,
            url: url.to_string(),
            lease: Arc::new(tokio::sync::Mutex::new(None)),
            writes,
            reach: Arc::default(),
        })
    }

    /// Whether the last calls found PostgreSQL unreachable (and no probe
    /// has reached it since).
    pub fn unreachable(&self) -> bool {
        self.reach.down.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Refuse at once while PostgreSQL is unreachable.
    fn reachable(&self) -> Result<(), EngineError> {
        if self.unreachable() {
            return Err(unreachable_error());
        }
        Ok(())
    }

    /// `query` on a connection already taken, refused as unreachable if the
    /// server does not answer within [`ANSWER_TIMEOUT_MS`].
    async fn answered<T>(
        &self,
        query: impl Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        let timeout = std::time::Duration::from_millis(ANSWER_TIMEOUT_MS);
        match tokio::time::timeout(timeout, query).await {
            Ok(r) => r,
            Err(_) => {
                self.mark_unreachable("a query got no answer in time");
                Err(unreachable_error())
            }
        }
    }

    /// Call PostgreSQL unreachable (`why`), and probe until it answers.
    fn mark_unreachable(&self, why: &str) {
        use std::sync::atomic::Ordering;
        if !self.reach.down.swap(true, Ordering::AcqRel) {
            tracing::error!(
                why,
                "PostgreSQL is unreachable from this node: requests are refused until it answers"
            );
            metrics::counter!("switch_pg_unreachable_total").increment(1);
        }
        if self.reach.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (reach, url) = (self.reach.clone(), self.url.clone());
        io_runtime().spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(PROBE_INTERVAL_MS)).await;
                let probe = async {
                    let client = super::pg_ledger::connect(&url)
                        .await
                        .map_err(engine_error)?;
                    client.simple_query("SELECT 1").await.map_err(engine_error)
                };
                let answered = tokio::time::timeout(
                    std::time::Duration::from_millis(ANSWER_TIMEOUT_MS * 3),
                    probe,
                )
                .await;
                if let Ok(Ok(_)) = answered {
                    reach.down.store(false, Ordering::Release);
                    reach.probing.store(false, Ordering::Release);
                    tracing::info!("PostgreSQL answers this node again");
                    return;
                }
            }
        });
    }

    /// Wait for the turn named `key` among every node.
    pub async fn lock(&self, key: i64) -> Result<NodeLock, EngineError> {
        let started = std::time::Instant::now();
        let r = self.lock_untimed(key).await;
        metrics::histogram!("switch_pg_store_seconds", "op" => "turn").record(started.elapsed());
        r
    }

    async fn lock_untimed(&self, key: i64) -> Result<NodeLock, EngineError> {
        let locks = self.locks.clone();
        io_runtime()
            .spawn(async move {
                let client = locks.get().await.map_err(engine_error)?;
                client.batch_execute("BEGIN").await.map_err(engine_error)?;
                let lock = prepared(&client, "SELECT pg_advisory_xact_lock($1)")
                    .await
                    .map_err(engine_error)?;
                client.execute(&lock, &[&key]).await.map_err(engine_error)?;
                Ok(NodeLock(Some(client)))
            })
            .await
            .map_err(engine_error)?
    }

    /// Does this node hold the worker lease (taking it if nobody does)?
    pub async fn worker_lease(&self) -> Result<bool, EngineError> {
        let me = self.clone();
        io_runtime()
            .spawn(async move { me.take_lease().await })
            .await
            .map_err(engine_error)?
    }

    async fn take_lease(&self) -> Result<bool, EngineError> {
        let mut lease = self.lease.lock().await;
        if let Some(c) = lease.as_ref() {
            // Ours while the server answers on its connection, asked at
            // every pass and bounded well under the server's own finding of
            // a dead link (keepalives: about 11 s, `pg_connect.rs`), so this
            // node stops acting on the lease before another can take it.
            let check = std::time::Duration::from_millis(ANSWER_TIMEOUT_MS);
            let answered = !c.is_closed()
                && matches!(
                    tokio::time::timeout(check, c.simple_query("SELECT 1")).await,
                    Ok(Ok(_))
                );
            if answered {
                return Ok(true);
            }
            tracing::warn!("the worker lease's connection does not answer: the lease is given up");
            *lease = None;
            return Ok(false);
        }
        if self.unreachable() {
            // Asked again once a probe reaches PostgreSQL.
            return Ok(false);
        }
        let client = super::pg_ledger::connect(&self.url)
            .await
            .map_err(engine_error)?;
        let held: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&WORKER_LEASE_KEY])
            .await
            .map_err(engine_error)?
            .get(0);
        if held {
            tracing::info!("this node holds the worker lease: it runs the background jobs");
            *lease = Some(client);
        }
        Ok(held)
    }

    /// Run `f` and commit what it changed, with every other write waiting
    /// on this node (see the module's documentation). A write refused
    /// because another changed what it read runs again alone: it locks
    /// the keys it read the first time, then runs `f` reading under those
    /// locks, so that a hot key (a merchant's counter, a terminal's daily
    /// totals) cannot starve it.
    pub fn commit<R, E: From<EngineError>>(
        &self,
        f: impl FnMut(&mut PgTxn<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let started = std::time::Instant::now();
        let r = self.commit_timed(f);
        metrics::histogram!("switch_pg_store_seconds", "op" => "commit").record(started.elapsed());
        r
    }

    fn commit_timed<R, E: From<EngineError>>(
        &self,
        mut f: impl FnMut(&mut PgTxn<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let (r, records) = self.prepare(&mut f)?;
        if records.is_empty() {
            return Ok(r);
        }
        let keys = records.keys().map(|(t, k)| (t, k.to_vec())).collect();
        if self.commit_prepared(records)? {
            return Ok(r);
        }
        self.commit_alone(keys, f)
    }

    /// Run `f` as [`PgKv::commit`] would, but hand back what it would
    /// write instead of committing it: the caller has it committed within
    /// another transaction (the ledger's batch: see
    /// [`super::pg_records`]), or by [`PgKv::commit_prepared`].
    pub fn prepare<R, E: From<EngineError>>(
        &self,
        f: impl FnOnce(&mut PgTxn<'_>) -> Result<R, E>,
    ) -> Result<(R, RecordWrite), E> {
        self.reachable()?;
        let mut txn = PgTxn {
            kv: self,
            alone: None,
            changes: Vec::new(),
            merges: Vec::new(),
            reads: std::cell::RefCell::new(HashMap::new()),
            fetched: std::cell::RefCell::new(HashMap::new()),
        };
        let r = f(&mut txn)?;
        Ok((r, txn.into_records()))
    }

    /// Commit `records` with the next group of this node's writes: true
    /// once committed, false (nothing written) when a key it read changed
    /// meanwhile (its caller runs it again, reading what won).
    pub fn commit_prepared(&self, records: RecordWrite) -> Result<bool, EngineError> {
        if records.is_empty() {
            return Ok(true);
        }
        let (answer, answered) = oneshot::channel();
        let accepted = block(async {
            self.writes
                .send(Write { records, answer })
                .await
                .map_err(|_| engine_error("the store's committers stopped"))?;
            answered
                .await
                .map_err(|_| engine_error("the store's committer stopped"))?
                .map_err(EngineError::from)
        })?;
        if !accepted {
            metrics::counter!("switch_pg_store_conflicts_total").increment(1);
        }
        Ok(accepted)
    }

    /// Run `f` in a transaction of its own that holds, from its start,
    /// the lock of every key in `keys` (taken in one statement, in
    /// ascending order, as a group takes its locks: so it never
    /// deadlocks). If `f` touches a key outside them this time, the
    /// transaction is rolled back and runs again with that key locked too.
    fn commit_alone<R, E: From<EngineError>>(
        &self,
        keys: Vec<(Tree, Vec<u8>)>,
        mut f: impl FnMut(&mut PgTxn<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut locks: Vec<i32> = keys.iter().map(|(t, k)| key_lock(*t, k)).collect();
        for _ in 0..ATTEMPTS_MAX {
            locks.sort_unstable();
            locks.dedup();
            let client = block(self.pool.get()).map_err(engine_error)?;
            let begun = block(async {
                client.batch_execute("BEGIN").await?;
                client
                    .execute(
                        &prepared(&client, LOCK_KEYS).await?,
                        &[&KEY_LOCK_CLASS, &locks],
                    )
                    .await
            });
            if let Err(e) = begun {
                let _ = block(client.batch_execute("ROLLBACK"));
                return Err(engine_error(e).into());
            }
            let mut txn = PgTxn {
                kv: self,
                alone: Some(Alone {
                    client: &client,
                    locked: locks.iter().copied().collect(),
                    outside: std::cell::RefCell::new(Vec::new()),
                }),
                changes: Vec::new(),
                merges: Vec::new(),
                reads: std::cell::RefCell::new(HashMap::new()),
                fetched: std::cell::RefCell::new(HashMap::new()),
            };
            let r = f(&mut txn);
            let alone = txn.alone.as_ref().expect("running alone");
            let mut outside = alone.outside.take();
            outside.extend(
                txn.changes
                    .iter()
                    .map(|(t, k, _)| key_lock(*t, k))
                    .chain(txn.merges.iter().map(|(t, k, _)| key_lock(*t, k)))
                    .filter(|h| !alone.locked.contains(h)),
            );
            let r = match r {
                Ok(r) if outside.is_empty() => r,
                Ok(_) => {
                    let _ = block(client.batch_execute("ROLLBACK"));
                    locks.extend(outside);
                    continue;
                }
                Err(e) => {
                    let _ = block(client.batch_execute("ROLLBACK"));
                    return Err(e);
                }
            };
            match block(txn.write_alone()) {
                Ok(()) => return Ok(r),
                Err(e) => {
                    let _ = block(client.batch_execute("ROLLBACK"));
                    return Err(e.into());
                }
            }
        }
        Err(engine_error(format!(
            "a write touched keys it had not locked {ATTEMPTS_MAX} times"
        ))
        .into())
    }

    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Value>, EngineError> {
        let started = std::time::Instant::now();
        let r = self.get_untimed(tree, key);
        metrics::histogram!("switch_pg_store_seconds", "op" => "get").record(started.elapsed());
        metrics::counter!("switch_pg_store_reads_total", "tree" => tree.name()).increment(1);
        r
    }

    fn get_untimed(&self, tree: Tree, key: &[u8]) -> Result<Option<Value>, EngineError> {
        self.reachable()?;
        block(async {
            let client = self.pool.get().await.map_err(|e| {
                self.mark_unreachable(&e.to_string());
                engine_error(e)
            })?;
            let row = self
                .answered(async {
                    let get = prepared(&client, GET).await.map_err(engine_error)?;
                    client
                        .query_opt(&get, &[&(tree as i16), &key])
                        .await
                        .map_err(engine_error)
                })
                .await?;
            Ok(row.map(|r| Value::from(r.get::<_, Vec<u8>>(0))))
        })
    }

    /// The values of `keys` that are present, in one query (a read like
    /// [`PgKv::get`]).
    fn get_many(
        &self,
        keys: &[(Tree, &[u8])],
    ) -> Result<HashMap<(i16, Vec<u8>), Value>, EngineError> {
        let started = std::time::Instant::now();
        self.reachable()?;
        let trees: Vec<i16> = keys.iter().map(|(t, _)| *t as i16).collect();
        let ks: Vec<&[u8]> = keys.iter().map(|(_, k)| *k).collect();
        let rows = block(async {
            let client = self.pool.get().await.map_err(|e| {
                self.mark_unreachable(&e.to_string());
                engine_error(e)
            })?;
            self.answered(async {
                let many = prepared(&client, GET_MANY).await.map_err(engine_error)?;
                client
                    .query(&many, &[&trees, &ks])
                    .await
                    .map_err(engine_error)
            })
            .await
        })?;
        metrics::histogram!("switch_pg_store_seconds", "op" => "get_many")
            .record(started.elapsed());
        for (t, _) in keys {
            metrics::counter!("switch_pg_store_reads_total", "tree" => t.name()).increment(1);
        }
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    (r.get::<_, i16>(0), r.get::<_, Vec<u8>>(1)),
                    Value::from(r.get::<_, Vec<u8>>(2)),
                )
            })
            .collect())
    }

    pub fn scan(&self, tree: Tree, range: (Bound<Vec<u8>>, Bound<Vec<u8>>), rev: bool) -> PgScan {
        PgScan {
            kv: self.clone(),
            tree,
            lo: range.0,
            hi: range.1,
            rev,
            page: std::collections::VecDeque::new(),
            done: false,
        }
    }

    /// Record a nonce until `expires_ms`; false if it is recorded already.
    /// Refused at once while PostgreSQL is unreachable; one the server
    /// does not answer in [`ANSWER_TIMEOUT_MS`] finds it so (nothing has
    /// been done for the request yet: refusing it is safe, and a retry
    /// signs with a new nonce).
    pub fn first_use(&self, key: &str, expires_ms: i64) -> Result<bool, EngineError> {
        self.reachable()?;
        block(async {
            let client = self.pool.get().await.map_err(|e| {
                self.mark_unreachable(&e.to_string());
                engine_error(e)
            })?;
            let n = self
                .answered(async {
                    let insert = prepared(
                        &client,
                        "INSERT INTO switch_nonces (key, expires_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    )
                    .await
                    .map_err(engine_error)?;
                    client
                        .execute(&insert, &[&key, &expires_ms])
                        .await
                        .map_err(engine_error)
                })
                .await?;
            Ok(n == 1)
        })
    }

    /// Forget nonces past their window.
    pub async fn forget_nonces(&self, now_ms: i64) -> Result<u64, EngineError> {
        let pool = self.pool.clone();
        io_runtime()
            .spawn(async move {
                let client = pool.get().await.map_err(engine_error)?;
                client
                    .execute(
                        "DELETE FROM switch_nonces WHERE expires_ms < $1",
                        &[&now_ms],
                    )
                    .await
                    .map_err(engine_error)
            })
            .await
            .map_err(engine_error)?
    }

    pub fn next_id(&self) -> Result<u64, EngineError> {
        block(async {
            let client = self.pool.get().await.map_err(engine_error)?;
            let row = client
                .query_one("SELECT nextval('switch_ids')", &[])
                .await
                .map_err(engine_error)?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }
}

/// What a write read, by key: the value it saw (`None`: absent).
type Seen = HashMap<(Tree, Vec<u8>), Option<Value>>;

/// A write in progress on PostgreSQL (see `Kv::commit`).
pub struct PgTxn<'a> {
    kv: &'a PgKv,
    /// Set when the write runs alone (after a refusal): its transaction,
    /// and the keys it holds the lock of.
    alone: Option<Alone<'a>>,
    /// Puts (`Some`) and removes (`None`), in order.
    changes: Vec<(Tree, Vec<u8>, Option<Value>)>,
    /// Changes computed at commit time, after `changes`, in order.
    merges: Vec<(Tree, Vec<u8>, Merge)>,
    /// What each key read held when it was first read (`None`: absent),
    /// for the committer to check it still does.
    reads: std::cell::RefCell<Seen>,
    /// Keys read ahead ([`PgTxn::prefetch`]) or peeked ([`PgTxn::peek`]):
    /// a dependency of the write only once [`PgTxn::get`] reads them.
    fetched: std::cell::RefCell<Seen>,
}

/// A write running in a transaction of its own.
struct Alone<'a> {
    client: &'a deadpool_postgres::Object,
    /// The keys (their locks) the transaction holds.
    locked: std::collections::HashSet<i32>,
    /// Keys read that it does not hold: the run is void, and runs again
    /// holding them too.
    outside: std::cell::RefCell<Vec<i32>>,
}

/// A database error with the server's code and message (a
/// `tokio_postgres::Error` displays as just "db error").
use super::pg_connect::describe;

impl PgTxn<'_> {
    /// What this write last changed `key` to (`Some(None)`: removed), if it
    /// changed it.
    fn own_change(&self, tree: Tree, key: &[u8]) -> Option<Option<Value>> {
        self.changes
            .iter()
            .rev()
            .find(|(t, k, _)| *t == tree && k == key)
            .map(|(_, _, v)| v.clone())
    }

    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Value>, EngineError> {
        if let Some(v) = self.own_change(tree, key) {
            return Ok(v);
        }
        let k = (tree, key.to_vec());
        if let Some(v) = self.reads.borrow().get(&k) {
            return Ok(v.clone());
        }
        if self.alone.is_none()
            && let Some(v) = self.fetched.borrow_mut().remove(&k)
        {
            self.reads.borrow_mut().insert(k, v.clone());
            return Ok(v);
        }
        let v = match &self.alone {
            None => self.kv.get(tree, key)?,
            Some(alone) => block(async {
                let h = key_lock(tree, key);
                if !alone.locked.contains(&h) {
                    alone.outside.borrow_mut().push(h);
                }
                let get = prepared(alone.client, GET).await?;
                let row = alone
                    .client
                    .query_opt(&get, &[&(tree as i16), &key])
                    .await?;
                Ok::<_, tokio_postgres::Error>(row.map(|r| Value::from(r.get::<_, Vec<u8>>(0))))
            })
            .map_err(engine_error)?,
        };
        self.reads.borrow_mut().insert(k, v.clone());
        Ok(v)
    }

    /// The value as committed (or as this write changed it) without the
    /// write depending on it: a later change does not refuse the write.
    /// For a value that a merge's guard checks again at commit
    /// ([`super::tree::Merged::Refuse`]). A write running alone reads it
    /// under its locks, as [`PgTxn::get`].
    pub fn peek(&self, tree: Tree, key: &[u8]) -> Result<Option<Value>, EngineError> {
        if self.alone.is_some() {
            return self.get(tree, key);
        }
        if let Some(v) = self.own_change(tree, key) {
            return Ok(v);
        }
        let k = (tree, key.to_vec());
        if let Some(v) = self.reads.borrow().get(&k) {
            return Ok(v.clone());
        }
        if let Some(v) = self.fetched.borrow().get(&k) {
            return Ok(v.clone());
        }
        let v = self.kv.get(tree, key)?;
        self.fetched.borrow_mut().insert(k, v.clone());
        Ok(v)
    }

    pub fn put(&mut self, tree: Tree, key: &[u8], value: Vec<u8>) {
        self.changes
            .push((tree, key.to_vec(), Some(Value::from(value))));
    }

    pub fn remove(&mut self, tree: Tree, key: &[u8]) {
        self.changes.push((tree, key.to_vec(), None));
    }

    /// Read the keys of `keys` not read or changed yet, in one query, as
    /// [`PgTxn::get`] would one by one (a write running alone reads them
    /// under its locks one by one instead, when it comes to them).
    pub fn prefetch(&self, keys: &[(Tree, &[u8])]) -> Result<(), EngineError> {
        if self.alone.is_some() {
            return Ok(());
        }
        let wanted: Vec<(Tree, &[u8])> = {
            let (reads, fetched) = (self.reads.borrow(), self.fetched.borrow());
            keys.iter()
                .copied()
                .filter(|(t, k)| {
                    let k2 = (*t, k.to_vec());
                    !reads.contains_key(&k2)
                        && !fetched.contains_key(&k2)
                        && !self.changes.iter().any(|(ct, ck, _)| ct == t && ck == k)
                })
                .collect()
        };
        if wanted.len() < 2 {
            return Ok(());
        }
        let found = self.kv.get_many(&wanted)?;
        let mut fetched = self.fetched.borrow_mut();
        for (t, k) in wanted {
            let v = found.get(&(t as i16, k.to_vec())).cloned();
            fetched.insert((t, k.to_vec()), v);
        }
        Ok(())
    }

    pub fn merge(&mut self, tree: Tree, key: &[u8], merge: Merge) {
        self.merges.push((tree, key.to_vec(), merge));
    }

    /// What a committer needs (the reads, and the last change to each
    /// key).
    fn into_records(self) -> RecordWrite {
        RecordWrite {
            reads: self
                .reads
                .into_inner()
                .into_iter()
                .map(|((t, k), v)| (t, k, v))
                .collect(),
            changes: last_changes(self.changes),
            merges: self.merges,
        }
    }

    /// Write the changes of a write running alone (locking the keys it
    /// only wrote) and commit.
    async fn write_alone(self) -> Result<(), EngineError> {
        let alone = self.alone.expect("a write running alone");
        let mut changes = self.changes;
        // Merged under the locks held (the run is void, and runs again
        // holding them, if it merged a key it does not hold: see
        // `commit_alone`), over this write's own change to the key if any.
        for (t, k, m) in &self.merges {
            let own = changes
                .iter()
                .rev()
                .find(|(ct, ck, _)| ct == t && ck == k)
                .map(|(_, _, v)| v.clone());
            let current = match own {
                Some(v) => v,
                None => alone
                    .client
                    .query_opt(
                        &prepared(alone.client, GET).await.map_err(engine_error)?,
                        &[&(*t as i16), &k.as_slice()],
                    )
                    .await
                    .map_err(engine_error)?
                    .map(|r| Value::from(r.get::<_, Vec<u8>>(0))),
            };
            match m.apply(current.as_deref())? {
                Merged::Set(merged) => changes.push((*t, k.clone(), Some(Value::from(merged)))),
                Merged::Keep => {}
                // Read under the locks it holds, the write's own checks
                // saw what the guard sees: a refusal here is a bug.
                Merged::Refuse => {
                    return Err(engine_error(format!(
                        "a merge's guard refused a write running alone ({} key)",
                        t.name()
                    )));
                }
            }
        }
        let changes = last_changes(changes);
        let st = Statements::cached(alone.client)
            .await
            .map_err(engine_error)?;
        let changes = changes
            .iter()
            .map(|(t, k, v)| (*t as i16, &k[..], v.as_ref()));
        pg_records::write_changes(&***alone.client, &st, changes)
            .await
            .map_err(engine_error)?;
        alone
            .client
            .batch_execute("COMMIT")
            .await
            .map_err(engine_error)
    }
}

/// The last change to each key of `changes`, in the order the keys were
/// first changed.
fn last_changes(
    changes: Vec<(Tree, Vec<u8>, Option<Value>)>,
) -> Vec<(Tree, Vec<u8>, Option<Value>)> {
    let mut last: HashMap<(Tree, Vec<u8>), Option<Value>> = HashMap::new();
    let mut order = Vec::new();
    for (tree, key, value) in changes {
        let k = (tree, key);
        if !last.contains_key(&k) {
            order.push(k.clone());
        }
        last.insert(k, value);
    }
    order
        .into_iter()
        .map(|k| {
            let v = last.remove(&k).flatten();
            (k.0, k.1, v)
        })
        .collect()
}

/// A write handed to the committers, and where to answer whether it was
/// accepted (committed) or refused (to run again).
struct Write {
    records: RecordWrite,
    answer: oneshot::Sender<Result<bool, Failure>>,
}

/// Takes groups of writes from the queue and commits each group as one
/// transaction, until every sender is gone.
async fn committer(pool: Pool, queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Write>>>) {
    loop {
        let mut group = Vec::new();
        {
            let mut q = queue.lock().await;
            match q.recv().await {
                Some(w) => group.push(w),
                None => return,
            }
            while group.len() < GROUP_WRITES_MAX {
                match q.try_recv() {
                    Ok(w) => group.push(w),
                    Err(_) => break,
                }
            }
        }
        metrics::histogram!("switch_pg_store_group_writes").record(group.len() as f64);
        match commit_group(&pool, &group).await {
            Ok(accepted) => {
                for (w, ok) in group.into_iter().zip(accepted) {
                    let _ = w.answer.send(Ok(ok));
                }
            }
            Err(e) if e.link_lost => {
                // Out of reach, not wrong: the writers' callers are told
                // to try again (see `PgKv::reachable` for the refusals).
                tracing::warn!(error = %e, writes = group.len(), "a group of store writes lost its link");
                for w in group {
                    let _ = w.answer.send(Err(e.clone()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = group.len(), "a group of store writes failed");
                for w in group {
                    let _ = w.answer.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Times a group runs again after failing before its COMMIT was sent
/// (nothing of it can have been committed).
const GROUP_ATTEMPTS_MAX: u32 = 3;

/// Why a group failed: before its COMMIT was sent (it may run again), or
/// at COMMIT (whether it committed is unknown).
enum GroupError {
    Before(Failure),
    AtCommit(Failure),
}

async fn commit_group(pool: &Pool, group: &[Write]) -> Result<Vec<bool>, Failure> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_group(pool, group).await {
            Ok(accepted) => return Ok(accepted),
            Err(GroupError::Before(e)) if attempt < GROUP_ATTEMPTS_MAX => {
                tracing::warn!(error = %e, attempt, "a group of store writes runs again");
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
            }
            Err(GroupError::Before(e)) => return Err(e),
            Err(GroupError::AtCommit(e)) => {
                return Err(Failure {
                    message: format!("commit failed; the writes may or may not be in: {e}"),
                    ..e
                });
            }
        }
    }
}

async fn try_group(pool: &Pool, group: &[Write]) -> Result<Vec<bool>, GroupError> {
    let before = |e: &dyn PgFault| GroupError::Before(Failure::of(e));
    let client = pool.get().await.map_err(|e| before(&e))?;
    let st = Statements::cached(&client).await.map_err(|e| before(&e))?;
    let writes: Vec<&RecordWrite> = group.iter().map(|w| &w.records).collect();
    let result: Result<Vec<bool>, GroupError> = async {
        // BEGIN, the locks and the reads sent together (pipelined): one
        // round trip; the server runs them in order.
        let (begun, read) = tokio::join!(
            client.batch_execute("BEGIN"),
            pg_records::lock_and_read(&**client, &st, &writes)
        );
        begun.map_err(|e| before(&e))?;
        let mut checked = read.map_err(|e| before(&e))?;
        // Each write in arrival order, against the database as the writes
        // accepted before it left it.
        let accepted = writes
            .iter()
            .map(|w| checked.accept(w))
            .collect::<Result<Vec<bool>, EngineError>>()
            .map_err(|e| {
                GroupError::Before(Failure {
                    message: e.to_string(),
                    link_lost: false,
                })
            })?;
        checked
            .write(&**client, &st)
            .await
            .map_err(|e| before(&e))?;
        Ok(accepted)
    }
    .await;
    let accepted = match result {
        Ok(accepted) => accepted,
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| GroupError::AtCommit(Failure::of(&e)))?;
    Ok(accepted)
}

/// A scan a page at a time.
pub struct PgScan {
    kv: PgKv,
    tree: Tree,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    rev: bool,
    page: std::collections::VecDeque<(Vec<u8>, Value)>,
    done: bool,
}

impl PgScan {
    fn fetch(&mut self) -> Result<(), EngineError> {
        let mut sql = String::from("SELECT key, value FROM switch_kv WHERE tree = $1");
        let tree = self.tree as i16;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&tree];
        let lo = match &self.lo {
            Bound::Included(k) | Bound::Excluded(k) => Some(k.clone()),
            Bound::Unbounded => None,
        };
        let hi = match &self.hi {
            Bound::Included(k) | Bound::Excluded(k) => Some(k.clone()),
            Bound::Unbounded => None,
        };
        if let Some(k) = &lo {
            params.push(k);
            let op = if matches!(self.lo, Bound::Included(_)) {
                ">="
            } else {
                ">"
            };
            sql.push_str(&format!(" AND key {op} ${}", params.len()));
        }
        if let Some(k) = &hi {
            params.push(k);
            let op = if matches!(self.hi, Bound::Included(_)) {
                "<="
            } else {
                "<"
            };
            sql.push_str(&format!(" AND key {op} ${}", params.len()));
        }
        sql.push_str(if self.rev {
            " ORDER BY key DESC"
        } else {
            " ORDER BY key"
        });
        sql.push_str(&format!(" LIMIT {SCAN_PAGE_ROWS}"));
        // A read like `PgKv::get`: refused at once while PostgreSQL is
        // unreachable, and marks it so when it does not answer in time.
        let kv = &self.kv;
        kv.reachable()?;
        let rows = block(async {
            let client = kv.pool.get().await.map_err(|e| {
                kv.mark_unreachable(&e.to_string());
                engine_error(e)
            })?;
            kv.answered(async {
                let scan = prepared(&client, &sql).await.map_err(engine_error)?;
                client.query(&scan, &params).await.map_err(engine_error)
            })
            .await
        })?;
        if (rows.len() as i64) < SCAN_PAGE_ROWS {
            self.done = true;
        }
        for r in rows {
            let key: Vec<u8> = r.get(0);
            let value: Vec<u8> = r.get(1);
            self.page.push_back((key, Value::from(value)));
        }
        // The next page starts after the last key of this one.
        if let Some((last, _)) = self.page.back() {
            if self.rev {
                self.hi = Bound::Excluded(last.clone());
            } else {
                self.lo = Bound::Excluded(last.clone());
            }
        }
        Ok(())
    }
}

impl Iterator for PgScan {
    type Item = Result<(Vec<u8>, Value), EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty()
            && !self.done
            && let Err(e) = self.fetch()
        {
            self.done = true;
            return Some(Err(e));
        }
        self.page.pop_front().map(Ok)
    }
}

impl PgKv {
    /// Call `on_notice` whenever any node commits a write that stores
    /// merchants' notices (and every `LISTEN_OWNER_CHECK_MS` when quiet),
    /// until `on_notice` answers false (its owner is gone). A lost connection is made again after a second; a
    /// notification sent meanwhile is lost, which the watchers' rescan
    /// covers.
    pub fn listen_payments(&self, on_notice: impl Fn() -> bool + Send + Sync + 'static) {
        let url = self.url.clone();
        io_runtime().spawn(async move {
            loop {
                match listen_once(&url, &on_notice).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for payment notices failed; again in a second");
                        // Whatever was notified meanwhile: read again.
                        if !on_notice() {
                            return;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(LISTEN_RETRY_MS)).await;
                    }
                }
            }
        });
    }
}

/// One listening connection, until it fails (`Err`) or `on_notice` says
/// stop (`Ok`).
async fn listen_once(url: &str, on_notice: &impl Fn() -> bool) -> Result<(), String> {
    use futures_util::StreamExt;
    let (config, tls) = super::pg_connect::parse(url)?;
    let (client, mut connection) = config.connect(tls).await.map_err(|e| describe(&e))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                    if tx.send(Ok(())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(describe(&e)));
                    return;
                }
            }
        }
        let _ = tx.send(Err("the connection closed".to_string()));
    });
    let listening = client
        .batch_execute(&format!("LISTEN {PAYMENTS_CHANNEL}"))
        .await
        .map_err(|e| describe(&e));
    let result = match listening {
        Err(e) => Err(e),
        Ok(()) => loop {
            let got = tokio::select! {
                got = rx.recv() => got,
                // Now and then, whether anyone still listens (a switch
                // dropped in tests): a spurious wake costs a read.
                _ = tokio::time::sleep(std::time::Duration::from_millis(LISTEN_OWNER_CHECK_MS)) => Some(Ok(())),
            };
            match got {
                Some(Ok(())) => {
                    if !on_notice() {
                        break Ok(());
                    }
                }
                Some(Err(e)) => break Err(e),
                None => break Err("the connection's driver stopped".to_string()),
            }
        },
    };
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two nodes' stores on one database, eight writers each: every
    /// read-modify-write of a shared counter lands (none lost to another),
    /// every merge counts once (in a group or run alone), and of all the
    /// writers creating one key if absent, one wins.
    /// A counter's value plus one (a [`Merge`]).
    fn add_one(value: Option<&[u8]>, _: &[u8]) -> Result<Merged, String> {
        let n = match value {
            Some(v) => u64::from_be_bytes(v.try_into().map_err(|_| "not 8 bytes")?),
            None => 0,
        };
        Ok(Merged::Set((n + 1).to_be_bytes().to_vec()))
    }

    #[test]
    fn writes_racing_on_two_nodes_lose_no_update_and_create_a_key_once() {
        let pg = pgtest::Cluster::start();
        pg.psql("postgres", "CREATE DATABASE kv");
        let url = pg.url("kv");
        io_runtime()
            .block_on(super::super::pg_ledger::migrate(&url))
            .unwrap();
        let nodes = [PgKv::open(&url).unwrap(), PgKv::open(&url).unwrap()];
        const WRITERS: usize = 8;
        const INCREMENTS: u64 = 40;
        const GUARDED_TRIES: usize = 10;
        const GUARDED_MAX: u64 = 50;
        let created = std::sync::atomic::AtomicUsize::new(0);
        let counted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for i in 0..WRITERS * 2 {
                let (kv, created, counted) = (&nodes[i % 2], &created, &counted);
                s.spawn(move || {
                    for _ in 0..INCREMENTS {
                        kv.commit(|t| {
                            let n = t
                                .get(Tree::Daily, b"counter")?
                                .map_or(0, |v| u64::from_be_bytes(v[..8].try_into().unwrap()));
                            t.put(Tree::Daily, b"counter", (n + 1).to_be_bytes().to_vec());
                            // Each writer's own key, written blind.
                            t.put(
                                Tree::Daily,
                                format!("w{i}").as_bytes(),
                                n.to_be_bytes().to_vec(),
                            );
                            // A merge on a key every writer adds to: in
                            // groups and in writes run alone alike.
                            t.merge(
                                Tree::Stats,
                                b"merged",
                                Merge {
                                    f: add_one,
                                    arg: Vec::new(),
                                },
                            );
                            Ok::<_, EngineError>(())
                        })
                        .unwrap();
                    }
                    // A limited total every writer counts in: peeked, and
                    // added to by a guarded merge, which refuses a write that
                    // would pass the most (run again, it sees it is over).
                    for _ in 0..GUARDED_TRIES {
                        let added = kv
                            .commit(|t| {
                                let n = super::super::tree::total_of(
                                    t.peek(Tree::Daily, b"limited")?.as_deref(),
                                )
                                .map_err(EngineError::Postgres)?;
                                if n + 1 > GUARDED_MAX {
                                    return Ok::<_, EngineError>(false);
                                }
                                t.merge(Tree::Daily, b"limited", Merge::add_within(1, GUARDED_MAX));
                                Ok(true)
                            })
                            .unwrap();
                        if added {
                            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    let won = kv
                        .commit(|t| {
                            if t.get(Tree::Claims, b"claim")?.is_some() {
                                return Ok::<_, EngineError>(false);
                            }
                            t.put(Tree::Claims, b"claim", format!("w{i}").into_bytes());
                            Ok(true)
                        })
                        .unwrap();
                    if won {
                        created.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        let counter = nodes[1].get(Tree::Daily, b"counter").unwrap().unwrap();
        assert_eq!(
            u64::from_be_bytes(counter[..8].try_into().unwrap()),
            (WRITERS * 2) as u64 * INCREMENTS
        );
        let merged = nodes[0].get(Tree::Stats, b"merged").unwrap().unwrap();
        assert_eq!(
            u64::from_be_bytes(merged[..8].try_into().unwrap()),
            (WRITERS * 2) as u64 * INCREMENTS,
            "every merge counted once"
        );
        assert_eq!(created.load(std::sync::atomic::Ordering::SeqCst), 1);
        let limited = nodes[1].get(Tree::Daily, b"limited").unwrap();
        assert_eq!(
            super::super::tree::total_of(limited.as_deref()),
            Ok(GUARDED_MAX),
            "the guard let the total reach its most, never pass it"
        );
        assert_eq!(
            counted.load(std::sync::atomic::Ordering::SeqCst),
            GUARDED_MAX,
            "every write the guard let through counted once"
        );
        let holder = nodes[0].get(Tree::Claims, b"claim").unwrap().unwrap();
        assert!(holder.starts_with(b"w"));
        // A remove goes through the same path.
        nodes[0]
            .commit(|t| {
                t.remove(Tree::Claims, b"claim");
                Ok::<_, EngineError>(())
            })
            .unwrap();
        assert!(nodes[1].get(Tree::Claims, b"claim").unwrap().is_none());
    }
}
