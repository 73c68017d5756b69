//! The ledger's data: accounts and transfers as callers submit them
//! (`NewAccount`, `NewTransfer`) and as the ledger stores them (`Account`,
//! `Transfer`). Amounts are integer minor units; balances are `u128` so that
//! no realistic sequence of `u64` amounts can overflow them.

use bitflags::bitflags;

/// An amount in minor units of its currency (VND has none: 1 = one dong).
pub type Amount = u64;

bitflags! {
    /// Account flags. The two limit flags are mutually exclusive.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct AccountFlags: u16 {
        /// Debits (pending + posted) may never exceed posted credits: an
        /// asset held for someone else, e.g. a customer's or an e-float balance.
        const DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 0;
        /// Credits (pending + posted) may never exceed posted debits: e.g. a
        /// cash drawer that cannot pay out cash it does not hold.
        const CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 1;
        /// Keep a balance snapshot after every change (queryable history).
        const HISTORY = 1 << 2;
    }
}

bitflags! {
    /// Transfer flags. `PENDING`, `POST_PENDING` and `VOID_PENDING` are
    /// mutually exclusive.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct TransferFlags: u16 {
        /// This event and the next one succeed or fail together.
        const LINKED = 1 << 0;
        /// Reserve the amount (first phase of a two-phase transfer).
        const PENDING = 1 << 1;
        /// Post (all or part of) the pending transfer named by `pending_id`.
        const POST_PENDING = 1 << 2;
        /// Release the pending transfer named by `pending_id`.
        const VOID_PENDING = 1 << 3;
    }
}

/// An account as a caller asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NewAccount {
    /// Client-chosen 128-bit id: not zero, not `u128::MAX`.
    pub id: u128,
    /// ISO 4217 numeric currency code (704 = VND). Transfers only move money
    /// between accounts of the same currency.
    pub currency: u16,
    /// The caller's account kind (e.g. bank settlement, e-float, drawer).
    pub code: u16,
    /// Limits and history.
    pub flags: AccountFlags,
    /// Opaque caller reference.
    pub user_data: u128,
}

/// An account as the ledger keeps it. Balances change only by applying
/// transfers inside the ledger, so the fields are private.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Account {
    pub(crate) id: u128,
    pub(crate) user_data: u128,
    pub(crate) debits_pending: u128,
    pub(crate) debits_posted: u128,
    pub(crate) credits_pending: u128,
    pub(crate) credits_posted: u128,
    pub(crate) timestamp: u64,
    pub(crate) currency: u16,
    pub(crate) code: u16,
    pub(crate) flags: AccountFlags,
}

