//! The bank side: one trait every bank connector implements, routed by
//! NAPAS BIN. Each call carries the switch's transaction id as its
//! reference, and banks must treat it as an idempotency key: a repeated
//! credit with the same reference credits once; a reversal of a reference
//! they never saw leaves a tombstone so that a late credit is refused.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::ids::Reference;

pub type BankFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BankError>> + Send + 'a>>;

/// Why a bank call did not succeed. Only `Rejected` and `Unavailable` say
/// that nothing happened; after `Timeout` the outcome is unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BankError {
    Rejected {
        reason: RejectReason,
        message: String,
    },
    Unavailable(String),
    Timeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    AccountNotFound,
    InsufficientFunds,
    /// The reference was reversed already (a late request).
    AlreadyReversed,
    /// A withdrawal code that does not exist, does not match the account or
    /// amount, or was used.
    InvalidCode,
    CodeExpired,
    /// The PIN entered for a card is not its PIN.
    IncorrectPin,
    /// Too many wrong PINs: the card is blocked.
    PinTriesExceeded,
    Other,
}

/// What the bank knows of a reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BankTxStatus {
    Completed { bank_reference: String },
    Reversed,
    NotFound,
}

pub trait BankAdapter: Send + Sync {
    /// The holder's name as the bank shows it.
    fn name_inquiry<'a>(&'a self, account: &'a str) -> BankFuture<'a, String>;
    /// Credit `amount` to `account`; answers the bank's reference.
    fn credit<'a>(
        &'a self,
        reference: Reference,
        account: &'a str,
        amount: u64,
    ) -> BankFuture<'a, String>;
    /// Verify a one-time withdrawal `code` issued for `account` and
    /// `amount`, then debit `amount + fee`; answers the bank's reference.
    fn debit_with_code<'a>(
        &'a self,
        reference: Reference,
        account: &'a str,
        code: &'a str,
        amount: u64,
        fee: u64,
    ) -> BankFuture<'a, String>;
    /// Debit `amount` from `account`, which the customer authorised at
    /// their bank (a QR payment from their banking app, a bill paid from
    /// their account); answers the bank's reference.
    fn debit<'a>(
        &'a self,
        reference: Reference,
        account: &'a str,
        amount: u64,
    ) -> BankFuture<'a, String>;
    /// Undo whatever `reference` did (nothing, if the bank never saw it).
    /// Debit `amount` from the account behind `card_number` after the
    /// bank verified the PIN inside `pin_block` (format 4 under the bank's
    /// zone key, [`Bank::pin_key`]).
    fn card_debit<'a>(
        &'a self,
        reference: Reference,
        card_number: &'a str,
        pin_block: &'a str,
        amount: u64,
    ) -> BankFuture<'a, String>;
    fn reverse(&self, reference: Reference) -> BankFuture<'_, ()>;
    fn status(&self, reference: Reference) -> BankFuture<'_, BankTxStatus>;
}

/// A bank the switch routes to.
pub struct Bank {
    pub bin: String,
    pub name: String,
    pub adapter: Arc<dyn BankAdapter>,
    pub breaker: super::breaker::Breaker,
    /// The zone PIN key shared with the bank: card PINs reach it enciphered
    /// under this. None: the bank takes no cards through this switch.
    pub pin_key: Option<proto::pin::PinKey>,
}

/// Banks by BIN.
#[derive(Default, Clone)]
pub struct Routes {
    banks: HashMap<String, Arc<Bank>>,
}

impl Routes {
    pub fn add(&mut self, bank: Bank) {
        self.banks.insert(bank.bin.clone(), Arc::new(bank));
    }
    pub fn get(&self, bin: &str) -> Option<&Arc<Bank>> {
        self.banks.get(bin)
    }
    pub fn bins(&self) -> impl Iterator<Item = &str> {
        self.banks.keys().map(String::as_str)
    }
    pub fn all(&self) -> impl Iterator<Item = &Arc<Bank>> {
        self.banks.values()
    }
}
