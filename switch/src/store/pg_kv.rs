//! The store's engine on PostgreSQL (issue #14): the trees of
//! [`super::kv::Tree`] as rows of one table, shared by every node.
//!
//! A write ([`PgKv::commit`]) is one PostgreSQL transaction. Every key the
//! write reads is locked (`FOR UPDATE`) until it commits, so what it read
//! is what it overwrites; a key it read as absent is inserted, not
//! upserted, so that two nodes creating the same key (the same request id,
//! the same claim on a QR code or a bill) cannot both succeed: the second
//! fails on the primary key, and the write runs again from the start,
//! reading what the first left. A deadlock the server breaks is run again
//! the same way. A write is durable when it returns.
//!
//! The store's API is synchronous (the embedded engine answers from
//! memory); here each call waits for the server with
//! `tokio::task::block_in_place`, which needs the multi-threaded runtime
//! (the switch's; tests of this backend use it too). Making the store's
//! API async would remove that wait; it is not done yet.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::tree::{Tree, Value};

/// Connections one node keeps at most.
const POOL_SIZE_MAX: usize = 32;
/// Turns held at once at most (each holds a connection).
const LOCK_POOL_SIZE_MAX: usize = 64;
/// Times a write runs again after a conflict with another writer.
const ATTEMPTS_MAX: u32 = 20;
/// Rows a scan fetches at a time.
const SCAN_PAGE_ROWS: i64 = 256;

/// The engine's errors travel as the store's (`sled::Error`, an I/O error
/// naming PostgreSQL), so that the store has one engine error type.
fn engine_error(e: impl std::fmt::Display) -> sled::Error {
    sled::Error::Io(std::io::Error::other(format!("postgres: {e}")))
}

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

