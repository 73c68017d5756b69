//! Public-service fees at a commune's one-stop desk (issue #30). A fee
//! collector is a merchant with MCC 9399 (government services) whose
//! account is the commune's budget account, with a catalogue of fees. The
//! desk asks for a dossier's fees; the switch prices them from the
//! catalogue and issues a dynamic VietQR for the total (`create_qr`), the
//! dossier code in its bill-number reference; a citizen pays it from any
//! bank app through the payer-bank path (`pay_qr`), once, before it
//! expires. What was priced is kept beside the order (the same id), so the
//! fee receipt shows it whatever the catalogue becomes.

use crate::caller::{Principal, Role};
use crate::error::{ErrorCode, SwitchError};
use crate::flows::{Switch, storage};
use crate::ids::TxId;
use crate::store::{self, FeeCatalogue, FeeItem, FeeLine, FeeRequest, Order, Status, TxRecord};

/// ISO 18245 "Government services, not elsewhere classified": what marks
/// a merchant as a fee collector, and its payments as public fees in the
/// pilot report.
pub const COLLECTOR_MCC: &str = "9399";
/// Items in one catalogue at most.
pub const CATALOGUE_ITEMS_MAX: usize = 200;
/// Lines of one request at most, and units of one line.
pub const LINES_MAX: usize = 20;
pub const QUANTITY_MAX: u32 = 1_000;
/// The purpose a fee code carries (62/08): printable ASCII, no diacritics.
const PURPOSE: &str = "PHI LE PHI HO SO";

