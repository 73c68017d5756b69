//! The stable catalogue of business rejects. Codes never change meaning and
//! are never reused: they are stored (failed ids keep failing the same way)
//! and shown to operators.

macro_rules! catalogue {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum $name { $($(#[$vmeta])* $variant = $code,)* }

        impl $name {
            /// The stable numeric code.
            pub fn code(self) -> u16 {
                self as u16
            }
            /// The stable snake_case name.
            pub fn as_str(self) -> &'static str {
                static NAMES: std::sync::OnceLock<std::collections::HashMap<u16, String>> =
                    std::sync::OnceLock::new();
                let names = NAMES.get_or_init(|| {
                    [$(($code, snake(stringify!($variant))),)*].into_iter().collect()
                });
                names.get(&(self as u16)).map(String::as_str).unwrap_or("unknown")
            }
            /// The reject with this code, if any.
            pub fn from_code(code: u16) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }
            /// Every reject, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// CamelCase → snake_case (run once per name, at first use).
fn snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

catalogue! {
    /// Why an account was not created.
    AccountReject {
        IdMustNotBeZero = 1,
        IdMustNotBeIntMax = 2,
        FlagsAreMutuallyExclusive = 3,
        CurrencyMustNotBeZero = 4,
        ExistsWithDifferentFlags = 5,
        ExistsWithDifferentUserData = 6,
        ExistsWithDifferentCurrency = 7,
        ExistsWithDifferentCode = 8,
        /// The ledger holds `Config::accounts_max` accounts already.
        AccountsFull = 9,
    }
}

catalogue! {
    /// Why a transfer was not applied.
    TransferReject {
        /// Another event of its linked chain failed; nothing of the chain applied.
        LinkedEventFailed = 1,
        /// The batch ended inside a linked chain.
        LinkedEventChainOpen = 2,
        IdMustNotBeZero = 3,
        IdMustNotBeIntMax = 4,
        FlagsAreMutuallyExclusive = 5,
        DebitAccountIdMustNotBeZero = 6,
        CreditAccountIdMustNotBeZero = 7,
        AccountsMustBeDifferent = 8,
        PendingIdMustBeZero = 9,
        PendingIdMustNotBeZero = 10,
        PendingIdMustBeDifferent = 11,
        TimeoutReservedForPendingTransfer = 12,
        AmountMustNotBeZero = 13,
        DebitAccountNotFound = 14,
        CreditAccountNotFound = 15,
        CurrenciesMustBeEqual = 16,
        PendingTransferNotFound = 17,
        PendingTransferNotPending = 18,
        PendingTransferHasDifferentDebitAccountId = 19,
        PendingTransferHasDifferentCreditAccountId = 20,
        PendingTransferHasDifferentAmount = 21,
        ExceedsPendingTransferAmount = 22,
        PendingTransferAlreadyPosted = 23,
        PendingTransferAlreadyVoided = 24,
        PendingTransferExpired = 25,
        ExistsWithDifferentFlags = 26,
        ExistsWithDifferentDebitAccountId = 27,
        ExistsWithDifferentCreditAccountId = 28,
        ExistsWithDifferentAmount = 29,
        ExistsWithDifferentPendingId = 30,
        ExistsWithDifferentUserData = 31,
        ExistsWithDifferentCode = 32,
        ExistsWithDifferentTimeout = 33,
        OverflowsDebits = 34,
        OverflowsCredits = 35,
        OverflowsTimeout = 36,
        /// The debit account would owe more than its posted credits (insufficient funds).
        ExceedsCredits = 37,
        /// The credit account would receive more than its posted debits (e.g. a
        /// drawer paying out cash it does not hold).
        ExceedsDebits = 38,
    }
}

impl TransferReject {
    /// True for rejects that say the id exists with other fields: the
    /// original event, not this one, is what the ledger holds.
    pub fn is_exists_with_different(self) -> bool {
        self.as_str().starts_with("exists_with_different")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_names_are_snake_case() {
        for r in TransferReject::ALL {
            assert_eq!(TransferReject::from_code(r.code()), Some(*r));
            assert!(
                r.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                r
            );
        }
        for r in AccountReject::ALL {
            assert_eq!(AccountReject::from_code(r.code()), Some(*r));
        }
        assert_eq!(TransferReject::ExceedsCredits.as_str(), "exceeds_credits");
        assert_eq!(TransferReject::from_code(0), None);
        assert!(TransferReject::ExistsWithDifferentAmount.is_exists_with_different());
        assert!(!TransferReject::ExceedsDebits.is_exists_with_different());
    }
}
