//! The ledger as the flows and settlement see it, on either backend: the
//! embedded ledger (journal and fjall index in the data directory, one node), or
//! the ledger in PostgreSQL ([`super::pg_ledger`], shared by every node).
//! Both apply the same state machine, so every rule holds on both; they
//! differ in how a settlement window is cut:
//!
//! - embedded: the cut is the ledger time of the window's own account (the
//!   ledger's times strictly increase in commit order); a window's
//!   transfers have times strictly between the previous cut and this one;
//! - PostgreSQL: the cut is a commit number taken under a lock that waits
//!   for every writer in flight ([`super::pg_ledger::PgLedger::cut`]); a
//!   window's transfers have numbers after the previous cut, up to and
//!   including this one.
//!
//! Callers only hand marks back: [`LedgerStore::transfers_of`] pages by
//! them either way.

use std::sync::Arc;
use std::time::Duration;

use ledger::{
    Account, AccountReject, CheckReport, Ledger, NewAccount, NewTransfer, Outcome, Page, Receipt,
    Request, Transfer, TransferReject,
};

use super::pg_ledger::PgLedger;

/// Runs on the ledger's writer thread once a request is applied (see
/// [`ledger::Ledger::try_submit_applied`]); what it commits to the store is
/// durable in the same record as the request.
pub type Applied = Box<dyn FnOnce(&Outcome) + Send>;

/// Why the ledger could not answer (an operator's problem, never the
/// caller's).
#[derive(Debug)]
pub struct LedgerError(pub String);

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ledger: {}", self.0)
    }
}

impl std::error::Error for LedgerError {}

fn err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError(e.to_string())
}

#[derive(Clone)]
pub enum LedgerStore {
    Embedded(Arc<Ledger>),
    Postgres(Arc<PgLedger>),
}

impl LedgerStore {
    /// Submit transfers; answers each event's outcome once it is durable.
    pub async fn transfers(
        &self,
        events: Vec<NewTransfer>,
    ) -> Result<Vec<Result<Receipt, TransferReject>>, LedgerError> {
        match self {
            LedgerStore::Embedded(l) => embedded_transfers(l, events).await,
            LedgerStore::Postgres(l) => l.create_transfers(events).await.map_err(err),
        }
    }

    /// Submit transfers with the store's records prepared for them
    /// ([`super::Store::prepares`]: PostgreSQL), in one transaction:
    /// `with` commits with them or neither does; `if_applied` only if every
    /// transfer applied. `None` when `with` was refused (a key it read
    /// changed: nothing was applied; prepare it again); else each event's
    /// outcome and whether `if_applied` was committed.
    pub async fn transfers_with(
        &self,
        events: Vec<NewTransfer>,
        with: Option<super::pg_records::Prepared>,
        if_applied: Option<super::pg_records::Prepared>,
    ) -> Result<Option<(Vec<Result<Receipt, TransferReject>>, bool)>, LedgerError> {
        let LedgerStore::Postgres(l) = self else {
            unreachable!("records are prepared for the ledger in PostgreSQL only");
        };
        let records = super::pg_ledger::Attached {
            with: with.map(super::pg_records::Prepared::into_records),
            if_applied: if_applied.map(super::pg_records::Prepared::into_records),
        };
        let answer = l
            .submit_with(Request::Transfers(events), Some(records))
            .await
            .map_err(err)?;
        match answer.outcome {
            None => Ok(None),
            Some(Outcome::Transfers(r)) => Ok(Some((r, answer.if_applied))),
            Some(Outcome::Accounts(_)) => unreachable!("transfers answer with transfers"),
        }
    }

    pub async fn create_accounts(
        &self,
        new: Vec<NewAccount>,
    ) -> Result<Vec<Result<Receipt, AccountReject>>, LedgerError> {
        match self {
            LedgerStore::Embedded(l) => {
                let l = l.clone();
                tokio::task::spawn_blocking(move || l.create_accounts(new))
                    .await
                    .map_err(err)?
                    .map_err(err)
            }
            LedgerStore::Postgres(l) => l.create_accounts(new).await.map_err(err),
        }
    }

    pub async fn account(&self, id: u128) -> Result<Option<Account>, LedgerError> {
        match self {
            LedgerStore::Embedded(l) => {
                let l = l.clone();
                tokio::task::spawn_blocking(move || l.lookup_account(id))
                    .await
                    .map_err(err)?
                    .map_err(err)
            }
            LedgerStore::Postgres(l) => l.lookup_account(id).await.map_err(err),
        }
    }

