//! The pilot report's aggregates (issue #28), kept in the `Stats` tree and
//! updated in the same write that finishes a transaction
//! ([`Store::finish_tx`]), on both engines: a month's report reads a few
//! thousand totals, never the month's transactions.
//!
//! Keys (UTF-8), civil days and months in Vietnam's time:
//! - `d/{day:06}/{commune}/{place}/{product}/{funding}/{bin}` → four u64
//!   (big-endian): completed count, completed value (đồng), failed count,
//!   reversed count. `place` is the post office, or the merchant for a QR
//!   payment; `bin` the customer's bank (so a bank's staff see only
//!   theirs).
//! - `m/{month:04}/c/{customer}/{commune}/{place}/{bin}` → empty: a
//!   distinct customer (a hash of the bank and account, or of the card
//!   token; never a phone number) active in the month there.
//! - `m/{month:04}/t/{terminal}/{commune}/{place}/{bin}` and
//!   `m/{month:04}/q/{merchant}/{commune}/{place}/{bin}`: an active
//!   terminal, an active merchant.
//!
//! Only completed transactions count as done and active; failed and
//! reversed ones are counted as such. An attempt at a teller's bill code
//! (`pays_for`) is not a transaction of its own here: the bill payment it
//! completes is counted.
//!
//! [`contributions`] is the one definition of what a record adds; the
//! rebuild ([`Store::rebuild_stats`]) applies it to every stored record,
//! and the check compares the two.

use std::collections::BTreeMap;

use super::kv::{Merge, Merged, Tree, Txn};
use super::records::{Funding, Kind, Status, TxRecord};
use super::{Store, StoreError, undecodable};

/// What a record's report lines need that the record does not hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    /// The commune of the post office (or the merchant, for a QR
    /// payment); empty when it has none.
    pub commune: String,
    /// A bill's biller category: `electricity`, `water`, `internet`,
    /// `telecom_tv` or `other`.
    pub bill_category: Option<&'static str>,
    /// A QR payment to a commune's fee collector (MCC 9399): public fees.
    pub public_fees: bool,
}

/// One aggregate's change: its key and what to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contribution {
    Totals { key: String, add: Totals },
    Marker { key: String },
}

/// Set once the aggregates hold every transaction finished before them.
const STATS_SEEDED_KEY: &[u8] = b"meta/stats_seeded";

/// Aggregates one repair write replaces at most.
const STATS_WRITE_KEYS_MAX: usize = 1_000;

/// A day's totals for one place, product, funding and bank.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub count: u64,
    pub value: u64,
    pub failed: u64,
    pub reversed: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.count += o.count;
        self.value += o.value;
        self.failed += o.failed;
        self.reversed += o.reversed;
    }

    fn encode(&self) -> Vec<u8> {
        [self.count, self.value, self.failed, self.reversed]
            .iter()
            .flat_map(|n| n.to_be_bytes())
            .collect()
    }

    fn decode(key: &[u8], v: &[u8]) -> Result<Totals, StoreError> {
        if v.len() != 32 {
            return Err(undecodable("report totals", key, "not 32 bytes"));
        }
        let n = |i: usize| u64::from_be_bytes(v[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Ok(Totals {
            count: n(0),
            value: n(1),
            failed: n(2),
            reversed: n(3),
        })
    }
}

/// The report's product of a record: what the province's plan counts.
pub fn product(t: &TxRecord, place: &Place) -> String {
    match t.kind {
        Kind::CashIn => "cash_in".into(),
        Kind::CashOut => "cash_out".into(),
        Kind::QrPayment if place.public_fees => "public_fees".into(),
        Kind::QrPayment => "merchant_qr".into(),
        Kind::TopUp => "top_up".into(),
        Kind::BillPayment => format!("bill_{}", place.bill_category.unwrap_or("other")),
    }
}

fn funding(t: &TxRecord) -> &'static str {
    match t.bill.as_ref().map(|b| b.funding) {
        Some(Funding::Cash) => "cash",
        Some(Funding::Account) => "account",
        Some(Funding::Qr) => "qr",
        Some(Funding::Card) => "card",
        None if t.kind == Kind::QrPayment => "qr",
        None => "cash",
    }
}

/// A key part: no `/` inside (ids never have one; a commune's might).
fn part(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.replace('/', "_")
    }
}