fn conflict(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        [
            SqlState::UNIQUE_VIOLATION,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::T_R_SERIALIZATION_FAILURE,
        ]
        .contains(c)
    })
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
    pub fn open(url: &str) -> Result<PgKv, sled::Error> {
        let config: tokio_postgres::Config = url.parse().map_err(engine_error)?;
        let pool = |size| {
            let manager = Manager::from_config(
                config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .build()
                .map_err(engine_error)
        };
        Ok(PgKv {
            pool: pool(POOL_SIZE_MAX)?,
            locks: pool(LOCK_POOL_SIZE_MAX)?,
            url: url.to_string(),
            lease: Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    /// Wait for the turn named `key` among every node.
    pub async fn lock(&self, key: i64) -> Result<NodeLock, sled::Error> {
        let locks = self.locks.clone();
        io_runtime()
            .spawn(async move {
                let client = locks.get().await.map_err(engine_error)?;
                client.batch_execute("BEGIN").await.map_err(engine_error)?;
                client
                    .execute("SELECT pg_advisory_xact_lock($1)", &[&key])
                    .await
                    .map_err(engine_error)?;
                Ok(NodeLock(Some(client)))
            })
            .await
            .map_err(engine_error)?
    }

    /// Does this node hold the worker lease (taking it if nobody does)?
    pub async fn worker_lease(&self) -> Result<bool, sled::Error> {
        let me = self.clone();
        io_runtime()
            .spawn(async move { me.take_lease().await })
            .await
            .map_err(engine_error)?
    }

    async fn take_lease(&self) -> Result<bool, sled::Error> {
        let mut lease = self.lease.lock().await;
        if let Some(c) = lease.as_ref() {
            if !c.is_closed() {
                return Ok(true);
            }
            tracing::warn!("the worker lease's connection closed; the lease is lost");
            *lease = None;
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

    pub fn commit<R, E: From<sled::Error>>(
        &self,
        mut f: impl FnMut(&mut PgTxn<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let client = block(self.pool.get()).map_err(engine_error)?;
            block(client.batch_execute("BEGIN")).map_err(engine_error)?;
            let mut txn = PgTxn {
                client: &client,
                changes: Vec::new(),
                absent: std::cell::RefCell::new(HashSet::new()),
            };
            let r = match f(&mut txn) {
                Ok(r) => r,
                Err(e) => {
                    let _ = block(client.batch_execute("ROLLBACK"));
                    return Err(e);
                }
            };
            match block(txn.write_and_commit()) {
                Ok(()) => return Ok(r),
                Err(e) => {
                    let _ = block(client.batch_execute("ROLLBACK"));
                    if conflict(&e) && attempt < ATTEMPTS_MAX {
                        metrics::counter!("switch_pg_store_conflicts_total").increment(1);
                        continue;
                    }
                    return Err(engine_error(e).into());
                }
            }
        }
    }

    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Value>, sled::Error> {
        block(async {
            let client = self.pool.get().await.map_err(engine_error)?;
            let row = client
                .query_opt(
                    "SELECT value FROM switch_kv WHERE tree = $1 AND key = $2",
                    &[&(tree as i16), &key],
                )
                .await
                .map_err(engine_error)?;
            Ok(row.map(|r| Value::from(r.get::<_, Vec<u8>>(0))))
        })
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
    pub fn first_use(&self, key: &str, expires_ms: i64) -> Result<bool, sled::Error> {
        block(async {
            let client = self.pool.get().await.map_err(engine_error)?;
            let n = client
                .execute(
                    "INSERT INTO switch_nonces (key, expires_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&key, &expires_ms],
                )
                .await
                .map_err(engine_error)?;
            Ok(n == 1)
        })
    }

    /// Forget nonces past their window.
    pub async fn forget_nonces(&self, now_ms: i64) -> Result<u64, sled::Error> {
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

    pub fn next_id(&self) -> Result<u64, sled::Error> {
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

/// A write in progress on PostgreSQL (see `Kv::commit`).
pub struct PgTxn<'a> {
    client: &'a deadpool_postgres::Object,
    /// Puts (`Some`) and removes (`None`), in order.
    changes: Vec<(Tree, Vec<u8>, Option<Value>)>,
    /// Keys read and found absent: created by an insert that fails if
    /// another writer created them first.
    absent: std::cell::RefCell<HashSet<(Tree, Vec<u8>)>>,
}

impl PgTxn<'_> {
    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Value>, sled::Error> {
        if let Some((_, _, v)) = self
            .changes
            .iter()
            .rev()
            .find(|(t, k, _)| *t == tree && k == key)
        {
            return Ok(v.clone());
        }
        let row = block(self.client.query_opt(
            "SELECT value FROM switch_kv WHERE tree = $1 AND key = $2 FOR UPDATE",
            &[&(tree as i16), &key],
        ))
        .map_err(engine_error)?;
        match row {
            Some(r) => Ok(Some(Value::from(r.get::<_, Vec<u8>>(0)))),
            None => {
                self.absent.borrow_mut().insert((tree, key.to_vec()));
                Ok(None)
            }
        }
    }

    pub fn put(&mut self, tree: Tree, key: &[u8], value: Vec<u8>) {
        self.changes
            .push((tree, key.to_vec(), Some(Value::from(value))));
    }

    pub fn remove(&mut self, tree: Tree, key: &[u8]) {
        self.changes.push((tree, key.to_vec(), None));
    }

    async fn write_and_commit(mut self) -> Result<(), tokio_postgres::Error> {
        // The last change to each key wins.
        let mut last: HashMap<(Tree, Vec<u8>), Option<Value>> = HashMap::new();
        let mut order = Vec::new();
        for (tree, key, value) in std::mem::take(&mut self.changes) {
            let k = (tree, key);
            if !last.contains_key(&k) {
                order.push(k.clone());
            }
            last.insert(k, value);
        }
        let absent = self.absent.take();
        let (mut new_trees, mut new_keys, mut new_values) = (Vec::new(), Vec::new(), Vec::new());
        let (mut up_trees, mut up_keys, mut up_values) = (Vec::new(), Vec::new(), Vec::new());
        let (mut del_trees, mut del_keys) = (Vec::new(), Vec::new());
        for k in order {
            let was_absent = absent.contains(&k);
            match last.remove(&k).flatten() {
                // Read as absent: created by a plain insert, which fails if
                // another writer created it meanwhile (then this write runs
                // again and reads theirs).
                Some(v) if was_absent => {
                    new_trees.push(k.0 as i16);
                    new_keys.push(k.1);
                    new_values.push(v.to_vec());
                }
                // Read (and so locked) or not read at all: written whatever
                // is there.
                Some(v) => {
                    up_trees.push(k.0 as i16);
                    up_keys.push(k.1);
                    up_values.push(v.to_vec());
                }
                None => {
                    del_trees.push(k.0 as i16);
                    del_keys.push(k.1);
                }
            }
        }
        if !del_keys.is_empty() {
            self.client
                .execute(
                    "DELETE FROM switch_kv USING UNNEST($1::smallint[], $2::bytea[]) AS u(tree, key)
                     WHERE switch_kv.tree = u.tree AND switch_kv.key = u.key",
                    &[&del_trees, &del_keys],
                )
                .await?;
        }
        if !new_keys.is_empty() {
            self.client
                .execute(
                    "INSERT INTO switch_kv (tree, key, value)
                     SELECT * FROM UNNEST($1::smallint[], $2::bytea[], $3::bytea[])",
                    &[&new_trees, &new_keys, &new_values],
                )
                .await?;
        }
        if !up_keys.is_empty() {
            self.client
                .execute(
                    "INSERT INTO switch_kv (tree, key, value)
                     SELECT * FROM UNNEST($1::smallint[], $2::bytea[], $3::bytea[])
                     ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
                    &[&up_trees, &up_keys, &up_values],
                )
                .await?;
        }
        self.client.batch_execute("COMMIT").await
    }
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
    fn fetch(&mut self) -> Result<(), sled::Error> {
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
        let rows = block(async {
            let client = self.kv.pool.get().await.map_err(engine_error)?;
            client.query(&sql, &params).await.map_err(engine_error)
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
    type Item = Result<(Vec<u8>, Value), sled::Error>;

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
