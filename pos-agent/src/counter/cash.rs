//! Cash at the counter: notes, amounts as tellers type them, banks as
//! customers name them.

/// Vietnamese notes a drawer holds, largest first (polymer 500.000 down to
/// cotton 1.000 ₫; coins are no longer handed out).
pub const DENOMINATIONS: [u64; 9] = [
    500_000, 200_000, 100_000, 50_000, 20_000, 10_000, 5_000, 2_000, 1_000,
];

/// At most this many notes of one kind in a count.
pub const NOTES_MAX: u64 = 100_000;

/// An amount as a teller types it: `500000`, `500.000`, `500 000 ₫`. Whole
/// đồng only, never a fraction (a `,` is refused rather than guessed).
pub fn parse_amount(s: &str) -> Option<u64> {
    let digits: String = s
        .trim()
        .trim_end_matches('₫')
        .trim_end_matches("đ")
        .chars()
        .filter(|c| !matches!(c, '.' | ' ' | '\u{a0}'))
        .collect();
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The notes that pay out `amount`, fewest first: `(denomination, notes)`,
/// largest first, and what notes cannot pay (under 1.000 ₫).
pub fn notes_for(amount: u64) -> (Vec<(u64, u64)>, u64) {
    let mut left = amount;
    let mut out = Vec::new();
    for d in DENOMINATIONS {
        let n = left / d;
        if n > 0 {
            out.push((d, n));
            left -= n * d;
        }
    }
    (out, left)
}

/// The total of a count `(denomination, notes)`; `None` if it overflows.
pub fn total(count: &[(u64, u64)]) -> Option<u64> {
    count
        .iter()
        .try_fold(0u64, |acc, (d, n)| acc.checked_add(d.checked_mul(*n)?))
}

/// The bank a teller typed: a six-digit BIN, a short name (`MB`,
/// `vietcombank`, case and spaces aside), or a pick from the list
/// (`970422 · MB`).
pub fn find_bank(s: &str) -> Option<&'static qr::Bank> {
    let s = s.trim();
    let first = s.split([' ', '·']).next().unwrap_or_default();
    if let Some(b) = qr::bank_by_bin(first) {
        return Some(b);
    }
    let key = |x: &str| {
        x.chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let wanted = key(s);
    qr::BANKS.iter().find(|b| key(b.short_name) == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_as_tellers_type_them() {
        for (typed, dong) in [
            ("500000", Some(500_000)),
            ("500.000", Some(500_000)),
            ("1.500.000 ₫", Some(1_500_000)),
            (" 20 000 ", Some(20_000)),
            ("500,5", None),
            ("-5", None),
            ("", None),
            ("1e6", None),
            ("9999999999999999", None),
        ] {
            assert_eq!(parse_amount(typed), dong, "{typed:?}");
        }
    }

    #[test]
    fn notes_pay_out_with_the_fewest() {
        assert_eq!(
            notes_for(1_780_000),
            (
                vec![
                    (500_000, 3),
                    (200_000, 1),
                    (50_000, 1),
                    (20_000, 1),
                    (10_000, 1)
                ],
                0
            )
        );
        assert_eq!(notes_for(1_500), (vec![(1_000, 1)], 500));
        assert_eq!(total(&[(500_000, 2), (1_000, 3)]), Some(1_003_000));
        assert_eq!(total(&[(u64::MAX, 2)]), None);
    }

    #[test]
    fn banks_by_bin_or_name() {
        assert_eq!(find_bank("970422").unwrap().bin, "970422");
        assert_eq!(find_bank("970422 · MB").unwrap().bin, "970422");
        assert_eq!(find_bank(" vietcombank ").unwrap().bin, "970436");
        assert!(find_bank("no such bank").is_none());
    }
}