/// A customer, as the report counts them: a hash of the bank and account
/// or of the card token (never the number itself, and never a phone).
fn customer(t: &TxRecord) -> Option<String> {
    let who = match (&t.card_token, t.kind) {
        (Some(token), _) => format!("card:{token}"),
        (None, Kind::CashIn | Kind::CashOut | Kind::QrPayment) if !t.account.is_empty() => {
            format!("acct:{}:{}", t.bank_bin, t.account)
        }
        (None, Kind::BillPayment | Kind::TopUp)
            if !t.account.is_empty()
                && t.bill.as_ref().is_some_and(|b| b.funding != Funding::Cash) =>
        {
            format!("acct:{}:{}", t.bank_bin, t.account)
        }
        _ => return None,
    };
    let d = ring::digest::digest(&ring::digest::SHA256, who.as_bytes());
    Some(hex::encode(&d.as_ref()[..8]))
}

/// What `t`, final now, adds to the aggregates.
pub fn contributions(t: &TxRecord, place: &Place) -> Vec<Contribution> {
    if t.pays_for.is_some() {
        return Vec::new();
    }
    let day = crate::civil::day_number(t.happened_at_ms());
    let month = crate::civil::month_number(t.happened_at_ms());
    let commune = part(&place.commune);
    let spot = match (&t.merchant, t.kind) {
        (Some(m), Kind::QrPayment) => part(&m.merchant_id),
        _ => part(&t.post_office_id),
    };
    let bin = part(&t.bank_bin);
    let add = match t.status {
        Status::Completed => Totals {
            count: 1,
            value: t.amount,
            ..Totals::default()
        },
        Status::Failed => Totals {
            failed: 1,
            ..Totals::default()
        },
        Status::Reversed => Totals {
            reversed: 1,
            ..Totals::default()
        },
        Status::Pending => return Vec::new(),
    };
    let mut out = vec![Contribution::Totals {
        key: format!(
            "d/{day:06}/{commune}/{spot}/{}/{}/{bin}",
            product(t, place),
            funding(t)
        ),
        add,
    }];
    if t.status != Status::Completed {
        return out;
    }
    let tail = format!("{commune}/{spot}/{bin}");
    if let Some(c) = customer(t) {
        out.push(Contribution::Marker {
            key: format!("m/{month:04}/c/{c}/{tail}"),
        });
    }
    // A QR payment's caller is the payer's bank, not a counter.
    if !t.terminal_id.is_empty() && t.kind != Kind::QrPayment {
        out.push(Contribution::Marker {
            key: format!("m/{month:04}/t/{}/{tail}", part(&t.terminal_id)),
        });
    }
    // A commune's fee collector is not a merchant the plan counts.
    if let (Some(m), Kind::QrPayment, false) = (&t.merchant, t.kind, place.public_fees) {
        out.push(Contribution::Marker {
            key: format!("m/{month:04}/q/{}/{tail}", part(&m.merchant_id)),
        });
    }
    out
}

/// Apply `contributions` inside a write, as merges: every flow adds to
/// the same few aggregates (its commune's and post office's day), and a
/// merge applies at commit time, so such writes never conflict.
pub(super) fn apply(w: &mut Txn<'_, '_>, contributions: &[Contribution]) -> Result<(), StoreError> {
    for c in contributions {
        let (key, merge) = match c {
            Contribution::Totals { key, add } => (
                key,
                Merge {
                    f: add_totals,
                    arg: add.encode(),
                },
            ),
            Contribution::Marker { key } => (
                key,
                Merge {
                    f: mark,
                    arg: Vec::new(),
                },
            ),
        };
        w.merge(Tree::Stats, key.as_bytes(), merge)?;
    }
    Ok(())
}

/// A day's totals plus those encoded in `add` (a [`Merge`]).
fn add_totals(value: Option<&[u8]>, add: &[u8]) -> Result<Merged, String> {
    let add = Totals::decode(b"totals added", add).map_err(|e| e.to_string())?;
    let mut t = match value {
        Some(v) => Totals::decode(b"report totals", v).map_err(|e| e.to_string())?,
        None => Totals::default(),
    };
    t.add(&add);
    Ok(Merged::Set(t.encode()))
}

/// A month's marker: present (its value empty) once anything marked it;
/// written once.
fn mark(value: Option<&[u8]>, _: &[u8]) -> Result<Merged, String> {
    Ok(match value {
        None => Merged::Set(Vec::new()),
        Some(_) => Merged::Keep,
    })
}

