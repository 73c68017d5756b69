//! Where a finished transaction belongs in the pilot report (issue #28):
//! its commune (the post office's, or the merchant's for a QR payment) and
//! its bill's category, read once per place and kept (a place's commune is
//! set when it is provisioned and does not change).

use crate::error::SwitchError;
use crate::flows::engine::{Switch, storage};
use crate::store::stats::{self, Contribution, Place};
use crate::store::{Kind, TxRecord};

impl Switch {
    /// The commune of a post office (`merchant` false) or a merchant.
    fn commune_of(&self, id: &str, merchant: bool) -> Result<String, SwitchError> {
        let key = (merchant, id.to_string());
        if let Some(c) = self
            .communes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let commune = if merchant {
            self.store.merchant(id).map_err(storage)?.map(|m| m.commune)
        } else {
            self.store
                .post_office(id)
                .map_err(storage)?
                .map(|p| p.commune)
        }
        .unwrap_or_default();
        self.communes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, commune.clone());
        Ok(commune)
    }

    /// Where `t` belongs in the report.
    /// Whether a merchant is a commune's fee collector (MCC 9399), kept
    /// in the same cache as communes.
    fn is_collector(&self, merchant_id: &str) -> Result<bool, SwitchError> {
        let key = (true, format!("mcc:{merchant_id}"));
        if let Some(mcc) = self
            .communes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(mcc == crate::flows::fees::COLLECTOR_MCC);
        }
        let mcc = self
            .store
            .merchant(merchant_id)
            .map_err(storage)?
            .map(|m| m.mcc)
            .unwrap_or_default();
        let collector = mcc == crate::flows::fees::COLLECTOR_MCC;
        self.communes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, mcc);
        Ok(collector)
    }

    pub(crate) fn report_place(&self, t: &TxRecord) -> Result<Place, SwitchError> {
        let commune = match (&t.merchant, t.kind) {
            (Some(m), Kind::QrPayment) => self.commune_of(&m.merchant_id, true)?,
            _ if t.post_office_id.is_empty() => String::new(),
            _ => self.commune_of(&t.post_office_id, false)?,
        };
        let bill_category = match (&t.bill, t.kind) {
            (Some(b), Kind::BillPayment) => {
                Some(self.billers.get(&b.biller).map_or("other", |x| x.category))
            }
            _ => None,
        };
        let public_fees = match (&t.merchant, t.kind) {
            (Some(m), Kind::QrPayment) => self.is_collector(&m.merchant_id)?,
            _ => false,
        };
        Ok(Place {
            commune,
            bill_category,
            public_fees,
        })
    }

    /// What finishing `t` (and the bill payment `paid` it completes) adds
    /// to the report's aggregates.
    pub(crate) fn report_contributions(
        &self,
        t: &TxRecord,
        paid: Option<&TxRecord>,
    ) -> Result<Vec<Contribution>, SwitchError> {
        let mut out = stats::contributions(t, &self.report_place(t)?);
        if let Some(b) = paid {
            out.extend(stats::contributions(b, &self.report_place(b)?));
        }
        Ok(out)
    }
}
