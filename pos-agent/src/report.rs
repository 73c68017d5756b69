//! The pilot report as an operator takes it away (issue #28): a table to
//! read, JSON, CSV, or an XLSX workbook with a Vietnamese title block and
//! one sheet per view (the province, the communes, the post offices, the
//! merchants).
//!
//! Every format is made from the same rows ([`rows`]): one per unit and
//! product, and one per unit with the product `total`, which carries the
//! unit's indicators (active terminals and merchants, new merchants,
//! distinct customers, bills and the cashless ones, card payments).

use proto::v1 as pb;

/// The columns, as CSV names them.
pub const COLUMNS: [&str; 19] = [
    "level",
    "id",
    "name",
    "commune",
    "product",
    "count",
    "value",
    "failed",
    "reversed",
    "previous_count",
    "previous_value",
    "active_terminals",
    "active_merchants",
    "new_merchants",
    "distinct_customers",
    "bills",
    "bills_cashless",
    "card_count",
    "card_value",
];

/// The same columns in Vietnamese, for the workbook.
const HEADERS_VI: [&str; 19] = [
    "Cấp",
    "Mã",
    "Đơn vị",
    "Xã",
    "Sản phẩm",
    "Số giao dịch",
    "Giá trị (đồng)",
    "Không thành công",
    "Đã hoàn trả",
    "Số GD kỳ trước",
    "Giá trị kỳ trước (đồng)",
    "Quầy hoạt động",
    "Đơn vị QR hoạt động",
    "Đơn vị QR mới",
    "Khách hàng",
    "Hóa đơn",
    "Hóa đơn không tiền mặt",
    "GD thẻ",
    "Giá trị thẻ (đồng)",
];

/// A cell: text or a whole number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Text(String),
    Number(u64),
    Empty,
}

/// A product's name as the report prints it in Vietnamese.
pub fn product_vi(p: &str) -> &str {
    match p {
        "cash_in" => "Nộp tiền vào tài khoản",
        "cash_out" => "Rút tiền mặt",
        "bill_electricity" => "Hóa đơn điện",
        "bill_water" => "Hóa đơn nước",
        "bill_internet" => "Hóa đơn internet",
        "bill_telecom_tv" => "Hóa đơn viễn thông, truyền hình",
        "bill_other" => "Hóa đơn khác",
        "top_up" => "Nạp tiền điện thoại",
        "merchant_qr" => "Thanh toán QR tại đơn vị",
        "public_fees" => "Phí, lệ phí tại bộ phận một cửa",
        "total" => "Tổng cộng",
        other => other,
    }
}

/// Every row of the report, in the order of its units.
pub fn rows(r: &pb::PilotReport) -> Vec<Vec<Cell>> {
    let mut out = Vec::new();
    for u in &r.units {
        let head = |product: &str| {
            vec![
                Cell::Text(u.level.clone()),
                Cell::Text(u.id.clone()),
                Cell::Text(u.name.clone()),
                Cell::Text(u.commune.clone()),
                Cell::Text(product.to_string()),
            ]
        };
        let (mut count, mut value, mut failed, mut reversed, mut pc, mut pv) = (0, 0, 0, 0, 0, 0);
        for p in &u.products {
            count += p.count;
            value += p.value;
            failed += p.failed;
            reversed += p.reversed;
            pc += p.previous_count;
            pv += p.previous_value;
            let mut row = head(&p.product);
            row.extend(
                [
                    p.count,
                    p.value,
                    p.failed,
                    p.reversed,
                    p.previous_count,
                    p.previous_value,
                ]
                .map(Cell::Number),
            );
            row.extend(std::iter::repeat_n(Cell::Empty, 8));
            out.push(row);
        }
        let mut total = head("total");
        total.extend(
            [
                count,
                value,
                failed,
                reversed,
                pc,
                pv,
                u.active_terminals,
                u.active_merchants,
                u.new_merchants,
                u.distinct_customers,
                u.bills,
                u.bills_cashless,
                u.card_count,
                u.card_value,
            ]
            .map(Cell::Number),
        );
        out.push(total);
    }
    out
}

fn cell_text(c: &Cell) -> String {
    match c {
        Cell::Text(s) => s.clone(),
        Cell::Number(n) => n.to_string(),
        Cell::Empty => String::new(),
    }
}

/// RFC 4180 CSV: a header and every row.
pub fn csv(r: &pb::PilotReport) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for row in rows(r) {
        out.push_str(
            &row.iter()
                .map(|c| quote(&cell_text(c)))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
    }
    out
}

/// `1234567` as `1.234.567`.
fn dots(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out
}

/// The change from `before` to `now`, as a percentage (one decimal,
/// computed in integers).
pub fn change(now: u64, before: u64) -> String {
    if before == 0 {
        return if now == 0 {
            "0%".into()
        } else {
            "mới".into()
        };
    }
    let tenths = (i128::from(now) - i128::from(before)) * 1000 / i128::from(before);
    let sign = if tenths < 0 { "-" } else { "+" };
    format!("{sign}{}.{}%", tenths.abs() / 10, tenths.abs() % 10)
}

