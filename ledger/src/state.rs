//! The deterministic state machine: given the state after record `seq - 1`,
//! a record's requests and the record's `now`, it produces the same results
//! and effects every time. The writer runs it live; recovery runs it again
//! over the journal. It performs no I/O except through [`Cold`] lookups of
//! transfers that were already indexed, and it reads no clock.

use std::collections::{BTreeSet, HashSet};

use ahash::{HashMap, HashMapExt};

use crate::error::StorageError;
use crate::reject::{AccountReject, TransferReject};
use crate::types::*;

/// An id that has left memory for the index: a transfer, or a failed event.
pub(crate) enum ColdEntry {
    Transfer(Transfer),
    Failed(NewTransfer, TransferReject),
}

/// Transfers and failed ids that have left memory for the index.
pub(crate) trait Cold {
    /// What record before `seq_before` left under `id` (one index read).
    fn lookup(&self, id: u128, seq_before: u64) -> Result<Option<ColdEntry>, StorageError>;
}

/// One request of a record: what one caller submitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Accounts(Vec<NewAccount>),
    Transfers(Vec<NewTransfer>),
}

impl Request {
    pub(crate) fn events(&self) -> usize {
        match self {
            Request::Accounts(a) => a.len(),
            Request::Transfers(t) => t.len(),
        }
    }
}

/// The answer to one request, event by event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accounts(Vec<Result<Receipt, AccountReject>>),
    Transfers(Vec<Result<Receipt, TransferReject>>),
}

/// What one record changed, for the indexer (absolute values: writing them
/// twice is harmless, which makes re-indexing after a crash safe).
#[derive(Default, Debug)]
pub(crate) struct Effects {
    pub seq: u64,
    pub last_timestamp: u64,
    /// Size of the record in the journal (drives checkpoint spacing).
    pub journal_bytes: u64,
    /// Effects it holds (drives indexing backpressure).
    pub events: u64,

    /// Final values of every account created or changed by the record.
    pub accounts: Vec<Account>,
    /// Transfers created (`true`) or whose status changed (`false`).
    pub transfers: Vec<(Transfer, bool)>,
    /// Events that failed, as submitted, with their reject.
    pub failed: Vec<(NewTransfer, TransferReject)>,
    /// Balance snapshots of accounts with `HISTORY`.
    pub history: Vec<(u128, Balances)>,
}

impl Effects {
    pub(crate) fn clear(&mut self) {
        self.accounts.clear();
        self.transfers.clear();
        self.failed.clear();
        self.history.clear();
    }
}

/// Sums over all accounts of one currency; debits and credits must match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
}

#[derive(Clone, Copy, Debug)]
struct Hot {
    transfer: Transfer,
    /// The record that last wrote it: it may leave memory once that record
    /// is indexed (unless it is still an unresolved pending transfer).
    seq: u64,
}

#[derive(Clone, Copy, Debug)]
struct HotFailed {
    event: NewTransfer,
    reject: TransferReject,
    seq: u64,
}

enum Undo {
    Account(Account),
    Hot(u128, Option<Hot>),
    ExpiryInserted((u64, u128)),
    ExpiryRemoved((u64, u128)),
    Totals(u16, Totals),
}

/// How one event ended, before failures are recorded.
enum Applied {
    Created(u64),
    /// A retry: answer with the original outcome; record nothing.
    Retry(Result<Receipt, TransferReject>),
    /// A new event that failed: record it so that its id keeps failing.
    Rejected(TransferReject),
    /// The id itself is invalid: nothing can be recorded under it.
    InvalidId(TransferReject),
}

