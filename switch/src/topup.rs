//! Prepaid airtime for the three networks a post-office counter sells:
//! which numbers each network owns (by prefix, after the 2018 move to ten
//! digits), which denominations it sells, and the checks a top-up request
//! gets before anything moves. Data and pure functions only: each network
//! is reached as a biller of the same code ([`crate::adapters::biller`]).

/// One network: its biller code, its name, the three-digit prefixes of its
/// numbers, the amounts it sells (đồng).
#[derive(Debug)]
pub struct Provider {
    pub code: &'static str,
    pub name: &'static str,
    pub prefixes: &'static [&'static str],
    pub denominations: &'static [u64],
}

/// What every network sells at a counter.
const DENOMINATIONS: &[u64] = &[
    10_000, 20_000, 30_000, 50_000, 100_000, 200_000, 300_000, 500_000,
];

pub const PROVIDERS: [Provider; 3] = [
    Provider {
        code: "VIETTEL",
        name: "Viettel",
        prefixes: &[
            "032", "033", "034", "035", "036", "037", "038", "039", "086", "096", "097", "098",
        ],
        denominations: DENOMINATIONS,
    },
    Provider {
        code: "VINAPHONE",
        name: "VinaPhone",
        prefixes: &["081", "082", "083", "084", "085", "088", "091", "094"],
        denominations: DENOMINATIONS,
    },
    Provider {
        code: "MOBIFONE",
        name: "MobiFone",
        prefixes: &["070", "076", "077", "078", "079", "089", "090", "093"],
        denominations: DENOMINATIONS,
    },
];

/// Why a top-up request is refused before anything moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    UnknownProvider(String),
    /// Not a Vietnamese mobile number at all.
    NotAPhoneNumber(String),
    /// A mobile number of another network (named when known).
    OtherNetwork {
        phone: String,
        provider: &'static str,
        owner: Option<&'static str>,
    },
    Denomination {
        amount: u64,
        provider: &'static str,
        allowed: &'static [u64],
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::UnknownProvider(p) => {
                let known: Vec<_> = PROVIDERS.iter().map(|p| p.code).collect();
                write!(f, "no network {p:?} (one of {})", known.join(", "))
            }
            Refusal::NotAPhoneNumber(p) => write!(
                f,
                "{p:?} is not a mobile number: ten digits starting 0 (or +84 and nine digits)"
            ),
            Refusal::OtherNetwork {
                phone,
                provider,
                owner: Some(owner),
            } => write!(f, "{phone} is a {owner} number, not {provider}"),
            Refusal::OtherNetwork {
                phone,
                provider,
                owner: None,
            } => write!(f, "{phone} is not a {provider} number"),
            Refusal::Denomination {
                amount,
                provider,
                allowed,
            } => {
                let list: Vec<String> = allowed.iter().map(u64::to_string).collect();
                write!(
                    f,
                    "{provider} does not sell {amount} VND of airtime (it sells {})",
                    list.join(", ")
                )
            }
        }
    }
}

pub fn provider(code: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.code.eq_ignore_ascii_case(code))
}

/// The number in its ten-digit national form (`0xxxxxxxxx`), from that
/// form or the international one (`+84xxxxxxxxx`, `84xxxxxxxxx`), spaces
/// and dots allowed between digits.
pub fn normalize(phone: &str) -> Option<String> {
    if phone.len() > 20 {
        return None;
    }
    let compact: String = phone.chars().filter(|c| !matches!(c, ' ' | '.')).collect();
    let national = if let Some(rest) = compact.strip_prefix("+84") {
        format!("0{rest}")
    } else if compact.len() == 11 && compact.starts_with("84") {
        format!("0{}", &compact[2..])
    } else {
        compact
    };
    (national.len() == 10
        && national.starts_with('0')
        && national.bytes().all(|b| b.is_ascii_digit()))
    .then_some(national)
}

/// Check a top-up of `amount` to `phone` on `provider`: answers the
/// network and the number in national form.
pub fn check(
    provider_code: &str,
    phone: &str,
    amount: u64,
) -> Result<(&'static Provider, String), Refusal> {
    let p = provider(provider_code)
        .ok_or_else(|| Refusal::UnknownProvider(provider_code.chars().take(20).collect()))?;
    let national = normalize(phone)
        .ok_or_else(|| Refusal::NotAPhoneNumber(phone.chars().take(20).collect()))?;
    let prefix = &national[..3];
    if !p.prefixes.contains(&prefix) {
        let owner = PROVIDERS
            .iter()
            .find(|o| o.prefixes.contains(&prefix))
            .map(|o| o.name);
        return Err(Refusal::OtherNetwork {
            phone: national,
            provider: p.name,
            owner,
        });
    }
    if !p.denominations.contains(&amount) {
        return Err(Refusal::Denomination {
            amount,
            provider: p.name,
            allowed: p.denominations,
        });
    }
    Ok((p, national))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_amounts_are_checked_against_the_network() {
        for (provider, phone, amount, want) in [
            ("VIETTEL", "0981234567", 50_000, Ok("0981234567")),
            ("viettel", "+84 98 123 4567", 10_000, Ok("0981234567")),
            ("VIETTEL", "84981234567", 500_000, Ok("0981234567")),
            ("VINAPHONE", "0912.345.678", 100_000, Ok("0912345678")),
            ("MOBIFONE", "0901234567", 20_000, Ok("0901234567")),
            ("MOBIFONE", "0701234567", 300_000, Ok("0701234567")),
            (
                "VIETTEL",
                "0912345678",
                50_000,
                Err("is a VinaPhone number, not Viettel"),
            ),
            (
                "VINAPHONE",
                "0211234567",
                50_000,
                Err("is not a VinaPhone number"),
            ),
            ("VIETTEL", "098123456", 50_000, Err("not a mobile number")),
            ("VIETTEL", "09812345678", 50_000, Err("not a mobile number")),
            ("VIETTEL", "098123456a", 50_000, Err("not a mobile number")),
            ("VIETTEL", "", 50_000, Err("not a mobile number")),
            (
                "VIETTEL",
                "0981234567",
                15_000,
                Err("does not sell 15000 VND"),
            ),
            ("VIETTEL", "0981234567", 0, Err("does not sell 0 VND")),
            (
                "GMOBILE",
                "0991234567",
                50_000,
                Err("no network \"GMOBILE\""),
            ),
        ] {
            match (check(provider, phone, amount), want) {
                (Ok((_, national)), Ok(w)) => assert_eq!(national, w, "{provider} {phone}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{provider} {phone}: {e}"),
                (got, want) => panic!("{provider} {phone} {amount}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn no_prefix_belongs_to_two_networks() {
        let mut seen = std::collections::HashSet::new();
        for p in &PROVIDERS {
            for prefix in p.prefixes {
                assert!(seen.insert(*prefix), "{prefix} twice");
            }
        }
    }
}
