//! Every word the counter's screen shows, in Vietnamese first and in
//! English as a switch; refusals as sentences a teller can say to the
//! customer.

use crate::receipt::vnd;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Vi,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Lang {
        if s == "en" { Lang::En } else { Lang::Vi }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Vi => Lang::En,
            Lang::En => Lang::Vi,
        }
    }
}

macro_rules! messages {
    ($($name:ident => $vi:literal, $en:literal;)*) => {
        /// A label or message of the screen.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum M { $($name,)* }

        impl M {
            pub const ALL: &'static [M] = &[$(M::$name,)*];

            pub fn text(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $((M::$name, Lang::Vi) => $vi, (M::$name, Lang::En) => $en,)*
                }
            }
        }
    };
}

messages! {
    AppTitle => "Quầy giao dịch", "Counter";
    SignIn => "Đăng nhập", "Sign in";
    SignOut => "Đăng xuất", "Sign out";
    TellerName => "Tên đăng nhập", "Sign-in name";
    Password => "Mật khẩu", "Password";
    WrongPassword => "Tên đăng nhập hoặc mật khẩu không đúng.", "The name or the password is not right.";
    SessionEnded => "Phiên làm việc đã hết hạn. Vui lòng đăng nhập lại.", "The session has ended. Please sign in again.";
    Language => "English", "Tiếng Việt";
    Teller => "Giao dịch viên", "Teller";
    Terminal => "Quầy", "Counter";
    EFloat => "Số dư ký quỹ (e-float)", "E-float balance";
    Headroom => "Hạn mức còn lại", "Limits left";
    TerminalDaily => "Quầy, hôm nay", "This counter, today";
    PostOfficeDaily => "Bưu cục, hôm nay", "Post office, today";
    PostOfficeMonthly => "Bưu cục, tháng này", "Post office, this month";
    CustomerDaily => "Khách hàng, hôm nay", "Customer, today";
    CustomerMonthly => "Khách hàng, tháng này", "Customer, this month";
    Unlimited => "không giới hạn", "unlimited";
    OpenShift => "Mở ca", "Open shift";
    CloseShift => "Đóng ca", "Close shift";
    CashIn => "Nộp tiền", "Cash-in";
    CashOut => "Rút tiền", "Cash-out";
    Bills => "Hóa đơn", "Bills";
    TopUp => "Nạp điện thoại", "Top-up";
    Today => "Giao dịch hôm nay", "Today's transactions";
    CustomerScreen => "Màn hình khách", "Customer screen";
    CountDrawer => "Đếm tiền trong két theo mệnh giá", "Count the drawer by denomination";
    Denomination => "Mệnh giá", "Denomination";
    Notes => "Số tờ", "Notes";
    Total => "Tổng cộng", "Total";
    ShiftOpened => "Đã mở ca.", "The shift is open.";
    ShiftClosed => "Đã đóng ca.", "The shift is closed.";
    NoShift => "Quầy chưa mở ca. Vui lòng đếm két và mở ca.", "No shift is open. Count the drawer and open one.";
    Expected => "Theo sổ", "Expected";
    Counted => "Đếm được", "Counted";
    Variance => "Chênh lệch", "Variance";
    Bank => "Ngân hàng (tên hoặc mã BIN)", "Bank (name or BIN)";
    BankShort => "Ngân hàng", "Bank";
    Account => "Số tài khoản", "Account number";
    Amount => "Số tiền (₫)", "Amount (₫)";
    Check => "Kiểm tra", "Check";
    Holder => "Chủ tài khoản", "Account holder";
    Fee => "Phí", "Fee";
    ToCollect => "Thu của khách", "Collect from the customer";
    ToPay => "Chi cho khách", "Pay the customer";
    Confirm => "Xác nhận", "Confirm";
    Back => "Quay lại", "Back";
    ConfirmHolder => "Đọc tên chủ tài khoản cho khách nghe trước khi xác nhận.", "Read the holder's name to the customer before confirming.";
    WithdrawalCode => "Mã rút tiền trên ứng dụng ngân hàng", "Withdrawal code from the bank app";
    PayOutNotes => "Chi cho khách", "Pay out";
    PaidOut => "Đã chi tiền", "Cash paid out";
    Cancel => "Hủy", "Cancel";
    Biller => "Nhà cung cấp", "Biller";
    CustomerCode => "Mã khách hàng", "Customer code";
    FindBills => "Tra cứu hóa đơn", "Find bills";
    Customer => "Khách hàng", "Customer";
    Period => "Kỳ", "Period";
    DueDate => "Hạn", "Due";
    NothingDue => "Khách hàng không còn hóa đơn nào phải trả.", "Nothing is due for this customer.";
    Funding => "Hình thức", "Paid by";
    FundCash => "Tiền mặt", "Cash";
    FundCard => "Thẻ", "Card";
    FundQr => "Mã QR", "QR code";
    CardNumber => "Số thẻ (khi trả bằng thẻ)", "Card number (for a card)";
    Pay => "Thanh toán", "Pay";
    Provider => "Nhà mạng", "Network";
    Phone => "Số điện thoại", "Phone number";
    Status => "Trạng thái", "Status";
    Completed => "Thành công", "Completed";
    Pending => "Đang chờ", "Pending";
    Failed => "Không thành công", "Failed";
    Reversed => "Đã hoàn trả", "Reversed";
    Printed => "Đã in biên lai.", "The receipt is printed.";
    NotPrinted => "Chưa in được biên lai", "The receipt did not print";
    Reprint => "In lại", "Reprint";
    NewTransaction => "Giao dịch mới", "New transaction";
    WaitingQr => "Mời khách quét mã QR trên màn hình khách.", "Ask the customer to scan the QR on the customer screen.";
    WaitingPin => "Mời khách nhập mã PIN trên bàn phím PIN.", "Ask the customer to enter the PIN on the PIN pad.";
    Search => "Tìm (mã GD, tài khoản, số tiền)", "Search (id, account, amount)";
    Time => "Giờ", "Time";
    Kind => "Loại", "Kind";
    Id => "Mã GD", "Id";
    NoTransactions => "Chưa có giao dịch nào hôm nay.", "No transactions today.";
    Welcome => "Xin chào quý khách", "Welcome";
    ScanToPay => "Quét mã để thanh toán", "Scan to pay";
    EnterPin => "Nhập mã PIN", "Enter the PIN";
    NoPinRequest => "Không có giao dịch nào chờ nhập PIN.", "No payment is waiting for a PIN.";
    PinSent => "Đã nhận mã PIN.", "The PIN was taken.";
    Keys => "Phím tắt: F2 nộp, F3 rút, F4 hóa đơn, F6 nạp ĐT, F7 hôm nay, F9 đóng ca, Esc quay lại", "Keys: F2 cash-in, F3 cash-out, F4 bills, F6 top-up, F7 today, F9 close, Esc back";
    ShiftReport => "Đã in báo cáo ca.", "The shift report is printed.";
    Refused => "Không thực hiện được", "Not done";
    Detail => "Chi tiết kỹ thuật", "Technical detail";
    BadAmount => "Số tiền phải là số nguyên đồng, ví dụ 500.000.", "An amount is whole đồng, such as 500.000.";
    BadBank => "Không rõ ngân hàng này. Gõ tên (MB, Vietcombank) hoặc mã BIN 6 số.", "Unknown bank. Type its name (MB, Vietcombank) or its six-digit BIN.";
    BadCount => "Số tờ phải là số nguyên.", "A count of notes is a whole number.";
    CsrfFailed => "Trang đã cũ. Vui lòng thử lại.", "The page was out of date. Please try again.";
    Offline => "Mất kết nối với hệ thống. Chỉ nhận nạp điện thoại và hóa đơn bằng tiền mặt.", "The switch cannot be reached. Only cash top-ups and bills are taken.";
    Queued => "Chờ gửi", "Waiting to send";
    RefundsDue => "Cần hoàn tiền cho khách", "Refunds owed";
    Voucher => "Đã nhận tiền và in biên nhận tạm. Giao dịch sẽ được gửi khi có kết nối.", "Cash taken and a provisional voucher printed. It is sent when the link is back.";
    VoucherNumber => "Số biên nhận", "Voucher";
    RefundReturned => "Đã trả lại tiền cho khách", "Cash handed back";
    Reason => "Lý do", "Reason";
    NoRefunds => "Không có khoản nào phải hoàn.", "Nothing is owed back.";
    OfflineNote => "Đang mất kết nối: dùng thông tin đã tra cứu trước đó.", "Offline: using what this counter looked up before.";
}

