//! Cash-out: the customer's bank owes the post office's e-float; the cash
//! leaves the drawer; the bank debited the customer for the fee too.

use ledger::TransferReject;

use super::{Leg, Numbers, Product, Reservation, bank};
use crate::accounts::{Kind, code};
use crate::error::{ErrorCode, SwitchError};
use crate::store::TxRecord;

pub struct CashOut;

impl Product for CashOut {
    fn reservation(&self, rec: &TxRecord, n: &dyn Numbers) -> Result<Reservation, SwitchError> {
        let (po, terminal) = n.counter(rec)?;
        Ok(Reservation {
            principal: Leg {
                debit: bank(&rec.bank_bin),
                credit: Kind::EFloat.id(po),
                code: code::CASH_OUT_PRINCIPAL,
            },
            cash: Some(Leg {
                debit: Kind::CashControl.id(po),
                credit: Kind::Drawer.id(terminal),
                code: code::CASH_OUT_CASH,
            }),
            fee_from: bank(&rec.bank_bin),
            commission_to: Some(Kind::Commission.id(po)),
        })
    }

    fn refusal(&self, _rec: &TxRecord, leg: usize, reject: TransferReject) -> Option<SwitchError> {
        (leg == 1 && reject == TransferReject::ExceedsDebits).then(|| {
            SwitchError::new(
                ErrorCode::InsufficientCash,
                "the drawer does not hold enough cash for this payout",
            )
        })
    }
}
