//! The pilot report (issue #28): what the plan (55/KH-UBND, section V) has
//! each pilot commune report monthly, and the department quarterly: per
//! commune, per post office (and merchant) and for the province, the count
//! and value of completed transactions per product, the active terminals
//! and merchants, new merchants, distinct customers, the cashless share of
//! bill payments, failures and reversals, and the change against the
//! period before.
//!
//! It reads the aggregates `store::stats` keeps (updated in the write that
//! finishes each transaction), never the period's transactions: a month is
//! a range of a few thousand day totals and the month's markers.
//! Operators see everything; a bank's staff only their customers'
//! transactions (the totals are kept per customer bank).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::caller::{Principal, Role};
use crate::civil;
use crate::clock::now_ms;
use crate::error::{ErrorCode, SwitchError};
use crate::flows::{Switch, storage};
use crate::store::stats::{DayLine, Totals};

/// A month (`2026-11`) or a quarter (`2026-Q4`), in Vietnam's civil time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// A month number (`civil::month_number`).
    Month(i64),
    /// A quarter: its first month's number.
    Quarter(i64),
}

impl Period {
    pub fn parse(s: &str) -> Result<Period, SwitchError> {
        let bad = || {
            SwitchError::invalid(format!(
                "period must be a month (2026-11) or a quarter (2026-Q4), not {s:?}"
            ))
        };
        let (year, rest) = s.split_once('-').ok_or_else(bad)?;
        let year: i64 = year
            .parse()
            .ok()
            .filter(|y| (2000..=2999).contains(y))
            .ok_or_else(bad)?;
        let first_month = |m: i64| (year - 1970) * 12 + m - 1;
        if let Some(q) = rest.strip_prefix('Q') {
            let q: i64 = q
                .parse()
                .ok()
                .filter(|q| (1..=4).contains(q))
                .ok_or_else(bad)?;
            return Ok(Period::Quarter(first_month(3 * q - 2)));
        }
        let m: i64 = rest
            .parse()
            .ok()
            .filter(|m| (1..=12).contains(m) && rest.len() == 2)
            .ok_or_else(bad)?;
        Ok(Period::Month(first_month(m)))
    }

    pub fn months(self) -> std::ops::Range<i64> {
        match self {
            Period::Month(m) => m..m + 1,
            Period::Quarter(m) => m..m + 3,
        }
    }

    /// The period before: the month or the quarter before.
    pub fn previous(self) -> Period {
        match self {
            Period::Month(m) => Period::Month(m - 1),
            Period::Quarter(m) => Period::Quarter(m - 3),
        }
    }

    /// Its first and last civil day numbers.
    pub fn days(self) -> (i64, i64) {
        let months = self.months();
        (
            civil::month_first_day(months.start),
            civil::month_first_day(months.end) - 1,
        )
    }

    pub fn label(self) -> String {
        match self {
            Period::Month(m) => civil::month_label(m),
            Period::Quarter(m) => {
                format!("{}-Q{}", 1970 + m.div_euclid(12), m.rem_euclid(12) / 3 + 1)
            }
        }
    }
}

/// Whose numbers a line is: the province, a commune, a post office, or a
/// merchant (its QR payments).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Province,
    Commune,
    PostOffice,
    Merchant,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::Province => "province",
            Level::Commune => "commune",
            Level::PostOffice => "post_office",
            Level::Merchant => "merchant",
        }
    }
}

/// One product's line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProductLine {
    pub now: Totals,
    pub before: Totals,
}

/// A commune's, a post office's, a merchant's or the province's numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unit {
    pub level: Option<Level>,
    pub id: String,
    pub name: String,
    pub commune: String,
    pub district: String,
    pub pilot: bool,
    /// By product (`cash_in`, `bill_water`, ...).
    pub products: BTreeMap<String, ProductLine>,
    pub active_terminals: u64,
    pub active_merchants: u64,
    pub new_merchants: u64,
    pub distinct_customers: u64,
    /// Completed bill payments, and those paid by account, QR or card.
    pub bills: u64,
    pub bills_cashless: u64,
    /// Completed payments by card (bills and top-ups).
    pub card: Totals,
}

