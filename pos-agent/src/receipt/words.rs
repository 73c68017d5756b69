//! Amounts in Vietnamese words, as a receipt prints them under the figure
//! ("Năm trăm nghìn đồng").
//!
//! Read in groups of three digits from the left, each group with its scale
//! (nghìn, triệu, tỷ; beyond tỷ the scales repeat: nghìn tỷ, triệu tỷ, tỷ
//! tỷ). The spoken rules that a receipt must follow:
//! - a group after the first reads its hundreds even when they are zero
//!   ("một nghìn không trăm linh năm");
//! - a zero ten before a unit is "linh" ("một trăm linh năm");
//! - ten is "mười", twenty and up "hai mươi";
//! - a unit of one after twenty and up is "mốt" ("hai mươi mốt"), of five
//!   after ten and up is "lăm" ("mười lăm");
//! - a group of three zeros is not read ("một triệu năm trăm").

const DIGITS: [&str; 10] = [
    "không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín",
];

/// The scale of group `i` counted from the right (0: units).
fn scale(i: usize) -> String {
    let base = ["", "nghìn", "triệu"][i % 3];
    let tys = vec!["tỷ"; i / 3];
    std::iter::once(base)
        .chain(tys)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One group of three digits; `leading`: the leftmost group, whose zero
/// hundreds and tens are not read.
fn group(n: u64, leading: bool, out: &mut Vec<&'static str>) {
    let (h, t, u) = (
        (n / 100) as usize,
        (n / 10 % 10) as usize,
        (n % 10) as usize,
    );
    let hundreds_read = !leading || h > 0;
    if hundreds_read {
        out.extend([DIGITS[h], "trăm"]);
    }
    match t {
        0 if u > 0 && hundreds_read => out.push("linh"),
        0 => {}
        1 => out.push("mười"),
        _ => out.extend([DIGITS[t], "mươi"]),
    }
    match u {
        0 => {}
        1 if t >= 2 => out.push("mốt"),
        5 if t >= 1 => out.push("lăm"),
        _ => out.push(DIGITS[u]),
    }
}

/// `n` đồng in words, with a capital first letter: "Năm trăm nghìn đồng".
pub fn vnd_in_words(n: u64) -> String {
    let mut groups = Vec::new();
    let mut rest = n;
    loop {
        groups.push(rest % 1000);
        rest /= 1000;
        if rest == 0 {
            break;
        }
    }
    let mut words: Vec<String> = Vec::new();
    if n == 0 {
        words.push(DIGITS[0].to_string());
    }
    let top = groups.len() - 1;
    for i in (0..groups.len()).rev() {
        if groups[i] == 0 {
            continue;
        }
        let mut part = Vec::new();
        group(groups[i], i == top, &mut part);
        words.extend(part.into_iter().map(str::to_string));
        let s = scale(i);
        if !s.is_empty() {
            words.push(s);
        }
    }
    words.push("đồng".to_string());
    let text = words.join(" ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_as_a_vietnamese_receipt_writes_them() {
        let cases: &[(u64, &str)] = &[
            (0, "Không đồng"),
            (1, "Một đồng"),
            (5, "Năm đồng"),
            (10, "Mười đồng"),
            (11, "Mười một đồng"),
            (15, "Mười lăm đồng"),
            (20, "Hai mươi đồng"),
            (21, "Hai mươi mốt đồng"),
            (24, "Hai mươi bốn đồng"),
            (25, "Hai mươi lăm đồng"),
            (105, "Một trăm linh năm đồng"),
            (110, "Một trăm mười đồng"),
            (115, "Một trăm mười lăm đồng"),
            (1_000, "Một nghìn đồng"),
            (1_005, "Một nghìn không trăm linh năm đồng"),
            (1_050, "Một nghìn không trăm năm mươi đồng"),
            (10_000, "Mười nghìn đồng"),
            (15_000, "Mười lăm nghìn đồng"),
            (21_000, "Hai mươi mốt nghìn đồng"),
            (500_000, "Năm trăm nghìn đồng"),
            (503_000, "Năm trăm linh ba nghìn đồng"),
            (1_000_000, "Một triệu đồng"),
            (1_000_500, "Một triệu năm trăm đồng"),
            (1_005_000, "Một triệu không trăm linh năm nghìn đồng"),
            (20_000_000, "Hai mươi triệu đồng"),
            (20_300_000, "Hai mươi triệu ba trăm nghìn đồng"),
            (200_000_000, "Hai trăm triệu đồng"),
            (1_000_000_000, "Một tỷ đồng"),
            (5_000_000_000, "Năm tỷ đồng"),
            (
                1_234_567_891,
                "Một tỷ hai trăm ba mươi bốn triệu năm trăm sáu mươi bảy nghìn tám trăm chín mươi mốt đồng",
            ),
            (1_000_000_000_000, "Một nghìn tỷ đồng"),
            (2_000_000_000_000_000, "Hai triệu tỷ đồng"),
            (
                u64::MAX,
                "Mười tám tỷ tỷ bốn trăm bốn mươi sáu triệu tỷ bảy trăm bốn mươi bốn nghìn tỷ \
                 không trăm bảy mươi ba tỷ bảy trăm linh chín triệu năm trăm năm mươi mốt nghìn \
                 sáu trăm mười lăm đồng",
            ),
        ];
        for &(n, words) in cases {
            assert_eq!(vnd_in_words(n), words, "{n}");
        }
    }
}
