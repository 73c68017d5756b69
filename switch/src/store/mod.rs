//! The switch's own records in sled (beside the ledger, under
//! `data/switch/`): transactions, the per-terminal idempotency index, the
//! durable reversal queue, the provisioned network and daily totals.
//!
//! Anything a client is told is made durable first with
//! [`Store::durable`]: one journal fsync shared by every request that asked
//! for it meanwhile (group commit). The journal, the overlay and sled's
//! lagging copy are [`kv`]'s business.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub mod kv;
pub mod records;

pub use records::*;

use kv::{Kv, Tree};

use crate::ids::TxId;

/// The switch's records. Cheap to clone (one shared [`Kv`]).
#[derive(Clone)]
pub struct Store {
    /// Every record below goes through the journaled key-value layer
    /// (trees named by [`Tree`]): `Tx` records by id; `Open` ids not yet final
    /// (recovery and deadlines read it); `Idempotency` (owner, request id) →
    /// id and fingerprint; `ByTerminal` listings; `Reversals` the durable
    /// queue; `Entities` the provisioned network; `Daily` totals; `Claims`
    /// what running and completed transactions hold (`order/{qr}`,
    /// `bill/{biller}/{customer}/{bill}` → id); `Orders` QR codes issued;
    /// `Payments` merchants' notifications by merchant and number;
    /// `Windows` settlement windows by id (big-endian).
    kv: Arc<Kv>,
    /// Reconciliation reports and their exceptions, the audit trail of
    /// resolutions: written straight to sled (large, cold), made durable
    /// with [`Store::durable_direct`].
    pub(crate) recon: sled::Tree,
}

/// sled's page cache for the switch's store.
const STORE_CACHE_BYTES: u64 = 256 << 20;

fn idempotency_key(terminal: &str, request_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(terminal.len() + request_id.len() + 1);
    k.extend_from_slice(terminal.as_bytes());
    k.push(0);
    k.extend_from_slice(request_id.as_bytes());
    k
}

fn terminal_key(terminal: &str, created_at_ms: i64, id: TxId) -> Vec<u8> {
    let mut k = idempotency_key(terminal, "");
    k.extend_from_slice(&(created_at_ms as u64).to_be_bytes());
    k.extend_from_slice(&id.to_bytes());
    k
}

fn json<V: Serialize>(v: &V) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialisable")
}

/// An idempotency entry: the transaction id, then the request's fingerprint.
fn parse_entry(entry: &[u8]) -> (Option<TxId>, String) {
    let id = entry
        .get(..16)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .and_then(|b| TxId::from_u128(u128::from_be_bytes(b)));
    let fingerprint = String::from_utf8_lossy(entry.get(16..).unwrap_or(&[])).into_owned();
    (id, fingerprint)
}

