//! Receipts on paper: what the counter hands the customer, in Vietnamese.
//!
//! A receipt is laid out once ([`Receipt::lines`], from a transaction and
//! what the counter knows: its post office's name, the teller) and drawn
//! as a raster ([`render`]), which is printed on an ESC/POS thermal printer
//! ([`escpos`]) or saved as PNG or PDF for a reprint. Printers' code pages
//! lack most precomposed Vietnamese letters (CP1258 cannot encode NFC text
//! without replacing some), so the text is always drawn, never sent as
//! characters.

pub mod escpos;
pub mod pdf;
pub mod render;
pub mod words;

use proto::v1 as pb;

/// Paper a receipt printer takes: its printable width in dots (203 dpi).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paper {
    /// 58 mm rolls: 48 mm printable, 384 dots.
    Mm58,
    /// 80 mm rolls: 72 mm printable, 576 dots.
    Mm80,
}

impl Paper {
    pub fn width_dots(self) -> u32 {
        match self {
            Paper::Mm58 => 384,
            Paper::Mm80 => 576,
        }
    }

    pub fn parse(s: &str) -> Result<Paper, String> {
        match s {
            "58" | "58mm" => Ok(Paper::Mm58),
            "80" | "80mm" => Ok(Paper::Mm80),
            _ => Err(format!("paper is 58 or 80 (mm), not {s:?}")),
        }
    }
}

/// How a line is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// The post office's name and the receipt's title: large, bold,
    /// centred.
    Title,
    /// Centred body text.
    Centre,
    /// A label on the left and its value on the right.
    Pair,
    /// A pair in bold (the total).
    Strong,
    /// Small text (the transaction id, the footer).
    Small,
    /// A horizontal rule.
    Rule,
    /// A blank line for a signature, with its caption.
    Signature,
    /// The transaction id as a QR code, for look-ups.
    Qr,
}

/// One line of a receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub style: Style,
    pub left: String,
    pub right: String,
}

impl Line {
    fn new(style: Style, left: impl Into<String>, right: impl Into<String>) -> Line {
        Line {
            style,
            left: left.into(),
            right: right.into(),
        }
    }
}

/// What the counter adds to a transaction: who and where.
#[derive(Clone, Debug, Default)]
pub struct Counter {
    /// The post office's name as printed ("Bưu điện Thổ Tang"); empty: its
    /// id from the transaction.
    pub post_office_name: String,
    /// The teller who served the customer; empty: not printed.
    pub teller: String,
}

impl Counter {
    /// The post office as a shift report or voucher heads it ("BƯU ĐIỆN
    /// THỔ TANG"; without a name, "BƯU ĐIỆN").
    fn office_title(&self) -> String {
        if self.post_office_name.is_empty() {
            "BƯU ĐIỆN".to_string()
        } else {
            self.post_office_name.to_uppercase()
        }
    }
}

/// A receipt laid out as lines.
#[derive(Clone, Debug)]
pub struct Receipt {
    pub lines: Vec<Line>,
}

/// `1234567` → `1.234.567 ₫`, as Vietnamese amounts are written.
pub fn vnd(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3 + 4);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out.push_str(" ₫");
    out
}

/// `dd/mm/yyyy HH:MM:SS` in Vietnam's time (UTC+7, no daylight saving).
pub fn vietnam_time(ms: i64) -> String {
    let offset = time::UtcOffset::from_whole_seconds(7 * 3_600).expect("UTC+7 is an offset");
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.checked_to_offset(offset))
    {
        Some(t) => format!(
            "{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
            t.day(),
            u8::from(t.month()),
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => format!("{ms} ms"),
    }
}

fn title(kind: pb::TxKind) -> &'static str {
    match kind {
        pb::TxKind::CashIn => "NỘP TIỀN VÀO TÀI KHOẢN",
        pb::TxKind::CashOut => "RÚT TIỀN MẶT",
        pb::TxKind::QrPayment => "THANH TOÁN QR",
        pb::TxKind::BillPayment => "THANH TOÁN HÓA ĐƠN",
        pb::TxKind::TopUp => "NẠP TIỀN ĐIỆN THOẠI",
        pb::TxKind::Unspecified => "GIAO DỊCH",
    }
}

