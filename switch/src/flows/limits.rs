//! The totals a counter transaction counts against, and the refusal that
//! names the one it would pass.
//!
//! A post office is its partner bank's payment agent, so the agent limits
//! of Circular 07/2024/TT-NHNN (Article 5) are the defaults:
//! - a customer's cash deposits and withdrawals together, over every agent
//!   point, at most 20,000,000 VND a day (`customer_daily_max`; a monthly
//!   total, `customer_monthly_max`, is there for a bank that sets one);
//! - an agent point (a post office, all its terminals) at most
//!   200,000,000 VND a day and 5,000,000,000 VND a month of cash deposits
//!   and withdrawals (`post_office_daily_max`, `post_office_monthly_max`),
//!   within its e-float, which the ledger holds.
//!
//! Beside them, the switch's own operational limit: what one terminal may
//! move in a day over every product (`terminal_daily_max`).
//!
//! Days and months are Vietnam's civil ones (`civil`): a total resets at
//! local midnight, a monthly one on the first of the month. A transaction
//! keeps the keys it counted against (`TxRecord::limit_keys`), so that
//! giving them back finds the same totals whatever the configuration says
//! by then.

use crate::civil;
use crate::config::Config;
use crate::error::{ErrorCode, SwitchError};
use crate::fees::grouped;
use crate::store::{Kind, TxRecord};

/// Which total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    TerminalDaily,
    CustomerDaily,
    CustomerMonthly,
    PostOfficeDaily,
    PostOfficeMonthly,
}

impl LimitKind {
    /// The stable error code a refusal carries.
    pub fn code(self) -> ErrorCode {
        match self {
            LimitKind::TerminalDaily => ErrorCode::TerminalDailyLimit,
            LimitKind::CustomerDaily => ErrorCode::CustomerDailyLimit,
            LimitKind::CustomerMonthly => ErrorCode::CustomerMonthlyLimit,
            LimitKind::PostOfficeDaily => ErrorCode::PostOfficeDailyLimit,
            LimitKind::PostOfficeMonthly => ErrorCode::PostOfficeMonthlyLimit,
        }
    }

    /// A stable name for reports and the counter's screen.
    pub fn label(self) -> &'static str {
        match self {
            LimitKind::TerminalDaily => "terminal_daily",
            LimitKind::CustomerDaily => "customer_daily",
            LimitKind::CustomerMonthly => "customer_monthly",
            LimitKind::PostOfficeDaily => "post_office_daily",
            LimitKind::PostOfficeMonthly => "post_office_monthly",
        }
    }

    fn what(self) -> &'static str {
        match self {
            LimitKind::TerminalDaily => "this terminal may move",
            LimitKind::CustomerDaily | LimitKind::CustomerMonthly => {
                "this customer's cash deposits and withdrawals at agents may total"
            }
            LimitKind::PostOfficeDaily | LimitKind::PostOfficeMonthly => {
                "this post office's cash deposits and withdrawals may total"
            }
        }
    }

    /// Counted per civil month, not per day.
    pub fn is_monthly(self) -> bool {
        matches!(
            self,
            LimitKind::CustomerMonthly | LimitKind::PostOfficeMonthly
        )
    }

    fn period(self) -> (&'static str, &'static str) {
        if self.is_monthly() {
            ("a month", "this month")
        } else {
            ("a day", "today")
        }
    }
}

/// One total: its key in the store's totals and the most it may reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub kind: LimitKind,
    pub key: String,
    pub max: u64,
}

/// Cash deposits and withdrawals: what the agent limits count.
fn is_agent_cash(kind: Kind) -> bool {
    matches!(kind, Kind::CashIn | Kind::CashOut)
}