fn parse_id(b: &[u8]) -> Option<TxId> {
    <[u8; 16]>::try_from(b)
        .ok()
        .and_then(|b| TxId::from_u128(u128::from_be_bytes(b)))
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            // Records are written once or twice and then read rarely:
            // favour write throughput over space.
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(STORE_CACHE_BYTES)
            .flush_every_ms(Some(500))
            .open()?;
        let recon = db.open_tree("recon")?;
        Ok(Store {
            kv: Arc::new(Kv::open(db, dir)?),
            recon,
        })
    }

    fn db(&self) -> &sled::Db {
        self.kv.db()
    }

    /// A tree for a bank simulator's state.
    pub fn sim_tree(&self, bin: &str) -> Result<sled::Tree, StoreError> {
        self.db().open_tree(format!("sim/{bin}"))
    }

    /// Make every record written so far durable (one journal fsync shared by
    /// every caller waiting meanwhile).
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.kv.durable().await
    }

    /// Make what was written straight to sled durable (reconciliation's
    /// trees): a sled flush, off the async workers.
    pub async fn durable_direct(&self) -> Result<(), StoreError> {
        self.kv.durable().await?;
        let db = self.db().clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| sled::Error::ReportableBug(format!("flush task failed: {e}")))??;
        Ok(())
    }

    pub fn put_tx(&self, t: &TxRecord) -> Result<(), StoreError> {
        let id = t.tx_id().to_bytes();
        let record = json(t);
        self.kv.commit(|w| {
            w.put(Tree::Tx, &id, record);
            if t.stage == Stage::Done {
                w.remove(Tree::Open, &id);
            } else {
                w.put(Tree::Open, &id, Vec::new());
            }
            Ok::<_, StoreError>(())
        })
    }

    /// Record a new transaction, its idempotency entry (`owner`'s
    /// `request_id`, with the request's `fingerprint`), its indexes and its
    /// claims in one atomic write: the request id and the claims are taken
    /// only together with the record. `t` may replace a record that waits
    /// for payment (a bill paid by QR).
    pub fn create_tx(
        &self,
        t: &TxRecord,
        owner: &str,
        request_id: &str,
        fingerprint: &str,
    ) -> Result<Created, StoreError> {
        let key = idempotency_key(owner, request_id);
        let id = t.tx_id().to_bytes();
        let claims = t.claims();
        // Encoded before the commit: the store's lock is held only to check
        // and write.
        let record = json(t);
        let mut entry = id.to_vec();
        entry.extend_from_slice(fingerprint.as_bytes());
        let taken = self.kv.commit(|w| {
            if let Some(existing) = w.get(Tree::Idempotency, &key)? {
                return Ok::<_, StoreError>(Err(Err(existing)));
            }
            for c in &claims {
                if let Some(holder) = w.get(Tree::Claims, c.as_bytes())?
                    && holder.as_ref() != id
                {
                    return Ok(Err(Ok(c.clone())));
                }
            }
            for c in &claims {
                w.put(Tree::Claims, c.as_bytes(), id.to_vec());
            }
            w.put(Tree::Idempotency, &key, entry);
            w.put(Tree::Tx, &id, record);
            w.put(
                Tree::ByTerminal,
                &terminal_key(&t.terminal_id, t.created_at_ms, t.tx_id()),
                id.to_vec(),
            );
            if owner != t.terminal_id {
                w.put(
                    Tree::ByTerminal,
                    &terminal_key(owner, t.created_at_ms, t.tx_id()),
                    id.to_vec(),
                );
            }
            w.put(Tree::Open, &id, Vec::new());
            Ok(Ok(()))
        })?;
        match taken {
            Ok(()) => Ok(Created::New),
            Err(Ok(claim)) => Ok(Created::Claimed(claim)),
            Err(Err(existing)) => {
                let (existing_id, fingerprint) = parse_entry(&existing);
                match existing_id.map(|id| self.get_tx(id)).transpose()?.flatten() {
                    Some(t) => Ok(Created::Existing(Box::new(t), fingerprint)),
                    None => Err(sled::Error::Unsupported(
                        "an idempotency entry names no transaction".into(),
                    )),
                }
            }
        }
    }

    /// Record a transaction's final state. A failed one gives back its
    /// claims; a completed QR payment to a merchant adds the merchant's
    /// notification (numbered by `notify::Notifier`), in the same atomic
    /// write.
    pub fn finish_tx(
        &self,
        t: &TxRecord,
        payment: Option<&Payment>,
        give_back: &[String],
    ) -> Result<(), StoreError> {
        debug_assert_eq!(t.stage, Stage::Done);
        debug_assert!(give_back.is_empty() || !t.limits_held);
        let id = t.tx_id().to_bytes();
        let release = if matches!(t.status, Status::Failed | Status::Reversed) {
            t.claims()
        } else {
            Vec::new()
        };
        let payment = payment.map(|p| {
            debug_assert!(p.seq > 0, "a notice is numbered before it is written");
            let mut key = p.merchant_id.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(&p.seq.to_be_bytes());
            (key, json(p))
        });
        let record = json(t);
        self.kv.commit(|w| {
            w.put(Tree::Tx, &id, record);
            w.remove(Tree::Open, &id);
            for c in &release {
                if w.get(Tree::Claims, c.as_bytes())?
                    .is_some_and(|h| h.as_ref() == id)
                {
                    w.remove(Tree::Claims, c.as_bytes());
                }
            }
            if let Some((k, v)) = payment {
                w.put(Tree::Payments, &k, v);
            }
            for key in give_back {
                let n = Store::daily_total(w.get(Tree::Daily, key.as_bytes())?);
                let n = n.saturating_sub(t.amount);
                w.put(Tree::Daily, key.as_bytes(), n.to_be_bytes().to_vec());
            }
            Ok::<_, StoreError>(())
        })
    }

    /// Count `t` against every daily total in `limits` (key, most allowed),
    /// all or none, and record `t` (which says `limits_held`) in the same
    /// write. Answers the index of the first total it would pass (then
    /// nothing is written).
    pub fn take_limits(
        &self,
        t: &TxRecord,
        limits: &[(String, u64)],
    ) -> Result<Option<usize>, StoreError> {
        debug_assert!(t.limits_held);
        let id = t.tx_id().to_bytes();
        let record = json(t);
        self.kv.commit(|w| {
            let mut totals = Vec::with_capacity(limits.len());
            for (i, (key, max)) in limits.iter().enumerate() {
                let n = Store::daily_total(w.get(Tree::Daily, key.as_bytes())?);
                match n.checked_add(t.amount).filter(|n| n <= max) {
                    Some(n) => totals.push(n),
                    None => return Ok::<_, StoreError>(Some(i)),
                }
            }
            for ((key, _), n) in limits.iter().zip(totals) {
                w.put(Tree::Daily, key.as_bytes(), n.to_be_bytes().to_vec());
            }
            w.put(Tree::Tx, &id, record);
            Ok(None)
        })
    }

    /// Take `claim` for good unless someone holds it (a QR code that
    /// expired unpaid); answers whether it was free.
    pub fn close_claim(&self, claim: &str) -> Result<bool, StoreError> {
        self.kv.commit(|w| {
            if w.get(Tree::Claims, claim.as_bytes())?.is_some() {
                return Ok::<_, StoreError>(false);
            }
            w.put(Tree::Claims, claim.as_bytes(), b"closed".to_vec());
            Ok(true)
        })
    }

    /// Who holds `claim`: a transaction id, or "closed".
    pub fn claim_holder(&self, claim: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .kv
            .get(Tree::Claims, claim.as_bytes())?
            .map(|v| v.to_vec()))
    }

    /// The transaction a request id names, with its request's fingerprint.
    pub fn request(
        &self,
        owner: &str,
        request_id: &str,
    ) -> Result<Option<(TxRecord, String)>, StoreError> {
        let Some(entry) = self
            .kv
            .get(Tree::Idempotency, &idempotency_key(owner, request_id))?
        else {
            return Ok(None);
        };
        let (id, fingerprint) = parse_entry(&entry);
        Ok(id
            .map(|id| self.get_tx(id))
            .transpose()?
            .flatten()
            .map(|t| (t, fingerprint)))
    }

    /// The QR id a merchant's request id names, with its fingerprint.
    pub fn order_request(
        &self,
        merchant: &str,
        request_id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let key = [b"req\0".as_slice(), &idempotency_key(merchant, request_id)].concat();
        Ok(self.kv.get(Tree::Orders, &key)?.and_then(|v| {
            let text = String::from_utf8(v.to_vec()).ok()?;
            let (qr, fp) = text.split_once('\n')?;
            Some((qr.to_string(), fp.to_string()))
        }))
    }

    /// Record a new order with its request id, unless the request id was
    /// taken (then answers the QR id it names).
    pub fn put_order_once(
        &self,
        o: &Order,
        merchant: &str,
        request_id: &str,
        fingerprint: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = [b"req\0".as_slice(), &idempotency_key(merchant, request_id)].concat();
        let (entry, order) = (format!("{}\n{fingerprint}", o.qr_id).into_bytes(), json(o));
        self.kv.commit(|w| {
            if let Some(v) = w.get(Tree::Orders, &key)? {
                let text = String::from_utf8_lossy(&v).into_owned();
                let qr = text
                    .split_once('\n')
                    .map_or(text.clone(), |(q, _)| q.to_string());
                return Ok::<_, StoreError>(Some(qr));
            }
            w.put(Tree::Orders, &key, entry);
            w.put(Tree::Orders, o.qr_id.as_bytes(), order);
            Ok(None)
        })
    }

    pub fn put_window(&self, w: &WindowRecord) -> Result<(), StoreError> {
        self.put_windows(&[w])
    }

    /// Several windows in one atomic write (a close and the next opening).
    pub fn put_windows(&self, ws: &[&WindowRecord]) -> Result<(), StoreError> {
        let records: Vec<([u8; 8], Vec<u8>)> =
            ws.iter().map(|w| (w.id.to_be_bytes(), json(w))).collect();
        self.kv.commit(|t| {
            for (k, v) in records {
                t.put(Tree::Windows, &k, v);
            }
            Ok::<_, StoreError>(())
        })
    }

    pub fn windows(&self) -> Result<Vec<WindowRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in self.kv.scan_prefix(Tree::Windows, b"") {
            let (_, v) = kv?;
            if let Ok(w) = serde_json::from_slice(&v) {
                out.push(w);
            }
        }
        Ok(out)
    }

    /// A number never handed out before (sled's monotonic id generator).
    pub fn next_id(&self) -> Result<u64, StoreError> {
        self.db().generate_id()
    }

    /// A scratch tree (dropped by the caller when done).
    pub fn scratch_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        self.db().open_tree(format!("scratch/{name}"))
    }

    /// A tree by name (created empty the first time), written straight to
    /// sled: see [`Store::durable_direct`].
    pub fn named_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        self.db().open_tree(name)
    }

    pub fn drop_tree(&self, t: &sled::Tree) -> Result<(), StoreError> {
        self.db().drop_tree(t.name())?;
        Ok(())
    }

    pub fn put_order(&self, o: &Order) -> Result<(), StoreError> {
        self.kv.put(Tree::Orders, o.qr_id.as_bytes(), json(o))
    }

    pub fn order(&self, qr_id: &str) -> Result<Option<Order>, StoreError> {
        Ok(self
            .kv
            .get(Tree::Orders, qr_id.as_bytes())?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// A merchant's notifications after `after` (exclusive), oldest first.
    pub fn payments_after(
        &self,
        merchant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Payment>, StoreError> {
        let mut start = merchant.as_bytes().to_vec();
        start.push(0);
        let mut end = start.clone();
        end.extend_from_slice(&u64::MAX.to_be_bytes());
        start.extend_from_slice(&after.saturating_add(1).to_be_bytes());
        let range = (Bound::Included(start), Bound::Included(end));
        Store::decoded(self.kv.scan(Tree::Payments, range, false), limit)
    }

    /// A merchant's notifications before `before` (exclusive), newest first.
    pub fn payments_before(
        &self,
        merchant: &str,
        before: u64,
        limit: usize,
    ) -> Result<Vec<Payment>, StoreError> {
        let mut start = merchant.as_bytes().to_vec();
        start.push(0);
        let mut end = start.clone();
        end.extend_from_slice(&before.to_be_bytes());
        let range = (Bound::Included(start), Bound::Excluded(end));
        Store::decoded(self.kv.scan(Tree::Payments, range, true), limit)
    }

    /// Up to `limit` values of a scan, decoded (undecodable ones skipped).
    fn decoded<V: for<'de> Deserialize<'de>>(
        scan: impl Iterator<Item = Result<(Vec<u8>, Arc<[u8]>), StoreError>>,
        limit: usize,
    ) -> Result<Vec<V>, StoreError> {
        let mut out = Vec::new();
        for kv in scan {
            if out.len() == limit {
                break;
            }
            let (_, v) = kv?;
            if let Ok(p) = serde_json::from_slice(&v) {
                out.push(p);
            }
        }
        Ok(out)
    }

    pub fn get_tx(&self, id: TxId) -> Result<Option<TxRecord>, StoreError> {
        Ok(self
            .kv
            .get(Tree::Tx, &id.to_bytes())?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// A terminal's transactions, newest first, after `before` (exclusive).
    pub fn list_terminal(
        &self,
        terminal: &str,
        before: Option<(i64, TxId)>,
        limit: usize,
    ) -> Result<Vec<TxRecord>, StoreError> {
        let start = idempotency_key(terminal, "");
        let end = match before {
            Some((ms, id)) => terminal_key(terminal, ms, id),
            None => {
                let mut e = start.clone();
                e.extend_from_slice(&[0xff; 24]);
                e
            }
        };
        let mut out = Vec::with_capacity(limit);
        let range = (Bound::Included(start), Bound::Excluded(end));
        for kv in self.kv.scan(Tree::ByTerminal, range, true) {
            let (_, v) = kv?;
            let Some(id) = parse_id(&v) else {
                continue;
            };
            if let Some(t) = self.get_tx(id)? {
                out.push(t);
            }
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Transactions that did not finish (recovery resolves them).
    pub fn unfinished(&self) -> Result<Vec<TxRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in self.kv.scan_prefix(Tree::Open, b"") {
            let (k, _) = kv?;
            let Some(id) = parse_id(&k) else {
                continue;
            };
            if let Some(t) = self.get_tx(id)?.filter(|t| t.stage != Stage::Done) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Record the decision to reverse: the transaction at stage `Reversing`
    /// and its reversal jobs, in one atomic write (never one without the
    /// other).
    pub fn begin_reversal(&self, t: &TxRecord, jobs: &[ReversalJob]) -> Result<(), StoreError> {
        debug_assert_eq!(t.stage, Stage::Reversing);
        let id = t.tx_id().to_bytes();
        let record = json(t);
        let jobs: Vec<(&str, Vec<u8>)> = jobs
            .iter()
            .map(|j| (j.reference.as_str(), json(j)))
            .collect();
        self.kv.commit(|w| {
            w.put(Tree::Tx, &id, record);
            for (k, v) in jobs {
                w.put(Tree::Reversals, k.as_bytes(), v);
            }
            w.put(Tree::Open, &id, Vec::new());
            Ok::<_, StoreError>(())
        })
    }

    pub fn queue_reversal(&self, job: &ReversalJob) -> Result<(), StoreError> {
        self.kv
            .put(Tree::Reversals, job.reference.as_bytes(), json(job))
    }

    pub fn reversals(&self) -> Result<Vec<ReversalJob>, StoreError> {
        Store::decoded(self.kv.scan_prefix(Tree::Reversals, b""), usize::MAX)
    }

    pub fn finish_reversal(&self, reference: &str) -> Result<(), StoreError> {
        self.kv.remove(Tree::Reversals, reference.as_bytes())
    }

    fn put_entity<V: Serialize>(&self, kind: &str, id: &str, v: &V) -> Result<(), StoreError> {
        self.kv
            .put(Tree::Entities, format!("{kind}/{id}").as_bytes(), json(v))
    }

    fn entities<V: for<'de> Deserialize<'de>>(&self, kind: &str) -> Result<Vec<V>, StoreError> {
        Store::decoded(
            self.kv
                .scan_prefix(Tree::Entities, format!("{kind}/").as_bytes()),
            usize::MAX,
        )
    }

    fn entity<V: for<'de> Deserialize<'de>>(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<V>, StoreError> {
        Ok(self
            .kv
            .get(Tree::Entities, format!("{kind}/{id}").as_bytes())?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Record a shift: the terminal's current one, and its history.
    pub fn put_shift(&self, s: &ShiftRecord) -> Result<(), StoreError> {
        let record = json(s);
        self.kv.commit(|w| {
            w.put(
                Tree::Entities,
                format!("shift/{}", s.terminal_id).as_bytes(),
                record.clone(),
            );
            w.put(
                Tree::Entities,
                format!(
                    "shift_history/{}/{:020}/{}",
                    s.terminal_id, s.opened_at_ms, s.id
                )
                .as_bytes(),
                record,
            );
            Ok::<_, StoreError>(())
        })
    }

    /// The terminal's latest shift (open or closed).
    pub fn shift(&self, terminal: &str) -> Result<Option<ShiftRecord>, StoreError> {
        self.entity("shift", terminal)
    }

    pub fn put_post_office(&self, p: &PostOffice) -> Result<(), StoreError> {
        self.put_entity("post_office", &p.id, p)
    }
    pub fn post_offices(&self) -> Result<Vec<PostOffice>, StoreError> {
        self.entities("post_office")
    }
    pub fn put_terminal(&self, t: &Terminal) -> Result<(), StoreError> {
        self.put_entity("terminal", &t.id, t)
    }
    pub fn terminals(&self) -> Result<Vec<Terminal>, StoreError> {
        self.entities("terminal")
    }
    pub fn put_operator(&self, o: &Operator) -> Result<(), StoreError> {
        self.put_entity("operator", &o.id, o)
    }
    pub fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        self.entities("operator")
    }
    pub fn put_merchant(&self, m: &Merchant) -> Result<(), StoreError> {
        self.put_entity("merchant", &m.id, m)
    }
    pub fn merchants(&self) -> Result<Vec<Merchant>, StoreError> {
        self.entities("merchant")
    }
    pub fn merchant(&self, id: &str) -> Result<Option<Merchant>, StoreError> {
        self.entity("merchant", id)
    }
    pub fn put_bank_client(&self, b: &BankClient) -> Result<(), StoreError> {
        self.put_entity("bank_client", &b.bin, b)
    }
    pub fn bank_clients(&self) -> Result<Vec<BankClient>, StoreError> {
        self.entities("bank_client")
    }
    pub fn is_provisioned(&self) -> Result<bool, StoreError> {
        Ok(self.kv.get(Tree::Entities, b"meta/provisioned")?.is_some())
    }
    pub fn mark_provisioned(&self) -> Result<(), StoreError> {
        self.kv
            .put(Tree::Entities, b"meta/provisioned", b"1".to_vec())
    }

    /// Add `amount` to a daily total unless it would pass `max`; answers
    /// whether it was added. `key` names the counter and the day.
    pub fn add_daily(&self, key: &str, amount: u64, max: u64) -> Result<bool, StoreError> {
        self.kv.commit(|w| {
            let current = Store::daily_total(w.get(Tree::Daily, key.as_bytes())?);
            match current.checked_add(amount).filter(|n| *n <= max) {
                // A check only (a count of attempts): nothing to write.
                Some(_) if amount == 0 => Ok(true),
                Some(n) => {
                    w.put(Tree::Daily, key.as_bytes(), n.to_be_bytes().to_vec());
                    Ok::<_, StoreError>(true)
                }
                None => Ok(false),
            }
        })
    }

    fn daily_total(v: Option<Arc<[u8]>>) -> u64 {
        v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes)
    }
}