pub(crate) struct State {
    accounts: HashMap<u128, Account>,
    /// Unresolved pending transfers, and transfers not yet indexed.
    hot: HashMap<u128, Hot>,
    /// Failed events not yet indexed.
    failed_hot: HashMap<u128, HotFailed>,
    /// Unresolved pending transfers with a timeout, by expiry time.
    expiries: BTreeSet<(u64, u128)>,
    totals: Vec<(u16, Totals)>,
    last_timestamp: u64,
    /// The last record applied.
    seq: u64,
    accounts_max: usize,
    undo: Vec<Undo>,
    dirty: HashSet<u128, ahash::RandomState>,
    /// A partial state (`crate::batch`) holds only some accounts, whose
    /// totals need not balance: what must balance is how a record changes
    /// them. `None` for the whole ledger.
    baseline: Option<Vec<(u16, Totals)>>,
}

impl State {
    pub(crate) fn new(accounts_max: usize) -> State {
        State {
            accounts: HashMap::new(),
            hot: HashMap::new(),
            failed_hot: HashMap::new(),
            expiries: BTreeSet::new(),
            totals: Vec::new(),
            last_timestamp: 0,
            seq: 0,
            accounts_max,
            undo: Vec::new(),
            dirty: HashSet::default(),
            baseline: None,
        }
    }

    /// Part of the ledger, for [`crate::batch`]: the accounts a batch
    /// touches and the pending transfers it may resolve. A record applied to
    /// it must change the totals by balanced amounts.
    pub(crate) fn restore_partial(
        accounts: impl IntoIterator<Item = Account>,
        pendings: impl IntoIterator<Item = Transfer>,
    ) -> State {
        let mut s = State::restore(usize::MAX, 0, 0, accounts, pendings);
        s.baseline = Some(s.totals.clone());
        s
    }