/// A day's totals line, its key parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayLine {
    pub day: i64,
    pub commune: String,
    pub place: String,
    pub product: String,
    pub funding: String,
    pub bin: String,
    pub totals: Totals,
}

/// A month's marker, its key parsed: what is active (`c` a customer, `t` a
/// terminal, `q` a merchant) and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    pub month: i64,
    pub what: char,
    pub id: String,
    pub commune: String,
    pub place: String,
    pub bin: String,
}

/// A marker borrowed from its key (see [`Store::each_stats_marker`]).
#[derive(Clone, Copy, Debug)]
pub struct MarkerRef<'a> {
    pub what: char,
    pub id: &'a str,
    pub commune: &'a str,
    pub place: &'a str,
    pub bin: &'a str,
}

impl Store {
    /// Every day's totals from `first_day` to `last_day`, inclusive.
    pub fn stats_days(&self, first_day: i64, last_day: i64) -> Result<Vec<DayLine>, StoreError> {
        let lo = format!("d/{first_day:06}/");
        let hi = format!("d/{:06}/", last_day + 1);
        let mut out = Vec::new();
        for entry in self.kv.scan(
            Tree::Stats,
            (
                std::ops::Bound::Included(lo.into_bytes()),
                std::ops::Bound::Excluded(hi.into_bytes()),
            ),
            false,
        ) {
            let (k, v) = entry?;
            let text = std::str::from_utf8(&k)
                .map_err(|_| undecodable("report totals", &k, "key not UTF-8"))?;
            let f: Vec<&str> = text.split('/').collect();
            let [_, day, commune, place, product, funding, bin] = f[..] else {
                return Err(undecodable("report totals", &k, "key of the wrong shape"));
            };
            out.push(DayLine {
                day: day
                    .parse()
                    .map_err(|_| undecodable("report totals", &k, "day not a number"))?,
                commune: commune.into(),
                place: place.into(),
                product: product.into(),
                funding: funding.into(),
                bin: bin.into(),
                totals: Totals::decode(&k, &v)?,
            });
        }
        Ok(out)
    }

    /// Every marker of `month`, as owned values (tests, small months).
    pub fn stats_markers(&self, month: i64) -> Result<Vec<Marker>, StoreError> {
        let mut out = Vec::new();
        self.each_stats_marker(month, |m| {
            out.push(Marker {
                month,
                what: m.what,
                id: m.id.into(),
                commune: m.commune.into(),
                place: m.place.into(),
                bin: m.bin.into(),
            })
        })?;
        Ok(out)
    }