/// A day's and a month's total of `whose` (a key's tail) at `now_ms`: a
/// day's key is the civil day number, a month's `m` and the month number.
fn day_and_month(
    now_ms: i64,
    whose: String,
    (daily, monthly): (LimitKind, LimitKind),
    (daily_max, monthly_max): (u64, u64),
) -> [Limit; 2] {
    let day = civil::day_number(now_ms);
    let month = civil::month_number(now_ms);
    [
        Limit {
            kind: daily,
            key: format!("{day}/{whose}"),
            max: daily_max,
        },
        Limit {
            kind: monthly,
            key: format!("m{month}/{whose}"),
            max: monthly_max,
        },
    ]
}

/// The totals a customer's account counts in at `now_ms`.
pub fn customer(config: &Config, bin: &str, account: &str, now_ms: i64) -> [Limit; 2] {
    day_and_month(
        now_ms,
        format!("customer-cash/{bin}/{account}"),
        (LimitKind::CustomerDaily, LimitKind::CustomerMonthly),
        (config.customer_daily_max, config.customer_monthly_max),
    )
}

/// The totals a post office (an agent point) counts in at `now_ms`.
pub fn post_office(config: &Config, post_office_id: &str, now_ms: i64) -> [Limit; 2] {
    day_and_month(
        now_ms,
        format!("post-office/{post_office_id}"),
        (LimitKind::PostOfficeDaily, LimitKind::PostOfficeMonthly),
        (config.post_office_daily_max, config.post_office_monthly_max),
    )
}

/// A terminal's own daily total at `now_ms`.
pub fn terminal(config: &Config, terminal_id: &str, now_ms: i64) -> Limit {
    Limit {
        kind: LimitKind::TerminalDaily,
        key: format!("{}/terminal/{terminal_id}", civil::day_number(now_ms)),
        max: config.terminal_daily_max,
    }
}

/// Every total `rec` counts against, on the day it was made. A merchant's
/// QR payment counts against none: the payer's bank limits it.
pub fn of(config: &Config, rec: &TxRecord) -> Vec<Limit> {
    if rec.kind == Kind::QrPayment {
        return Vec::new();
    }
    let now = rec.happened_at_ms();
    let mut out = vec![terminal(config, &rec.terminal_id, now)];
    if is_agent_cash(rec.kind) {
        out.extend(customer(config, &rec.bank_bin, &rec.account, now));
        out.extend(post_office(config, &rec.post_office_id, now));
    }
    out
}

/// The keys a record made before the agent limits held its limits under
/// (a record from an earlier version, `limit_keys` empty): the terminal's
/// day and, for cash, the customer's day per kind.
pub fn legacy_keys(rec: &TxRecord) -> Vec<String> {
    if rec.kind == Kind::QrPayment {
        return Vec::new();
    }
    let day = civil::day_number(rec.created_at_ms);
    let mut keys = vec![format!("{day}/terminal/{}", rec.terminal_id)];
    if is_agent_cash(rec.kind) {
        let kind = if rec.kind == Kind::CashIn {
            "cash_in"
        } else {
            "cash_out"
        };
        keys.push(format!(
            "{day}/customer/{kind}/{}/{}",
            rec.bank_bin, rec.account
        ));
    }
    keys
}

/// What is left under `max` once `counted` is taken.
pub fn headroom(max: u64, counted: u64) -> u64 {
    max.saturating_sub(counted)
}

/// The refusal of `amount` by `limit`, which had `counted` already: names
/// the limit and what is left, so the teller can tell the customer.
pub fn refusal(limit: &Limit, counted: u64, amount: u64) -> SwitchError {
    let (per, left_when) = limit.kind.period();
    SwitchError::new(
        limit.kind.code(),
        format!(
            "{} {} VND {per}: {} VND is left {left_when}, {} VND was asked",
            limit.kind.what(),
            grouped(limit.max),
            grouped(headroom(limit.max, counted)),
            grouped(amount),
        ),
    )
}

/// A limit as a counter sees it: how much it allows and what is left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Headroom {
    pub kind: LimitKind,
    pub max: u64,
    pub used: u64,
    /// `YYYY-MM-DD` or `YYYY-MM`, civil.
    pub period: String,
}

