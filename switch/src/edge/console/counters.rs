//! Every counter's offline outbox as it last reported (issue #29): what
//! waits, since when, what was forwarded and refused after the fact, and
//! refunds still owed. A counter that has not reported for a while is
//! marked: it may be offline with items waiting.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};

use super::html::vnd;
use super::{Console, failure, render, signed_in};
use crate::store::OutboxReport;

/// A report older than this marks its counter as not heard from.
const STALE_MS: i64 = 10 * 60_000;

fn body(reports: &[OutboxReport], now_ms: i64) -> Markup {
    html! {
        p { "What each counter's offline outbox held when it last reported. Items wait there while a counter cannot reach the switch; a refund is owed for one refused after the fact." }
        table #counters {
            tr {
                th { "counter" } th { "reported" } th { "waiting" } th { "waiting (VND)" }
                th { "oldest waiting" } th { "forwarded" } th { "refused late" } th { "refunds owed" }
            }
            @for r in reports {
                @let stale = now_ms - r.reported_at_ms > STALE_MS;
                tr class=[stale.then_some("low")] {
                    td { (r.terminal_id) }
                    td { (crate::civil::date_time(r.reported_at_ms)) @if stale { " (not heard from since)" } }
                    td.n { (r.queued) }
                    td.n { (vnd(i128::from(r.queued_total))) }
                    td { @if r.oldest_taken_at_ms > 0 { (crate::civil::date_time(r.oldest_taken_at_ms)) } @else { "–" } }
                    td.n { (r.forwarded) }
                    td.n { (r.refused) }
                    td.n { (r.refunds_due) }
                }
            }
        }
        @if reports.is_empty() { p #no-counters { "No counter has reported an outbox yet." } }
    }
}

pub(super) async fn counters(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = match signed_in(&c, &headers) {
        Ok(s) => s,
        Err(refusal) => return refusal,
    };
    match c.switch.outbox_reports(&s.principal()) {
        Ok(r) => render(
            &s,
            "Counters offline",
            "/counters",
            &body(&r, crate::clock::now_ms()).into_string(),
        ),
        Err(e) => failure(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_not_heard_from_is_marked() {
        let r = |t: &str, at: i64| OutboxReport {
            terminal_id: t.into(),
            reported_at_ms: at,
            queued: 3,
            queued_total: 150_000,
            oldest_taken_at_ms: at - 60_000,
            forwarded: 12,
            refused: 1,
            refunds_due: 1,
        };
        let now = 1_796_058_000_000;
        let page = body(
            &[
                r("tho-tang-1", now - 1_000),
                r("tam-dao-2", now - STALE_MS - 1),
            ],
            now,
        )
        .into_string();
        assert_eq!(page.matches("not heard from since").count(), 1);
        assert!(
            page.contains("150.000") || page.contains("150,000"),
            "{page}"
        );
        assert!(page.contains("tam-dao-2") && page.contains("tho-tang-1"));
    }
}
