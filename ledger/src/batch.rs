//! Applying requests to part of the ledger, for a storage backend that
//! keeps accounts and transfers elsewhere (a database several nodes share).
//!
//! The backend loads what a batch touches ([`touched`] says what): the
//! accounts with their balances, the unresolved pending transfers the batch
//! posts or voids, and whatever is already recorded under the batch's ids
//! or its pending ids ([`Prior`]). [`apply`] runs the batch on that with the
//! state machine the embedded ledger runs, so the rules are the same on
//! every backend: limits, linked chains applied all or nothing, ids that are
//! idempotency keys, two-phase transfers, timeouts (a loaded pending
//! transfer whose timeout has passed at `now_ns` expires first). The
//! backend then writes back what changed ([`Applied`]), atomically, having
//! held whatever locks make its loaded values current until it commits.
//!
//! No I/O here: the backend does all of it.

use std::collections::{BTreeSet, HashMap};

use crate::error::StorageError;
use crate::reject::TransferReject;
use crate::state::{Cold, ColdEntry, Effects, Outcome, Request, State};
use crate::types::*;

/// What is already recorded under an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prior {
    /// A transfer (of any status).
    Transfer(Transfer),
    /// A failed event: its id keeps failing.
    Failed(NewTransfer, TransferReject),
}

/// What a batch needs loaded.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Touched {
    /// Every id the batch's transfers are recorded under.
    pub transfer_ids: BTreeSet<u128>,
    /// The pending transfers it posts or voids.
    pub pending_ids: BTreeSet<u128>,
    /// Accounts named by its events (a post or void also needs its pending
    /// transfer's accounts, known only once the pending transfer is read).
    pub account_ids: BTreeSet<u128>,
}

pub fn touched(requests: &[Request]) -> Touched {
    let mut t = Touched::default();
    for r in requests {
        match r {
            Request::Accounts(events) => t.account_ids.extend(events.iter().map(|a| a.id)),
            Request::Transfers(events) => {
                for e in events {
                    t.transfer_ids.insert(e.id);
                    if e.pending_id != 0 {
                        t.pending_ids.insert(e.pending_id);
                    }
                    for id in [e.debit_account_id, e.credit_account_id] {
                        if id != 0 {
                            t.account_ids.insert(id);
                        }
                    }
                }
            }
        }
    }
    t
}

/// The part of the ledger a batch runs on.
#[derive(Default, Debug)]
pub struct Loaded {
    /// Accounts with their current balances.
    pub accounts: Vec<Account>,
    /// Unresolved pending transfers the batch may resolve or expire.
    pub pendings: Vec<Transfer>,
    /// What is recorded under the batch's ids and its resolved pending ids.
    pub prior: HashMap<u128, Prior>,
}

/// What a batch did.
#[derive(Debug)]
pub struct Applied {
    /// One per request, event by event, as the embedded ledger answers.
    pub outcomes: Vec<Outcome>,
    /// Final values of every account created or changed.
    pub accounts: Vec<Account>,
    /// Transfers created (`true`) or whose status changed (`false`).
    pub transfers: Vec<(Transfer, bool)>,
    /// New events that failed: record them so that their ids keep failing.
    pub failed: Vec<(NewTransfer, TransferReject)>,
}

struct PriorLookup<'a>(&'a HashMap<u128, Prior>);

impl Cold for PriorLookup<'_> {
    fn lookup(&self, id: u128, _seq_before: u64) -> Result<Option<ColdEntry>, StorageError> {
        Ok(self.0.get(&id).map(|p| match *p {
            Prior::Transfer(t) => ColdEntry::Transfer(t),
            Prior::Failed(e, r) => ColdEntry::Failed(e, r),
        }))
    }
}

