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
    fn reverse(&self, reference: Reference) -> BankFuture<'_, ()>;
    fn status(&self, reference: Reference) -> BankFuture<'_, BankTxStatus>;
}

/// A bank the switch routes to.
pub struct Bank {
    pub bin: String,
    pub name: String,
    pub adapter: Arc<dyn BankAdapter>,
    pub breaker: Breaker,
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
}

/// Stops calling a bank that keeps failing: after `failures_max`
/// consecutive failures (unavailable or timed out) calls fail fast for
/// `cooldown_ms`; then one trial call decides whether it closes again.
pub struct Breaker {
    state: std::sync::Mutex<BreakerState>,
    failures_max: u32,
    cooldown_ms: i64,
}

#[derive(Default)]
struct BreakerState {
    consecutive_failures: u32,
    /// Non-zero while open (or half-open once passed).
    open_until_ms: i64,
    trial_in_flight: bool,
}

impl Breaker {
    pub fn new(failures_max: u32, cooldown_ms: u64) -> Breaker {
        Breaker {
            state: Default::default(),
            failures_max: failures_max.max(1),
            cooldown_ms: cooldown_ms as i64,
        }
    }

    /// May a call go to the bank now?
    pub fn allow(&self, now_ms: i64) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.open_until_ms == 0 {
            return true;
        }
        if now_ms < s.open_until_ms || s.trial_in_flight {
            return false;
        }
        s.trial_in_flight = true;
        true
    }

    /// The outcome of a call that was allowed: did the bank answer?
    pub fn record(&self, answered: bool, now_ms: i64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.trial_in_flight = false;
        if answered {
            *s = BreakerState::default();
            return;
        }
        s.consecutive_failures += 1;
        if s.consecutive_failures >= self.failures_max {
            s.open_until_ms = now_ms + self.cooldown_ms;
        }
    }

    pub fn is_open(&self, now_ms: i64) -> bool {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.open_until_ms != 0 && now_ms < s.open_until_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_failures_and_one_trial_closes_it() {
        let b = Breaker::new(3, 1_000);
        for _ in 0..2 {
            assert!(b.allow(0));
            b.record(false, 0);
        }
        assert!(b.allow(0), "two failures: still closed");
        b.record(false, 0);
        assert!(!b.allow(10) && b.is_open(10), "three failures: open");
        assert!(b.allow(1_000), "after the cooldown: one trial");
        assert!(!b.allow(1_001), "only one trial at a time");
        b.record(false, 1_001);
        assert!(!b.allow(1_500), "the trial failed: open again");
        assert!(b.allow(2_001));
        b.record(true, 2_001);
        assert!(
            b.allow(2_002) && b.allow(2_003),
            "the trial succeeded: closed"
        );
    }
}
