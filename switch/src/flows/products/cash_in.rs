//! Cash-in: the post office's e-float pays the customer's bank; the cash
//! and the fee go into the drawer.

use ledger::TransferReject;

use super::{Leg, Numbers, Product, Reservation, bank, insufficient_float};
use crate::accounts::{Kind, code};
use crate::error::SwitchError;
use crate::store::TxRecord;

pub struct CashIn;

impl Product for CashIn {
    fn reservation(&self, rec: &TxRecord, n: &dyn Numbers) -> Result<Reservation, SwitchError> {
        let (po, terminal) = n.counter(rec)?;
        Ok(Reservation {
            principal: Leg {
                debit: Kind::EFloat.id(po),
                credit: bank(&rec.bank_bin),
                code: code::CASH_IN_PRINCIPAL,
            },
            cash: Some(Leg {
                debit: Kind::Drawer.id(terminal),
                credit: Kind::CashControl.id(po),
                code: code::CASH_IN_CASH,
            }),
            fee_from: Kind::Drawer.id(terminal),
            commission_to: Some(Kind::Commission.id(po)),
        })
    }

    fn refusal(&self, _rec: &TxRecord, leg: usize, reject: TransferReject) -> Option<SwitchError> {
        (leg == 0 && reject == TransferReject::ExceedsCredits).then(insufficient_float)
    }
}