fn status(s: pb::TxStatus) -> &'static str {
    match s {
        pb::TxStatus::Completed => "THÀNH CÔNG",
        pb::TxStatus::Pending => "ĐANG CHỜ XỬ LÝ",
        pb::TxStatus::Failed => "KHÔNG THÀNH CÔNG",
        pb::TxStatus::Reversed => "ĐÃ HOÀN TRẢ",
        pb::TxStatus::Unspecified => "-",
    }
}

impl Receipt {
    /// The receipt of `t` as the counter `at` prints it.
    pub fn of(t: &pb::Transaction, at: &Counter) -> Receipt {
        use Style::*;
        let kind = t.kind();
        let mut l = Vec::new();
        let office = if at.post_office_name.is_empty() {
            format!("Bưu điện {}", t.post_office_id)
        } else {
            at.post_office_name.clone()
        };
        l.push(Line::new(Title, office.to_uppercase(), ""));
        l.push(Line::new(Title, title(kind), ""));
        l.push(Line::new(Rule, "", ""));
        l.push(Line::new(Pair, "Thời gian", vietnam_time(t.created_at_ms)));
        l.push(Line::new(Pair, "Quầy", t.terminal_id.clone()));
        // The record's teller (who served), else the one reprinting.
        let teller = if t.teller.is_empty() {
            &at.teller
        } else {
            &t.teller
        };
        if !teller.is_empty() {
            l.push(Line::new(Pair, "Giao dịch viên", teller.clone()));
        }
        l.push(Line::new(Small, "Mã giao dịch", ""));
        l.push(Line::new(Small, t.transaction_id.clone(), ""));
        l.push(Line::new(Rule, "", ""));
        match kind {
            pb::TxKind::TopUp => {
                l.push(Line::new(Pair, "Nhà mạng", t.biller.clone()));
                l.push(Line::new(Pair, "Số thuê bao", t.bill_customer.clone()));
            }
            pb::TxKind::BillPayment => {
                l.push(Line::new(Pair, "Nhà cung cấp", t.biller.clone()));
                l.push(Line::new(Pair, "Mã khách hàng", t.bill_customer.clone()));
                for b in &t.bill_ids {
                    l.push(Line::new(Pair, "Hóa đơn", b.clone()));
                }
            }
            _ => {}
        }
        let card = !t.card_token.is_empty();
        if !t.bank_bin.is_empty()
            && (card || kind != pb::TxKind::BillPayment || t.funding != "cash")
        {
            l.push(Line::new(
                Pair,
                "Ngân hàng",
                format!("{} ({})", t.bank_name, t.bank_bin),
            ));
            let label = if card { "Thẻ" } else { "Tài khoản" };
            l.push(Line::new(Pair, label, t.account_masked.clone()));
        }
        if !t.account_name.is_empty() && kind != pb::TxKind::BillPayment {
            l.push(Line::new(Pair, "Chủ tài khoản", t.account_name.clone()));
        }
        if !t.funding.is_empty() {
            let how = match t.funding.as_str() {
                "cash" => "Tiền mặt",
                "account" => "Tài khoản",
                "qr" => "Mã QR",
                "card" => "Thẻ",
                other => other,
            };
            l.push(Line::new(Pair, "Hình thức", how));
        }
        l.push(Line::new(Rule, "", ""));
        let total = t.amount.saturating_add(t.fee);
        l.push(Line::new(Pair, "Số tiền", vnd(t.amount)));
        l.push(Line::new(Pair, "Phí", vnd(t.fee)));
        l.push(Line::new(Strong, "Tổng cộng", vnd(total)));
        l.push(Line::new(
            Centre,
            format!("({})", words::vnd_in_words(total)),
            "",
        ));
        l.push(Line::new(Pair, "Trạng thái", status(t.status())));
        if !t.error_message.is_empty() {
            l.push(Line::new(Small, format!("Lý do: {}", t.error_message), ""));
        }
        if !t.bank_reference.is_empty() {
            l.push(Line::new(Pair, "Tham chiếu", t.bank_reference.clone()));
        }
        if kind == pb::TxKind::CashOut {
            l.push(Line::new(Signature, "Chữ ký khách hàng", ""));
        }
        l.push(Line::new(Qr, t.transaction_id.clone(), ""));
        l.push(Line::new(Centre, "Cảm ơn quý khách!", ""));
        Receipt { lines: l }
    }
}