impl Account {
    pub(crate) fn new(new: &NewAccount, timestamp: u64) -> Account {
        Account {
            id: new.id,
            user_data: new.user_data,
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
            timestamp,
            currency: new.currency,
            code: new.code,
            flags: new.flags,
        }
    }
    /// The account with balances read from a storage backend that keeps
    /// them apart (see [`crate::batch`]); the ledger never calls it.
    pub fn with_balances(mut self, b: Balances) -> Account {
        self.debits_pending = b.debits_pending;
        self.debits_posted = b.debits_posted;
        self.credits_pending = b.credits_pending;
        self.credits_posted = b.credits_posted;
        self
    }
    /// The account as bytes, for a storage backend (the journal's format).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(112);
        crate::codec::put_account(&mut crate::codec::Enc(&mut out), self);
        out
    }
    /// An account from [`Account::encode`]'s bytes; `None` if they are not one.
    pub fn decode(bytes: &[u8]) -> Option<Account> {
        let mut d = crate::codec::Dec::new(bytes);
        let a = crate::codec::get_account(&mut d).ok()?;
        (d.remaining() == 0).then_some(a)
    }
    pub fn id(&self) -> u128 {
        self.id
    }
    pub fn currency(&self) -> u16 {
        self.currency
    }
    pub fn code(&self) -> u16 {
        self.code
    }
    pub fn flags(&self) -> AccountFlags {
        self.flags
    }
    pub fn user_data(&self) -> u128 {
        self.user_data
    }
    /// When the account was created (ledger time, nanoseconds).
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }
    pub fn debits_pending(&self) -> u128 {
        self.debits_pending
    }
    pub fn debits_posted(&self) -> u128 {
        self.debits_posted
    }
    pub fn credits_pending(&self) -> u128 {
        self.credits_pending
    }
    pub fn credits_posted(&self) -> u128 {
        self.credits_posted
    }
    /// Posted credits minus posted debits (positive for a credit balance).
    pub fn balance_posted(&self) -> i128 {
        self.credits_posted as i128 - self.debits_posted as i128
    }
    /// What a credit-normal account can still spend: posted credits minus
    /// posted *and pending* debits. Pending credits are not yet money.
    pub fn balance_available(&self) -> i128 {
        self.credits_posted as i128 - self.debits_posted as i128 - self.debits_pending as i128
    }
    /// What a debit-normal account (a drawer) can still pay out: posted
    /// debits minus posted and pending credits.
    pub fn debit_balance_available(&self) -> i128 {
        self.debits_posted as i128 - self.credits_posted as i128 - self.credits_pending as i128
    }
    /// The four balances at this moment.
    pub fn balances(&self) -> Balances {
        Balances {
            timestamp: 0,
            debits_pending: self.debits_pending,
            debits_posted: self.debits_posted,
            credits_pending: self.credits_pending,
            credits_posted: self.credits_posted,
        }
    }
    /// True when the account's limit flags hold.
    pub fn within_limits(&self) -> bool {
        let debits = self.debits_pending + self.debits_posted;
        let credits = self.credits_pending + self.credits_posted;
        !(self
            .flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && debits > self.credits_posted
            || self
                .flags
                .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
                && credits > self.debits_posted)
    }
}

/// One point of an account's balance history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Balances {
    /// Ledger time of the event that produced these balances.
    pub timestamp: u64,
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
}

/// A transfer as a caller asks for it.
///
/// For `POST_PENDING` and `VOID_PENDING`, `debit_account_id` and
/// `credit_account_id` may be zero (taken from the pending transfer) or must
/// equal it; `amount` zero means the full pending amount (a post may name
/// less, to post part of it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NewTransfer {
    /// Client-chosen 128-bit id and idempotency key: not zero, not `u128::MAX`.
    pub id: u128,
    pub debit_account_id: u128,
    pub credit_account_id: u128,
    pub amount: Amount,
    /// The pending transfer a post or void refers to; zero otherwise.
    pub pending_id: u128,
    /// Opaque caller reference (the switch puts its transaction id here).
    pub user_data: u128,
    /// The caller's transfer kind.
    pub code: u16,
    pub flags: TransferFlags,
    /// For `PENDING` only: void it automatically this long after it was
    /// created (0 = never).
    pub timeout_ms: u32,
}

impl NewTransfer {
    /// The event as bytes, for a storage backend (the journal's format).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(crate::codec::NEW_TRANSFER_SIZE);
        crate::codec::put_new_transfer(&mut crate::codec::Enc(&mut out), self);
        out
    }
    /// An event from [`NewTransfer::encode`]'s bytes; `None` if they are not one.
    pub fn decode(bytes: &[u8]) -> Option<NewTransfer> {
        let mut d = crate::codec::Dec::new(bytes);
        let t = crate::codec::get_new_transfer(&mut d).ok()?;
        (d.remaining() == 0).then_some(t)
    }

    /// A single-phase transfer, posted at once.
    pub fn single(id: u128, debit: u128, credit: u128, amount: Amount, code: u16) -> NewTransfer {
        NewTransfer {
            id,
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            code,
            ..Default::default()
        }
    }
    /// The first phase of a two-phase transfer.
    pub fn pending(
        id: u128,
        debit: u128,
        credit: u128,
        amount: Amount,
        code: u16,
        timeout_ms: u32,
    ) -> NewTransfer {
        NewTransfer {
            flags: TransferFlags::PENDING,
            timeout_ms,
            ..NewTransfer::single(id, debit, credit, amount, code)
        }
    }
    /// Post a pending transfer: `amount` `None` posts all of it.
    pub fn post(id: u128, pending_id: u128, amount: Option<Amount>) -> NewTransfer {
        NewTransfer {
            id,
            pending_id,
            amount: amount.unwrap_or(0),
            flags: TransferFlags::POST_PENDING,
            ..Default::default()
        }
    }
    /// Void a pending transfer.
    pub fn void(id: u128, pending_id: u128) -> NewTransfer {
        NewTransfer {
            id,
            pending_id,
            flags: TransferFlags::VOID_PENDING,
            ..Default::default()
        }
    }
    /// The same transfer, linked to the next event of its batch.
    pub fn linked(mut self) -> NewTransfer {
        self.flags |= TransferFlags::LINKED;
        self
    }
}

