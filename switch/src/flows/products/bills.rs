//! Bills and top-ups: whoever funds the payment owes the biller (the
//! post office's e-float for cash, else the payer's bank); the fee is the
//! customer's, shared with the post office.

use ledger::TransferReject;

use super::{Leg, Numbers, Product, Reservation, bank, insufficient_float};
use crate::accounts::{Kind, code};
use crate::error::{ErrorCode, SwitchError};
use crate::flows::fault::storage;
use crate::store::{Funding, TxRecord};

pub struct Bills;

/// A biller the switch does not know (or no longer: taken out of the
/// configuration).
pub fn unknown_biller(code: &str) -> SwitchError {
    SwitchError::new(ErrorCode::UnknownBiller, format!("no biller {code}"))
}

impl Product for Bills {
    fn reservation(&self, rec: &TxRecord, n: &dyn Numbers) -> Result<Reservation, SwitchError> {
        let b = rec
            .bill
            .as_ref()
            .ok_or_else(|| storage(format!("bill payment {} has no bills recorded", rec.id)))?;
        let biller = Kind::Biller.id(n.biller(&b.biller)?);
        let (po, terminal) = n.counter(rec)?;
        Ok(match b.funding {
            Funding::Cash => Reservation {
                principal: Leg {
                    debit: Kind::EFloat.id(po),
                    credit: biller,
                    code: code::BILL_PRINCIPAL,
                },
                cash: Some(Leg {
                    debit: Kind::Drawer.id(terminal),
                    credit: Kind::CashControl.id(po),
                    code: code::BILL_CASH,
                }),
                fee_from: Kind::Drawer.id(terminal),
                commission_to: Some(Kind::Commission.id(po)),
            },
            Funding::Account | Funding::Qr | Funding::Card => Reservation {
                principal: Leg {
                    debit: bank(&rec.bank_bin),
                    credit: biller,
                    code: code::BILL_PRINCIPAL,
                },
                cash: None,
                fee_from: bank(&rec.bank_bin),
                commission_to: Some(Kind::Commission.id(po)),
            },
        })
    }

    fn refusal(&self, rec: &TxRecord, leg: usize, reject: TransferReject) -> Option<SwitchError> {
        let cash_funded = matches!(
            rec.bill.as_ref().map(|b| b.funding),
            None | Some(Funding::Cash)
        );
        (cash_funded && leg == 0 && reject == TransferReject::ExceedsCredits)
            .then(insufficient_float)
    }
}
