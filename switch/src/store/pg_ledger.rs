//! The ledger in PostgreSQL, shared by every node (issue #14).
//!
//! The rules are the embedded ledger's own: each batch loads what it
//! touches, runs [`ledger::batch::apply`] on it, and writes back what
//! changed, in one PostgreSQL transaction. What this module adds is how
//! several nodes share the tables without losing an update, breaking a
//! limit, serialising on a hot row or deadlocking:
//!
//! - **Group commit per node.** One writer task per node takes every
//!   request waiting (up to [`EVENTS_MAX`] events) into one transaction, so
//!   a node commits once for many flows.
//! - **Locks in one order.** A batch locks the pending transfers it posts,
//!   voids or expires (`FOR UPDATE`, by id), then the balance rows of the
//!   limited accounts it touches (by id), and inserts its transfers by id.
//!   Every batch on every node takes locks in that order, so none waits for
//!   another that waits for it (Mojaloop's deadlocks, mojaloop/project#4021
//!   and #1190, came from taking the same rows in different orders).
//! - **Hot accounts are sharded.** An account without limits (a bank's
//!   settlement account, the fee account: touched by every flow) keeps one
//!   balance row per writer; a batch adds its changes to its own writer's
//!   row, which no other writer touches, and reads the sum without locking
//!   (nothing can fail on it). An account with a limit (a post office's
//!   e-float) has one row, locked while the batch checks and changes it;
//!   only that post office's counters contend for it.
//! - **Idempotent ids make retries safe.** A batch that fails for a reason
//!   that is not its fault (a deadlock the server broke anyway, two nodes
//!   inserting the same new id, a lost connection, even one lost during
//!   COMMIT) is run again from the start: whatever it already committed is
//!   now recorded under its ids and answers as a retry.
//! - **Commit order for windows.** Transfers take numbers from a sequence
//!   as they are inserted; [`PgLedger::cut`] takes a SHARE lock on the
//!   table (which waits for every writer in flight and holds new ones
//!   back), reads the sequence, and releases it: every transfer committed
//!   before has a number at most the cut, every later one a greater one.
//!
//! Durability is PostgreSQL's: a batch is answered after COMMIT returns,
//! which with `synchronous_commit = on` (and a synchronous standby, where
//! one is configured) means it is on disk (on both).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ledger::batch::{self, Loaded, Prior};
use ledger::{
    Account, AccountFlags, AccountReject, Balances, CheckReport, CurrencyTotals, NewAccount,
    NewTransfer, Outcome, Receipt, Request, Transfer, TransferReject, TransferStatus,
};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row};

use super::pg_records::{self, RecordWrite};

/// Read connections per node at most.
const READ_POOL_SIZE_MAX: usize = 8;
/// Writers per node: batches in flight at once (each has its own
/// connection and shard; a second one commits while the first waits for
/// its fsync).
pub const WRITERS: usize = 2;
/// Events one batch takes at most (a batch is one transaction).
pub const EVENTS_MAX: usize = 4_096;
/// Requests waiting for the writer at most; past it, callers wait to queue.
const QUEUE_REQUESTS_MAX: usize = 8_192;
/// Times a batch is run again after a failure that is not its own.
const ATTEMPTS_MAX: u32 = 30;
/// Due pending transfers one batch expires at most.
const EXPIRE_BATCH_MAX: i64 = 256;
/// How often an idle writer looks for pending transfers past their timeout.
const EXPIRE_INTERVAL_MS: u64 = 1_000;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Why the database could not answer (never a business outcome).
#[derive(Debug)]
pub enum PgError {
    Db(tokio_postgres::Error),
    /// A stored record does not decode.
    Undecodable(String),
    /// The schema could not be brought up to date.
    Migration(String),
    /// The writer stopped (the switch is shutting down).
    Stopped,
    /// A batch kept failing for reasons not its own.
    GaveUp(String),
    /// The connection string cannot be used (its TLS settings, say).
    Connect(String),
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgError::Db(e) => write!(f, "postgres: {}", super::pg_connect::describe(e)),
            PgError::Connect(e) => write!(f, "cannot connect to PostgreSQL: {e}"),
            PgError::Undecodable(w) => write!(f, "a stored ledger record does not decode: {w}"),
            PgError::Migration(e) => write!(f, "schema migration failed: {e}"),
            PgError::Stopped => write!(f, "the ledger writer stopped"),
            PgError::GaveUp(e) => write!(f, "a ledger batch kept failing: {e}"),
        }
    }
}

impl std::error::Error for PgError {}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> PgError {
        PgError::Db(e)
    }
}

fn id_bytes(id: u128) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

fn id_of(b: &[u8]) -> Result<u128, PgError> {
    <[u8; 16]>::try_from(b)
        .map(u128::from_be_bytes)
        .map_err(|_| PgError::Undecodable(format!("an id of {} bytes", b.len())))
}

fn account_of(id: u128, body: &[u8]) -> Result<Account, PgError> {
    Account::decode(body)
        .filter(|a| a.id() == id)
        .ok_or_else(|| PgError::Undecodable(format!("account {id:032x}")))
}

