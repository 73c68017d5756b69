//! How the switch's parties map to ledger accounts. An account id is the
//! account kind in the top 16 bits and the party's number below; the kind
//! is also the ledger account `code`.
//!
//! | kind | per | normal side | flag | what it is |
//! |------|-----|-------------|------|------------|
//! | `FloatReserve` | network | debit | – | money the post offices prefunded, held at the partner bank |
//! | `Bank` | bank (BIN) | either | – | settlement position: credit = the switch owes the bank |
//! | `EFloat` | post office | credit | debits ≤ credits | the post office's prefunded balance |
//! | `Drawer` | terminal | debit | credits ≤ debits | cash in the terminal's drawer |
//! | `CashControl` | post office | credit | – | the post office's own stake in its cash |
//! | `Commission` | post office | credit | – | fees earned by the post office |
//! | `SwitchIncome` | network | credit | – | fees earned by the switch |
//! | `CashVariance` | post office | either | – | counted cash minus expected, per shift |
//! | `Biller` | biller | credit | – | what the switch's participants owe a biller for bills paid |
//! | `QrClearing` | network | – | – | a QR payment's principal passes through it; always back to zero |
//! | `Window` | settlement window | – | – | created at the window's cut-off; settlement moves every bank's and biller's net through it; ends at zero |

use ledger::{AccountFlags, NewAccount};

pub const VND: u16 = 704;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    FloatReserve = 1,
    Bank = 2,
    EFloat = 3,
    Drawer = 4,
    CashControl = 5,
    Commission = 6,
    SwitchIncome = 7,
    CashVariance = 8,
    Biller = 9,
    /// One per settlement window, created at its cut-off; ends at zero.
    Window = 10,
    /// Where a QR payment's principal passes from the payer's bank to the
    /// merchant's (two legs, so that a payment within one bank is legs
    /// too); nets to zero with every payment.
    QrClearing = 11,
}

impl Kind {
    pub fn id(self, number: u64) -> u128 {
        (u128::from(self as u16) << 112) | u128::from(number)
    }
    /// Limits only. No account keeps the ledger's balance `HISTORY`: nothing
    /// reads it (the journal holds every change anyway), and for e-floats
    /// and drawers it was a quarter of the ledger's index inserts, about
    /// five per transaction (BENCHMARKS.md).
    fn flags(self) -> AccountFlags {
        match self {
            Kind::EFloat => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
            Kind::Drawer => AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
            _ => AccountFlags::empty(),
        }
    }
    pub fn new_account(self, number: u64) -> NewAccount {
        NewAccount {
            id: self.id(number),
            currency: VND,
            code: self as u16,
            flags: self.flags(),
            user_data: u128::from(number),
        }
    }
}

/// The network-wide accounts are number 0.
pub const NETWORK: u64 = 0;

/// A bank's number is its BIN.
pub fn bank_number(bin: &str) -> u64 {
    bin.parse().expect("BINs are validated as six digits")
}

/// Ledger transfer codes: what each leg is.
pub mod code {
    pub const FLOAT_TOPUP: u16 = 1;
    pub const OPENING_CASH: u16 = 2;
    pub const CASH_SWEEP: u16 = 3;
    pub const CASH_IN_PRINCIPAL: u16 = 10;
    pub const CASH_IN_CASH: u16 = 11;
    pub const CASH_OUT_PRINCIPAL: u16 = 12;
    pub const CASH_OUT_CASH: u16 = 13;
    pub const FEE_COMMISSION: u16 = 20;
    pub const FEE_SWITCH: u16 = 21;
    pub const QR_PRINCIPAL: u16 = 14;
    pub const BILL_PRINCIPAL: u16 = 15;
    pub const BILL_CASH: u16 = 16;
    pub const SHIFT_VARIANCE: u16 = 30;
    pub const SETTLEMENT: u16 = 40;
}