    /// State from a checkpoint: accounts and unresolved pending transfers.
    pub(crate) fn restore(
        accounts_max: usize,
        seq: u64,
        last_timestamp: u64,
        accounts: impl IntoIterator<Item = Account>,
        pendings: impl IntoIterator<Item = Transfer>,
    ) -> State {
        let mut s = State::new(accounts_max);
        s.seq = seq;
        s.last_timestamp = last_timestamp;
        for a in accounts {
            let t = s.totals_mut(a.currency);
            t.debits_pending += a.debits_pending;
            t.debits_posted += a.debits_posted;
            t.credits_pending += a.credits_pending;
            t.credits_posted += a.credits_posted;
            s.accounts.insert(a.id, a);
        }
        for p in pendings {
            assert_eq!(
                p.status,
                TransferStatus::Pending,
                "checkpoint holds a resolved pending"
            );
            if let Some(at) = p.expires_at() {
                s.expiries.insert((at, p.id));
            }
            s.hot.insert(p.id, Hot { transfer: p, seq });
        }
        s
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }
    pub(crate) fn last_timestamp(&self) -> u64 {
        self.last_timestamp
    }
    pub(crate) fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }
    pub(crate) fn pendings(&self) -> impl Iterator<Item = &Transfer> {
        self.hot
            .values()
            .map(|h| &h.transfer)
            .filter(|t| t.status == TransferStatus::Pending)
    }
    pub(crate) fn totals(&self) -> &[(u16, Totals)] {
        &self.totals
    }
    /// The earliest expiry of an unresolved pending transfer.
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        self.expiries.first().map(|(at, _)| *at)
    }

    fn totals_mut(&mut self, currency: u16) -> &mut Totals {
        let i = match self.totals.iter().position(|(c, _)| *c == currency) {
            Some(i) => i,
            None => {
                self.totals.push((currency, Totals::default()));
                self.totals.len() - 1
            }
        };
        &mut self.totals[i].1
    }

    fn next_timestamp(&mut self, now: u64) -> u64 {
        self.last_timestamp = now.max(self.last_timestamp + 1);
        self.last_timestamp
    }

    /// Apply record `seq` (the one after the last) at time `now`.
    pub(crate) fn apply_record(
        &mut self,
        seq: u64,
        now: u64,
        requests: &[Request],
        cold: &dyn Cold,
        fx: &mut Effects,
        outcomes: &mut Vec<Outcome>,
    ) -> Result<(), StorageError> {
        assert_eq!(seq, self.seq + 1, "records apply in order");
        fx.clear();
        fx.seq = seq;
        self.dirty.clear();
        self.expire(now, fx);
        for request in requests {
            let outcome = match request {
                Request::Accounts(events) => {
                    Outcome::Accounts(events.iter().map(|a| self.create_account(a, now)).collect())
                }
                Request::Transfers(events) => {
                    Outcome::Transfers(self.create_transfers(seq, events, now, cold, fx)?)
                }
            };
            outcomes.push(outcome);
        }
        fx.accounts
            .extend(self.dirty.iter().map(|id| self.accounts[id]));
        fx.last_timestamp = self.last_timestamp;
        self.seq = seq;
        self.assert_balanced();
        Ok(())
    }

    /// Every currency's debits equal its credits, pending and posted (for
    /// a partial state: their changes since it was restored are equal).
    fn assert_balanced(&self) {
        if let Some(baseline) = &self.baseline {
            for (currency, t) in &self.totals {
                let b = baseline
                    .iter()
                    .find(|(c, _)| c == currency)
                    .map_or(Totals::default(), |(_, b)| *b);
                assert_eq!(
                    t.debits_pending.wrapping_sub(b.debits_pending),
                    t.credits_pending.wrapping_sub(b.credits_pending),
                    "pending changed unbalanced in currency {currency}"
                );
                assert_eq!(
                    t.debits_posted.wrapping_sub(b.debits_posted),
                    t.credits_posted.wrapping_sub(b.credits_posted),
                    "posted changed unbalanced in currency {currency}"
                );
            }
            return;
        }
        for (currency, t) in &self.totals {
            assert_eq!(
                t.debits_pending, t.credits_pending,
                "pending unbalanced in currency {currency}"
            );
            assert_eq!(
                t.debits_posted, t.credits_posted,
                "posted unbalanced in currency {currency}"
            );
        }
    }

    /// Void every pending transfer whose timeout has passed at `now`.
    fn expire(&mut self, now: u64, fx: &mut Effects) {
        while let Some(&(at, id)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            let hot = self
                .hot
                .get(&id)
                .copied()
                .expect("an expiring pending transfer is in memory");
            let p = hot.transfer;
            assert_eq!(p.status, TransferStatus::Pending);
            let ts = self.next_timestamp(now);
            self.release(&p, 0, ts, fx);
            let mut expired = p;
            expired.status = TransferStatus::Expired;
            self.hot.insert(
                id,
                Hot {
                    transfer: expired,
                    seq: fx.seq,
                },
            );
            fx.transfers.push((expired, false));
        }
        // Expiry is never rolled back.
        self.undo.clear();
    }

    fn create_account(&mut self, a: &NewAccount, now: u64) -> Result<Receipt, AccountReject> {
        if a.id == 0 {
            return Err(AccountReject::IdMustNotBeZero);
        }
        if a.id == u128::MAX {
            return Err(AccountReject::IdMustNotBeIntMax);
        }
        if let Some(e) = self.accounts.get(&a.id) {
            return if e.flags != a.flags {
                Err(AccountReject::ExistsWithDifferentFlags)
            } else if e.user_data != a.user_data {
                Err(AccountReject::ExistsWithDifferentUserData)
            } else if e.currency != a.currency {
                Err(AccountReject::ExistsWithDifferentCurrency)
            } else if e.code != a.code {
                Err(AccountReject::ExistsWithDifferentCode)
            } else {
                Ok(Receipt {
                    timestamp: e.timestamp,
                    created: false,
                })
            };
        }
        if a.flags.contains(
            AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
        ) {
            return Err(AccountReject::FlagsAreMutuallyExclusive);
        }
        if a.currency == 0 {
            return Err(AccountReject::CurrencyMustNotBeZero);
        }
        if self.accounts.len() >= self.accounts_max {
            return Err(AccountReject::AccountsFull);
        }
        let ts = self.next_timestamp(now);
        self.accounts.insert(a.id, Account::new(a, ts));
        self.totals_mut(a.currency);
        self.dirty.insert(a.id);
        Ok(Receipt {
            timestamp: ts,
            created: true,
        })
    }

    fn create_transfers(
        &mut self,
        seq: u64,
        events: &[NewTransfer],
        now: u64,
        cold: &dyn Cold,
        fx: &mut Effects,
    ) -> Result<Vec<Result<Receipt, TransferReject>>, StorageError> {
        let mut results = Vec::with_capacity(events.len());
        let mut start = 0;
        while start < events.len() {
            // The chain is events[start..=end]: linked events and the first
            // event after them that is not linked.
            let mut end = start;
            while end + 1 < events.len() && events[end].flags.contains(TransferFlags::LINKED) {
                end += 1;
            }
            let chain = &events[start..=end];
            start = end + 1;
            if chain[chain.len() - 1].flags.contains(TransferFlags::LINKED) {
                // The request ended inside the chain: none of it applies.
                for (i, t) in chain.iter().enumerate() {
                    let r = if i + 1 == chain.len() {
                        TransferReject::LinkedEventChainOpen
                    } else {
                        TransferReject::LinkedEventFailed
                    };
                    results.push(self.fail_unapplied(t, r, seq, cold, fx)?);
                }
                continue;
            }
            debug_assert!(self.undo.is_empty());
            let (transfers_mark, history_mark) = (fx.transfers.len(), fx.history.len());
            let mut applied = Vec::with_capacity(chain.len());
            for t in chain {
                let a = self.create_transfer(t, seq, now, cold, fx)?;
                let ok = matches!(a, Applied::Created(_) | Applied::Retry(Ok(_)));
                applied.push(a);
                if !ok {
                    break;
                }
            }
            if applied.len() == chain.len()
                && matches!(
                    applied[applied.len() - 1],
                    Applied::Created(_) | Applied::Retry(Ok(_))
                )
            {
                self.undo.clear();
                results.extend(applied.into_iter().map(|a| match a {
                    Applied::Created(ts) => Ok(Receipt {
                        timestamp: ts,
                        created: true,
                    }),
                    Applied::Retry(r) => r,
                    Applied::Rejected(_) | Applied::InvalidId(_) => unreachable!("chain succeeded"),
                }));
                continue;
            }
            // One event failed: undo the whole chain, then say why per event.
            self.rollback();
            fx.transfers.truncate(transfers_mark);
            fx.history.truncate(history_mark);
            let failed_at = applied.len() - 1;
            for (i, t) in chain.iter().enumerate() {
                let result = if i == failed_at {
                    match applied[i] {
                        Applied::Rejected(r) => {
                            self.record_failed(t, r, seq, fx);
                            Err(r)
                        }
                        Applied::InvalidId(r) => Err(r),
                        Applied::Retry(r) => r,
                        Applied::Created(_) => unreachable!("the failed event was not created"),
                    }
                } else {
                    self.fail_unapplied(t, TransferReject::LinkedEventFailed, seq, cold, fx)?
                };
                results.push(result);
            }
        }
        Ok(results)
    }

    /// The answer for an event of a failed chain that did not itself fail: a
    /// retry keeps its original outcome (an existing transfer stays as it
    /// is, but the chain failed); a new, valid id is recorded as failed.
    fn fail_unapplied(
        &mut self,
        t: &NewTransfer,
        reject: TransferReject,
        seq: u64,
        cold: &dyn Cold,
        fx: &mut Effects,
    ) -> Result<Result<Receipt, TransferReject>, StorageError> {
        Ok(match self.check_id(t, seq, cold)? {
            Some(Applied::Retry(Ok(_))) => Err(TransferReject::LinkedEventFailed),
            Some(Applied::Retry(Err(r)) | Applied::InvalidId(r)) => Err(r),
            Some(Applied::Created(_) | Applied::Rejected(_)) => {
                unreachable!("check_id answers retries and invalid ids")
            }
            None => {
                self.record_failed(t, reject, seq, fx);
                Err(reject)
            }
        })
    }

    fn rollback(&mut self) {
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Account(a) => {
                    self.accounts.insert(a.id, a);
                }
                Undo::Hot(id, Some(h)) => {
                    self.hot.insert(id, h);
                }
                Undo::Hot(id, None) => {
                    self.hot.remove(&id);
                }
                Undo::ExpiryInserted(k) => {
                    self.expiries.remove(&k);
                }
                Undo::ExpiryRemoved(k) => {
                    self.expiries.insert(k);
                }
                Undo::Totals(c, t) => {
                    *self.totals_mut(c) = t;
                }
            }
        }
    }

    fn record_failed(
        &mut self,
        t: &NewTransfer,
        reject: TransferReject,
        seq: u64,
        fx: &mut Effects,
    ) {
        debug_assert!(t.id != 0 && t.id != u128::MAX);
        self.failed_hot.insert(
            t.id,
            HotFailed {
                event: *t,
                reject,
                seq,
            },
        );
        fx.failed.push((*t, reject));
    }

    fn lookup_transfer(
        &self,
        id: u128,
        seq: u64,
        cold: &dyn Cold,
    ) -> Result<Option<Transfer>, StorageError> {
        match self.hot.get(&id) {
            Some(h) => Ok(Some(h.transfer)),
            None => Ok(match cold.lookup(id, seq)? {
                Some(ColdEntry::Transfer(t)) => Some(t),
                Some(ColdEntry::Failed(..)) | None => None,
            }),
        }
    }

    /// `Some` when the id is invalid or already used (a retry).
    fn check_id(
        &self,
        t: &NewTransfer,
        seq: u64,
        cold: &dyn Cold,
    ) -> Result<Option<Applied>, StorageError> {
        if t.id == 0 {
            return Ok(Some(Applied::InvalidId(TransferReject::IdMustNotBeZero)));
        }
        if t.id == u128::MAX {
            return Ok(Some(Applied::InvalidId(TransferReject::IdMustNotBeIntMax)));
        }
        if let Some(h) = self.hot.get(&t.id) {
            return Ok(Some(Applied::Retry(compare_existing(t, &h.transfer))));
        }
        if let Some(f) = self.failed_hot.get(&t.id) {
            return Ok(Some(Applied::Retry(compare_failed(t, &f.event, f.reject))));
        }
        Ok(cold.lookup(t.id, seq)?.map(|entry| {
            Applied::Retry(match entry {
                ColdEntry::Transfer(e) => compare_existing(t, &e),
                ColdEntry::Failed(event, reject) => compare_failed(t, &event, reject),
            })
        }))
    }

    fn create_transfer(
        &mut self,
        t: &NewTransfer,
        seq: u64,
        now: u64,
        cold: &dyn Cold,
        fx: &mut Effects,
    ) -> Result<Applied, StorageError> {
        if let Some(a) = self.check_id(t, seq, cold)? {
            return Ok(a);
        }
        let phase = t.flags
            & (TransferFlags::PENDING | TransferFlags::POST_PENDING | TransferFlags::VOID_PENDING);
        if phase.bits().count_ones() > 1 {
            return Ok(Applied::Rejected(TransferReject::FlagsAreMutuallyExclusive));
        }
        let r = if phase.intersects(TransferFlags::POST_PENDING | TransferFlags::VOID_PENDING) {
            self.resolve_pending(t, seq, now, cold, fx)?
        } else {
            self.create_single_or_pending(t, now, fx)
        };
        Ok(match r {
            Ok(ts) => Applied::Created(ts),
            Err(r) => Applied::Rejected(r),
        })
    }

    fn create_single_or_pending(
        &mut self,
        t: &NewTransfer,
        now: u64,
        fx: &mut Effects,
    ) -> Result<u64, TransferReject> {
        use TransferReject as R;
        let pending = t.flags.contains(TransferFlags::PENDING);
        if t.debit_account_id == 0 {
            return Err(R::DebitAccountIdMustNotBeZero);
        }
        if t.credit_account_id == 0 {
            return Err(R::CreditAccountIdMustNotBeZero);
        }
        if t.debit_account_id == t.credit_account_id {
            return Err(R::AccountsMustBeDifferent);
        }
        if t.pending_id != 0 {
            return Err(R::PendingIdMustBeZero);
        }
        if t.timeout_ms != 0 && !pending {
            return Err(R::TimeoutReservedForPendingTransfer);
        }
        if t.amount == 0 {
            return Err(R::AmountMustNotBeZero);
        }
        let mut dr = *self
            .accounts
            .get(&t.debit_account_id)
            .ok_or(R::DebitAccountNotFound)?;
        let mut cr = *self
            .accounts
            .get(&t.credit_account_id)
            .ok_or(R::CreditAccountNotFound)?;
        if dr.currency != cr.currency {
            return Err(R::CurrenciesMustBeEqual);
        }
        let amount = u128::from(t.amount);
        let ts_next = now.max(self.last_timestamp + 1);
        if pending && t.timeout_ms > 0 {
            ts_next
                .checked_add(u64::from(t.timeout_ms) * 1_000_000)
                .ok_or(R::OverflowsTimeout)?;
        }
        let (dr_field, cr_field) = if pending {
            (&mut dr.debits_pending, &mut cr.credits_pending)
        } else {
            (&mut dr.debits_posted, &mut cr.credits_posted)
        };
        *dr_field = dr_field.checked_add(amount).ok_or(R::OverflowsDebits)?;
        *cr_field = cr_field.checked_add(amount).ok_or(R::OverflowsCredits)?;
        dr.debits_pending
            .checked_add(dr.debits_posted)
            .ok_or(R::OverflowsDebits)?;
        cr.credits_pending
            .checked_add(cr.credits_posted)
            .ok_or(R::OverflowsCredits)?;
        if dr
            .flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && dr.debits_pending + dr.debits_posted > dr.credits_posted
        {
            return Err(R::ExceedsCredits);
        }
        if cr
            .flags
            .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            && cr.credits_pending + cr.credits_posted > cr.debits_posted
        {
            return Err(R::ExceedsDebits);
        }
        let ts = self.next_timestamp(now);
        debug_assert_eq!(ts, ts_next);
        let transfer = Transfer {
            id: t.id,
            debit_account_id: t.debit_account_id,
            credit_account_id: t.credit_account_id,
            pending_id: 0,
            user_data: t.user_data,
            amount: t.amount,
            amount_posted: 0,
            timestamp: ts,
            timeout_ms: t.timeout_ms,
            code: t.code,
            flags: t.flags,
            status: if pending {
                TransferStatus::Pending
            } else {
                TransferStatus::Posted
            },
        };
        self.set_accounts(dr, cr, ts, fx);
        let totals = self.totals_mut(dr.currency);
        let before = *totals;
        if pending {
            totals.debits_pending += amount;
            totals.credits_pending += amount;
        } else {
            totals.debits_posted += amount;
            totals.credits_posted += amount;
        }
        self.undo.push(Undo::Totals(dr.currency, before));
        if let Some(at) = transfer.expires_at() {
            self.expiries.insert((at, t.id));
            self.undo.push(Undo::ExpiryInserted((at, t.id)));
        }
        self.put_hot(transfer, fx.seq, true, fx);
        Ok(ts)
    }

    fn resolve_pending(
        &mut self,
        t: &NewTransfer,
        seq: u64,
        now: u64,
        cold: &dyn Cold,
        fx: &mut Effects,
    ) -> Result<Result<u64, TransferReject>, StorageError> {
        use TransferReject as R;
        let post = t.flags.contains(TransferFlags::POST_PENDING);
        if t.pending_id == 0 {
            return Ok(Err(R::PendingIdMustNotBeZero));
        }
        if t.pending_id == t.id {
            return Ok(Err(R::PendingIdMustBeDifferent));
        }
        if t.timeout_ms != 0 {
            return Ok(Err(R::TimeoutReservedForPendingTransfer));
        }
        let Some(p) = self.lookup_transfer(t.pending_id, seq, cold)? else {
            return Ok(Err(R::PendingTransferNotFound));
        };
        if !p.flags.contains(TransferFlags::PENDING) {
            return Ok(Err(R::PendingTransferNotPending));
        }
        if t.debit_account_id != 0 && t.debit_account_id != p.debit_account_id {
            return Ok(Err(R::PendingTransferHasDifferentDebitAccountId));
        }
        if t.credit_account_id != 0 && t.credit_account_id != p.credit_account_id {
            return Ok(Err(R::PendingTransferHasDifferentCreditAccountId));
        }
        let amount = if post {
            if t.amount > p.amount {
                return Ok(Err(R::ExceedsPendingTransferAmount));
            }
            if t.amount == 0 { p.amount } else { t.amount }
        } else {
            if t.amount != 0 && t.amount != p.amount {
                return Ok(Err(R::PendingTransferHasDifferentAmount));
            }
            p.amount
        };
        match p.status {
            TransferStatus::Pending => {}
            TransferStatus::Posted => return Ok(Err(R::PendingTransferAlreadyPosted)),
            TransferStatus::Voided => return Ok(Err(R::PendingTransferAlreadyVoided)),
            TransferStatus::Expired => return Ok(Err(R::PendingTransferExpired)),
        }
        let ts = self.next_timestamp(now);
        self.release(&p, if post { amount } else { 0 }, ts, fx);
        let mut resolved = p;
        resolved.status = if post {
            TransferStatus::Posted
        } else {
            TransferStatus::Voided
        };
        resolved.amount_posted = if post { amount } else { 0 };
        if let Some(at) = p.expires_at() {
            let removed = self.expiries.remove(&(at, p.id));
            assert!(
                removed,
                "an unresolved pending transfer with a timeout is in the expiry index"
            );
            self.undo.push(Undo::ExpiryRemoved((at, p.id)));
        }
        self.put_hot(resolved, seq, false, fx);
        let transfer = Transfer {
            id: t.id,
            debit_account_id: p.debit_account_id,
            credit_account_id: p.credit_account_id,
            pending_id: p.id,
            user_data: if t.user_data == 0 {
                p.user_data
            } else {
                t.user_data
            },
            amount,
            amount_posted: 0,
            timestamp: ts,
            timeout_ms: 0,
            code: if t.code == 0 { p.code } else { t.code },
            flags: t.flags,
            status: if post {
                TransferStatus::Posted
            } else {
                TransferStatus::Voided
            },
        };
        self.put_hot(transfer, seq, true, fx);
        Ok(Ok(ts))
    }

    /// Release a pending transfer's reservation and post `post_amount` of it.
    fn release(&mut self, p: &Transfer, post_amount: u64, ts: u64, fx: &mut Effects) {
        let mut dr = self.accounts[&p.debit_account_id];
        let mut cr = self.accounts[&p.credit_account_id];
        let amount = u128::from(p.amount);
        let posted = u128::from(post_amount);
        dr.debits_pending = dr
            .debits_pending
            .checked_sub(amount)
            .expect("pending debits cover a pending transfer");
        cr.credits_pending = cr
            .credits_pending
            .checked_sub(amount)
            .expect("pending credits cover a pending transfer");
        // A post never exceeds what was reserved, so limits still hold and
        // no balance can overflow past what the reservation already proved.
        dr.debits_posted += posted;
        cr.credits_posted += posted;
        assert!(
            dr.within_limits() && cr.within_limits(),
            "releasing a reservation broke a limit"
        );
        self.set_accounts(dr, cr, ts, fx);
        let totals = self.totals_mut(dr.currency);
        let before = *totals;
        totals.debits_pending -= amount;
        totals.credits_pending -= amount;
        totals.debits_posted += posted;
        totals.credits_posted += posted;
        self.undo.push(Undo::Totals(dr.currency, before));
    }

    fn set_accounts(&mut self, dr: Account, cr: Account, ts: u64, fx: &mut Effects) {
        for a in [dr, cr] {
            let before = self.accounts.insert(a.id, a).expect("account exists");
            self.undo.push(Undo::Account(before));
            self.dirty.insert(a.id);
            if a.flags.contains(AccountFlags::HISTORY) {
                fx.history.push((
                    a.id,
                    Balances {
                        timestamp: ts,
                        ..a.balances()
                    },
                ));
            }
        }
    }

    fn put_hot(&mut self, transfer: Transfer, seq: u64, created: bool, fx: &mut Effects) {
        let before = self.hot.insert(transfer.id, Hot { transfer, seq });
        self.undo.push(Undo::Hot(transfer.id, before));
        fx.transfers.push((transfer, created));
    }

    /// Forget what record `fx.seq` wrote once it is indexed (cold lookups
    /// find it from now on). Unresolved pending transfers stay.
    pub(crate) fn indexed(&mut self, fx: &Effects) {
        for (t, _) in &fx.transfers {
            if self
                .hot
                .get(&t.id)
                .is_some_and(|h| h.seq == fx.seq && h.transfer.status != TransferStatus::Pending)
            {
                self.hot.remove(&t.id);
            }
        }
        for (t, _) in &fx.failed {
            if self.failed_hot.get(&t.id).is_some_and(|f| f.seq == fx.seq) {
                self.failed_hot.remove(&t.id);
            }
        }
    }
}