/// Apply `requests` at `now_ns` to `loaded`. Panics, like the embedded
/// ledger, if the state machine would break balance (a bug, never input).
pub fn apply(loaded: Loaded, now_ns: u64, requests: &[Request]) -> Applied {
    let Loaded {
        accounts,
        pendings,
        prior,
    } = loaded;
    debug_assert!(pendings.iter().all(|p| p.status == TransferStatus::Pending));
    let mut state = State::restore_partial(accounts, pendings);
    let mut fx = Effects::default();
    let mut outcomes = Vec::with_capacity(requests.len());
    state
        .apply_record(
            1,
            now_ns,
            requests,
            &PriorLookup(&prior),
            &mut fx,
            &mut outcomes,
        )
        .expect("lookups in memory do not fail");
    Applied {
        outcomes,
        accounts: std::mem::take(&mut fx.accounts),
        transfers: std::mem::take(&mut fx.transfers),
        failed: std::mem::take(&mut fx.failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VND: u16 = 704;

    fn account(id: u128, flags: AccountFlags) -> Account {
        Account::new(
            &NewAccount {
                id,
                currency: VND,
                code: 1,
                flags,
                user_data: 0,
            },
            1,
        )
    }

    fn transfers(applied: &Applied) -> Vec<Result<Receipt, TransferReject>> {
        match &applied.outcomes[0] {
            Outcome::Transfers(r) => r.clone(),
            Outcome::Accounts(_) => panic!("transfers answer with transfers"),
        }
    }

    #[test]
    fn a_batch_on_part_of_the_ledger_follows_the_ledgers_rules() {
        // Account 1 may not go below zero and holds 100; 2 and 3 are free.
        let funded =
            account(1, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS).with_balances(Balances {
                timestamp: 0,
                debits_pending: 0,
                debits_posted: 0,
                credits_pending: 0,
                credits_posted: 100,
            });
        let loaded = Loaded {
            accounts: vec![
                funded,
                account(2, AccountFlags::empty()),
                account(3, AccountFlags::empty()),
            ],
            ..Loaded::default()
        };
        let requests = [Request::Transfers(vec![
            NewTransfer::single(10, 1, 2, 60, 1),
            // Linked: the second breaks the limit, so neither applies.
            NewTransfer::single(11, 1, 3, 30, 1).linked(),
            NewTransfer::single(12, 1, 2, 30, 1),
            NewTransfer::pending(13, 3, 2, 5, 1, 0),
        ])];
        assert_eq!(
            touched(&requests).account_ids,
            [1, 2, 3].into_iter().collect()
        );
        let applied = apply(loaded, 1_000, &requests);
        let r = transfers(&applied);
        assert!(r[0].is_ok());
        assert_eq!(r[1], Err(TransferReject::LinkedEventFailed));
        assert_eq!(r[2], Err(TransferReject::ExceedsCredits));
        assert!(r[3].is_ok());
        let one = applied.accounts.iter().find(|a| a.id() == 1).unwrap();
        assert_eq!(one.debits_posted(), 60);
        assert_eq!(applied.failed.len(), 2, "the failed ids are recorded");
        assert_eq!(applied.transfers.len(), 2);
    }

    #[test]
    fn prior_ids_are_retries_and_loaded_pendings_resolve_or_expire() {
        let a = account(1, AccountFlags::empty());
        let b = account(2, AccountFlags::empty());
        // A pending transfer of 7 from 1 to 2, created at 1 ms with a 1 s
        // timeout: its reservation is in the loaded balances.
        let first = apply(
            Loaded {
                accounts: vec![a, b],
                ..Loaded::default()
            },
            1_000_000,
            &[Request::Transfers(vec![NewTransfer::pending(
                20, 1, 2, 7, 1, 1_000,
            )])],
        );
        let pending = first.transfers[0].0;
        let (a, b) = (first.accounts[0], first.accounts[1]);
        let (a, b) = if a.id() == 1 { (a, b) } else { (b, a) };
        // A retry of the same id is answered as a retry, nothing posted.
        let retry = apply(
            Loaded {
                accounts: vec![a, b],
                prior: [(20, Prior::Transfer(pending))].into_iter().collect(),
                ..Loaded::default()
            },
            2_000_000,
            &[Request::Transfers(vec![NewTransfer::pending(
                20, 1, 2, 7, 1, 1_000,
            )])],
        );
        assert_eq!(transfers(&retry)[0].map(|r| r.created), Ok(false));
        assert!(retry.transfers.is_empty() && retry.accounts.is_empty());
        // Posted in time.
        let posted = apply(
            Loaded {
                accounts: vec![a, b],
                pendings: vec![pending],
                ..Loaded::default()
            },
            500_000_000,
            &[Request::Transfers(vec![NewTransfer::post(21, 20, None)])],
        );
        assert!(transfers(&posted)[0].is_ok());
        // Loaded after its timeout: it expires, and a post is refused.
        let late = apply(
            Loaded {
                accounts: vec![a, b],
                pendings: vec![pending],
                ..Loaded::default()
            },
            5_000_000_000,
            &[Request::Transfers(vec![NewTransfer::post(22, 20, None)])],
        );
        assert_eq!(
            transfers(&late)[0],
            Err(TransferReject::PendingTransferExpired)
        );
        assert!(
            late.transfers.iter().any(|(t, created)| t.id() == 20
                && !created
                && t.status() == TransferStatus::Expired)
        );
        let released = late.accounts.iter().find(|x| x.id() == 1).unwrap();
        assert_eq!(released.debits_pending(), 0);
    }
}