impl Unit {
    /// Every product together, this period and the one before.
    pub fn total(&self) -> ProductLine {
        let mut t = ProductLine::default();
        for p in self.products.values() {
            t.now.add(&p.now);
            t.before.add(&p.before);
        }
        t
    }
}

/// The report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PilotReport {
    pub period: Period,
    pub previous: Period,
    pub made_at_ms: i64,
    /// A bank's BIN when its staff asked (only its customers'), or empty.
    pub bank: String,
    /// The commune asked for, or empty for all.
    pub commune: String,
    /// The province first, then the communes, post offices and merchants.
    pub units: Vec<Unit>,
    /// Every provisioned commune, for choosing one.
    pub communes: Vec<crate::store::Commune>,
}

/// Units by (level, id) while they are summed.
type Units = BTreeMap<(Level, String), Unit>;

fn unit<'a>(units: &'a mut Units, level: Level, id: &str) -> &'a mut Unit {
    units
        .entry((level, id.to_string()))
        .or_insert_with(|| Unit {
            level: Some(level),
            id: id.to_string(),
            ..Unit::default()
        })
}

/// The units a line counts in: the province, its commune, its place.
fn levels_of(line_commune: &str, place: &str, merchant: bool) -> [(Level, String); 3] {
    [
        (Level::Province, String::new()),
        (Level::Commune, line_commune.to_string()),
        (
            if merchant {
                Level::Merchant
            } else {
                Level::PostOffice
            },
            place.to_string(),
        ),
    ]
}

/// Sum day lines into units (`now`: this period, else the one before).
fn add_lines(units: &mut Units, lines: &[DayLine], now: bool) {
    for l in lines {
        let merchant = l.product == "merchant_qr" || l.product == "public_fees";
        for (level, id) in levels_of(&l.commune, &l.place, merchant) {
            let u = unit(units, level, &id);
            u.commune = l.commune.clone();
            let p = u.products.entry(l.product.clone()).or_default();
            if now {
                p.now.add(&l.totals);
                if l.product.starts_with("bill_") {
                    u.bills += l.totals.count;
                    if l.funding != "cash" {
                        u.bills_cashless += l.totals.count;
                    }
                }
                if l.funding == "card" {
                    u.card.count += l.totals.count;
                    u.card.value += l.totals.value;
                }
            } else {
                p.before.add(&l.totals);
            }
        }
    }
}

