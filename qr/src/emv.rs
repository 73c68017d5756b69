//! EMVCo merchant-presented mode field rules, on a parsed payload.

use crate::error::{ErrorKind, QrError};
use crate::tlv::{Object, Payload, Raw};

fn field(raw: &Raw, message: impl Into<String>) -> QrError {
    QrError::new(ErrorKind::Field, raw.path, Some(raw.offset), message)
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn chars_max(raw: &Raw, max: usize) -> Result<(), QrError> {
    let n = raw.value.chars().count();
    if n > max {
        return Err(field(raw, format!("{n} characters, at most {max} allowed")));
    }
    Ok(())
}

fn numeric(raw: &Raw, len: Option<usize>) -> Result<(), QrError> {
    if !digits(raw.value) {
        return Err(field(raw, format!("{:?} is not numeric", raw.value)));
    }
    if let Some(len) = len
        && raw.value.len() != len
    {
        return Err(field(raw, format!("{:?} is not {len} digits", raw.value)));
    }
    Ok(())
}

/// Why `s` is not an EMVCo amount: digits with at most one `.`, digits on
/// both sides of it, at most 13 characters, not zero, no separators or signs.
pub fn amount_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() || s.len() > 13 {
        return Some("an amount has 1 to 13 characters");
    }
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Some("an amount is digits with at most one '.' between them");
    }
    if s.bytes().all(|b| b == b'0' || b == b'.') {
        return Some("an amount is not zero");
    }
    None
}

fn amount(raw: &Raw) -> Result<(), QrError> {
    match amount_problem(raw.value) {
        Some(why) => Err(field(raw, format!("{:?}: {why}", raw.value))),
        None => Ok(()),
    }
}

/// Check every EMVCo rule the payload is subject to.
pub fn validate(p: &Payload) -> Result<(), QrError> {
    let objects = p.objects();
    let first = &objects[0];
    if first.id() != 0 {
        return Err(QrError::new(
            ErrorKind::FormatIndicator,
            "00",
            Some(0),
            "payload format indicator (00) must come first",
        ));
    }
    if first.value() != "01" {
        return Err(QrError::new(
            ErrorKind::FormatIndicator,
            "00",
            Some(0),
            format!(
                "payload format indicator is {:?}, not \"01\"",
                first.value()
            ),
        ));
    }
    if !objects.iter().any(|o| (2..=51).contains(&o.id())) {
        return Err(QrError::new(
            ErrorKind::Missing,
            "",
            None,
            "no merchant account information (02 to 51)",
        ));
    }
    let tip = p.get(55);
    for o in objects {
        let raw = &o.raw;
        match o.id() {
            1 if raw.value != "11" && raw.value != "12" => {
                return Err(field(
                    raw,
                    format!(
                        "point of initiation {:?} is neither 11 (static) nor 12 (dynamic)",
                        raw.value
                    ),
                ));
            }
            26..=51 => merchant_account(o)?,
            52 => numeric(raw, Some(4))?,
            53 => numeric(raw, Some(3))?,
            54 => amount(raw)?,
            55 => {
                if !matches!(raw.value, "01" | "02" | "03") {
                    return Err(field(
                        raw,
                        format!("tip indicator {:?} is not 01, 02 or 03", raw.value),
                    ));
                }
                let (fixed, percent) = (p.get(56).is_some(), p.get(57).is_some());
                let ok = match raw.value {
                    "01" => !fixed && !percent,
                    "02" => fixed && !percent,
                    _ => percent && !fixed,
                };
                if !ok {
                    return Err(field(
                        raw,
                        format!(
                            "tip indicator {} needs {}",
                            raw.value,
                            match raw.value {
                                "01" => "neither 56 nor 57",
                                "02" => "a fixed fee in 56 and no 57",
                                _ => "a percentage in 57 and no 56",
                            }
                        ),
                    ));
                }
            }
            56 => {
                if tip.map(|t| t.value()) != Some("02") {
                    return Err(field(raw, "a fixed convenience fee needs tip indicator 02"));
                }
                amount(raw)?;
            }
            57 => {
                if tip.map(|t| t.value()) != Some("03") {
                    return Err(field(
                        raw,
                        "a percentage convenience fee needs tip indicator 03",
                    ));
                }
                chars_max(raw, 5)?;
                if amount_problem(raw.value).is_some()
                    || raw
                        .value
                        .split('.')
                        .next()
                        .is_some_and(|i| i.trim_start_matches('0').len() > 2)
                {
                    return Err(field(
                        raw,
                        format!(
                            "{:?} is not a percentage between 00.01 and 99.99",
                            raw.value
                        ),
                    ));
                }
            }
            58 if raw.value.len() != 2 || !raw.value.bytes().all(|b| b.is_ascii_uppercase()) => {
                return Err(field(
                    raw,
                    format!("country {:?} is not two upper-case letters", raw.value),
                ));
            }
            59 => chars_max(raw, 25)?,
            60 => chars_max(raw, 15)?,
            61 => chars_max(raw, 10)?,
            62 => {
                for c in o.children.iter().flatten() {
                    if (1..=9).contains(&c.id) {
                        chars_max(c, 25)?;
                    }
                }
            }
            64 => {
                for c in o.children.iter().flatten() {
                    match c.id {
                        0 => chars_max(c, 2)?,
                        1 => chars_max(c, 25)?,
                        2 => chars_max(c, 15)?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    for id in [53, 58] {
        if p.get(id).is_none() {
            let name = if id == 53 {
                "transaction currency (53)"
            } else {
                "country code (58)"
            };
            return Err(QrError::new(
                ErrorKind::Missing,
                "",
                None,
                format!("{name} is missing"),
            ));
        }
    }
    Ok(())
}

/// A merchant account template that parsed must start with its scheme's
/// globally unique identifier (00).
fn merchant_account(o: &Object) -> Result<(), QrError> {
    if let Some(children) = &o.children
        && let Some(guid) = children.iter().find(|c| c.id == 0)
    {
        chars_max(guid, 32)?;
    }
    Ok(())
}
