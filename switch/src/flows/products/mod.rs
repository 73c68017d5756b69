//! Products behind one trait (issue #26): what the engine must know of a
//! kind of transaction to reserve its money and to explain the ledger's
//! refusal of it, so that the engine knows steps (record, reserve, call,
//! post or reverse), not products. One module per product; [`of`] is the
//! only `match` on the kind.
//!
//! A reservation is at most four legs, reserved as one linked chain by the
//! engine: 1 the principal, 2 the cash (counter cash; for a QR payment the
//! principal's second half, out of `QrClearing`), 3 the post office's
//! commission, 4 the switch's fee.

use ledger::TransferReject;

use crate::error::SwitchError;
use crate::store::{self, TxRecord};

pub mod bills;
pub mod cash_in;
pub mod cash_out;
pub mod qr;

/// One leg's accounts and code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    pub debit: u128,
    pub credit: u128,
    pub code: u16,
}

/// Who owes whom for a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The amount, from the payer's side to the payee's (leg 1).
    pub principal: Leg,
    /// The amount again, where cash moves or a clearing account passes it
    /// on (leg 2).
    pub cash: Option<Leg>,
    /// Who pays the fee (legs 3 and 4).
    pub fee_from: u128,
    /// The post office's commission account; `None` for a product that
    /// pays none (a transaction carrying one is refused as an error).
    pub commission_to: Option<u128>,
}

/// The ledger numbers a product needs, from the provisioned network.
pub trait Numbers {
    /// The post office's and the terminal's numbers of `rec`'s counter.
    fn counter(&self, rec: &TxRecord) -> Result<(u64, u64), SwitchError>;
    /// A configured biller's number (a biller taken out of the
    /// configuration is refused by name, never account 0).
    fn biller(&self, code: &str) -> Result<u64, SwitchError>;
}

pub trait Product: Sync {
    /// `rec`'s reservation.
    fn reservation(&self, rec: &TxRecord, n: &dyn Numbers) -> Result<Reservation, SwitchError>;
    /// What the ledger's refusal of leg `leg` (0-based) means to the
    /// customer; `None`: a failure of the switch, which the engine logs.
    fn refusal(
        &self,
        _rec: &TxRecord,
        _leg: usize,
        _reject: TransferReject,
    ) -> Option<SwitchError> {
        None
    }
}

/// The product of a kind of transaction.
pub fn of(kind: store::Kind) -> &'static dyn Product {
    match kind {
        store::Kind::CashIn => &cash_in::CashIn,
        store::Kind::CashOut => &cash_out::CashOut,
        store::Kind::QrPayment => &qr::QrPayment,
        store::Kind::BillPayment | store::Kind::TopUp => &bills::Bills,
    }
}

/// A bank's settlement account.
fn bank(bin: &str) -> u128 {
    crate::accounts::Kind::Bank.id(crate::accounts::bank_number(bin))
}

/// Leg 1 of a cash-funded payment was refused for want of e-float.
fn insufficient_float() -> SwitchError {
    SwitchError::new(
        crate::error::ErrorCode::InsufficientFloat,
        "the post office's e-float does not cover this payment",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::store::{BillPart, Funding, Kind};

    struct Fixed;

    impl Numbers for Fixed {
        fn counter(&self, _rec: &TxRecord) -> Result<(u64, u64), SwitchError> {
            Ok((7, 70))
        }
        fn biller(&self, code: &str) -> Result<u64, SwitchError> {
            match code {
                "EVN" => Ok(3),
                _ => Err(bills::unknown_biller(code)),
            }
        }
    }

    fn rec(kind: Kind, funding: Option<Funding>) -> TxRecord {
        let mut r = crate::store::tests::tx(1);
        r.kind = kind;
        r.bill = funding.map(|funding| BillPart {
            biller: "EVN".into(),
            customer: "PE01".into(),
            customer_name: "NGUYEN VAN AN".into(),
            bills: Vec::new(),
            funding,
        });
        r
    }

    /// Every product's reservation moves money between two different
    /// accounts, and cash legs exist exactly where cash or clearing moves.
    #[test]
    fn reservations_by_product() {
        let cases = [
            (Kind::CashIn, None, true, true),
            (Kind::CashOut, None, true, true),
            (Kind::QrPayment, None, true, false),
            (Kind::BillPayment, Some(Funding::Cash), true, true),
            (Kind::BillPayment, Some(Funding::Account), false, true),
            (Kind::TopUp, Some(Funding::Card), false, true),
        ];
        for (kind, funding, cash, commission) in cases {
            let r = of(kind).reservation(&rec(kind, funding), &Fixed).unwrap();
            assert_ne!(r.principal.debit, r.principal.credit, "{kind:?}");
            assert_eq!(r.cash.is_some(), cash, "{kind:?} {funding:?}");
            assert_eq!(r.commission_to.is_some(), commission, "{kind:?}");
        }
        // A biller taken out of the configuration is refused by name.
        let mut gone = rec(Kind::BillPayment, Some(Funding::Cash));
        gone.bill.as_mut().unwrap().biller = "GONE".into();
        let e = of(Kind::BillPayment)
            .reservation(&gone, &Fixed)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownBiller);
    }

    /// What a refusal of the ledger tells the customer, by product, leg
    /// and reject; anything else is the switch's own failure (`None`).
    #[test]
    fn refusals_by_product() {
        use TransferReject::{ExceedsCredits, ExceedsDebits};
        let cases = [
            (
                Kind::CashIn,
                None,
                0,
                ExceedsCredits,
                Some(ErrorCode::InsufficientFloat),
            ),
            (Kind::CashIn, None, 1, ExceedsCredits, None),
            (
                Kind::CashOut,
                None,
                1,
                ExceedsDebits,
                Some(ErrorCode::InsufficientCash),
            ),
            (Kind::CashOut, None, 0, ExceedsCredits, None),
            (
                Kind::BillPayment,
                Some(Funding::Cash),
                0,
                ExceedsCredits,
                Some(ErrorCode::InsufficientFloat),
            ),
            (
                Kind::TopUp,
                Some(Funding::Cash),
                0,
                ExceedsCredits,
                Some(ErrorCode::InsufficientFloat),
            ),
            (
                Kind::BillPayment,
                Some(Funding::Account),
                0,
                ExceedsCredits,
                None,
            ),
            (Kind::QrPayment, None, 0, ExceedsCredits, None),
        ];
        for (kind, funding, leg, reject, want) in cases {
            let got = of(kind)
                .refusal(&rec(kind, funding), leg, reject)
                .map(|e| e.code);
            assert_eq!(got, want, "{kind:?} {funding:?} leg {leg} {reject:?}");
        }
    }
}