fn compare_existing(t: &NewTransfer, e: &Transfer) -> Result<Receipt, TransferReject> {
    use TransferReject as R;
    let second_phase = e
        .flags
        .intersects(TransferFlags::POST_PENDING | TransferFlags::VOID_PENDING);
    let inherits = |given: u128, stored: u128| given == stored || second_phase && given == 0;
    if t.flags - TransferFlags::LINKED != e.flags - TransferFlags::LINKED {
        Err(R::ExistsWithDifferentFlags)
    } else if !inherits(t.debit_account_id, e.debit_account_id) {
        Err(R::ExistsWithDifferentDebitAccountId)
    } else if !inherits(t.credit_account_id, e.credit_account_id) {
        Err(R::ExistsWithDifferentCreditAccountId)
    } else if !(t.amount == e.amount || second_phase && t.amount == 0) {
        Err(R::ExistsWithDifferentAmount)
    } else if t.pending_id != e.pending_id {
        Err(R::ExistsWithDifferentPendingId)
    } else if !inherits(t.user_data, e.user_data) {
        Err(R::ExistsWithDifferentUserData)
    } else if !inherits(u128::from(t.code), u128::from(e.code)) {
        Err(R::ExistsWithDifferentCode)
    } else if t.timeout_ms != e.timeout_ms {
        Err(R::ExistsWithDifferentTimeout)
    } else {
        Ok(Receipt {
            timestamp: e.timestamp,
            created: false,
        })
    }
}

fn compare_failed(
    t: &NewTransfer,
    f: &NewTransfer,
    reject: TransferReject,
) -> Result<Receipt, TransferReject> {
    use TransferReject as R;
    Err(
        if t.flags - TransferFlags::LINKED != f.flags - TransferFlags::LINKED {
            R::ExistsWithDifferentFlags
        } else if t.debit_account_id != f.debit_account_id {
            R::ExistsWithDifferentDebitAccountId
        } else if t.credit_account_id != f.credit_account_id {
            R::ExistsWithDifferentCreditAccountId
        } else if t.amount != f.amount {
            R::ExistsWithDifferentAmount
        } else if t.pending_id != f.pending_id {
            R::ExistsWithDifferentPendingId
        } else if t.user_data != f.user_data {
            R::ExistsWithDifferentUserData
        } else if t.code != f.code {
            R::ExistsWithDifferentCode
        } else if t.timeout_ms != f.timeout_ms {
            R::ExistsWithDifferentTimeout
        } else {
            reject
        },
    )
}
