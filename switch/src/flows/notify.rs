//! Merchants' payment notifications in order. A payment's notice gets its
//! sequence number before its record is written and is published only once
//! the record is durable; notices that become durable out of order (group
//! commit finishes them together) are held back until every lower number
//! is durable or abandoned. So watchers see increasing numbers, and a
//! watcher that resumes after number `n` has missed nothing below it.
//!
//! On a store several nodes share, numbers come from each merchant's
//! counter in the write itself (`Store::finish_tx`), so they are visible
//! in order and without gaps whichever node wrote them; watchers read the
//! store, woken by this node's writes and by PostgreSQL's notification of
//! another node's (LISTEN/NOTIFY, `store::pg_kv::listen`), and, should a
//! notification be lost with its connection, every
//! `Config::watch_rescan_ms`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::store::{Payment, Store, StoreError};

/// Notices buffered for live watchers (a watcher further behind reads the
/// store again).
const BUFFERED_MAX: usize = 4096;

/// Payment streams one merchant may keep open at once.
pub const WATCHERS_PER_MERCHANT_MAX: usize = 8;

pub struct Notifier {
    state: Mutex<State>,
    live: broadcast::Sender<Payment>,
    /// On a shared store: counts notices stored (by this node or, as
    /// PostgreSQL tells, another); watchers wake when it moves.
    stored: tokio::sync::watch::Sender<u64>,
    /// Open watch streams by merchant (bounded).
    watchers: Arc<Mutex<std::collections::HashMap<String, usize>>>,
}

/// A watch stream's place; dropping it frees the place.
pub struct Watching {
    watchers: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    merchant: String,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut w = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = w.get_mut(&self.merchant) {
            *n -= 1;
            if *n == 0 {
                w.remove(&self.merchant);
            }
        }
    }
}

struct State {
    /// Numbers handed out and not yet published: `None` while the record is
    /// not durable, `Some(None)` when abandoned.
    pending: BTreeMap<u64, Option<Option<Payment>>>,
    /// Every number at or below this is published or abandoned.
    published: u64,
}

/// A number handed out; publish or abandon it exactly once (dropping it
/// abandons it).
pub struct Ticket<'a> {
    notifier: &'a Notifier,
    seq: u64,
    done: bool,
}

impl Ticket<'_> {
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The record is durable: publish (in order).
    pub fn publish(mut self, p: Payment) {
        debug_assert_eq!(p.seq, self.seq);
        self.done = true;
        self.notifier.settle(self.seq, Some(p));
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.notifier.settle(self.seq, None);
        }
    }
}

impl Notifier {
    /// Every notice already stored has a lower number than any handed out
    /// from here (the store's id counter never goes back).
    pub fn open(store: &Store) -> Result<Notifier, StoreError> {
        Ok(Notifier {
            state: Mutex::new(State {
                pending: BTreeMap::new(),
                published: store.next_id()?,
            }),
            live: broadcast::channel(BUFFERED_MAX).0,
            stored: tokio::sync::watch::Sender::new(0),
            watchers: Arc::new(Mutex::new(std::collections::HashMap::new())),
        })
    }

    pub fn ticket(&self, store: &Store) -> Result<Ticket<'_>, StoreError> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Under the lock: numbers enter `pending` in increasing order.
        let seq = store.next_id()? + 1;
        debug_assert!(seq > s.published);
        s.pending.insert(seq, None);
        Ok(Ticket {
            notifier: self,
            seq,
            done: false,
        })
    }

    fn settle(&self, seq: u64, p: Option<Payment>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.pending.insert(seq, Some(p));
        while let Some(entry) = s.pending.first_entry() {
            if entry.get().is_none() {
                break;
            }
            let (seq, p) = entry.remove_entry();
            s.published = seq;
            if let Some(Some(p)) = p {
                // Sent under the lock: live watchers see increasing numbers.
                let _ = self.live.send(p);
            }
        }
    }

    /// A shared store's notice, committed here (so durable, and numbered
    /// in order for its merchant): wake this node's watchers, which read
    /// the store.
    pub fn wake(&self, _: Payment) {
        self.stored_elsewhere();
    }

    /// A shared store holds notices this node did not write (PostgreSQL
    /// said so): wake the watchers, which read the store.
    pub fn stored_elsewhere(&self) {
        self.stored.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Moves whenever a shared store may hold new notices.
    pub fn stored_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.stored.subscribe()
    }

    /// Every stored notice at or below this number is durable.
    pub fn published(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .published
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Payment> {
        self.live.subscribe()
    }

    /// A place for one more of `merchant`'s watch streams, if it has fewer
    /// than `WATCHERS_PER_MERCHANT_MAX` open.
    pub fn watch(&self, merchant: &str) -> Option<Watching> {
        let mut w = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        let n = w.entry(merchant.to_string()).or_default();
        if *n >= WATCHERS_PER_MERCHANT_MAX {
            return None;
        }
        *n += 1;
        Some(Watching {
            watchers: self.watchers.clone(),
            merchant: merchant.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(seq: u64) -> Payment {
        Payment {
            seq,
            merchant_id: "m".into(),
            transaction_id: seq.to_string(),
            qr_id: None,
            order_reference: None,
            amount: 1,
            fee: 0,
            payer_bank_bin: "970422".into(),
            paid_at_ms: 0,
        }
    }

    #[test]
    fn notices_durable_out_of_order_are_published_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let n = Notifier::open(&store).unwrap();
        let mut rx = n.subscribe();
        let (a, b, c) = (
            n.ticket(&store).unwrap(),
            n.ticket(&store).unwrap(),
            n.ticket(&store).unwrap(),
        );
        let (sa, sb, sc) = (a.seq(), b.seq(), c.seq());
        assert!(sa < sb && sb < sc);
        c.publish(payment(sc));
        assert!(rx.try_recv().is_err(), "held back behind a and b");
        drop(b); // abandoned
        assert!(rx.try_recv().is_err());
        assert!(n.published() < sa);
        a.publish(payment(sa));
        assert_eq!(rx.try_recv().unwrap().seq, sa);
        assert_eq!(rx.try_recv().unwrap().seq, sc, "b was abandoned");
        assert_eq!(n.published(), sc);
    }
}