    pub async fn transfer(&self, id: u128) -> Result<Option<Transfer>, LedgerError> {
        match self {
            LedgerStore::Embedded(l) => {
                let l = l.clone();
                tokio::task::spawn_blocking(move || l.lookup_transfer(id))
                    .await
                    .map_err(err)?
                    .map_err(err)
            }
            LedgerStore::Postgres(l) => l.lookup_transfer(id).await.map_err(err),
        }
    }

    /// The ledger's invariants, checked over everything it holds.
    pub async fn check(&self) -> Result<CheckReport, LedgerError> {
        match self {
            LedgerStore::Embedded(l) => {
                let l = l.clone();
                tokio::task::spawn_blocking(move || l.check())
                    .await
                    .map_err(err)?
                    .map_err(err)
            }
            LedgerStore::Postgres(l) => l.check().await.map_err(err),
        }
    }

    /// Cut a settlement window: create its account (`window_account`) and
    /// answer the mark that separates what is in the window from what is
    /// not. Cutting again (after a crash) answers a mark no earlier.
    pub async fn cut(&self, window_account: NewAccount) -> Result<u64, LedgerError> {
        let created = self.create_accounts(vec![window_account]).await?;
        match (self, created.first()) {
            (LedgerStore::Embedded(_), Some(Ok(r))) => Ok(r.timestamp),
            (LedgerStore::Postgres(l), Some(Ok(_))) => l.cut().await.map_err(err),
            (_, other) => Err(err(format!("creating the window's account: {other:?}"))),
        }
    }

    /// Up to `limit` transfers of `account` after mark `after` and within
    /// cut `cut` (see the module doc), oldest first, each with its mark.
    pub async fn transfers_of(
        &self,
        account: u128,
        after: u64,
        cut: u64,
        limit: u32,
    ) -> Result<Vec<(u64, Transfer)>, LedgerError> {
        match self {
            LedgerStore::Embedded(l) => {
                if after.saturating_add(1) >= cut {
                    return Ok(Vec::new());
                }
                let page = Page {
                    timestamp_min: after + 1,
                    timestamp_max: cut - 1,
                    limit: limit.min(Page::LIMIT_MAX),
                    reversed: false,
                };
                let l = l.clone();
                let got = tokio::task::spawn_blocking(move || l.account_transfers(account, page))
                    .await
                    .map_err(err)?
                    .map_err(err)?;
                Ok(got.into_iter().map(|t| (t.timestamp(), t)).collect())
            }
            LedgerStore::Postgres(l) => l
                .account_transfers_between(account, after, cut, limit)
                .await
                .map_err(err),
        }
    }
}

/// Submit to the embedded ledger without blocking the runtime; a full
/// queue is waited out (briefly) rather than refused.
async fn embedded_transfers(
    ledger: &Ledger,
    events: Vec<NewTransfer>,
) -> Result<Vec<Result<Receipt, TransferReject>>, LedgerError> {
    match submit_embedded(ledger, Request::Transfers(events), None).await? {
        ledger::Outcome::Transfers(r) => Ok(r),
        ledger::Outcome::Accounts(_) => unreachable!("transfers answer with transfers"),
    }
}

/// Queue `request` (with its hook to run once applied, see
/// [`Ledger::try_submit_applied`]) and answer its outcome once durable; a
/// full queue is waited out (briefly) rather than refused.
pub(super) async fn submit_embedded(
    ledger: &Ledger,
    request: Request,
    applied: Option<Applied>,
) -> Result<ledger::Outcome, LedgerError> {
    // The hook goes with one attempt only; a refused attempt hands it back.
    let hook = Arc::new(std::sync::Mutex::new(applied));
    for attempt in 0..200u32 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reply = move |r| {
            let _ = tx.send(r);
        };
        let submitted = if hook.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            let hook = hook.clone();
            ledger.try_submit_applied(
                request.clone(),
                move |o| {
                    let taken = hook.lock().unwrap_or_else(|p| p.into_inner()).take();
                    if let Some(f) = taken {
                        f(o);
                    }
                },
                reply,
            )
        } else {
            ledger.try_submit(request.clone(), reply)
        };
        match submitted {
            Ok(()) => {
                return match rx.await {
                    Ok(Ok(outcome)) => Ok(outcome),
                    Ok(Err(e)) => Err(err(e)),
                    Err(_) => Err(err("the ledger's writer stopped")),
                };
            }
            Err(ledger::SubmitError::Busy) => {
                tokio::time::sleep(Duration::from_millis(1 + u64::from(attempt.min(10)))).await
            }
            Err(e) => return Err(err(e)),
        }
    }
    Err(err("the ledger stayed overloaded"))
}