fn valid_code(code: &str) -> bool {
    (1..=16).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_dossier(code: &str) -> bool {
    (1..=25).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-./".contains(&b))
}

fn text(s: &str, max: usize) -> bool {
    let n = s.chars().count();
    (1..=max).contains(&n) && !s.chars().any(char::is_control)
}

/// Check a catalogue's items: each code once, names and units given.
pub fn check_items(items: &[FeeItem]) -> Result<(), SwitchError> {
    if items.len() > CATALOGUE_ITEMS_MAX {
        return Err(SwitchError::invalid(format!(
            "a catalogue has at most {CATALOGUE_ITEMS_MAX} items"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for i in items {
        if !valid_code(&i.code) {
            return Err(SwitchError::invalid(format!(
                "item code {:?} is not 1 to 16 of [A-Z0-9-]",
                i.code
            )));
        }
        if !seen.insert(i.code.as_str()) {
            return Err(SwitchError::invalid(format!(
                "item {} is listed twice",
                i.code
            )));
        }
        if !text(&i.name, 200) || !text(&i.unit, 20) || i.legal_basis.chars().count() > 200 {
            return Err(SwitchError::invalid(format!(
                "item {}: a name (up to 200 characters) and a unit (up to 20) are needed; a legal basis is up to 200",
                i.code
            )));
        }
        if i.unit_price > 1_000_000_000 {
            return Err(SwitchError::invalid(format!(
                "item {}: a unit price is at most 1,000,000,000 VND",
                i.code
            )));
        }
    }
    Ok(())
}

/// Price `lines` (code, quantity) from `catalogue`: the lines and their
/// total, or why not.
pub fn price(
    catalogue: &FeeCatalogue,
    lines: &[(String, u32)],
) -> Result<(Vec<FeeLine>, u64), SwitchError> {
    if lines.is_empty() || lines.len() > LINES_MAX {
        return Err(SwitchError::invalid(format!(
            "a request has 1 to {LINES_MAX} lines"
        )));
    }
    let mut out: Vec<FeeLine> = Vec::with_capacity(lines.len());
    let mut total: u64 = 0;
    for (code, quantity) in lines {
        if out.iter().any(|l| &l.item.code == code) {
            return Err(SwitchError::invalid(format!("item {code} is listed twice")));
        }
        if !(1..=QUANTITY_MAX).contains(quantity) {
            return Err(SwitchError::invalid(format!(
                "item {code}: a quantity is 1 to {QUANTITY_MAX}"
            )));
        }
        let item = catalogue
            .items
            .iter()
            .find(|i| &i.code == code)
            .ok_or_else(|| {
                SwitchError::new(
                    ErrorCode::UnknownFeeItem,
                    format!("{code} is not in this desk's fee catalogue"),
                )
            })?;
        let amount = item
            .unit_price
            .checked_mul(u64::from(*quantity))
            .ok_or_else(|| SwitchError::invalid("the amount is too large"))?;
        total = total
            .checked_add(amount)
            .ok_or_else(|| SwitchError::invalid("the amount is too large"))?;
        out.push(FeeLine {
            item: item.clone(),
            quantity: *quantity,
            amount,
        });
    }
    Ok((out, total))
}

impl Switch {
    /// The fee collector a merchant principal is, with its catalogue.
    pub fn collector_of(
        &self,
        p: &Principal,
    ) -> Result<(store::Merchant, FeeCatalogue), SwitchError> {
        if p.role != Role::Merchant {
            return Err(SwitchError::new(
                ErrorCode::PermissionDenied,
                "only a fee collector's desk may do this",
            ));
        }
        let m = self
            .store
            .merchant(&p.id)
            .map_err(storage)?
            .ok_or_else(|| SwitchError::new(ErrorCode::UnknownMerchant, "no such merchant"))?;
        if m.mcc != COLLECTOR_MCC {
            return Err(SwitchError::new(
                ErrorCode::PermissionDenied,
                "this merchant is not a fee collector (MCC 9399)",
            ));
        }
        let catalogue = self
            .store
            .fee_catalogue(&m.id)
            .map_err(storage)?
            .unwrap_or(FeeCatalogue {
                collector_id: m.id.clone(),
                items: Vec::new(),
            });
        Ok((m, catalogue))
    }

    /// A commune's name ("Thị trấn Thổ Tang"), for receipts; empty when
    /// unknown.
    pub fn commune_name(&self, id: &str) -> Result<String, SwitchError> {
        Ok(self
            .store
            .commune(id)
            .map_err(storage)?
            .map(|c| c.name)
            .unwrap_or_default())
    }

    /// Replace a collector's catalogue (operators).
    pub async fn set_fee_catalogue(
        &self,
        p: &Principal,
        collector_id: &str,
        items: Vec<FeeItem>,
    ) -> Result<(store::Merchant, FeeCatalogue), SwitchError> {
        if p.role != Role::Operator {
            return Err(SwitchError::new(
                ErrorCode::PermissionDenied,
                "only operators set fee catalogues",
            ));
        }
        let m = self
            .store
            .merchant(collector_id)
            .map_err(storage)?
            .ok_or_else(|| SwitchError::new(ErrorCode::UnknownMerchant, "no such collector"))?;
        if m.mcc != COLLECTOR_MCC {
            return Err(SwitchError::invalid(format!(
                "{collector_id} is not a fee collector: provision it with MCC {COLLECTOR_MCC}"
            )));
        }
        check_items(&items)?;
        let c = FeeCatalogue {
            collector_id: m.id.clone(),
            items,
        };
        self.store.put_fee_catalogue(&c).map_err(storage)?;
        self.store.durable().await.map_err(storage)?;
        tracing::info!(collector = %c.collector_id, items = c.items.len(), "fee catalogue set");
        Ok((m, c))
    }

    /// A dossier's fees as a dynamic VietQR to the collector's account.
    pub async fn create_fee_request(
        &self,
        p: &Principal,
        request_id: &str,
        dossier_code: &str,
        lines: &[(String, u32)],
        expires_in_ms: u64,
    ) -> Result<(FeeRequest, Order), SwitchError> {
        let (m, catalogue) = self.collector_of(p)?;
        if !valid_dossier(dossier_code) {
            return Err(SwitchError::invalid(
                "dossier_code must be 1 to 25 of [A-Za-z0-9.-/]",
            ));
        }
        let (priced, total) = price(&catalogue, lines)?;
        if total == 0 {
            return Err(SwitchError::invalid("these items are free: nothing to pay"));
        }
        let order = self.create_qr(p, request_id, total, dossier_code, PURPOSE, expires_in_ms)?;
        let request = FeeRequest {
            qr_id: order.qr_id.clone(),
            collector_id: m.id.clone(),
            dossier_code: dossier_code.to_string(),
            lines: priced,
            total,
            created_at_ms: order.created_at_ms,
        };
        match self.store.fee_request(&order.qr_id).map_err(storage)? {
            // A retry: the request it made.
            Some(kept) if kept.lines == request.lines => return Ok((kept, order)),
            Some(_) => {
                return Err(SwitchError::new(
                    ErrorCode::RequestIdReused,
                    format!("client_request_id {request_id} was used for other items"),
                ));
            }
            None => {}
        }
        self.store.put_fee_request(&request).map_err(storage)?;
        self.store.durable().await.map_err(storage)?;
        tracing::info!(collector = %m.id, qr_id = %order.qr_id, total, "fee request issued");
        Ok((request, order))
    }

    /// A collector's fee request, with the transaction that paid it.
    pub fn fee_request(
        &self,
        p: &Principal,
        qr_id: &str,
    ) -> Result<(FeeRequest, Order, Option<TxRecord>), SwitchError> {
        let (m, _) = self.collector_of(p)?;
        let not_found =
            || SwitchError::new(ErrorCode::QrUnknown, format!("no fee request {qr_id}"));
        let request = self
            .store
            .fee_request(qr_id)
            .map_err(storage)?
            .ok_or_else(not_found)?;
        if request.collector_id != m.id {
            return Err(not_found());
        }
        let order = self
            .store
            .order(qr_id)
            .map_err(storage)?
            .ok_or_else(|| storage("a fee request names no order"))?;
        let paid = match self
            .store
            .claim_holder(&store::order_claim(qr_id))
            .map_err(storage)?
        {
            // The claim holds the paying transaction's id (16 bytes), or
            // "closed" for a code that expired unpaid.
            Some(holder) => match <[u8; 16]>::try_from(holder.as_slice())
                .ok()
                .and_then(|b| TxId::from_u128(u128::from_be_bytes(b)))
            {
                Some(id) => self
                    .store
                    .get_tx(id)
                    .map_err(storage)?
                    .filter(|t| t.status == Status::Completed),
                None => None,
            },
            None => None,
        };
        Ok((request, order, paid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> FeeCatalogue {
        let item = |code: &str, price: u64| FeeItem {
            code: code.into(),
            name: format!("item {code}"),
            unit_price: price,
            unit: "trang".into(),
            legal_basis: "Thông tư 226/2016/TT-BTC".into(),
        };
        FeeCatalogue {
            collector_id: "ubnd-tho-tang".into(),
            items: vec![
                item("CT-BS", 2_000),
                item("TRICH-LUC", 8_000),
                item("MIEN", 0),
            ],
        }
    }

    #[test]
    fn fees_are_priced_from_the_catalogue() {
        let (lines, total) = price(
            &catalogue(),
            &[
                ("CT-BS".into(), 5),
                ("TRICH-LUC".into(), 2),
                ("MIEN".into(), 1),
            ],
        )
        .unwrap();
        assert_eq!(total, 5 * 2_000 + 2 * 8_000);
        assert_eq!(lines[0].amount, 10_000);
        assert_eq!(lines[2].amount, 0);
        for bad in [
            vec![],
            vec![("CT-BS".to_string(), 0)],
            vec![("CT-BS".to_string(), QUANTITY_MAX + 1)],
            vec![("CT-BS".to_string(), 1), ("CT-BS".to_string(), 1)],
        ] {
            assert!(price(&catalogue(), &bad).is_err(), "{bad:?}");
        }
        let unknown = price(&catalogue(), &[("NOPE".into(), 1)]).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::UnknownFeeItem);
    }

    #[test]
    fn catalogues_are_checked() {
        assert!(check_items(&catalogue().items).is_ok());
        let mut twice = catalogue().items;
        twice.push(twice[0].clone());
        assert!(check_items(&twice).is_err());
        let mut lower = catalogue().items;
        lower[0].code = "ct-bs".into();
        assert!(check_items(&lower).is_err());
        assert!(valid_dossier("000.00.12.H62-261207-0001") && !valid_dossier("hồ sơ"));
    }
}
