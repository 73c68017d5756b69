//! An amount as the user typed it: any whole number, so that a negative or
//! oversized one is refused with the switch's own error code
//! (`amount_below_minimum`, `amount_above_maximum`) and a message naming
//! what was typed, in `--json` mode as one JSON object, rather than with
//! clap's usage text.

use std::str::FromStr;

use crate::client::Failure;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amount(i128);

impl FromStr for Amount {
    type Err = String;

    fn from_str(s: &str) -> Result<Amount, String> {
        let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{s:?} is not a whole number of đồng"));
        }
        // Longer than any i128: far above any maximum either way.
        let magnitude = digits.parse::<i128>().unwrap_or(i128::MAX);
        Ok(Amount(if s.starts_with('-') {
            -magnitude
        } else {
            magnitude
        }))
    }
}

impl Amount {
    /// The amount in đồng, or the switch's code for one out of range.
    pub fn dong(self) -> Result<u64, Failure> {
        if self.0 < 0 {
            return Err(Failure::new(
                "amount_below_minimum",
                format!("the amount {} is below zero", self.0),
            ));
        }
        u64::try_from(self.0).map_err(|_| {
            Failure::new(
                "amount_above_maximum",
                format!("the amount {} is above any the switch accepts", self.0),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_out_of_range_get_the_switchs_codes() {
        let code = |s: &str| s.parse::<Amount>().unwrap().dong().map_err(|f| f.code);
        assert_eq!(code("150000"), Ok(150_000));
        assert_eq!(code("+7"), Ok(7));
        assert_eq!(code("-5"), Err("amount_below_minimum".to_string()));
        assert_eq!(
            code("999999999999999999999"),
            Err("amount_above_maximum".to_string())
        );
        assert_eq!(
            code("9999999999999999999999999999999999999999999"),
            Err("amount_above_maximum".to_string())
        );
        assert!("12.5".parse::<Amount>().is_err());
        assert!("".parse::<Amount>().is_err());
        assert!("-".parse::<Amount>().is_err());
    }
}