impl Headroom {
    pub fn left(&self) -> u64 {
        headroom(self.max, self.used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: Kind, created_at_ms: i64) -> TxRecord {
        let mut r = crate::store::test_record(kind);
        r.created_at_ms = created_at_ms;
        r
    }

    #[test]
    fn the_regulation_is_the_default() {
        let c = Config::default();
        assert_eq!(c.customer_daily_max, 20_000_000);
        assert_eq!(c.post_office_daily_max, 200_000_000);
        assert_eq!(c.post_office_monthly_max, 5_000_000_000);
    }

    #[test]
    fn cash_counts_for_the_customer_and_the_post_office_the_rest_for_the_terminal() {
        let c = Config::default();
        // 2026-11-30 23:59:59.999 (UTC+7), the last moment of November.
        let november = 1_796_058_000_000 - 1;
        let kinds = |k| {
            of(&c, &record(k, november))
                .iter()
                .map(|l| l.kind)
                .collect::<Vec<_>>()
        };
        let cash = vec![
            LimitKind::TerminalDaily,
            LimitKind::CustomerDaily,
            LimitKind::CustomerMonthly,
            LimitKind::PostOfficeDaily,
            LimitKind::PostOfficeMonthly,
        ];
        assert_eq!(kinds(Kind::CashIn), cash);
        assert_eq!(kinds(Kind::CashOut), cash);
        assert_eq!(kinds(Kind::BillPayment), vec![LimitKind::TerminalDaily]);
        assert_eq!(kinds(Kind::TopUp), vec![LimitKind::TerminalDaily]);
        assert!(kinds(Kind::QrPayment).is_empty());
        // Deposits and withdrawals share one customer total.
        let keys = |k| {
            of(&c, &record(k, november))
                .into_iter()
                .map(|l| l.key)
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(Kind::CashIn), keys(Kind::CashOut));
    }

    #[test]
    fn months_turn_at_vietnam_midnight() {
        let c = Config::default();
        // 2026-12-01 00:00 (UTC+7) is 2026-11-30 17:00 UTC.
        let december = 1_796_058_000_000;
        let monthly = |ms| {
            of(&c, &record(Kind::CashIn, ms))
                .into_iter()
                .filter(|l| l.kind.is_monthly())
                .map(|l| l.key)
                .collect::<Vec<_>>()
        };
        assert_eq!(monthly(december - 1), monthly(december - 86_400_000));
        assert_ne!(monthly(december - 1), monthly(december));
        assert_eq!(monthly(december), monthly(december + 30 * 86_400_000));
        assert_ne!(monthly(december), monthly(december + 31 * 86_400_000));
        // 16:59:59 UTC on the 30th is still November in Vietnam.
        assert_eq!(
            monthly(december - 3_600_000),
            monthly(december - 86_400_000)
        );
    }

    #[test]
    fn a_refusal_names_the_limit_and_what_is_left() {
        let c = Config::default();
        let [daily, _] = customer(&c, "970422", "0123456789", 0);
        let e = refusal(&daily, 15_000_000, 8_000_000);
        assert_eq!(e.code, ErrorCode::CustomerDailyLimit);
        assert_eq!(
            e.message,
            "this customer's cash deposits and withdrawals at agents may total \
             20,000,000 VND a day: 5,000,000 VND is left today, 8,000,000 VND was asked"
        );
        let [_, monthly] = post_office(&c, "tho-tang", 0);
        let e = refusal(&monthly, 6_000_000_000, 1);
        assert_eq!(e.code, ErrorCode::PostOfficeMonthlyLimit);
        assert!(
            e.message.contains("0 VND is left this month"),
            "{}",
            e.message
        );
    }

    #[test]
    fn an_earlier_versions_record_gives_back_its_own_keys() {
        let r = record(Kind::CashOut, 0);
        assert_eq!(
            legacy_keys(&r),
            vec![
                format!("0/terminal/{}", r.terminal_id),
                format!("0/customer/cash_out/{}/{}", r.bank_bin, r.account),
            ]
        );
        assert!(legacy_keys(&record(Kind::QrPayment, 0)).is_empty());
    }
}