fn transfer_of(id: u128, body: &[u8]) -> Result<Transfer, PgError> {
    Transfer::decode(body)
        .filter(|t| t.id() == id)
        .ok_or_else(|| PgError::Undecodable(format!("transfer {id:032x}")))
}

/// A numeric column read as text (exact for any balance).
fn u128_of(text: &str) -> Result<u128, PgError> {
    text.parse()
        .map_err(|_| PgError::Undecodable(format!("a balance {text:?}")))
}

fn status_code(s: TransferStatus) -> i16 {
    match s {
        TransferStatus::Pending => 1,
        TransferStatus::Posted => 2,
        TransferStatus::Voided => 3,
        TransferStatus::Expired => 4,
    }
}

fn now_ns() -> u64 {
    crate::clock::now_ns()
}

/// Open a connection; its I/O runs on a task of its own.
pub async fn connect(url: &str) -> Result<Client, PgError> {
    let (config, tls) = super::pg_connect::parse(url).map_err(PgError::Connect)?;
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

/// The advisory lock key nodes take turns on to migrate ("SWMG").
const MIGRATION_TURN: i64 = 0x5357_4d47;

/// Bring the schema up to date (versioned migrations, each applied once).
/// Nodes starting together take turns (a session advisory lock, held
/// until this connection ends): the first applies, the others find the
/// schema current.
pub async fn migrate(url: &str) -> Result<(), PgError> {
    let mut client = connect(url).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_TURN])
        .await?;
    let report = embedded::migrations::runner()
        .run_async(&mut client)
        .await
        .map_err(|e| PgError::Migration(e.to_string()));
    // The turn ends with the connection in any case; released at once on
    // success so the next node need not wait for the drop.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_TURN])
        .await;
    let report = report?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "schema migration applied");
    }
    Ok(())
}

struct Job {
    request: Request,
    /// The store's records that commit in the same transaction.
    records: Option<Attached>,
    reply: oneshot::Sender<Result<Answer, String>>,
}

/// The store's records that commit in a batch's transaction with one
/// request (a flow step as one write, issue #26; see
/// [`super::pg_records`]): their keys are locked before any of the
/// ledger's rows.
#[derive(Default)]
pub struct Attached {
    /// Committed with the request, or neither: if a key it read changed,
    /// the request is not applied at all (its caller runs the step again).
    pub with: Option<RecordWrite>,
    /// Committed only if every event of the request applied (and what it
    /// read still holds).
    pub if_applied: Option<RecordWrite>,
}

/// What a request with records answers.
pub struct Answer {
    /// The request's outcome; `None` when its records were refused and it
    /// was not applied.
    pub outcome: Option<Outcome>,
    /// Whether `if_applied` was committed.
    pub if_applied: bool,
}

/// The ledger in PostgreSQL, as one node sees it: a writer task with a
/// shard of its own, and a connection for reads.
pub struct PgLedger {
    jobs: mpsc::Sender<Job>,
    /// Connections for reads (a pool: one that broke, say when the
    /// primary changed, is replaced by a new one to the new primary).
    reads: deadpool_postgres::Pool,
    /// The first writer's balance shard (for diagnostics).
    pub shard: i32,
}

impl PgLedger {
    /// Connect, migrate, and start [`WRITERS`] writers, each with a shard.
    pub async fn open(url: &str) -> Result<PgLedger, PgError> {
        PgLedger::open_with(url, WRITERS).await
    }