/// A refusal from the switch as the teller says it to the customer: the
/// limit and what is left of it, where the refusal is a limit's.
pub struct Refusal {
    pub code: String,
    /// The switch's own message (English, for support).
    pub detail: String,
    /// For a limit: its maximum and what is left, whole đồng.
    pub limit: Option<(u64, u64)>,
    /// For an amount out of range: the product's minimum and maximum.
    pub range: Option<(u64, u64)>,
}

impl Refusal {
    pub fn new(code: &str, detail: &str) -> Refusal {
        Refusal {
            code: code.to_string(),
            detail: detail.to_string(),
            limit: None,
            range: None,
        }
    }

    /// The sentence for the customer.
    pub fn sentence(&self, lang: Lang) -> String {
        let (max, left) = self
            .limit
            .map_or((String::new(), String::new()), |(m, l)| (vnd(m), vnd(l)));
        let (lo, hi) = self
            .range
            .map_or((String::new(), String::new()), |(a, b)| (vnd(a), vnd(b)));
        let vi = lang == Lang::Vi;
        match self.code.as_str() {
            "customer_daily_limit" if vi => format!(
                "Theo quy định, mỗi khách hàng chỉ được nộp và rút tiền mặt tổng cộng {max} mỗi ngày. Hôm nay quý khách chỉ còn được giao dịch {left}."
            ),
            "customer_daily_limit" => format!(
                "By regulation, a customer's cash deposits and withdrawals together are at most {max} a day. Today the customer can still do {left}."
            ),
            "customer_monthly_limit" if vi => format!(
                "Quý khách đã gần hết hạn mức nộp và rút tiền mặt trong tháng ({max}). Tháng này chỉ còn được giao dịch {left}."
            ),
            "customer_monthly_limit" => format!(
                "The customer's cash limit for the month is {max}; {left} is left this month."
            ),
            "post_office_daily_limit" if vi => format!(
                "Bưu cục đã gần hết hạn mức giao dịch trong ngày ({max}); hôm nay chỉ còn {left}. Mời quý khách quay lại vào ngày mai."
            ),
            "post_office_daily_limit" => format!(
                "The post office's limit for the day is {max}; only {left} is left today. Please come back tomorrow."
            ),
            "post_office_monthly_limit" if vi => {
                format!("Bưu cục đã gần hết hạn mức giao dịch trong tháng ({max}); chỉ còn {left}.")
            }
            "post_office_monthly_limit" => {
                format!("The post office's limit for the month is {max}; only {left} is left.")
            }
            "terminal_daily_limit" if vi => {
                format!("Quầy này đã gần hết hạn mức trong ngày ({max}); chỉ còn {left}.")
            }
            "terminal_daily_limit" => {
                format!("This counter's limit for the day is {max}; only {left} is left.")
            }
            "amount_below_minimum" | "amount_above_maximum" if vi && self.range.is_some() => {
                format!("Số tiền mỗi giao dịch phải từ {lo} đến {hi}.")
            }
            "amount_below_minimum" | "amount_above_maximum" if self.range.is_some() => {
                format!("An amount must be between {lo} and {hi}.")
            }
            code => sentence(code, lang).to_string(),
        }
    }
}

