//! The in-process simulator of the four demo billers (EVN electricity, the
//! water company, VNPT internet, Viettel telecom): customers with monthly
//! bills, kept in the switch's data directory so that a restart keeps them.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::adapters::biller::{
    Bill, BillerAdapter, BillerError, BillerFuture, BillerReject, BillerTxStatus, Statement,
};
use crate::config::SimConfig;
use crate::demo::DEMO_BILLERS;
use crate::ids::Reference;

use super::bank::{stored, undecodable};
use super::fault::{Fate, Fault, FaultSwitch, fate};

const NAMES: [&str; 6] = [
    "NGUYEN THI MAI",
    "TRAN VAN HUNG",
    "LE THI THU",
    "PHAM VAN NAM",
    "HOANG THI YEN",
    "DO VAN TUAN",
];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCustomer {
    pub customer: String,
    pub name: String,
    pub bills: Vec<Bill>,
}

/// The simulated customers of a demo biller (the same every time): `n`
/// customers (six in the demo), the first with nothing due, the others with
/// one to three monthly bills.
pub fn demo_customers(code: &str, n: usize) -> Vec<SimCustomer> {
    let Some(&(_, _, number, _, prefix, digits)) = DEMO_BILLERS.iter().find(|b| b.0 == code) else {
        return Vec::new();
    };
    (0..n as u64)
        .map(|i| {
            let n = (number * 1_000_003 + i * 7_777_777) % 10u64.pow(digits as u32);
            let bills = (0..(i % 6).min(3))
                .map(|k| {
                    let month = 10 - k;
                    Bill {
                        id: format!("{code}-2026{month:02}-{i}"),
                        period: format!("2026-{month:02}"),
                        amount: 50_000 * number + 37_000 * i + 11_000 * k,
                        due_date: format!("2026-{:02}-20", month + 1),
                    }
                })
                .rev()
                .collect();
            SimCustomer {
                customer: format!("{prefix}{n:0digits$}"),
                name: NAMES[((number + i) % NAMES.len() as u64) as usize].to_string(),
                bills,
            }
        })
        .collect()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SimPayment {
    /// A bill customer's code, or the phone number of a top-up.
    customer: String,
    bills: Vec<Bill>,
    biller_reference: String,
    cancelled: bool,
    /// A top-up's airtime (đồng); 0 for bills.
    #[serde(default)]
    airtime: u64,
}

struct State {
    customers: HashMap<String, SimCustomer>,
    payments: HashMap<u128, SimPayment>,
    rng: u64,
    next_reference: u64,
}

/// A simulated biller, kept in the switch's data directory.
pub struct SimBiller {
    code: String,
    partial_allowed: bool,
    config: SimConfig,
    fault: FaultSwitch,
    state: Mutex<State>,
    tree: fjall::Keyspace,
}

fn reject<T>(reason: BillerReject, message: &str) -> Result<T, BillerError> {
    Err(BillerError::Rejected {
        reason,
        message: message.to_string(),
    })
}

impl SimBiller {
    pub fn open(
        code: &str,
        partial_allowed: bool,
        config: SimConfig,
        tree: fjall::Keyspace,
    ) -> Result<SimBiller, fjall::Error> {
        let mut customers = HashMap::new();
        let mut payments = HashMap::new();
        for kv in tree.iter() {
            let (k, v) = kv.into_inner()?;
            if let Some(c) = k.strip_prefix(b"c/") {
                customers.insert(
                    String::from_utf8_lossy(c).into_owned(),
                    stored::<SimCustomer>(&k, &v)?,
                );
            } else if let Some(r) = k.strip_prefix(b"p/") {
                let r = <[u8; 16]>::try_from(r).map_err(|_| undecodable(&k, "not a reference"))?;
                payments.insert(u128::from_be_bytes(r), stored::<SimPayment>(&k, &v)?);
            }
        }
        if customers.is_empty() {
            for c in demo_customers(code, config.customers) {
                tree.insert(
                    format!("c/{}", c.customer),
                    serde_json::to_vec(&c).expect("serialisable"),
                )?;
                customers.insert(c.customer.clone(), c);
            }
        }
        let next_reference = payments.len() as u64 + 1;
        Ok(SimBiller {
            code: code.to_string(),
            partial_allowed,
            state: Mutex::new(State {
                customers,
                payments,
                rng: config.seed ^ 0x9e37_79b9 | 1,
                next_reference,
            }),
            config,
            fault: FaultSwitch::default(),
            tree,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, c: Option<&SimCustomer>, p: Option<(Reference, &SimPayment)>) {
        if let Some(c) = c {
            let _ = self.tree.insert(
                format!("c/{}", c.customer),
                serde_json::to_vec(c).expect("serialisable"),
            );
        }
        if let Some((r, p)) = p {
            let mut k = b"p/".to_vec();
            k.extend_from_slice(&r.to_bytes());
            let _ = self
                .tree
                .insert(k, serde_json::to_vec(p).expect("serialisable"));
        }
    }

    /// Run `work` under the configured fate (latency, unavailability, a lost
    /// answer after the work was done).
    async fn call<T>(
        &self,
        work: impl FnOnce() -> Result<T, BillerError>,
    ) -> Result<T, BillerError> {
        let latency = self.fault.latency(&self.config);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if self.fault.get() == Fault::Down {
            return Err(BillerError::Unavailable(format!(
                "biller {} is down (simulated)",
                self.code
            )));
        }
        let fate = fate(&self.config, &mut self.lock().rng);
        match fate {
            Fate::Unavailable => Err(BillerError::Unavailable(format!(
                "biller {} is unavailable (simulated)",
                self.code
            ))),
            Fate::Answer => work(),
            Fate::LoseResponse => {
                let _ = work();
                std::future::pending::<()>().await;
                unreachable!("pending never resolves")
            }
        }
    }

    /// Switch a fault on (payments) or off.
    pub fn set_fault(&self, f: Fault) {
        self.fault.set(f);
    }

    /// A customer's bills as the biller holds them now (tests).
    pub fn customer(&self, customer: &str) -> Option<SimCustomer> {
        self.lock().customers.get(customer).cloned()
    }

    /// The airtime `phone` was sold and not cancelled (tests).
    pub fn airtime(&self, phone: &str) -> u64 {
        self.lock()
            .payments
            .values()
            .filter(|p| p.customer == phone && !p.cancelled)
            .map(|p| p.airtime)
            .sum()
    }

    fn top_up_now(
        &self,
        reference: Reference,
        phone: &str,
        amount: u64,
    ) -> Result<String, BillerError> {
        let Some(network) = crate::topup::provider(&self.code) else {
            return reject(BillerReject::Other, "this biller sells no airtime");
        };
        let mut s = self.lock();
        if let Some(p) = s.payments.get(&reference.as_u128()) {
            return if p.cancelled {
                reject(BillerReject::AlreadyCancelled, "reference was cancelled")
            } else {
                Ok(p.biller_reference.clone())
            };
        }
        if crate::topup::check(network.code, phone, amount).is_err() {
            return reject(
                BillerReject::CustomerNotFound,
                "not a subscriber of this network, or not an amount it sells",
            );
        }
        s.next_reference += 1;
        let p = SimPayment {
            customer: phone.to_string(),
            bills: Vec::new(),
            biller_reference: format!("{}-TU{:010}", self.code, s.next_reference),
            cancelled: false,
            airtime: amount,
        };
        s.payments.insert(reference.as_u128(), p.clone());
        drop(s);
        self.persist(None, Some((reference, &p)));
        Ok(p.biller_reference)
    }

    fn pay_now(
        &self,
        reference: Reference,
        customer: &str,
        bills: &[String],
        amount: u64,
    ) -> Result<String, BillerError> {
        let mut s = self.lock();
        if let Some(p) = s.payments.get(&reference.as_u128()) {
            return if p.cancelled {
                reject(BillerReject::AlreadyCancelled, "reference was cancelled")
            } else {
                Ok(p.biller_reference.clone())
            };
        }
        let partial_allowed = self.partial_allowed;
        let next = s.next_reference;
        let Some(c) = s.customers.get_mut(customer) else {
            return reject(BillerReject::CustomerNotFound, "no such customer");
        };
        if bills.is_empty() || bills.iter().any(|b| !c.bills.iter().any(|x| &x.id == b)) {
            return reject(
                BillerReject::BillNotDue,
                "a bill is not due (paid already?)",
            );
        }
        if !partial_allowed && bills.len() != c.bills.len() {
            return reject(
                BillerReject::PartialNotAllowed,
                "every due bill must be paid together",
            );
        }
        let (paid, kept): (Vec<Bill>, Vec<Bill>) =
            c.bills.drain(..).partition(|x| bills.contains(&x.id));
        if paid.iter().map(|b| b.amount).sum::<u64>() != amount {
            c.bills = paid.into_iter().chain(kept).collect();
            c.bills.sort_by(|a, b| a.period.cmp(&b.period));
            return reject(
                BillerReject::AmountMismatch,
                "the amount is not what is due",
            );
        }
        c.bills = kept;
        if self.config.recurring_bills && c.bills.is_empty() {
            let last = paid.last().expect("at least one bill was paid");
            c.bills.push(Bill {
                id: format!("{}-R{next}", self.code),
                period: format!("{}+", last.period),
                amount: last.amount,
                due_date: last.due_date.clone(),
            });
        }
        let c = c.clone();
        s.next_reference += 1;
        let p = SimPayment {
            customer: customer.to_string(),
            bills: paid,
            biller_reference: format!("{}-{:010}", self.code, s.next_reference),
            cancelled: false,
            airtime: 0,
        };
        s.payments.insert(reference.as_u128(), p.clone());
        drop(s);
        self.persist(Some(&c), Some((reference, &p)));
        Ok(p.biller_reference)
    }
}

impl BillerAdapter for SimBiller {
    fn inquire<'a>(&'a self, customer: &'a str) -> BillerFuture<'a, Statement> {
        Box::pin(
            self.call(move || match self.lock().customers.get(customer) {
                Some(c) => Ok(Statement {
                    customer_name: c.name.clone(),
                    bills: c.bills.clone(),
                }),
                None => reject(BillerReject::CustomerNotFound, "no such customer"),
            }),
        )
    }

    fn pay<'a>(
        &'a self,
        reference: Reference,
        customer: &'a str,
        bills: &'a [String],
        amount: u64,
    ) -> BillerFuture<'a, String> {
        Box::pin(async move {
            if matches!(
                self.fault.get(),
                Fault::LoseAnswers | Fault::LoseAnswersAndStatus
            ) {
                let _ = self.pay_now(reference, customer, bills, amount);
                std::future::pending::<()>().await;
            }
            self.call(move || self.pay_now(reference, customer, bills, amount))
                .await
        })
    }

    fn top_up<'a>(
        &'a self,
        reference: Reference,
        phone: &'a str,
        amount: u64,
    ) -> BillerFuture<'a, String> {
        Box::pin(async move {
            if matches!(
                self.fault.get(),
                Fault::LoseAnswers | Fault::LoseAnswersAndStatus
            ) {
                let _ = self.top_up_now(reference, phone, amount);
                std::future::pending::<()>().await;
            }
            self.call(move || self.top_up_now(reference, phone, amount))
                .await
        })
    }

    fn cancel(&self, reference: Reference) -> BillerFuture<'_, ()> {
        Box::pin(self.call(move || {
            let mut s = self.lock();
            let p = s
                .payments
                .entry(reference.as_u128())
                .or_insert_with(|| SimPayment {
                    customer: String::new(),
                    bills: Vec::new(),
                    biller_reference: String::new(),
                    cancelled: false,
                    airtime: 0,
                });
            if p.cancelled {
                return Ok(());
            }
            p.cancelled = true;
            let p = p.clone();
            let customer = s.customers.get_mut(&p.customer).map(|c| {
                c.bills.extend(p.bills.iter().cloned());
                c.bills.sort_by(|a, b| a.period.cmp(&b.period));
                c.clone()
            });
            drop(s);
            self.persist(customer.as_ref(), Some((reference, &p)));
            Ok(())
        }))
    }

    fn status(&self, reference: Reference) -> BillerFuture<'_, BillerTxStatus> {
        Box::pin(self.call(move || {
            if self.fault.get() == Fault::LoseAnswersAndStatus {
                return Err(BillerError::Unavailable(
                    "status is failing (simulated)".into(),
                ));
            }
            Ok(match self.lock().payments.get(&reference.as_u128()) {
                None => BillerTxStatus::NotFound,
                Some(p) if p.cancelled => BillerTxStatus::Cancelled,
                Some(p) => BillerTxStatus::Completed {
                    biller_reference: p.biller_reference.clone(),
                },
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TxId;

    fn sim(code: &str, partial: bool) -> SimBiller {
        // fjall removes a temporary database's directory when it closes.
        let db = fjall::Database::builder(tempfile::tempdir().unwrap().keep())
            .temporary(true)
            .open()
            .unwrap();
        SimBiller::open(
            code,
            partial,
            SimConfig::default(),
            db.keyspace("b", fjall::KeyspaceCreateOptions::default)
                .unwrap(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_bill_is_paid_once_and_a_cancellation_makes_it_due_again() {
        let b = sim("EVN", false);
        let c = demo_customers("EVN", 6).remove(2);
        assert_eq!(c.customer.len(), 13, "EVN codes are 13 characters");
        let ids: Vec<String> = c.bills.iter().map(|b| b.id.clone()).collect();
        let total = c.bills.iter().map(|b| b.amount).sum();
        let r = TxId::new(&ring::rand::SystemRandom::new(), 1_700_000_000_000).reference(0);
        let r2 = TxId::new(&ring::rand::SystemRandom::new(), 1_700_000_000_000).reference(0);
        assert!(matches!(
            b.pay(r, &c.customer, &ids[..1], c.bills[0].amount).await,
            Err(BillerError::Rejected {
                reason: BillerReject::PartialNotAllowed,
                ..
            })
        ));
        assert!(matches!(
            b.pay(r, &c.customer, &ids, total - 1).await,
            Err(BillerError::Rejected {
                reason: BillerReject::AmountMismatch,
                ..
            })
        ));
        assert_eq!(
            b.customer(&c.customer).unwrap().bills,
            c.bills,
            "nothing changed"
        );
        let paid = b.pay(r, &c.customer, &ids, total).await.unwrap();
        assert_eq!(
            b.pay(r, &c.customer, &ids, total).await.unwrap(),
            paid,
            "idempotent"
        );
        assert!(matches!(
            b.pay(r2, &c.customer, &ids, total).await,
            Err(BillerError::Rejected {
                reason: BillerReject::BillNotDue,
                ..
            })
        ));
        assert!(b.inquire(&c.customer).await.unwrap().bills.is_empty());
        b.cancel(r).await.unwrap();
        assert_eq!(b.status(r).await.unwrap(), BillerTxStatus::Cancelled);
        assert_eq!(b.inquire(&c.customer).await.unwrap().bills, c.bills);
        // A cancellation of a reference never seen leaves a tombstone.
        b.cancel(r2).await.unwrap();
        assert!(matches!(
            b.pay(r2, &c.customer, &ids, total).await,
            Err(BillerError::Rejected {
                reason: BillerReject::AlreadyCancelled,
                ..
            })
        ));
    }
}