impl Switch {
    /// The pilot report for `period` (`2026-11`, `2026-Q4`), of `commune`
    /// or every commune, as `p` may see it.
    pub async fn pilot_report(
        &self,
        p: &Principal,
        period: &str,
        commune: &str,
    ) -> Result<PilotReport, SwitchError> {
        let bank = match p.role {
            Role::Operator => String::new(),
            Role::Bank => p.id.clone(),
            _ => {
                return Err(SwitchError::new(
                    ErrorCode::PermissionDenied,
                    "operators and banks read the pilot report",
                ));
            }
        };
        let period = Period::parse(period)?;
        let communes = self.store.communes().map_err(storage)?;
        if !commune.is_empty() && !communes.iter().any(|c| c.id == commune) {
            return Err(SwitchError::invalid(format!("no commune {commune}")));
        }
        let keep_line = |l: &DayLine| {
            (bank.is_empty() || l.bin == bank) && (commune.is_empty() || l.commune == commune)
        };
        let lines = |period: Period| -> Result<Vec<DayLine>, SwitchError> {
            let (first, last) = period.days();
            Ok(self
                .store
                .stats_days(first, last)
                .map_err(storage)?
                .into_iter()
                .filter(|l| keep_line(l))
                .collect())
        };
        let mut units = Units::new();
        unit(&mut units, Level::Province, "");
        add_lines(&mut units, &lines(period)?, true);
        add_lines(&mut units, &lines(period.previous())?, false);

        let merchants = self.store.merchants().map_err(storage)?;
        let merchant_ids: BTreeSet<&str> = merchants.iter().map(|m| m.id.as_str()).collect();
        // Distinct customers, active terminals and merchants: sets per unit
        // of the ids' hashes (a customer's id is a hash already), filled
        // from the markers borrowed where they lie.
        let mut sets: HashMap<(Level, char), HashMap<String, HashSet<u64>>> = HashMap::new();
        for month in period.months() {
            self.store
                .each_stats_marker(month, |m| {
                    if !(bank.is_empty() || m.bin == bank)
                        || !(commune.is_empty() || m.commune == commune)
                    {
                        return;
                    }
                    let merchant = m.what == 'q' || merchant_ids.contains(m.place);
                    let id = u64::from_str_radix(m.id, 16).unwrap_or_else(|_| {
                        let mut h = std::collections::hash_map::DefaultHasher::new();
                        std::hash::Hash::hash(m.id, &mut h);
                        std::hash::Hasher::finish(&h)
                    });
                    let place_level = if merchant {
                        Level::Merchant
                    } else {
                        Level::PostOffice
                    };
                    for (level, unit_id) in [
                        (Level::Province, ""),
                        (Level::Commune, m.commune),
                        (place_level, m.place),
                    ] {
                        let by_unit = sets.entry((level, m.what)).or_default();
                        match by_unit.get_mut(unit_id) {
                            Some(set) => {
                                set.insert(id);
                            }
                            None => {
                                by_unit.insert(unit_id.to_string(), HashSet::from([id]));
                            }
                        }
                    }
                })
                .map_err(storage)?;
        }
        for ((level, what), by_unit) in &sets {
            for (id, set) in by_unit {
                let u = unit(&mut units, *level, id);
                let n = set.len() as u64;
                match what {
                    'c' => u.distinct_customers = n,
                    't' => u.active_terminals = n,
                    'q' => u.active_merchants = n,
                    _ => {}
                }
            }
        }

        // Names, and merchants new in the period.
        let (first, last) = period.days();
        let (from_ms, to_ms) = (civil::day_start_ms(first), civil::day_start_ms(last + 1));
        for m in &merchants {
            // A commune's one-stop desk is not a merchant the plan counts.
            let counted = m.mcc != crate::flows::fees::COLLECTOR_MCC
                && (from_ms..to_ms).contains(&m.created_at_ms)
                && (commune.is_empty() || m.commune == commune)
                && (bank.is_empty() || m.bank_bin == bank);
            if counted {
                let c = if m.commune.is_empty() {
                    "-"
                } else {
                    &m.commune
                };
                for (level, id) in levels_of(c, &m.id, true) {
                    let u = unit(&mut units, level, &id);
                    u.new_merchants += 1;
                    u.commune = c.to_string();
                }
            }
            if let Some(u) = units.get_mut(&(Level::Merchant, m.id.clone())) {
                u.name = m.name.clone();
            }
        }
        for o in self.store.post_offices().map_err(storage)? {
            if let Some(u) = units.get_mut(&(Level::PostOffice, o.id.clone())) {
                u.name = o.name.clone();
            }
        }
        for c in &communes {
            // Every pilot commune has a line, even a quiet one.
            if c.pilot && (commune.is_empty() || c.id == commune) {
                unit(&mut units, Level::Commune, &c.id);
            }
            if let Some(u) = units.get_mut(&(Level::Commune, c.id.clone())) {
                u.name = c.name.clone();
                u.district = c.district.clone();
                u.pilot = c.pilot;
                u.commune = c.id.clone();
            }
        }
        if let Some(u) = units.get_mut(&(Level::Province, String::new())) {
            u.name = "Toàn tỉnh".to_string();
            u.commune = String::new();
        }
        Ok(PilotReport {
            period,
            previous: period.previous(),
            made_at_ms: now_ms(),
            bank,
            commune: commune.to_string(),
            units: units.into_values().collect(),
            communes,
        })
    }