    /// The same with `writers` writers (batches in flight at once).
    pub async fn open_with(url: &str, writers: usize) -> Result<PgLedger, PgError> {
        migrate(url).await?;
        let (config, tls) = super::pg_connect::parse(url).map_err(PgError::Connect)?;
        let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::from_config(
            config,
            tls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        ))
        .max_size(READ_POOL_SIZE_MAX)
        .build()
        .map_err(|e| PgError::GaveUp(e.to_string()))?;
        let reads = pool
            .get()
            .await
            .map_err(|e| PgError::GaveUp(e.to_string()))?;
        let shard: i64 = reads
            .query_one("SELECT nextval('ledger_shard_seq')", &[])
            .await?
            .get(0);
        let shard = i32::try_from(shard).map_err(|_| PgError::Undecodable("shard".into()))?;
        let (jobs, rx) = mpsc::channel(QUEUE_REQUESTS_MAX);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        tokio::spawn(writer(url.to_string(), shard, rx.clone()));
        let mut shards = vec![shard];
        for _ in 1..writers.max(1) {
            let more: i64 = reads
                .query_one("SELECT nextval('ledger_shard_seq')", &[])
                .await?
                .get(0);
            let more = i32::try_from(more).map_err(|_| PgError::Undecodable("shard".into()))?;
            tokio::spawn(writer(url.to_string(), more, rx.clone()));
            shards.push(more);
        }
        tracing::info!(?shards, "postgres ledger open");
        drop(reads);
        Ok(PgLedger {
            jobs,
            reads: pool,
            shard,
        })
    }

    async fn submit(&self, request: Request) -> Result<Outcome, PgError> {
        let answer = self.submit_with(request, None).await?;
        Ok(answer
            .outcome
            .expect("a request without records is always applied"))
    }

    /// Submit `request` with `records` to commit in the same transaction
    /// (see [`Attached`]).
    pub async fn submit_with(
        &self,
        request: Request,
        records: Option<Attached>,
    ) -> Result<Answer, PgError> {
        let started = std::time::Instant::now();
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job {
                request,
                records,
                reply,
            })
            .await
            .map_err(|_| PgError::Stopped)?;
        let answer = rx
            .await
            .map_err(|_| PgError::Stopped)?
            .map_err(PgError::GaveUp);
        // Queueing included: what a flow waits for its ledger batch.
        metrics::histogram!("switch_pg_ledger_request_seconds").record(started.elapsed());
        answer
    }

    pub async fn create_transfers(
        &self,
        events: Vec<NewTransfer>,
    ) -> Result<Vec<Result<Receipt, TransferReject>>, PgError> {
        match self.submit(Request::Transfers(events)).await? {
            Outcome::Transfers(r) => Ok(r),
            Outcome::Accounts(_) => unreachable!("transfers answer with transfers"),
        }
    }

    pub async fn create_accounts(
        &self,
        events: Vec<NewAccount>,
    ) -> Result<Vec<Result<Receipt, AccountReject>>, PgError> {
        match self.submit(Request::Accounts(events)).await? {
            Outcome::Accounts(r) => Ok(r),
            Outcome::Transfers(_) => unreachable!("accounts answer with accounts"),
        }
    }

    /// An account with its balances (the sum of its shards).
    pub async fn lookup_account(&self, id: u128) -> Result<Option<Account>, PgError> {
        let reads = self.reads().await?;
        let row = reads
            .query_opt(
                "SELECT a.body, sum(b.debits_pending)::text, sum(b.debits_posted)::text,
                        sum(b.credits_pending)::text, sum(b.credits_posted)::text
                 FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
                 WHERE a.id = $1 GROUP BY a.id, a.body",
                &[&id_bytes(id)],
            )
            .await?;
        row.map(|r| Ok(account_of(id, r.get(0))?.with_balances(balances(&r, 1)?)))
            .transpose()
    }

    pub async fn lookup_transfer(&self, id: u128) -> Result<Option<Transfer>, PgError> {
        let reads = self.reads().await?;
        let row = reads
            .query_opt(
                "SELECT body FROM ledger_transfers WHERE id = $1",
                &[&id_bytes(id)],
            )
            .await?;
        row.map(|r| transfer_of(id, r.get(0))).transpose()
    }

    /// The commit-order mark of everything committed so far: every
    /// transfer committed before this call returns has a number at most
    /// the mark, every transfer committed after it a greater one.
    pub async fn cut(&self) -> Result<u64, PgError> {
        let reads = self.reads().await?;
        reads.batch_execute("BEGIN").await?;
        let result = async {
            reads
                .batch_execute("LOCK TABLE ledger_transfers IN SHARE MODE")
                .await?;
            let row = reads
                .query_one("SELECT last_value, is_called FROM ledger_commit_seq", &[])
                .await?;
            let (last, called): (i64, bool) = (row.get(0), row.get(1));
            Ok::<u64, PgError>(if called { last as u64 } else { 0 })
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        reads.batch_execute(end).await?;
        result
    }

    /// Transfers with commit numbers in `(after, to]`, in commit order, at
    /// most `limit`: each with its number (the next page starts after the
    /// last one).
    pub async fn transfers_between(
        &self,
        after: u64,
        to: u64,
        limit: u32,
    ) -> Result<Vec<(u64, Transfer)>, PgError> {
        let reads = self.reads().await?;
        let rows = reads
            .query(
                "SELECT id, seq, body FROM ledger_transfers
                 WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
                &[&(after as i64), &(to as i64), &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let id = id_of(r.get(0))?;
                Ok((r.get::<_, i64>(1) as u64, transfer_of(id, r.get(2))?))
            })
            .collect()
    }

    /// Transfers of `account` (either side) with commit numbers in
    /// `(after, to]`, in commit order, at most `limit`, each with its number.
    pub async fn account_transfers_between(
        &self,
        account: u128,
        after: u64,
        to: u64,
        limit: u32,
    ) -> Result<Vec<(u64, Transfer)>, PgError> {
        let reads = self.reads().await?;
        let rows = reads
            .query(
                "SELECT id, seq, body FROM ledger_transfers
                 WHERE (debit_account_id = $1 OR credit_account_id = $1) AND seq > $2 AND seq <= $3
                 ORDER BY seq LIMIT $4",
                &[
                    &id_bytes(account),
                    &(after as i64),
                    &(to.min(i64::MAX as u64) as i64),
                    &i64::from(limit),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let id = id_of(r.get(0))?;
                Ok((r.get::<_, i64>(1) as u64, transfer_of(id, r.get(2))?))
            })
            .collect()
    }

    /// The ledger's invariants over the whole database: per currency,
    /// debits equal credits (pending and posted); no account's balance
    /// below zero in any column or past its limit; the pending balances
    /// equal the unresolved pending transfers.
    pub async fn check(&self) -> Result<CheckReport, PgError> {
        let reads = self.reads().await?;
        // One snapshot for every query.
        reads
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let report = self.check_in_snapshot(&reads).await;
        reads.batch_execute("COMMIT").await?;
        report
    }

    async fn reads(&self) -> Result<deadpool_postgres::Object, PgError> {
        self.reads
            .get()
            .await
            .map_err(|e| PgError::GaveUp(format!("no connection for reads: {e}")))
    }

    async fn check_in_snapshot(
        &self,
        reads: &deadpool_postgres::Object,
    ) -> Result<CheckReport, PgError> {
        let mut violations = Vec::new();
        let mut currencies = Vec::new();
        for r in reads
            .query(
                "SELECT a.currency, coalesce(sum(b.debits_pending), 0)::text,
                        coalesce(sum(b.debits_posted), 0)::text,
                        coalesce(sum(b.credits_pending), 0)::text,
                        coalesce(sum(b.credits_posted), 0)::text
                 FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
                 GROUP BY a.currency ORDER BY a.currency",
                &[],
            )
            .await?
        {
            let currency = u16::try_from(r.get::<_, i32>(0))
                .map_err(|_| PgError::Undecodable("a currency".into()))?;
            let b = balances(&r, 1)?;
            if b.debits_pending != b.credits_pending {
                violations.push(format!(
                    "currency {currency}: pending debits {} != credits {}",
                    b.debits_pending, b.credits_pending
                ));
            }
            if b.debits_posted != b.credits_posted {
                violations.push(format!(
                    "currency {currency}: posted debits {} != credits {}",
                    b.debits_posted, b.credits_posted
                ));
            }
            currencies.push(CurrencyTotals {
                currency,
                debits_pending: b.debits_pending,
                debits_posted: b.debits_posted,
                credits_pending: b.credits_pending,
                credits_posted: b.credits_posted,
            });
        }
        let mut accounts = 0;
        for r in reads
            .query(
                "SELECT a.id, a.body, sum(b.debits_pending)::text, sum(b.debits_posted)::text,
                        sum(b.credits_pending)::text, sum(b.credits_posted)::text
                 FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
                 GROUP BY a.id, a.body",
                &[],
            )
            .await?
        {
            accounts += 1;
            let id = id_of(r.get(0))?;
            // A negative sum does not parse as u128: a violation, not a
            // decoding failure.
            let b = match balances(&r, 2) {
                Ok(b) => b,
                Err(_) => {
                    violations.push(format!("account {id:032x}: a balance below zero"));
                    continue;
                }
            };
            let a = account_of(id, r.get(1))?.with_balances(b);
            if !a.within_limits() {
                violations.push(format!("account {id:032x} is past its limit"));
            }
        }
        let pending = reads
            .query_one(
                "SELECT count(*), coalesce(sum(amount), 0)::text FROM ledger_transfers WHERE status = 1",
                &[],
            )
            .await?;
        let pending_transfers = pending.get::<_, i64>(0) as usize;
        let pending_sum = u128_of(pending.get(1))?;
        let reserved: u128 = currencies.iter().map(|c| c.debits_pending).sum();
        if pending_sum != reserved {
            violations.push(format!(
                "unresolved pending transfers hold {pending_sum}, accounts show {reserved} pending"
            ));
        }
        let seq = reads
            .query_one("SELECT coalesce(max(seq), 0) FROM ledger_transfers", &[])
            .await?
            .get::<_, i64>(0) as u64;
        Ok(CheckReport {
            seq,
            accounts,
            pending_transfers,
            currencies,
            index_compared: false,
            violations,
        })
    }
}