/// Where a transfer stands. A single-phase transfer is `Posted` from the
/// start; a pending one moves once to `Posted`, `Voided` or `Expired`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferStatus {
    Pending,
    Posted,
    Voided,
    Expired,
}

/// A transfer as the ledger keeps it (accounts and amount resolved: for a
/// post or void, those of the pending transfer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transfer {
    pub(crate) id: u128,
    pub(crate) debit_account_id: u128,
    pub(crate) credit_account_id: u128,
    pub(crate) pending_id: u128,
    pub(crate) user_data: u128,
    pub(crate) amount: Amount,
    /// The post amount of a pending transfer once posted (0 otherwise).
    pub(crate) amount_posted: Amount,
    pub(crate) timestamp: u64,
    pub(crate) timeout_ms: u32,
    pub(crate) code: u16,
    pub(crate) flags: TransferFlags,
    pub(crate) status: TransferStatus,
}

impl Transfer {
    /// The transfer as bytes, for a storage backend (the journal's format).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        crate::codec::put_transfer(&mut crate::codec::Enc(&mut out), self);
        out
    }
    /// A transfer from [`Transfer::encode`]'s bytes; `None` if they are not one.
    pub fn decode(bytes: &[u8]) -> Option<Transfer> {
        let mut d = crate::codec::Dec::new(bytes);
        let t = crate::codec::get_transfer(&mut d).ok()?;
        (d.remaining() == 0).then_some(t)
    }
    pub fn id(&self) -> u128 {
        self.id
    }
    pub fn debit_account_id(&self) -> u128 {
        self.debit_account_id
    }
    pub fn credit_account_id(&self) -> u128 {
        self.credit_account_id
    }
    pub fn pending_id(&self) -> u128 {
        self.pending_id
    }
    pub fn user_data(&self) -> u128 {
        self.user_data
    }
    /// The amount moved (for a pending transfer: reserved).
    pub fn amount(&self) -> Amount {
        self.amount
    }
    /// For a pending transfer that was posted: the amount posted.
    pub fn amount_posted(&self) -> Amount {
        self.amount_posted
    }
    /// Ledger time at which it was created (nanoseconds, strictly increasing).
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }
    pub fn timeout_ms(&self) -> u32 {
        self.timeout_ms
    }
    pub fn code(&self) -> u16 {
        self.code
    }
    pub fn flags(&self) -> TransferFlags {
        self.flags
    }
    pub fn status(&self) -> TransferStatus {
        self.status
    }
    /// When a pending transfer with a timeout expires (ledger time).
    pub fn expires_at(&self) -> Option<u64> {
        (self.flags.contains(TransferFlags::PENDING) && self.timeout_ms > 0)
            .then(|| self.timestamp + u64::from(self.timeout_ms) * 1_000_000)
    }
}

/// The outcome of an event that was accepted, or of its retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// Ledger time of the original event.
    pub timestamp: u64,
    /// False when this answers a retry: the event existed, nothing was posted.
    pub created: bool,
}