    /// A store an earlier version wrote has transactions and no aggregates:
    /// they are made from the records once, at start, so that the report
    /// counts that history too. A seed cut short is done again whole at the
    /// next start (it replaces, never adds); the mark is written last.
    /// Answers how many aggregates it wrote.
    pub async fn seed_pilot_report(&self) -> Result<usize, SwitchError> {
        if self.store.stats_seeded().map_err(storage)? {
            return Ok(0);
        }
        let rebuilt = self
            .store
            .stats_rebuilt(|t| self.report_place(t).unwrap_or_default())
            .map_err(storage)?;
        self.store.replace_stats(&rebuilt).map_err(storage)?;
        self.store.durable().await.map_err(storage)?;
        self.store.mark_stats_seeded().map_err(storage)?;
        self.store.durable().await.map_err(storage)?;
        Ok(rebuilt.len())
    }

    /// Rebuild the aggregates from the transactions and compare: answers
    /// the keys that differ (missing, extra or other values); with
    /// `repair`, the kept aggregates are replaced by the rebuild.
    pub async fn check_pilot_report(
        &self,
        p: &Principal,
        repair: bool,
    ) -> Result<Vec<String>, SwitchError> {
        if p.role != Role::Operator {
            return Err(SwitchError::new(
                ErrorCode::PermissionDenied,
                "only an operator checks the report's aggregates",
            ));
        }
        let rebuilt = self
            .store
            .stats_rebuilt(|t| self.report_place(t).unwrap_or_default())
            .map_err(storage)?;
        let kept = self.store.stats_all().map_err(storage)?;
        let mut differ: Vec<String> = kept
            .iter()
            .filter(|(k, v)| rebuilt.get(*k) != Some(*v))
            .chain(rebuilt.iter().filter(|(k, _)| !kept.contains_key(*k)))
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        differ.sort();
        differ.dedup();
        if repair && !differ.is_empty() {
            self.store.replace_stats(&rebuilt).map_err(storage)?;
            self.store.durable().await.map_err(storage)?;
            tracing::warn!(
                keys = differ.len(),
                "pilot report aggregates replaced by a rebuild"
            );
        }
        Ok(differ)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_months_and_quarters_in_vietnam_time() {
        let nov = Period::parse("2026-11").unwrap();
        assert_eq!(nov.label(), "2026-11");
        assert_eq!(nov.previous().label(), "2026-10");
        let (first, last) = nov.days();
        assert_eq!(civil::date(civil::day_start_ms(first)), "2026-11-01");
        assert_eq!(civil::date(civil::day_start_ms(last)), "2026-11-30");
        // The last millisecond of November, Vietnam time, is in it; the
        // next is December's.
        let dec_start = civil::day_start_ms(last + 1);
        assert_eq!(civil::day_number(dec_start - 1), last);
        assert_eq!(civil::date_time(dec_start), "2026-12-01 00:00:00 (UTC+7)");
        let q4 = Period::parse("2026-Q4").unwrap();
        assert_eq!(q4.months().count(), 3);
        assert_eq!(q4.label(), "2026-Q4");
        assert_eq!(q4.previous().label(), "2026-Q3");
        let (first, last) = q4.days();
        assert_eq!(civil::date(civil::day_start_ms(first)), "2026-10-01");
        assert_eq!(civil::date(civil::day_start_ms(last)), "2026-12-31");
        assert_eq!(Period::parse("2027-Q1").unwrap().previous(), q4);
        assert_eq!(
            Period::parse("2027-01").unwrap().previous().label(),
            "2026-12"
        );
        for bad in [
            "2026-13", "2026-Q5", "2026-1", "26-11", "2026/11", "", "2026-Q0",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }
}
