//! Fees, in whole đồng, computed with decimals and explicit rounding.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::config::FeeRule;

/// `1234567` → `1,234,567`.
pub fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A fee and its split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fee {
    pub total: u64,
    pub commission: u64,
    pub switch: u64,
}

/// `flat + amount × percent / 100`, rounded half away from zero to whole
/// đồng, clamped to `[min, max]`; the commission is `commission_percent` of
/// it rounded down, the switch keeps the rest (so the parts always add up).
pub fn fee(rule: &FeeRule, amount: u64) -> Fee {
    let variable = (Decimal::from(amount) * rule.percent / Decimal::ONE_HUNDRED)
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    let raw = Decimal::from(rule.flat) + variable;
    let total = raw
        .to_u64()
        .unwrap_or(u64::MAX)
        .clamp(rule.min, rule.max.max(rule.min));
    let commission = (Decimal::from(total) * rule.commission_percent / Decimal::ONE_HUNDRED)
        .round_dp_with_strategy(0, RoundingStrategy::ToZero)
        .to_u64()
        .unwrap_or(0)
        .min(total);
    Fee {
        total,
        commission,
        switch: total - commission,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(flat: u64, percent: &str, min: u64, max: u64, commission: &str) -> FeeRule {
        FeeRule {
            flat,
            percent: percent.parse().unwrap(),
            min,
            max,
            commission_percent: commission.parse().unwrap(),
        }
    }

    #[test]
    fn fees_round_clamp_and_split_exactly() {
        let r = rule(0, "0.5", 3_000, 30_000, "60");
        let cases = [
            (100_000, 3_000, 1_800),      // 500 → clamped up to the minimum
            (1_000_000, 5_000, 3_000),    // 0.5 % exactly
            (1_000_100, 5_001, 3_000),    // 5000.5 rounds away from zero
            (1_000_099, 5_000, 3_000),    // 5000.495 rounds down
            (50_000_000, 30_000, 18_000), // clamped to the maximum
        ];
        for (amount, total, commission) in cases {
            let f = fee(&r, amount);
            assert_eq!(
                (f.total, f.commission),
                (total, commission),
                "amount {amount}"
            );
            assert_eq!(f.commission + f.switch, f.total);
        }
        let odd = fee(&rule(1_001, "0", 0, 10_000, "33.3"), 1);
        assert_eq!((odd.total, odd.commission, odd.switch), (1_001, 333, 668));
        assert_eq!(fee(&rule(0, "0", 0, 0, "50"), 1_000_000).total, 0);
    }
}