/// Four balance columns (as text) from `first` on.
fn balances(r: &Row, first: usize) -> Result<Balances, PgError> {
    Ok(Balances {
        timestamp: 0,
        debits_pending: u128_of(r.get(first))?,
        debits_posted: u128_of(r.get(first + 1))?,
        credits_pending: u128_of(r.get(first + 2))?,
        credits_posted: u128_of(r.get(first + 3))?,
    })
}

/// The statements a writer runs, prepared once per connection (a statement
/// sent as text is parsed and planned on every call: a round trip more).
struct Statements {
    due: tokio_postgres::Statement,
    lock_pendings: tokio_postgres::Statement,
    prior_transfers: tokio_postgres::Statement,
    prior_failed: tokio_postgres::Statement,
    accounts: tokio_postgres::Statement,
    limited_balances: tokio_postgres::Statement,
    unlimited_balances: tokio_postgres::Statement,
    insert_accounts: tokio_postgres::Statement,
    insert_shard0: tokio_postgres::Statement,
    add_balances: tokio_postgres::Statement,
    insert_transfers: tokio_postgres::Statement,
    resolve_transfers: tokio_postgres::Statement,
    insert_failed: tokio_postgres::Statement,
}

/// A writer's connection and its prepared statements.
struct Conn {
    client: Client,
    st: Statements,
    /// The store's, for records that ride in a batch.
    records: pg_records::Statements,
}

