//! Transactions: records with per-caller idempotency, open transactions,
//! claims, orders, merchants' notices, the reversal queue, and the totals
//! limits count in. Each write here is one atomic write of the store.

use super::kv::Txn;
use super::tree::Merge;
use super::*;

/// A total a new transaction would pass, if any: its index among the
/// limits given, and what it had counted.
type Over = Option<(usize, u64)>;

impl Store {
    /// Update an open transaction's record (not a final one: see
    /// [`Store::finish_tx`]). False, and nothing written, when it is open no
    /// longer: another node finished it (what a node cut from the store
    /// left, say) and a late write must not open it again.
    pub fn put_tx(&self, t: &TxRecord) -> Result<bool, StoreError> {
        debug_assert_ne!(t.stage, Stage::Done);
        let id = t.tx_id().to_bytes();
        let record = encode(t);
        self.kv.commit(|w| {
            if w.get(Tree::Open, &id)?.is_none() {
                return Ok(false);
            }
            w.put(Tree::Tx, &id, record.clone());
            Ok::<_, StoreError>(true)
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
        let new = NewTx {
            t,
            owner,
            request_id,
            fingerprint,
            limits: &[],
            shift: None,
        };
        self.create_tx_counted(&new).map(|(created, _)| created)
    }

    /// [`Store::create_tx`], and in the same write the transaction counted
    /// against every total in `new.limits` (key, most allowed), all or
    /// none: one write where a flow made two (the limits were counted apart
    /// before). With `new.shift`, the write also reads that terminal's
    /// shift and writes nothing if it is not open
    /// ([`Created::NoOpenShift`]): a shift that closes and a transaction
    /// taken under it do not pass each other. The record says
    /// `limits_held` when there are limits; if a total would pass its most,
    /// nothing is counted, the record says so (not held), and the second
    /// answer is that total's index and what it had counted.
    pub fn create_tx_counted(&self, new: &NewTx<'_>) -> Result<(Created, Over), StoreError> {
        let (created, over, _) = self.create_counted(new, false)?;
        Ok((created, over))
    }

    /// [`Store::create_tx_counted`] prepared, not committed (PostgreSQL,
    /// see [`Store::prepares`]): what it would write commits in the ledger's
    /// batch with the transaction's reservation
    /// ([`super::ledger::LedgerStore::transfers_with`]), or by
    /// [`Store::commit_prepared`]. Its answers hold once that write is
    /// accepted; a refused one is prepared again.
    pub fn prepare_create_tx_counted(
        &self,
        new: &NewTx<'_>,
    ) -> Result<(Created, Over, Prepared), StoreError> {
        let (created, over, prepared) = self.create_counted(new, true)?;
        Ok((created, over, prepared.expect("prepared when asked")))
    }

    fn create_counted(
        &self,
        new: &NewTx<'_>,
        prepare: bool,
    ) -> Result<(Created, Over, Option<Prepared>), StoreError> {
        let &NewTx {
            t,
            owner,
            request_id,
            fingerprint,
            limits,
            shift,
        } = new;
        debug_assert_eq!(t.limits_held, !limits.is_empty());
        let key = idempotency_key(owner, request_id);
        let id = t.tx_id().to_bytes();
        let claims = t.claims();
        // Encoded before the commit: the store's lock is held only to check
        // and write.
        let record = encode(t);
        let mut entry = id.to_vec();
        entry.extend_from_slice(fingerprint.as_bytes());
        let mut over = None;
        let mut ahead: Vec<(Tree, &[u8])> = vec![(Tree::Idempotency, &key[..])];
        ahead.extend(claims.iter().map(|c| (Tree::Claims, c.as_bytes())));
        ahead.extend(limits.iter().map(|(k, _)| (Tree::Daily, k.as_bytes())));
        let shift_key = shift.map(|terminal| format!("shift/{terminal}"));
        ahead.extend(shift_key.iter().map(|k| (Tree::Entities, k.as_bytes())));
        /// What the write found, unless it made the transaction.
        enum Taken {
            New,
            Existing(super::tree::Value),
            Claimed(String),
            NoOpenShift,
        }
        let body = |w: &mut Txn<'_, '_>| {
            over = None;
            w.prefetch(&ahead)?;
            // First: a retry gets its outcome even once the shift closed.
            if let Some(existing) = w.get(Tree::Idempotency, &key)? {
                return Ok::<_, StoreError>(Taken::Existing(existing));
            }
            // Read, not peeked: a shift closing meanwhile refuses this
            // write (it is written only when a shift opens or closes).
            if let Some(k) = &shift_key {
                let open = match w.get(Tree::Entities, k.as_bytes())? {
                    Some(v) => decode::<ShiftRecord>("shift", k.as_bytes(), &v)?.is_open(),
                    None => false,
                };
                if !open {
                    return Ok(Taken::NoOpenShift);
                }
            }
            for c in &claims {
                if let Some(holder) = w.get(Tree::Claims, c.as_bytes())?
                    && holder.as_ref() != id
                {
                    return Ok(Taken::Claimed(c.clone()));
                }
            }
            // A total is peeked, not read: the write does not depend on
            // it (every flow at a post office counts in the same totals),
            // and the merge below checks the limit again when it commits.
            for (i, (total, max)) in limits.iter().enumerate() {
                let n =
                    Store::daily_total(total.as_bytes(), w.peek(Tree::Daily, total.as_bytes())?)?;
                if n.checked_add(t.amount).is_none_or(|n| n > *max) {
                    over = Some((i, n));
                    break;
                }
            }
            for c in &claims {
                w.put(Tree::Claims, c.as_bytes(), id.to_vec());
            }
            w.put(Tree::Idempotency, &key, entry.clone());
            if over.is_some() {
                // Refused: nothing counted, and the record says so.
                let mut unheld = t.clone();
                unheld.limits_held = false;
                unheld.limit_keys.clear();
                w.put(Tree::Tx, &id, encode(&unheld));
            } else {
                for (total, max) in limits {
                    w.merge(
                        Tree::Daily,
                        total.as_bytes(),
                        Merge::add_within(t.amount, *max),
                    )?;
                }
                w.put(Tree::Tx, &id, record.clone());
            }
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
            Ok(Taken::New)
        };
        let (taken, prepared) = self.write_or_prepare(prepare, body)?;
        match taken {
            Taken::New => Ok((Created::New, over, prepared)),
            Taken::Claimed(claim) => Ok((Created::Claimed(claim), None, prepared)),
            Taken::NoOpenShift => Ok((Created::NoOpenShift, None, prepared)),
            Taken::Existing(existing) => {
                let (existing_id, fingerprint) = parse_entry(&key, &existing)?;
                match self.get_tx(existing_id)? {
                    Some(t) => Ok((Created::Existing(Box::new(t), fingerprint), None, prepared)),
                    None => Err(undecodable(
                        "idempotency entry",
                        &key,
                        "it names a transaction that is not stored",
                    )),
                }
            }
        }
    }

    /// Record a transaction's final state. A failed one gives back its
    /// claims; a completed QR payment to a merchant adds the merchant's
    /// notification (numbered by `notify::Notifier`), in the same atomic
    /// write. Write `t`'s final record, its merchant's notice, and the
    /// limits it gives back, in one write; answers the notice's number, or
    /// [`Finished::Already`] (nothing written) when `t` was not open any
    /// more: another node, or recovery, finished it first, and its outcome
    /// stands.
    ///
    /// A notice numbered 0 is numbered here, in the write, from its
    /// merchant's counter (the shared store): writes for one merchant take
    /// turns on that counter, so numbers become visible in order and
    /// without gaps, whichever node writes them, and a watcher on any node
    /// that resumes after `n` misses nothing. One process numbers its
    /// notices before the write instead ([`crate::flows::notify`]).
    ///
    /// `paid` is the final record of the bill payment `t` paid (an attempt
    /// at a teller's bill code that completed): both finish in one write,
    /// so a code is never paid without its bill payment saying so. It keeps
    /// its claims: the bills are paid.
    ///
    /// `stats` is what `t` (and `paid`) add to the pilot report's
    /// aggregates (`stats::contributions`): added in the same write, once.
    pub fn finish_tx(
        &self,
        t: &TxRecord,
        payment: Option<&Payment>,
        give_back: &[String],
        paid: Option<&TxRecord>,
        stats: &[stats::Contribution],
    ) -> Result<Finished, StoreError> {
        self.finish(t, payment, give_back, paid, stats, false)
            .map(|(finished, _)| finished)
    }

    /// [`Store::finish_tx`] prepared, not committed (PostgreSQL, see
    /// [`Store::prepares`]): what it would write commits in the ledger's
    /// batch, if every leg of the transaction's post or void applies
    /// ([`super::ledger::LedgerStore::transfers_with`]). Its answer holds
    /// once that write is accepted.
    pub fn prepare_finish_tx(
        &self,
        t: &TxRecord,
        payment: Option<&Payment>,
        give_back: &[String],
        paid: Option<&TxRecord>,
        stats: &[stats::Contribution],
    ) -> Result<(Finished, Prepared), StoreError> {
        let (finished, prepared) = self.finish(t, payment, give_back, paid, stats, true)?;
        Ok((finished, prepared.expect("prepared when asked")))
    }

    fn finish(
        &self,
        t: &TxRecord,
        payment: Option<&Payment>,
        give_back: &[String],
        paid: Option<&TxRecord>,
        stats: &[stats::Contribution],
        prepare: bool,
    ) -> Result<(Finished, Option<Prepared>), StoreError> {
        debug_assert_eq!(t.stage, Stage::Done);
        debug_assert!(give_back.is_empty() || !t.limits_held);
        debug_assert!(paid.is_none_or(|b| b.stage == Stage::Done && b.status == Status::Completed));
        let id = t.tx_id().to_bytes();
        let paid = paid.map(|b| (b.tx_id().to_bytes(), encode(b)));
        let release = if matches!(t.status, Status::Failed | Status::Reversed) {
            t.claims()
        } else {
            Vec::new()
        };
        let notice_key = |merchant: &str, seq: u64| {
            let mut key = merchant.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(&seq.to_be_bytes());
            key
        };
        // Numbered already: encoded before the write, outside its lock.
        let numbered = payment
            .filter(|p| p.seq > 0)
            .map(|p| (notice_key(&p.merchant_id, p.seq), encode(p)));
        let record = encode(t);
        let counter = payment
            .filter(|_| numbered.is_none())
            .map(|p| payment_counter_key(&p.merchant_id));
        let mut ahead: Vec<(Tree, &[u8])> = vec![(Tree::Open, &id[..])];
        ahead.extend(paid.iter().map(|(bill_id, _)| (Tree::Open, &bill_id[..])));
        ahead.extend(release.iter().map(|c| (Tree::Claims, c.as_bytes())));
        ahead.extend(counter.iter().map(|k| (Tree::Payments, &k[..])));
        let body = |w: &mut Txn<'_, '_>| {
            w.prefetch(&ahead)?;
            // Finished already (by another node finishing what a dead one
            // left, say): the second finish changes nothing, so claims and
            // limits are given back once.
            if w.get(Tree::Open, &id)?.is_none() {
                return Ok(Finished::Already);
            }
            w.put(Tree::Tx, &id, record.clone());
            w.remove(Tree::Open, &id);
            // A bill payment that an attempt finishes is counted by the
            // write that finishes it, once.
            let mut count = true;
            if let Some((bill_id, bill_record)) = &paid {
                if w.get(Tree::Open, bill_id)?.is_some() {
                    w.put(Tree::Tx, bill_id, bill_record.clone());
                    w.remove(Tree::Open, bill_id);
                } else {
                    count = false;
                }
            }
            if count {
                stats::apply(w, stats)?;
            }
            for c in &release {
                if w.get(Tree::Claims, c.as_bytes())?
                    .is_some_and(|h| h.as_ref() == id)
                {
                    w.remove(Tree::Claims, c.as_bytes());
                }
            }
            let mut written = None;
            if let Some((k, v)) = numbered.clone() {
                w.put(Tree::Payments, &k, v);
                written = payment.map(|p| p.seq);
            } else if let Some(p) = payment {
                let counter = payment_counter_key(&p.merchant_id);
                let last = Store::daily_total(&counter, w.get(Tree::Payments, &counter)?)?;
                let seq = last + 1;
                w.put(Tree::Payments, &counter, seq.to_be_bytes().to_vec());
                let mut p = p.clone();
                p.seq = seq;
                w.put(Tree::Payments, &notice_key(&p.merchant_id, seq), encode(&p));
                written = Some(seq);
            }
            for key in give_back {
                w.merge(Tree::Daily, key.as_bytes(), Merge::take_back(t.amount))?;
            }
            Ok::<_, StoreError>(Finished::Written {
                notice_seq: written,
            })
        };
        self.write_or_prepare(prepare, body)
    }

    /// Commit `body`, or (`prepare`) hand back what it would write.
    fn write_or_prepare<R>(
        &self,
        prepare: bool,
        body: impl FnMut(&mut Txn<'_, '_>) -> Result<R, StoreError>,
    ) -> Result<(R, Option<Prepared>), StoreError> {
        if !prepare {
            return Ok((self.kv.commit(body)?, None));
        }
        let (r, records) = self
            .kv
            .prepare(body)
            .expect("only a store that prepares writes is asked to")?;
        Ok((r, Some(super::pg_records::Prepared(records))))
    }

    /// Whether writes can be prepared and committed in the ledger's batch
    /// (PostgreSQL: [`Store::prepare_create_tx_counted`],
    /// [`Store::prepare_finish_tx`]).
    pub fn prepares(&self) -> bool {
        matches!(*self.kv, Kv::Postgres(_))
    }

    /// Commit a prepared write on its own: false, and nothing written, when
    /// a key it read changed meanwhile (prepare it again).
    pub fn commit_prepared(&self, prepared: Prepared) -> Result<bool, StoreError> {
        Ok(self.kv.commit_prepared(prepared.0)?)
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
        let key = idempotency_key(owner, request_id);
        let (id, fingerprint) = parse_entry(&key, &entry)?;
        match self.get_tx(id)? {
            Some(t) => Ok(Some((t, fingerprint))),
            None => Err(undecodable(
                "idempotency entry",
                &key,
                "it names a transaction that is not stored",
            )),
        }
    }

    /// The QR id a merchant's request id names, with its fingerprint.
    pub fn order_request(
        &self,
        merchant: &str,
        request_id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let key = [b"req\0".as_slice(), &idempotency_key(merchant, request_id)].concat();
        let Some(v) = self.kv.get(Tree::Orders, &key)? else {
            return Ok(None);
        };
        std::str::from_utf8(&v)
            .ok()
            .and_then(|text| text.split_once('\n'))
            .map(|(qr, fp)| Some((qr.to_string(), fp.to_string())))
            .ok_or_else(|| undecodable("order request", &key, "not `qr\\nfingerprint`"))
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
        let (entry, order) = (
            format!("{}\n{fingerprint}", o.qr_id).into_bytes(),
            encode(o),
        );
        self.kv.commit(|w| {
            if let Some(v) = w.get(Tree::Orders, &key)? {
                let text = String::from_utf8_lossy(&v).into_owned();
                let qr = text
                    .split_once('\n')
                    .map_or(text.clone(), |(q, _)| q.to_string());
                return Ok::<_, StoreError>(Some(qr));
            }
            w.put(Tree::Orders, &key, entry.clone());
            w.put(Tree::Orders, o.qr_id.as_bytes(), order.clone());
            Ok(None)
        })
    }

    pub fn put_order(&self, o: &Order) -> Result<(), StoreError> {
        Ok(self.kv.put(Tree::Orders, o.qr_id.as_bytes(), encode(o))?)
    }

    pub fn order(&self, qr_id: &str) -> Result<Option<Order>, StoreError> {
        self.kv
            .get(Tree::Orders, qr_id.as_bytes())?
            .map(|v| decode("order", qr_id.as_bytes(), &v))
            .transpose()
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
        Store::decoded(
            "payment notice",
            self.kv.scan(Tree::Payments, range, false),
            limit,
        )
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
        Store::decoded(
            "payment notice",
            self.kv.scan(Tree::Payments, range, true),
            limit,
        )
    }

    pub fn get_tx(&self, id: TxId) -> Result<Option<TxRecord>, StoreError> {
        let key = id.to_bytes();
        self.kv
            .get(Tree::Tx, &key)?
            .map(|v| decode("transaction", &key, &v))
            .transpose()
    }

    /// The newest transactions (ids begin with their time), up to `limit`
    /// of those `keep` takes, reading at most `scan_max` (the console's
    /// search: bounded whatever the store holds).
    pub fn recent_txs(
        &self,
        limit: usize,
        scan_max: usize,
        keep: impl Fn(&TxRecord) -> bool,
    ) -> Result<Vec<TxRecord>, StoreError> {
        let mut out = Vec::new();
        let range = (Bound::Unbounded, Bound::Unbounded);
        for kv in self.kv.scan(Tree::Tx, range, true).take(scan_max) {
            let (k, v) = kv?;
            let t: TxRecord = decode("transaction", &k, &v)?;
            if keep(&t) {
                out.push(t);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
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
            let (k, v) = kv?;
            let id = parse_id("terminal listing entry", &k, &v)?;
            match self.get_tx(id)? {
                Some(t) => out.push(t),
                None => {
                    return Err(undecodable(
                        "terminal listing entry",
                        &k,
                        "it names a transaction that is not stored",
                    ));
                }
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
            let id = parse_id("open transaction entry", &k, &k)?;
            if let Some(t) = self.get_tx(id)?.filter(|t| t.stage != Stage::Done) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Record the decision to reverse: the transaction at stage `Reversing`
    /// and its reversal jobs, in one atomic write (never one without the
    /// other). False, and nothing written, when the transaction is open no
    /// longer (another node finished it: see [`Store::put_tx`]).
    pub fn begin_reversal(&self, t: &TxRecord, jobs: &[ReversalJob]) -> Result<bool, StoreError> {
        debug_assert_eq!(t.stage, Stage::Reversing);
        let id = t.tx_id().to_bytes();
        let record = encode(t);
        let jobs: Vec<(&str, Vec<u8>)> = jobs
            .iter()
            .map(|j| (j.reference.as_str(), encode(j)))
            .collect();
        self.kv.commit(|w| {
            if w.get(Tree::Open, &id)?.is_none() {
                return Ok(false);
            }
            w.put(Tree::Tx, &id, record.clone());
            for (k, v) in jobs.clone() {
                w.put(Tree::Reversals, k.as_bytes(), v);
            }
            Ok::<_, StoreError>(true)
        })
    }

    pub fn queue_reversal(&self, job: &ReversalJob) -> Result<(), StoreError> {
        Ok(self
            .kv
            .put(Tree::Reversals, job.reference.as_bytes(), encode(job))?)
    }

    pub fn reversals(&self) -> Result<Vec<ReversalJob>, StoreError> {
        Store::decoded(
            "reversal job",
            self.kv.scan_prefix(Tree::Reversals, b""),
            usize::MAX,
        )
    }

    pub fn finish_reversal(&self, reference: &str) -> Result<(), StoreError> {
        Ok(self.kv.remove(Tree::Reversals, reference.as_bytes())?)
    }

    /// The totals at `keys`, as counted now (none yet is 0).
    pub fn totals(&self, keys: &[&str]) -> Result<Vec<u64>, StoreError> {
        keys.iter()
            .map(|k| Store::daily_total(k.as_bytes(), self.kv.get(Tree::Daily, k.as_bytes())?))
            .collect()
    }

    /// Add `amount` to a daily total unless it would pass `max`; answers
    /// whether it was added. `key` names the counter and the day.
    pub fn add_daily(&self, key: &str, amount: u64, max: u64) -> Result<bool, StoreError> {
        self.kv.commit(|w| {
            let current = Store::daily_total(key.as_bytes(), w.get(Tree::Daily, key.as_bytes())?)?;
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

    /// A daily total (none yet is 0; a damaged one is an error, never 0,
    /// or a limit would start again).
    fn daily_total(key: &[u8], v: Option<Arc<[u8]>>) -> Result<u64, StoreError> {
        super::tree::total_of(v.as_deref()).map_err(|e| undecodable("daily total", key, e))
    }
}
