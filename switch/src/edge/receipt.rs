//! Printable receipts: what the counter hands the customer.

use crate::fees::grouped;
use crate::store::{self, TxRecord};

pub fn bank_name(bin: &str) -> String {
    qr::bank_by_bin(bin).map_or_else(|| bin.to_string(), |b| b.short_name.to_string())
}
/// A printable receipt.
pub fn receipt(t: &TxRecord) -> String {
    let title = match t.kind {
        store::Kind::CashIn => "NOP TIEN VAO TAI KHOAN / CASH-IN",
        store::Kind::CashOut => "RUT TIEN MAT / CASH-OUT",
        store::Kind::QrPayment => "THANH TOAN QR / QR PAYMENT",
        store::Kind::BillPayment => "THANH TOAN HOA DON / BILL PAYMENT",
        store::Kind::TopUp => "NAP TIEN DIEN THOAI / MOBILE TOP-UP",
    };
    let header = if t.post_office_id.is_empty() {
        "VIETQR".to_string()
    } else {
        format!("BUU DIEN {}", t.post_office_id.to_uppercase())
    };
    let mut r = format!(
        "{header}\n{title}\nMa GD / Tx:      {}\nThoi gian:       {}\n",
        t.id,
        crate::civil::date_time(t.created_at_ms),
    );
    if !t.bank_bin.is_empty() {
        let label = if t.card_token.is_some() {
            "The / Card:     "
        } else {
            "Tai khoan:      "
        };
        r.push_str(&format!(
            "Ngan hang:       {} ({})\n{label} {}\n",
            bank_name(&t.bank_bin),
            t.bank_bin,
            t.account_shown(),
        ));
    }
    if let Some(m) = &t.merchant {
        r.push_str(&format!("Don vi / Merchant: {}\n", m.merchant_id));
        if let Some(o) = &m.order_reference {
            r.push_str(&format!("Don hang / Order: {o}\n"));
        }
    }
    if let (Some(b), store::Kind::TopUp) = (&t.bill, t.kind) {
        r.push_str(&format!(
            "Nha mang / Network: {}\nSo thue bao / Phone: {}\n",
            b.biller, b.customer
        ));
    } else if let Some(b) = &t.bill {
        r.push_str(&format!(
            "Nha cung cap:    {}\nMa KH / Customer: {} {}\n",
            b.biller, b.customer, b.customer_name
        ));
        for x in &b.bills {
            r.push_str(&format!(
                "  Ky {}:      {} VND\n",
                x.period,
                grouped(x.amount)
            ));
        }
    }
    if !t.account_name.is_empty() && t.bill.is_none() {
        r.push_str(&format!("Chu tai khoan:   {}\n", t.account_name));
    }
    r.push_str(&format!(
        "So tien:         {} VND\nPhi / Fee:       {} VND\nTong / Total:    {} VND\nTrang thai:      {}\n",
        grouped(t.amount),
        grouped(t.fee.total),
        grouped(t.amount + t.fee.total),
        crate::flows::status_label(t.status).to_uppercase()
    ));
    if let Some(reference) = &t.bank_reference {
        r.push_str(&format!("Tham chieu/Ref:  {reference}\n"));
    }
    if let Some(m) = &t.error_message {
        r.push_str(&format!("Ly do / Reason:  {m}\n"));
    }
    r.push_str(&format!("Quay / Terminal: {}\n", t.terminal_id));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_for_a_receipt() {
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(100), "100");
    }
}