impl Conn {
    async fn open(url: &str) -> Result<Conn, PgError> {
        let client = connect(url).await?;
        let p = |sql: &'static str| client.prepare(sql);
        let st = Statements {
            due: p("SELECT id FROM ledger_transfers WHERE status = 1 AND expires_ns <= $1
                    ORDER BY expires_ns LIMIT $2")
            .await?,
            lock_pendings: p("SELECT id, body FROM ledger_transfers WHERE id = ANY($1)
                              ORDER BY id FOR UPDATE")
            .await?,
            prior_transfers: p("SELECT id, body FROM ledger_transfers WHERE id = ANY($1)").await?,
            prior_failed: p("SELECT id, event, reject FROM ledger_failed WHERE id = ANY($1)").await?,
            accounts: p("SELECT id, body, limited FROM ledger_accounts WHERE id = ANY($1)").await?,
            limited_balances: p("SELECT account_id, debits_pending::text, debits_posted::text,
                                        credits_pending::text, credits_posted::text
                                 FROM ledger_balances WHERE account_id = ANY($1) AND shard = 0
                                 ORDER BY account_id FOR UPDATE")
            .await?,
            unlimited_balances: p("SELECT account_id, sum(debits_pending)::text, sum(debits_posted)::text,
                                          sum(credits_pending)::text, sum(credits_posted)::text
                                   FROM ledger_balances WHERE account_id = ANY($1) GROUP BY account_id")
            .await?,
            insert_accounts: p("INSERT INTO ledger_accounts (id, body, currency, code, limited, created_ns)
                                SELECT * FROM UNNEST($1::bytea[], $2::bytea[], $3::int[], $4::int[],
                                                     $5::bool[], $6::bigint[])")
            .await?,
            insert_shard0: p("INSERT INTO ledger_balances (account_id, shard)
                              SELECT id, 0 FROM UNNEST($1::bytea[]) AS u(id)")
            .await?,
            add_balances: p("INSERT INTO ledger_balances AS b
                                 (account_id, shard, debits_pending, debits_posted, credits_pending, credits_posted)
                             SELECT id, shard, dp::numeric, dpo::numeric, cp::numeric, cpo::numeric
                             FROM UNNEST($1::bytea[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[])
                                  AS u(id, shard, dp, dpo, cp, cpo)
                             ON CONFLICT (account_id, shard) DO UPDATE SET
                                 debits_pending = b.debits_pending + EXCLUDED.debits_pending,
                                 debits_posted = b.debits_posted + EXCLUDED.debits_posted,
                                 credits_pending = b.credits_pending + EXCLUDED.credits_pending,
                                 credits_posted = b.credits_posted + EXCLUDED.credits_posted")
            .await?,
            insert_transfers: p("INSERT INTO ledger_transfers
                                     (id, body, debit_account_id, credit_account_id, code, amount, status,
                                      expires_ns, timestamp_ns)
                                 SELECT id, body, d, c, code, amount::numeric, status, expires, ts
                                 FROM UNNEST($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::int[],
                                             $6::text[], $7::smallint[], $8::bigint[], $9::bigint[])
                                      AS u(id, body, d, c, code, amount, status, expires, ts)")
            .await?,
            resolve_transfers: p("UPDATE ledger_transfers t SET body = u.body, status = u.status, expires_ns = NULL
                                  FROM UNNEST($1::bytea[], $2::bytea[], $3::smallint[]) AS u(id, body, status)
                                  WHERE t.id = u.id")
            .await?,
            insert_failed: p("INSERT INTO ledger_failed (id, event, reject)
                              SELECT * FROM UNNEST($1::bytea[], $2::bytea[], $3::int[])
                              ON CONFLICT (id) DO NOTHING")
            .await?,
        };
        let records = pg_records::Statements::prepare(&client).await?;
        Ok(Conn {
            client,
            st,
            records,
        })
    }
}

/// A writer: takes every job waiting, commits them as one batch, answers
/// each; at most every [`EXPIRE_INTERVAL_MS`] (and when idle), expires
/// pending transfers past their timeout. A node runs several writers; they
/// take batches from one queue in turn, and each has its own connection
/// and balance shard.
async fn writer(url: String, shard: i32, jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>) {
    let mut conn: Option<Conn> = None;
    let mut last_expiry = std::time::Instant::now();
    loop {
        let mut requests: Vec<Request> = Vec::new();
        let mut records: Vec<Option<Attached>> = Vec::new();
        let mut replies = Vec::new();
        {
            let mut queue = jobs.lock().await;
            let first =
                match tokio::time::timeout(Duration::from_millis(EXPIRE_INTERVAL_MS), queue.recv())
                    .await
                {
                    Ok(Some(job)) => Some(job),
                    Ok(None) => return,
                    Err(_) => None,
                };
            let mut events = 0;
            let mut next = first;
            while let Some(job) = next {
                events += events_of(&job.request);
                requests.push(job.request);
                records.push(job.records);
                replies.push(job.reply);
                next = if events < EVENTS_MAX {
                    queue.try_recv().ok()
                } else {
                    None
                };
            }
        }
        let expire = last_expiry.elapsed() >= Duration::from_millis(EXPIRE_INTERVAL_MS);
        if requests.is_empty() && !expire {
            continue;
        }
        if expire {
            last_expiry = std::time::Instant::now();
        }
        let started = std::time::Instant::now();
        let committed =
            commit_with_retries(&url, &mut conn, shard, &requests, &records, expire).await;
        metrics::histogram!("switch_pg_ledger_batch_seconds").record(started.elapsed());
        metrics::histogram!("switch_pg_ledger_batch_requests").record(requests.len() as f64);
        match committed {
            Ok(outcomes) => {
                debug_assert_eq!(outcomes.len(), replies.len());
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = requests.len(), "ledger batch failed");
                for reply in replies {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

fn events_of(request: &Request) -> usize {
    match request {
        Request::Accounts(a) => a.len(),
        Request::Transfers(t) => t.len(),
    }
}

/// Is this failure not the batch's own (run it again)?
fn transient(e: &PgError) -> bool {
    match e {
        PgError::Db(e) => {
            e.is_closed()
                || e.code().is_none()
                || e.code().is_some_and(|c| {
                    [
                        SqlState::T_R_SERIALIZATION_FAILURE,
                        SqlState::T_R_DEADLOCK_DETECTED,
                        SqlState::UNIQUE_VIOLATION,
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                        SqlState::READ_ONLY_SQL_TRANSACTION,
                    ]
                    .contains(c)
                })
        }
        _ => false,
    }
}

async fn commit_with_retries(
    url: &str,
    conn: &mut Option<Conn>,
    shard: i32,
    requests: &[Request],
    records: &[Option<Attached>],
    expire: bool,
) -> Result<Vec<Answer>, PgError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            *conn = match Conn::open(url).await {
                Ok(c) => Some(c),
                Err(e) if attempt < ATTEMPTS_MAX => {
                    tracing::warn!(error = %e, attempt, "ledger writer reconnecting");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
        }
        let c = conn.as_mut().expect("connected above");
        match commit(c, shard, requests, records, expire).await {
            Ok(outcomes) => return Ok(outcomes),
            Err(e) if transient(&e) && attempt < ATTEMPTS_MAX => {
                metrics::counter!("switch_pg_ledger_retries_total").increment(1);
                tracing::debug!(error = %e, attempt, "ledger batch runs again");
                if matches!(&e, PgError::Db(d) if d.is_closed()) {
                    *conn = None;
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((5u64 << attempt.min(6)).min(500))
}

/// Write `rows` rows with `statement` (arrays in `params`), or nothing
/// (and no round trip) when there are none.
async fn execute_rows(
    tx: &tokio_postgres::Transaction<'_>,
    statement: &tokio_postgres::Statement,
    rows: usize,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    if rows == 0 {
        return Ok(0);
    }
    tx.execute(statement, params).await
}

/// `statement` over `ids`, or nothing (and no round trip) when there are
/// none.
async fn query_ids(
    tx: &tokio_postgres::Transaction<'_>,
    statement: &tokio_postgres::Statement,
    ids: &[Vec<u8>],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    tx.query(statement, &[&ids]).await
}

fn ids(set: impl IntoIterator<Item = u128>) -> Vec<Vec<u8>> {
    set.into_iter().map(id_bytes).collect()
}

/// One batch, one transaction: load, apply, write. Statements that do not
/// depend on each other are sent together (pipelined on the connection).
async fn commit(
    conn: &mut Conn,
    shard: i32,
    all_requests: &[Request],
    records: &[Option<Attached>],
    expire: bool,
) -> Result<Vec<Answer>, PgError> {
    let Conn {
        client,
        st,
        records: record_st,
    } = conn;
    let tx = client.transaction().await?;

    // 0. The store's records that ride in this batch: their keys locked
    //    (before any of the ledger's rows) and read; a request whose
    //    records no longer hold is left out.
    let writes: Vec<&RecordWrite> = records
        .iter()
        .flatten()
        .flat_map(|a| a.with.iter().chain(&a.if_applied))
        .collect();
    let mut checked = pg_records::lock_and_read(&tx, record_st, &writes).await?;
    let undecodable = |e: super::tree::EngineError| PgError::Undecodable(e.to_string());
    let mut included = Vec::with_capacity(all_requests.len());
    for a in records {
        match a.as_ref().and_then(|a| a.with.as_ref()) {
            Some(w) => included.push(checked.accept(w).map_err(undecodable)?),
            None => included.push(true),
        }
    }
    let kept: Vec<Request>;
    let requests: &[Request] = if included.iter().all(|x| *x) {
        all_requests
    } else {
        kept = all_requests
            .iter()
            .zip(&included)
            .filter(|(_, inc)| **inc)
            .map(|(r, _)| r.clone())
            .collect();
        &kept
    };
    let touched = batch::touched(requests);
    let now = now_ns();

    // 1. The pending transfers this batch resolves, and those past their
    //    timeout, locked in id order.
    let mut pending_ids: BTreeSet<u128> = touched.pending_ids.clone();
    if expire {
        for r in tx
            .query(&st.due, &[&(now as i64), &EXPIRE_BATCH_MAX])
            .await?
        {
            pending_ids.insert(id_of(r.get(0))?);
        }
    }
    let mut pendings = Vec::new();
    let mut prior: HashMap<u128, Prior> = HashMap::new();
    let transfer_ids = ids(touched.transfer_ids.iter().copied());
    let pending_id_bytes = ids(pending_ids.iter().copied());
    let (locked, prior_transfers, prior_failed) = tokio::try_join!(
        query_ids(&tx, &st.lock_pendings, &pending_id_bytes),
        query_ids(&tx, &st.prior_transfers, &transfer_ids),
        query_ids(&tx, &st.prior_failed, &transfer_ids),
    )?;
    for r in locked {
        let id = id_of(r.get(0))?;
        let t = transfer_of(id, r.get(1))?;
        if t.status() == TransferStatus::Pending {
            pendings.push(t);
        } else {
            prior.insert(id, Prior::Transfer(t));
        }
    }
    // 2. What is already recorded under the batch's ids (read with the
    //    locks above: a pending transfer is as locked, not as read here).
    for r in prior_transfers {
        let id = id_of(r.get(0))?;
        if !pending_ids.contains(&id) {
            prior.insert(id, Prior::Transfer(transfer_of(id, r.get(1))?));
        }
    }
    for r in prior_failed {
        let id = id_of(r.get(0))?;
        let event = NewTransfer::decode(r.get(1))
            .ok_or_else(|| PgError::Undecodable(format!("failed event {id:032x}")))?;
        let reject = u16::try_from(r.get::<_, i32>(2))
            .ok()
            .and_then(TransferReject::from_code)
            .ok_or_else(|| PgError::Undecodable(format!("reject of {id:032x}")))?;
        prior.insert(id, Prior::Failed(event, reject));
    }

    // 3. Accounts: limited ones' rows locked in id order; the others'
    //    shards summed without a lock.
    let mut account_ids = touched.account_ids.clone();
    for p in &pendings {
        account_ids.insert(p.debit_account_id());
        account_ids.insert(p.credit_account_id());
    }
    let mut before: HashMap<u128, Account> = HashMap::new();
    let mut limited: BTreeSet<u128> = BTreeSet::new();
    if !account_ids.is_empty() {
        let mut unlimited = Vec::new();
        for r in tx
            .query(&st.accounts, &[&ids(account_ids.iter().copied())])
            .await?
        {
            let id = id_of(r.get(0))?;
            before.insert(id, account_of(id, r.get(1))?);
            if r.get::<_, bool>(2) {
                limited.insert(id);
            } else {
                unlimited.push(id_bytes(id));
            }
        }
        let limited_ids = ids(limited.iter().copied());
        let (locked, summed) = tokio::try_join!(
            query_ids(&tx, &st.limited_balances, &limited_ids),
            query_ids(&tx, &st.unlimited_balances, &unlimited),
        )?;
        for r in locked.iter().chain(&summed) {
            let id = id_of(r.get(0))?;
            let b = balances(r, 1)?;
            before.entry(id).and_modify(|a| *a = a.with_balances(b));
        }
    }

    // 4. The ledger's rules.
    let applied = batch::apply(
        Loaded {
            accounts: before.values().copied().collect(),
            pendings,
            prior,
        },
        now,
        requests,
    );

    // 5. Write back, in id order.
    let mut new_accounts: Vec<&Account> = applied
        .accounts
        .iter()
        .filter(|a| !before.contains_key(&a.id()))
        .collect();
    new_accounts.sort_by_key(|a| a.id());
    if !new_accounts.is_empty() {
        let zero = Balances {
            timestamp: 0,
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
        };
        let limit_flags = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
            | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS;
        for a in &new_accounts {
            if a.flags().intersects(limit_flags) {
                limited.insert(a.id());
            }
        }
        let new_ids = ids(new_accounts.iter().map(|a| a.id()));
        let bodies: Vec<Vec<u8>> = new_accounts
            .iter()
            .map(|a| a.with_balances(zero).encode())
            .collect();
        let currencies: Vec<i32> = new_accounts
            .iter()
            .map(|a| i32::from(a.currency()))
            .collect();
        let codes: Vec<i32> = new_accounts.iter().map(|a| i32::from(a.code())).collect();
        let limits: Vec<bool> = new_accounts
            .iter()
            .map(|a| limited.contains(&a.id()))
            .collect();
        let created: Vec<i64> = new_accounts.iter().map(|a| a.timestamp() as i64).collect();
        tx.execute(
            &st.insert_accounts,
            &[&new_ids, &bodies, &currencies, &codes, &limits, &created],
        )
        .await?;
        tx.execute(&st.insert_shard0, &[&new_ids]).await?;
    }

    let mut changed: Vec<&Account> = applied.accounts.iter().collect();
    changed.sort_by_key(|a| a.id());
    let (mut balance_ids, mut shards) = (Vec::new(), Vec::new());
    let mut deltas: [Vec<String>; 4] = Default::default();
    for a in changed {
        let was = before.get(&a.id()).map(|b| b.balances());
        let is = a.balances();
        let d = [
            delta(is.debits_pending, was.map(|b| b.debits_pending)),
            delta(is.debits_posted, was.map(|b| b.debits_posted)),
            delta(is.credits_pending, was.map(|b| b.credits_pending)),
            delta(is.credits_posted, was.map(|b| b.credits_posted)),
        ];
        if d.iter().all(|x| *x == 0) {
            continue;
        }
        balance_ids.push(id_bytes(a.id()));
        shards.push(if limited.contains(&a.id()) { 0 } else { shard });
        for (column, x) in deltas.iter_mut().zip(d) {
            column.push(x.to_string());
        }
    }

    let mut created: Vec<&Transfer> = applied
        .transfers
        .iter()
        .filter(|(_, new)| *new)
        .map(|(t, _)| t)
        .collect();
    created.sort_by_key(|t| t.id());
    let created_ids = ids(created.iter().map(|t| t.id()));
    let bodies: Vec<Vec<u8>> = created.iter().map(|t| t.encode()).collect();
    let debits = ids(created.iter().map(|t| t.debit_account_id()));
    let credits = ids(created.iter().map(|t| t.credit_account_id()));
    let codes: Vec<i32> = created.iter().map(|t| i32::from(t.code())).collect();
    let amounts: Vec<String> = created.iter().map(|t| t.amount().to_string()).collect();
    let statuses: Vec<i16> = created.iter().map(|t| status_code(t.status())).collect();
    let expires: Vec<Option<i64>> = created
        .iter()
        .map(|t| {
            (t.status() == TransferStatus::Pending)
                .then(|| t.expires_at())
                .flatten()
                .map(|x| x as i64)
        })
        .collect();
    let stamps: Vec<i64> = created.iter().map(|t| t.timestamp() as i64).collect();

    let mut resolved: Vec<&Transfer> = applied
        .transfers
        .iter()
        .filter(|(_, new)| !*new)
        .map(|(t, _)| t)
        .collect();
    resolved.sort_by_key(|t| t.id());
    let resolved_ids = ids(resolved.iter().map(|t| t.id()));
    let resolved_bodies: Vec<Vec<u8>> = resolved.iter().map(|t| t.encode()).collect();
    let resolved_statuses: Vec<i16> = resolved.iter().map(|t| status_code(t.status())).collect();

    let mut failed: Vec<&(NewTransfer, TransferReject)> = applied.failed.iter().collect();
    failed.sort_by_key(|(e, _)| e.id);
    let failed_ids = ids(failed.iter().map(|(e, _)| e.id));
    let events: Vec<Vec<u8>> = failed.iter().map(|(e, _)| e.encode()).collect();
    let rejects: Vec<i32> = failed.iter().map(|(_, r)| i32::from(r.code())).collect();

    type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);
    let balance_params: [Param; 6] = [
        &balance_ids,
        &shards,
        &deltas[0],
        &deltas[1],
        &deltas[2],
        &deltas[3],
    ];
    let created_params: [Param; 9] = [
        &created_ids,
        &bodies,
        &debits,
        &credits,
        &codes,
        &amounts,
        &statuses,
        &expires,
        &stamps,
    ];
    let resolved_params: [Param; 3] = [&resolved_ids, &resolved_bodies, &resolved_statuses];
    let failed_params: [Param; 3] = [&failed_ids, &events, &rejects];
    // The records whose request applied whole, then every record accepted.
    let mut outcomes = applied.outcomes.into_iter();
    let mut answers = Vec::with_capacity(all_requests.len());
    for (a, inc) in records.iter().zip(included) {
        let outcome = if inc { outcomes.next() } else { None };
        let whole = match &outcome {
            Some(Outcome::Transfers(r)) => r.iter().all(Result::is_ok),
            Some(Outcome::Accounts(r)) => r.iter().all(Result::is_ok),
            None => false,
        };
        let if_applied = match a.as_ref().and_then(|a| a.if_applied.as_ref()) {
            Some(w) if whole => checked.accept(w).map_err(undecodable)?,
            _ => false,
        };
        answers.push(Answer {
            outcome,
            if_applied,
        });
    }
    debug_assert!(outcomes.next().is_none());
    checked.write(&tx, record_st).await?;
    tokio::try_join!(
        execute_rows(&tx, &st.add_balances, balance_ids.len(), &balance_params),
        execute_rows(
            &tx,
            &st.insert_transfers,
            created_ids.len(),
            &created_params
        ),
        execute_rows(
            &tx,
            &st.resolve_transfers,
            resolved_ids.len(),
            &resolved_params
        ),
        execute_rows(&tx, &st.insert_failed, failed_ids.len(), &failed_params),
    )?;
    tx.commit().await?;
    metrics::counter!("switch_pg_ledger_batches_total").increment(1);
    Ok(answers)
}

/// `now - was` as a signed number (a new account was zero).
fn delta(now: u128, was: Option<u128>) -> i128 {
    now as i128 - was.unwrap_or(0) as i128
}