/// A table to read at a terminal.
pub fn table(r: &pb::PilotReport) -> String {
    let mut out = format!(
        "BÁO CÁO KẾT QUẢ THÍ ĐIỂM THANH TOÁN KHÔNG DÙNG TIỀN MẶT\nKỳ {} ({} – {}), so với kỳ {}{}\n",
        r.period,
        r.first_day,
        r.last_day,
        r.previous_period,
        if r.bank_bin.is_empty() {
            String::new()
        } else {
            format!("; khách hàng của ngân hàng {}", r.bank_bin)
        }
    );
    for u in &r.units {
        out.push_str(&format!(
            "\n== {} [{}{}]\n",
            u.name,
            u.level,
            if u.id.is_empty() {
                String::new()
            } else {
                format!(" {}", u.id)
            }
        ));
        for p in &u.products {
            out.push_str(&format!(
                "  {:<34} {:>7} GD {:>18} đ  ({} GD so với kỳ trước)  lỗi {} hoàn {}\n",
                product_vi(&p.product),
                p.count,
                dots(p.value),
                change(p.count, p.previous_count),
                p.failed,
                p.reversed
            ));
        }
        let cashless = (u.bills_cashless * 100)
            .checked_div(u.bills)
            .map_or_else(|| "-".to_string(), |p| format!("{p}%"));
        out.push_str(&format!(
            "  quầy hoạt động {}, đơn vị QR hoạt động {} (mới {}), khách hàng {}, hóa đơn không tiền mặt {cashless}, thẻ {} GD\n",
            u.active_terminals, u.active_merchants, u.new_merchants, u.distinct_customers, u.card_count
        ));
    }
    out
}

/// The workbook: a title block (the province, the period, the date made)
/// on every sheet, one sheet per view.
pub fn xlsx(r: &pb::PilotReport, made_on: &str) -> Result<Vec<u8>, String> {
    use rust_xlsxwriter::{Format, Workbook};
    let e = |e: rust_xlsxwriter::XlsxError| e.to_string();
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let title = Format::new().set_bold().set_font_size(14);
    let money = Format::new().set_num_format("#,##0");
    let all = rows(r);
    let views = [
        ("province", "Toàn tỉnh"),
        ("commune", "Theo xã"),
        ("post_office", "Theo bưu điện"),
        ("merchant", "Đơn vị QR"),
    ];
    for (level, sheet_name) in views {
        let sheet = book.add_worksheet();
        sheet.set_name(sheet_name).map_err(e)?;
        sheet
            .write_string_with_format(0, 0, "UBND TỈNH VĨNH PHÚC", &bold)
            .map_err(e)?;
        sheet
            .write_string_with_format(
                1,
                0,
                "BÁO CÁO KẾT QUẢ THÍ ĐIỂM THANH TOÁN KHÔNG DÙNG TIỀN MẶT",
                &title,
            )
            .map_err(e)?;
        sheet
            .write_string(
                2,
                0,
                format!(
                    "Kỳ báo cáo: {} (từ {} đến {}); so với kỳ {}",
                    r.period, r.first_day, r.last_day, r.previous_period
                ),
            )
            .map_err(e)?;
        sheet
            .write_string(3, 0, format!("Ngày lập: {made_on}"))
            .map_err(e)?;
        for (c, h) in HEADERS_VI.iter().enumerate() {
            sheet
                .write_string_with_format(5, c as u16, *h, &bold)
                .map_err(e)?;
        }
        let lines = all
            .iter()
            .filter(|cells| cells[0] == Cell::Text(level.to_string()));
        for (row, cells) in (6u32..).zip(lines) {
            for (c, cell) in cells.iter().enumerate() {
                let col = c as u16;
                match cell {
                    Cell::Text(s) if c == 4 => {
                        sheet.write_string(row, col, product_vi(s)).map_err(e)?;
                    }
                    Cell::Text(s) => {
                        sheet.write_string(row, col, s).map_err(e)?;
                    }
                    // Whole numbers well under 2^53: exact in a cell.
                    Cell::Number(n) => {
                        sheet
                            .write_number_with_format(row, col, *n as f64, &money)
                            .map_err(e)?;
                    }
                    Cell::Empty => {}
                }
            }
        }
        sheet.set_column_width(2, 28).map_err(e)?;
        sheet.set_column_width(4, 32).map_err(e)?;
    }
    book.save_to_buffer().map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_read_as_percentages_in_whole_tenths() {
        assert_eq!(change(110, 100), "+10.0%");
        assert_eq!(change(90, 100), "-10.0%");
        assert_eq!(change(1, 3), "-66.6%");
        assert_eq!(change(5, 0), "mới");
        assert_eq!(change(0, 0), "0%");
    }
}