/// What a shift report prints: the counted drawer by denomination and the
/// variance the switch found at close.
#[derive(Clone, Debug, Default)]
pub struct ShiftReport {
    pub shift_id: String,
    pub terminal_id: String,
    pub teller: String,
    pub opened_at_ms: i64,
    pub closed_at_ms: i64,
    pub opening_cash: u64,
    /// (denomination, notes) counted at close, largest first.
    pub counted: Vec<(u64, u64)>,
    pub counted_cash: u64,
    pub expected_cash: u64,
    /// counted - expected: negative is a shortage.
    pub variance: i64,
    /// Transactions this counter completed during the shift, by kind
    /// label, with their count and total.
    pub totals: Vec<(String, u64, u64)>,
}

impl Receipt {
    /// The report a teller prints when closing a shift.
    pub fn shift(r: &ShiftReport, at: &Counter) -> Receipt {
        use Style::*;
        let mut l = vec![
            Line::new(Title, at.office_title(), ""),
            Line::new(Title, "BÁO CÁO CA LÀM VIỆC", ""),
            Line::new(Rule, "", ""),
        ];
        l.push(Line::new(Pair, "Quầy", r.terminal_id.clone()));
        if !r.teller.is_empty() {
            l.push(Line::new(Pair, "Giao dịch viên", r.teller.clone()));
        }
        l.push(Line::new(Pair, "Mở ca", vietnam_time(r.opened_at_ms)));
        l.push(Line::new(Pair, "Đóng ca", vietnam_time(r.closed_at_ms)));
        l.push(Line::new(Small, format!("Ca {}", r.shift_id), ""));
        l.push(Line::new(Rule, "", ""));
        for (kind, n, total) in &r.totals {
            l.push(Line::new(Pair, format!("{kind} ({n})"), vnd(*total)));
        }
        if !r.totals.is_empty() {
            l.push(Line::new(Rule, "", ""));
        }
        for (denomination, notes) in r.counted.iter().filter(|(_, n)| *n > 0) {
            l.push(Line::new(
                Pair,
                format!("{} × {notes}", vnd(*denomination)),
                vnd(denomination.saturating_mul(*notes)),
            ));
        }
        l.push(Line::new(Pair, "Tiền đầu ca", vnd(r.opening_cash)));
        l.push(Line::new(Pair, "Tiền đếm được", vnd(r.counted_cash)));
        l.push(Line::new(Pair, "Theo sổ", vnd(r.expected_cash)));
        let variance = if r.variance < 0 {
            format!("-{}", vnd(r.variance.unsigned_abs()))
        } else {
            vnd(r.variance as u64)
        };
        l.push(Line::new(Strong, "Chênh lệch", variance));
        l.push(Line::new(Signature, "Giao dịch viên ký", ""));
        l.push(Line::new(Signature, "Trưởng bưu cục ký", ""));
        Receipt { lines: l }
    }
}

/// What a provisional voucher prints: a request the counter took while it
/// could not reach the switch, queued to be forwarded.
#[derive(Clone, Debug, Default)]
pub struct Voucher {
    /// The counter's own number for it (`tho-tang-1-T000001`).
    pub number: String,
    pub terminal_id: String,
    pub teller: String,
    pub taken_at_ms: i64,
    /// What it pays ("Nạp tiền điện thoại"), and for whom.
    pub title: String,
    pub label: String,
    pub amount: u64,
    pub fee: u64,
}

