//! The pilot report in the console (issue #28): a period and a commune to
//! choose, a chart of each commune's value, and a table per commune of its
//! products against the period before and its indicators. An operator
//! sees every transaction, a bank's staff their customers' only (the
//! report's own rule, as the signed-in principal).
//!
//! The first page written with maud: its markup escapes by construction.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::html::{bars, vnd};
use super::{Console, failure, render, signed_in};
use crate::settlement::pilot::{Level, PilotReport, Unit};

#[derive(Deserialize)]
pub(super) struct ReportQuery {
    #[serde(default)]
    period: String,
    #[serde(default)]
    commune: String,
}

/// A product's name in the console's tables.
fn product_name(p: &str) -> &str {
    match p {
        "cash_in" => "Cash-in (nộp tiền)",
        "cash_out" => "Cash-out (rút tiền)",
        "bill_electricity" => "Bills: electricity",
        "bill_water" => "Bills: water",
        "bill_internet" => "Bills: internet",
        "bill_telecom_tv" => "Bills: telecom and TV",
        "bill_other" => "Bills: other",
        "top_up" => "Top-ups",
        "merchant_qr" => "Merchant QR",
        "public_fees" => "Public-service fees (phí, lệ phí)",
        other => other,
    }
}

/// `now` against `before`, in whole tenths of a percent.
fn change(now: u64, before: u64) -> String {
    if before == 0 {
        return if now == 0 { "–".into() } else { "new".into() };
    }
    let tenths = (i128::from(now) - i128::from(before)) * 1000 / i128::from(before);
    format!(
        "{}{}.{}%",
        if tenths < 0 { "−" } else { "+" },
        tenths.abs() / 10,
        tenths.abs() % 10
    )
}

fn unit_table(u: &Unit) -> Markup {
    let total = u.total();
    let cashless = (u.bills_cashless * 100)
        .checked_div(u.bills)
        .map_or_else(|| "–".to_string(), |p| format!("{p}%"));
    html! {
        table.report id={ "unit-" (u.id) } {
            tr {
                th { "product" } th { "count" } th { "value (VND)" }
                th { "before" } th { "change" } th { "failed" } th { "reversed" }
            }
            @for (name, p) in &u.products {
                tr {
                    td { (product_name(name)) }
                    td.n { (p.now.count) }
                    td.n { (vnd(i128::from(p.now.value))) }
                    td.n { (p.before.count) }
                    td.n { (change(p.now.count, p.before.count)) }
                    td.n { (p.now.failed) }
                    td.n { (p.now.reversed) }
                }
            }
            tr {
                th { "total" }
                th.n { (total.now.count) }
                th.n { (vnd(i128::from(total.now.value))) }
                th.n { (total.before.count) }
                th.n { (change(total.now.count, total.before.count)) }
                th.n { (total.now.failed) }
                th.n { (total.now.reversed) }
            }
        }
        p.indicators {
            "Active terminals " b { (u.active_terminals) }
            " · active merchants " b { (u.active_merchants) }
            " · new merchants " b { (u.new_merchants) }
            " · distinct customers " b { (u.distinct_customers) }
            " · cashless bills " b { (cashless) } " of " (u.bills)
            " · card payments " b { (u.card.count) }
        }
    }
}

fn body(r: &PilotReport, period: &str) -> Markup {
    let by_commune: Vec<(String, i128)> = r
        .units
        .iter()
        .filter(|u| u.level == Some(Level::Commune))
        .map(|u| (u.name.clone(), i128::from(u.total().now.value)))
        .collect();
    let (first, last) = r.period.days();
    html! {
        form method="get" action="/reports" id="report-form" {
            label { "Period " input name="period" value=(period) placeholder="2026-11 or 2026-Q4"; }
            " "
            label {
                "Commune "
                select name="commune" {
                    option value="" selected[r.commune.is_empty()] { "every commune" }
                    @for c in &r.communes {
                        option value=(c.id) selected[r.commune == c.id] {
                            (c.name) @if c.pilot { " (pilot)" }
                        }
                    }
                }
            }
            " " button { "Show" }
        }
        p id="period" {
            "Period " b { (r.period.label()) } " ("
            (crate::civil::date(crate::civil::day_start_ms(first))) " to "
            (crate::civil::date(crate::civil::day_start_ms(last)))
            "), against " (r.previous.label()) "."
            @if !r.bank.is_empty() { " Transactions of bank " (r.bank) "'s customers only." }
        }
        h2 { "Value per commune" }
        (maud::PreEscaped(bars("communes-chart", &by_commune)))
        @for u in r.units.iter().filter(|u| u.level == Some(Level::Province)) {
            h2 { "Province" }
            (unit_table(u))
        }
        @for u in r.units.iter().filter(|u| u.level == Some(Level::Commune)) {
            h2 { (u.name) @if !u.district.is_empty() { ", " (u.district) } @if u.pilot { " · pilot" } }
            (unit_table(u))
        }
        h2 { "Post offices and merchants" }
        @for u in r.units.iter().filter(|u| matches!(u.level, Some(Level::PostOffice | Level::Merchant))) {
            h3 { (u.name) " (" (u.id) ")" }
            (unit_table(u))
        }
    }
}

/// `/reports?period=2026-11&commune=tho-tang`: this month when no period
/// is given.
pub(super) async fn reports(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<ReportQuery>,
) -> Response {
    let s = match signed_in(&c, &headers) {
        Ok(s) => s,
        Err(refusal) => return refusal,
    };
    let period = if q.period.is_empty() {
        crate::civil::month_label(crate::civil::month_number(crate::clock::now_ms()))
    } else {
        q.period.clone()
    };
    let report = match c
        .switch
        .pilot_report(&s.principal(), &period, &q.commune)
        .await
    {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    render(
        &s,
        "Pilot report",
        "/reports",
        &body(&report, &period).into_string(),
    )
}
