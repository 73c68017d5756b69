//! A merchant's VietQR: the payer's bank owes the merchant's bank (through
//! the QR clearing account), which owes the switch the merchant's fee.

use super::{Leg, Numbers, Product, Reservation, bank};
use crate::accounts::{Kind, NETWORK, code};
use crate::error::SwitchError;
use crate::store::{Party, TxRecord};

pub struct QrPayment;

impl Product for QrPayment {
    fn reservation(&self, rec: &TxRecord, _n: &dyn Numbers) -> Result<Reservation, SwitchError> {
        // Step 1 credits the merchant's bank.
        let merchant_bank = rec.steps.get(1).map_or(&rec.bank_bin, |s| match &s.party {
            Party::Bank(bin) => bin,
            Party::Biller(_) => &rec.bank_bin,
        });
        let clearing = Kind::QrClearing.id(NETWORK);
        Ok(Reservation {
            principal: Leg {
                debit: bank(&rec.bank_bin),
                credit: clearing,
                code: code::QR_PRINCIPAL,
            },
            cash: Some(Leg {
                debit: clearing,
                credit: bank(merchant_bank),
                code: code::QR_PRINCIPAL,
            }),
            fee_from: bank(merchant_bank),
            commission_to: None,
        })
    }
}