    /// Call `f` with every marker of `month`, borrowed from its key: a
    /// month of a million transactions has hundreds of thousands, and the
    /// report reads each once without copying it.
    pub fn each_stats_marker(
        &self,
        month: i64,
        mut f: impl FnMut(MarkerRef<'_>),
    ) -> Result<(), StoreError> {
        for entry in self
            .kv
            .scan_prefix(Tree::Stats, format!("m/{month:04}/").as_bytes())
        {
            let (k, _) = entry?;
            let text = std::str::from_utf8(&k)
                .map_err(|_| undecodable("report marker", &k, "key not UTF-8"))?;
            let mut f6 = text.splitn(7, '/').skip(2);
            let (Some(what), Some(id), Some(commune), Some(place), Some(bin)) =
                (f6.next(), f6.next(), f6.next(), f6.next(), f6.next())
            else {
                return Err(undecodable("report marker", &k, "key of the wrong shape"));
            };
            if bin.contains('/') {
                return Err(undecodable("report marker", &k, "key of the wrong shape"));
            }
            f(MarkerRef {
                what: what.chars().next().unwrap_or('?'),
                id,
                commune,
                place,
                bin,
            });
        }
        Ok(())
    }

    /// Add `contributions` in one write, outside a transaction's finish:
    /// what a benchmark or an import of history uses (not yet durable).
    pub fn add_stats(&self, contributions: &[Contribution]) -> Result<(), StoreError> {
        self.kv.commit(|w| apply(w, contributions))
    }

    /// Every aggregate, as stored: for the check against a rebuild.
    pub fn stats_all(&self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
        self.kv
            .scan_prefix(Tree::Stats, b"")
            .map(|e| e.map(|(k, v)| (k, v.to_vec())).map_err(StoreError::from))
            .collect()
    }

    /// What the aggregates would be if made anew from every final record
    /// (`place` says where each belongs): key → value, as stored.
    pub fn stats_rebuilt(
        &self,
        place: impl Fn(&TxRecord) -> Place,
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
        let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
        let mut out = BTreeMap::new();
        for entry in self.kv.scan_prefix(Tree::Tx, b"") {
            let (k, v) = entry?;
            let t: TxRecord = super::decode("transaction", &k, &v)?;
            if t.status == Status::Pending || self.kv.get(Tree::Open, &k)?.is_some() {
                continue;
            }
            for c in contributions(&t, &place(&t)) {
                match c {
                    Contribution::Totals { key, add } => totals.entry(key).or_default().add(&add),
                    Contribution::Marker { key } => {
                        out.insert(key.into_bytes(), Vec::new());
                    }
                }
            }
        }
        out.extend(
            totals
                .into_iter()
                .map(|(k, t)| (k.into_bytes(), t.encode())),
        );
        Ok(out)
    }

    /// Replace the aggregates with a rebuild's (an operator's repair).
    /// Writes of a thousand keys each: a million aggregates are a thousand
    /// writes, not a million.
    pub fn replace_stats(&self, rebuilt: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<(), StoreError> {
        let current = self.stats_all()?;
        let changes: Vec<(&Vec<u8>, Option<&Vec<u8>>)> = current
            .keys()
            .filter(|k| !rebuilt.contains_key(*k))
            .map(|k| (k, None))
            .chain(
                rebuilt
                    .iter()
                    .filter(|(k, v)| current.get(*k) != Some(*v))
                    .map(|(k, v)| (k, Some(v))),
            )
            .collect();
        for chunk in changes.chunks(STATS_WRITE_KEYS_MAX) {
            self.kv.commit(|w| {
                for (k, v) in chunk {
                    match v {
                        Some(v) => w.put(Tree::Stats, k, (*v).clone()),
                        None => w.remove(Tree::Stats, k),
                    }
                }
                Ok::<_, StoreError>(())
            })?;
        }
        Ok(())
    }

    /// Whether the aggregates were made from the records that came before
    /// them (once, at the first start of a version that keeps them).
    pub fn stats_seeded(&self) -> Result<bool, StoreError> {
        Ok(self.kv.get(Tree::Entities, STATS_SEEDED_KEY)?.is_some())
    }

    /// Drop every aggregate and the seed's mark: the next start makes them
    /// again from the records (what a store from before them looks like).
    pub fn reset_stats(&self) -> Result<(), StoreError> {
        self.replace_stats(&BTreeMap::new())?;
        Ok(self.kv.remove(Tree::Entities, STATS_SEEDED_KEY)?)
    }

    /// Say so, after the seed's last write.
    pub fn mark_stats_seeded(&self) -> Result<(), StoreError> {
        Ok(self
            .kv
            .put(Tree::Entities, STATS_SEEDED_KEY, b"1".to_vec())?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::store::records::{BillPart, MerchantPart};

    const COMMUNES: [&str; 3] = ["tho-tang", "tam-dao", "huong-dao"];
    const CATEGORIES: [&str; 3] = ["electricity", "water", "telecom_tv"];

    /// Ten days around a month's turn (2026-11-25, Vietnam time) and a
    /// quarter's (2026-09-25).
    const STARTS_MS: [i64; 2] = [1_795_539_600_000, 1_790_269_200_000];

    type Spec = (u8, u8, u64, i64, usize, u8, u8);

    fn record(n: usize, spec: Spec) -> (TxRecord, Place) {
        record_from(STARTS_MS[0], n, spec)
    }

    /// A final record of some kind, status, amount, day and place.
    fn record_from(
        start_ms: i64,
        n: usize,
        (kind, status, amount, minutes, commune, customer, funding): Spec,
    ) -> (TxRecord, Place) {
        let mut t = crate::store::test_record(Kind::CashIn);
        t.id = crate::ids::TxId::from_u128((1_790_000_000_000u128 << 80) | ((n as u128 + 1) << 8))
            .unwrap()
            .to_string();
        t.created_at_ms = start_ms + minutes * 60_000;
        t.kind = [
            Kind::CashIn,
            Kind::CashOut,
            Kind::BillPayment,
            Kind::TopUp,
            Kind::QrPayment,
        ][kind as usize];
        t.status = [Status::Completed, Status::Failed, Status::Reversed][status as usize];
        t.amount = amount;
        t.bank_bin = ["970422", "970436"][customer as usize % 2].into();
        t.account = format!("00000{customer}");
        let funding = [Funding::Cash, Funding::Account, Funding::Card][funding as usize];
        if matches!(t.kind, Kind::BillPayment | Kind::TopUp) {
            t.bill = Some(BillPart {
                biller: "EVN".into(),
                customer: "PD01".into(),
                customer_name: String::new(),
                bills: Vec::new(),
                funding,
            });
        }
        if t.kind == Kind::QrPayment {
            t.merchant = Some(MerchantPart {
                merchant_id: format!("shop-{commune}"),
                qr_id: "q".into(),
                order_reference: None,
                purpose: None,
            });
        }
        let place = Place {
            commune: COMMUNES[commune].into(),
            bill_category: (t.kind == Kind::BillPayment).then_some(CATEGORIES[commune]),
            public_fees: false,
        };
        (t, place)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Whatever transactions finish around a month's or a quarter's
        /// end, a month's day totals read back equal the sums over those
        /// records (by the civil month they were made in, Vietnam time), per
        /// commune and product, and the distinct customers equal those
        /// among its completed records.
        #[test]
        fn the_aggregates_equal_the_sums_over_the_records(
            start in 0usize..2,
            specs in proptest::collection::vec(
                (0u8..5, 0u8..3, 1u64..5_000_000, 0i64..(10 * 24 * 60), 0usize..3, 0u8..6, 0u8..3),
                1..60,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let start_ms = STARTS_MS[start];
            let records: Vec<(TxRecord, Place)> = specs
                .into_iter()
                .enumerate()
                .map(|(n, s)| record_from(start_ms, n, s))
                .collect();
            for (t, place) in &records {
                let c = contributions(t, place);
                store.kv.commit(|w| apply(w, &c)).unwrap();
            }
            for month in [crate::civil::month_number(start_ms),
                          crate::civil::month_number(start_ms) + 1] {
                let (first, last) = (crate::civil::month_first_day(month),
                                     crate::civil::month_first_day(month + 1) - 1);
                let mut kept: BTreeMap<(String, String), Totals> = BTreeMap::new();
                for l in store.stats_days(first, last).unwrap() {
                    kept.entry((l.commune, l.product)).or_default().add(&l.totals);
                }
                let mut summed: BTreeMap<(String, String), Totals> = BTreeMap::new();
                let mut customers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                for (t, place) in &records {
                    if crate::civil::month_number(t.happened_at_ms()) != month {
                        continue;
                    }
                    let s = summed.entry((place.commune.clone(), product(t, place))).or_default();
                    match t.status {
                        Status::Completed => { s.count += 1; s.value += t.amount; }
                        Status::Failed => s.failed += 1,
                        Status::Reversed => s.reversed += 1,
                        Status::Pending => {}
                    }
                    let counts_customer = t.status == Status::Completed
                        && match t.kind {
                            Kind::BillPayment | Kind::TopUp =>
                                t.bill.as_ref().is_some_and(|b| b.funding != Funding::Cash),
                            _ => true,
                        };
                    if counts_customer {
                        customers.entry(place.commune.clone()).or_default()
                            .insert(format!("{}:{}", t.bank_bin, t.account));
                    }
                }
                prop_assert_eq!(&kept, &summed);
                let mut marked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                for m in store.stats_markers(month).unwrap() {
                    if m.what == 'c' {
                        marked.entry(m.commune).or_default().insert(m.id);
                    }
                }
                let marked: BTreeMap<String, usize> =
                    marked.into_iter().map(|(k, v)| (k, v.len())).collect();
                let expected: BTreeMap<String, usize> =
                    customers.into_iter().map(|(k, v)| (k, v.len())).collect();
                prop_assert_eq!(marked, expected);
            }
        }
    }

    #[test]
    fn an_attempt_at_a_bill_code_and_a_pending_record_add_nothing() {
        let (mut t, place) = record(0, (2, 0, 1000, 0, 0, 0, 1));
        t.pays_for = Some("01a2".into());
        assert!(contributions(&t, &place).is_empty());
        let (mut t, place) = record(0, (0, 0, 1000, 0, 0, 0, 0));
        t.status = Status::Pending;
        assert!(contributions(&t, &place).is_empty());
    }
}