fn sentence(code: &str, lang: Lang) -> &'static str {
    let (vi, en) = match code {
        "insufficient_float" => (
            "Số dư ký quỹ của bưu cục không đủ cho giao dịch này. Vui lòng báo trưởng bưu cục nạp thêm.",
            "The post office's e-float is too low for this. Ask the head of the post office to top it up.",
        ),
        "insufficient_cash" => (
            "Trong két không đủ tiền mặt để chi trả khoản này.",
            "The drawer does not hold enough cash for this.",
        ),
        "insufficient_funds" => (
            "Tài khoản của quý khách không đủ số dư.",
            "The customer's account does not hold enough.",
        ),
        "account_not_found" => (
            "Ngân hàng không tìm thấy số tài khoản này. Mời quý khách kiểm tra lại.",
            "The bank does not know this account number. Please check it with the customer.",
        ),
        "unknown_bank" => (
            "Quầy chưa nhận giao dịch với ngân hàng này.",
            "This counter does not serve this bank yet.",
        ),
        "amount_below_minimum" => (
            "Số tiền thấp hơn mức tối thiểu.",
            "The amount is below the minimum.",
        ),
        "amount_above_maximum" => (
            "Số tiền cao hơn mức tối đa cho một giao dịch.",
            "The amount is above the maximum for one transaction.",
        ),
        "invalid_code" => (
            "Mã rút tiền không đúng. Mời quý khách kiểm tra lại trên ứng dụng ngân hàng.",
            "The withdrawal code is wrong. Ask the customer to check it in their bank app.",
        ),
        "code_expired" => (
            "Mã rút tiền đã hết hạn. Mời quý khách tạo mã mới trên ứng dụng ngân hàng.",
            "The withdrawal code has expired. Ask the customer to make a new one.",
        ),
        "too_many_code_attempts" => (
            "Mã rút tiền đã bị nhập sai quá nhiều lần. Mời quý khách tạo mã mới.",
            "The code was entered wrongly too often. Ask the customer for a new one.",
        ),
        "amount_mismatch" => (
            "Số tiền không khớp với mã rút tiền của quý khách.",
            "The amount does not match the customer's code.",
        ),
        "no_open_shift" => (
            "Quầy chưa mở ca. Vui lòng mở ca trước.",
            "No shift is open at this counter. Open one first.",
        ),
        "shift_already_open" => (
            "Ca làm việc đã được mở từ trước.",
            "A shift is already open.",
        ),
        "cash_outs_pending" => (
            "Còn giao dịch rút tiền chưa xác nhận. Vui lòng xác nhận hoặc hủy trước khi đóng ca.",
            "A cash-out waits for confirmation. Confirm or cancel it before closing.",
        ),
        "not_pending" => (
            "Giao dịch này đã được xử lý xong.",
            "This transaction is already finished.",
        ),
        "confirmation_timeout" => (
            "Đã quá thời gian xác nhận; giao dịch đã được hủy và ngân hàng hoàn tiền cho quý khách.",
            "It was not confirmed in time; it was cancelled and the bank returns the money.",
        ),
        "bank_rejected" => (
            "Ngân hàng từ chối giao dịch. Mời quý khách liên hệ ngân hàng.",
            "The bank refused. The customer may ask their bank.",
        ),
        "bank_unavailable" => (
            "Ngân hàng tạm thời không phản hồi. Mời quý khách thử lại sau ít phút.",
            "The bank is not answering. Please try again in a few minutes.",
        ),
        "bank_outcome_unknown" => (
            "Chưa rõ kết quả từ ngân hàng. Hệ thống sẽ tự kiểm tra; nếu không thành công, tiền được hoàn lại.",
            "The bank's answer is not known yet. The switch checks by itself and returns the money if it did not go through.",
        ),
        "bill_customer_not_found" => (
            "Không tìm thấy mã khách hàng này. Mời quý khách kiểm tra lại trên hóa đơn.",
            "No customer has this code. Please check the bill.",
        ),
        "bill_already_paid" => (
            "Hóa đơn này đã được thanh toán.",
            "This bill is already paid.",
        ),
        "bill_not_due" => ("Hóa đơn này không còn phải trả.", "This bill is not due."),
        "partial_payment_not_allowed" => (
            "Nhà cung cấp này yêu cầu thanh toán tất cả hóa đơn cùng lúc.",
            "This biller takes all due bills at once.",
        ),
        "biller_rejected" => (
            "Nhà cung cấp từ chối thanh toán.",
            "The biller refused the payment.",
        ),
        "biller_unavailable" => (
            "Nhà cung cấp tạm thời không phản hồi. Mời quý khách thử lại sau.",
            "The biller is not answering. Please try again later.",
        ),
        "unknown_biller" | "unknown_provider" => (
            "Quầy chưa nhận thanh toán cho nhà cung cấp này.",
            "This counter does not take payments for this biller.",
        ),
        "invalid_phone" => (
            "Số điện thoại không đúng hoặc không thuộc nhà mạng đã chọn.",
            "The number is not right or not the chosen network's.",
        ),
        "invalid_denomination" => (
            "Nhà mạng không bán mệnh giá này.",
            "The network does not sell this amount.",
        ),
        "invalid_card" => ("Số thẻ không hợp lệ.", "The card number is not valid."),
        "incorrect_pin" => (
            "Mã PIN không đúng. Mời quý khách nhập lại.",
            "The PIN is wrong. Ask the customer to try again.",
        ),
        "pin_tries_exceeded" => (
            "Thẻ đã bị khóa vì nhập sai PIN quá số lần cho phép. Mời quý khách liên hệ ngân hàng.",
            "The card is blocked after too many wrong PINs. The customer should call their bank.",
        ),
        "card_not_accepted" => (
            "Thẻ này không được chấp nhận tại quầy.",
            "This card is not accepted here.",
        ),
        "offline_not_deferrable" => (
            "Quầy đang mất kết nối với hệ thống. Giao dịch này cần ngân hàng trả lời ngay nên chưa thể thực hiện; mời quý khách quay lại sau.",
            "The counter is offline. This needs the bank's answer at once and cannot be done now; please come back later.",
        ),
        "offline_no_policy" => (
            "Quầy đang mất kết nối và chưa nhận được quy định giao dịch ngoại tuyến. Mời quý khách quay lại sau.",
            "The counter is offline and has no offline policy from the switch yet. Please come back later.",
        ),
        "offline_not_seen" => (
            "Quầy đang mất kết nối và chưa tra cứu khách hàng này gần đây, nên chưa thể nhận. Mời quý khách quay lại sau.",
            "The counter is offline and has not looked this customer up recently. Please come back later.",
        ),
        "offline_cap" => (
            "Quầy đang mất kết nối và đã nhận đủ mức tối đa cho phép khi ngoại tuyến. Mời quý khách quay lại sau.",
            "The counter is offline and has taken as much as it may while offline. Please come back later.",
        ),
        "offline_too_old" => (
            "Giao dịch nhận khi mất kết nối đã quá hạn gửi. Vui lòng hoàn lại tiền cho khách.",
            "Taken offline too long ago to send. Hand the customer's cash back.",
        ),
        "queue_not_empty" => (
            "Còn giao dịch chờ gửi lên hệ thống. Chưa thể đóng ca cho đến khi gửi xong.",
            "Transactions still wait to be sent. The shift closes once they are.",
        ),
        "refunds_due" => (
            "Còn khoản phải hoàn tiền cho khách. Vui lòng hoàn tiền và ghi nhận trước khi đóng ca.",
            "Refunds are owed to customers. Hand them back and record it before closing.",
        ),
        "pin_timeout" => (
            "Khách chưa nhập PIN; giao dịch chưa được thực hiện.",
            "No PIN was entered; nothing was charged.",
        ),
        "rate_limited" => (
            "Hệ thống đang bận. Vui lòng thử lại sau giây lát.",
            "The switch is busy. Try again in a moment.",
        ),
        "unauthenticated" | "key_revoked" | "unknown_key" => (
            "Quầy không xác thực được với hệ thống. Vui lòng báo bộ phận kỹ thuật.",
            "The counter could not authenticate to the switch. Call support.",
        ),
        "client" | "unavailable" => (
            "Không kết nối được hệ thống thanh toán. Vui lòng kiểm tra mạng và thử lại.",
            "Cannot reach the payment switch. Check the network and try again.",
        ),
        _ => (
            "Giao dịch không thực hiện được. Vui lòng thử lại hoặc báo bộ phận kỹ thuật.",
            "The transaction could not be done. Try again or call support.",
        ),
    };
    if lang == Lang::Vi { vi } else { en }
}

/// The limit a refusal's code names (`customer_daily_limit` →
/// `customer_daily`), as `GetLimits` labels it.
pub fn limit_of(code: &str) -> Option<&str> {
    code.strip_suffix("_limit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_has_both_languages() {
        for m in M::ALL {
            assert!(
                !m.text(Lang::Vi).is_empty() && !m.text(Lang::En).is_empty(),
                "{m:?}"
            );
        }
    }

    #[test]
    fn a_limit_refusal_names_the_limit_and_what_is_left() {
        let mut r = Refusal::new("customer_daily_limit", "over");
        r.limit = Some((20_000_000, 3_500_000));
        let s = r.sentence(Lang::Vi);
        assert!(
            s.contains("20.000.000 ₫") && s.contains("3.500.000 ₫"),
            "{s}"
        );
        assert!(s.starts_with("Theo quy định"));
        assert!(r.sentence(Lang::En).contains("3.500.000 ₫"));
        assert_eq!(
            limit_of("post_office_monthly_limit"),
            Some("post_office_monthly")
        );
        // A code the screen does not know still reads as a sentence.
        assert!(
            Refusal::new("something_new", "x")
                .sentence(Lang::Vi)
                .starts_with("Giao dịch")
        );
    }
}