impl Receipt {
    /// BIÊN NHẬN TẠM: the customer's proof until the final receipt.
    pub fn voucher(v: &Voucher, at: &Counter) -> Receipt {
        use Style::*;
        let mut l = vec![
            Line::new(Title, at.office_title(), ""),
            Line::new(Title, "BIÊN NHẬN TẠM", ""),
            Line::new(Centre, v.title.clone(), ""),
            Line::new(Rule, "", ""),
        ];
        l.push(Line::new(Pair, "Thời gian", vietnam_time(v.taken_at_ms)));
        l.push(Line::new(Pair, "Quầy", v.terminal_id.clone()));
        if !v.teller.is_empty() {
            l.push(Line::new(Pair, "Giao dịch viên", v.teller.clone()));
        }
        l.push(Line::new(Pair, "Số biên nhận", v.number.clone()));
        l.push(Line::new(Centre, v.label.clone(), ""));
        l.push(Line::new(Rule, "", ""));
        let total = v.amount.saturating_add(v.fee);
        l.push(Line::new(Pair, "Số tiền", vnd(v.amount)));
        l.push(Line::new(Pair, "Phí", vnd(v.fee)));
        l.push(Line::new(Strong, "Đã thu", vnd(total)));
        l.push(Line::new(
            Centre,
            format!("({})", words::vnd_in_words(total)),
            "",
        ));
        l.push(Line::new(Rule, "", ""));
        l.push(Line::new(
            Small,
            "Quầy đang mất kết nối. Giao dịch được gửi khi có kết nối;",
            "",
        ));
        l.push(Line::new(
            Small,
            "biên lai chính thức in sau. Nếu không thành công, quý khách",
            "",
        ));
        l.push(Line::new(Small, "được hoàn lại tiền tại quầy.", ""));
        l.push(Line::new(Qr, v.number.clone(), ""));
        Receipt { lines: l }
    }
}

impl Receipt {
    /// BIÊN LAI THU PHÍ, LỆ PHÍ: a dossier's fees paid at a commune's
    /// one-stop desk (issue #30).
    pub fn fee(r: &pb::FeeRequest) -> Receipt {
        use Style::*;
        let mut l = Vec::new();
        let commune = if r.commune_name.is_empty() {
            r.collector_name.clone()
        } else {
            format!("UBND {}", r.commune_name)
        };
        l.push(Line::new(Title, commune.to_uppercase(), ""));
        l.push(Line::new(Centre, "Bộ phận một cửa", ""));
        l.push(Line::new(Title, "BIÊN LAI THU PHÍ, LỆ PHÍ", ""));
        l.push(Line::new(Rule, "", ""));
        l.push(Line::new(Pair, "Mã hồ sơ", r.dossier_code.clone()));
        let at = if r.paid_at_ms > 0 {
            r.paid_at_ms
        } else {
            r.created_at_ms
        };
        l.push(Line::new(Pair, "Thời gian", vietnam_time(at)));
        l.push(Line::new(Rule, "", ""));
        for line in &r.lines {
            l.push(Line::new(Centre, line.name.clone(), ""));
            l.push(Line::new(
                Pair,
                format!("{} {} × {}", line.quantity, line.unit, vnd(line.unit_price)),
                vnd(line.amount),
            ));
        }
        l.push(Line::new(Rule, "", ""));
        l.push(Line::new(Strong, "Tổng cộng", vnd(r.total)));
        l.push(Line::new(
            Centre,
            format!("({})", words::vnd_in_words(r.total)),
            "",
        ));
        l.push(Line::new(Pair, "Hình thức", "Chuyển khoản (VietQR)"));
        let paid = !r.transaction_id.is_empty();
        l.push(Line::new(
            Pair,
            "Trạng thái",
            if paid {
                "ĐÃ THANH TOÁN"
            } else {
                "CHƯA THANH TOÁN"
            },
        ));
        if paid {
            l.push(Line::new(Small, "Mã giao dịch", ""));
            l.push(Line::new(Small, r.transaction_id.clone(), ""));
            l.push(Line::new(Qr, r.transaction_id.clone(), ""));
        }
        if let Some(basis) = r
            .lines
            .first()
            .map(|x| x.legal_basis.clone())
            .filter(|b| !b.is_empty())
        {
            l.push(Line::new(Small, format!("Căn cứ: {basis}"), ""));
        }
        Receipt { lines: l }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_times_are_written_the_vietnamese_way() {
        assert_eq!(vnd(500_000), "500.000 ₫");
        assert_eq!(vnd(1_234_567), "1.234.567 ₫");
        assert_eq!(vnd(0), "0 ₫");
        // 2026-11-30 17:00 UTC is midnight on 1 December in Vietnam.
        assert_eq!(vietnam_time(1_796_058_000_000), "01/12/2026 00:00:00");
        assert_eq!(vietnam_time(1_796_058_000_000 - 1), "30/11/2026 23:59:59");
    }
}
