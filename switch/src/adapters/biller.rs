//! The biller side: one trait every biller connector implements (EVN
//! electricity, the water company, VNPT internet, Viettel telecom), and an
//! in-process simulator of all four. Like a bank, a biller treats the
//! switch's reference as an idempotency key: a repeated payment with the
//! same reference pays once, and a cancellation of a reference it never saw
//! leaves a tombstone so that a late payment is refused.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ids::Reference;

use super::breaker::Breaker;

pub type BillerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BillerError>> + Send + 'a>>;

/// One unpaid bill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bill {
    /// The biller's id of the bill, unique per customer.
    pub id: String,
    /// `YYYY-MM`.
    pub period: String,
    pub amount: u64,
    /// `YYYY-MM-DD`.
    pub due_date: String,
}

/// What an inquiry answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub customer_name: String,
    /// Unpaid bills, oldest first; empty when nothing is due.
    pub bills: Vec<Bill>,
}

/// Why a biller call did not succeed. Only `Rejected` and `Unavailable` say
/// that nothing happened; after `Timeout` the outcome is unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BillerError {
    Rejected {
        reason: BillerReject,
        message: String,
    },
    Unavailable(String),
    Timeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BillerReject {
    CustomerNotFound,
    /// A bill that does not exist or is paid already.
    BillNotDue,
    /// Not every due bill, where the biller wants them paid together.
    PartialNotAllowed,
    AmountMismatch,
    /// The reference was cancelled already (a late payment).
    AlreadyCancelled,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BillerTxStatus {
    Completed { biller_reference: String },
    Cancelled,
    NotFound,
}

pub trait BillerAdapter: Send + Sync {
    fn inquire<'a>(&'a self, customer: &'a str) -> BillerFuture<'a, Statement>;
    /// Pay `bills` of `customer`, `amount` in all, and confirm them paid;
    /// answers the biller's reference.
    fn pay<'a>(
        &'a self,
        reference: Reference,
        customer: &'a str,
        bills: &'a [String],
        amount: u64,
    ) -> BillerFuture<'a, String>;
    /// Prepaid airtime of `amount` for `phone`; answers the network's
    /// reference. Undone by [`BillerAdapter::cancel`] like a payment.
    fn top_up<'a>(
        &'a self,
        reference: Reference,
        phone: &'a str,
        amount: u64,
    ) -> BillerFuture<'a, String>;
    /// Undo whatever `reference` did: the bills are due again.
    fn cancel(&self, reference: Reference) -> BillerFuture<'_, ()>;
    fn status(&self, reference: Reference) -> BillerFuture<'_, BillerTxStatus>;
}

/// A biller the switch routes to.
pub struct Biller {
    /// Short code, e.g. `EVN`.
    pub code: String,
    pub name: String,
    /// Its number in ledger account ids.
    pub number: u64,
    /// What the pilot report counts its bills as (one of [`CATEGORIES`]).
    pub category: &'static str,
    /// May a customer pay some of their due bills and leave others?
    pub partial_allowed: bool,
    /// Where a QR shown for this biller's bills says the money goes.
    pub collection_bin: String,
    pub collection_account: String,
    pub adapter: Arc<dyn BillerAdapter>,
    pub breaker: Breaker,
}

/// The kinds of bill the province's plan reports: electricity, water,
/// internet, telecom and TV; anything else is `other`.
pub const CATEGORIES: [&str; 5] = ["electricity", "water", "internet", "telecom_tv", "other"];

/// `name` as one of [`CATEGORIES`].
pub fn category(name: &str) -> Option<&'static str> {
    CATEGORIES.iter().copied().find(|c| *c == name)
}

/// Billers by code.
#[derive(Default, Clone)]
pub struct Billers {
    billers: HashMap<String, Arc<Biller>>,
}

impl Billers {
    pub fn add(&mut self, b: Biller) {
        self.billers.insert(b.code.clone(), Arc::new(b));
    }
    pub fn get(&self, code: &str) -> Option<&Arc<Biller>> {
        self.billers.get(code)
    }
    pub fn all(&self) -> impl Iterator<Item = &Arc<Biller>> {
        self.billers.values()
    }
}
