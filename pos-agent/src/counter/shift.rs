//! Opening and closing the shift, with the drawer counted by denomination.

use super::*;

pub(super) fn count_of(f: &Fields) -> Option<Vec<(u64, u64)>> {
    cash::DENOMINATIONS
        .iter()
        .map(|d| {
            let v = field(f, &format!("n{d}")).trim();
            let n = if v.is_empty() {
                0
            } else {
                v.parse::<u64>().ok()?
            };
            (n <= cash::NOTES_MAX).then_some((*d, n))
        })
        .collect()
}

pub(super) async fn shift_open_page(State(app): State<Arc<App>>, Signed(s): Signed) -> Response {
    let open = lock(&app.shift).clone();
    let body = html! {
        h1 { (M::OpenShift.text(s.lang)) }
        @if let Some(sh) = open {
            div.ok #shift-open { (M::ShiftOpened.text(s.lang)) " " (receipt::vietnam_time(sh.opened_at_ms)) " · " (vnd(sh.opening_cash)) }
        } @else {
            (pages::count_form(s.lang, &s.csrf, "/shift/open", M::OpenShift, "open-shift"))
        }
    };
    app.screen(&s, "/shift/open", None, body).await
}

pub(super) async fn shift_open(State(app): State<Arc<App>>, Posted(_, s, f): Posted) -> Response {
    let Some(cash) = count_of(&f).and_then(|c| cash::total(&c)) else {
        let body = html! { div.refusal { (M::BadCount.text(s.lang)) } (pages::count_form(s.lang, &s.csrf, "/shift/open", M::OpenShift, "open-shift")) };
        return app.screen(&s, "/shift/open", None, body).await;
    };
    match app.link.open_shift(cash).await {
        Ok(sh) => {
            let local = LocalShift {
                shift_id: sh.shift_id,
                opened_at_ms: sh.opened_at_ms,
                opening_cash: sh.opening_cash,
                teller: s.full_name.clone(),
            };
            if let Err(e) = app.save_shift(Some(local)) {
                tracing::error!(error = %e, "counter: the open shift is not saved");
            }
            Redirect::to("/cash-in").into_response()
        }
        Err(f) if f.code == "shift_already_open" => {
            // Opened earlier from this terminal (another browser, the
            // command line): the counter carries on with it.
            let local = LocalShift {
                shift_id: String::new(),
                opened_at_ms: app.now_ms(),
                opening_cash: cash,
                teller: s.full_name.clone(),
            };
            let _ = app.save_shift(Some(local));
            Redirect::to("/cash-in").into_response()
        }
        Err(f) => {
            let r = app.refusal(f, None).await;
            let body = html! { (pages::refusal(s.lang, &r)) (pages::count_form(s.lang, &s.csrf, "/shift/open", M::OpenShift, "open-shift")) };
            app.screen(&s, "/shift/open", None, body).await
        }
    }
}

pub(super) async fn shift_close_page(State(app): State<Arc<App>>, Signed(s): Signed) -> Response {
    let body = html! {
        h1 { (M::CloseShift.text(s.lang)) }
        @if let Some(m) = shift_required(&app, &s) { (m) }
        @else { (pages::count_form(s.lang, &s.csrf, "/shift/close", M::CloseShift, "close-shift")) }
    };
    app.screen(&s, "/shift/close", None, body).await
}

pub(super) async fn shift_close(State(app): State<Arc<App>>, Posted(_, s, f): Posted) -> Response {
    let Some((count, cash)) = count_of(&f).and_then(|c| cash::total(&c).map(|t| (c, t))) else {
        let body = html! { div.refusal { (M::BadCount.text(s.lang)) } (pages::count_form(s.lang, &s.csrf, "/shift/close", M::CloseShift, "close-shift")) };
        return app.screen(&s, "/shift/close", None, body).await;
    };
    // Nothing may stay behind a closed shift: what waits in the outbox,
    // and cash owed back to customers.
    let (queued, refunds) = app.outbox_summary();
    if queued.0 > 0 || refunds > 0 {
        let r = if queued.0 > 0 {
            Refusal::new(
                "queue_not_empty",
                &format!("{} items wait to be sent", queued.0),
            )
        } else {
            Refusal::new("refunds_due", &format!("{refunds} refunds are owed"))
        };
        let body = html! { (pages::refusal(s.lang, &r)) (pages::count_form(s.lang, &s.csrf, "/shift/close", M::CloseShift, "close-shift")) };
        return app.screen(&s, "/shift/close", None, body).await;
    }
    let opened = lock(&app.shift).clone();
    match app.link.close_shift(cash).await {
        Ok(sh) => {
            let since = opened
                .as_ref()
                .map_or(sh.opened_at_ms, |o| o.opened_at_ms.min(sh.opened_at_ms));
            let totals = shift_totals(&app, since, s.lang).await;
            let report = receipt::ShiftReport {
                shift_id: sh.shift_id.clone(),
                terminal_id: sh.terminal_id.clone(),
                teller: s.full_name.clone(),
                opened_at_ms: sh.opened_at_ms,
                closed_at_ms: sh.closed_at_ms,
                opening_cash: sh.opening_cash,
                counted: count,
                counted_cash: sh.counted_cash,
                expected_cash: sh.expected_cash,
                variance: sh.variance,
                totals,
            };
            let counter = receipt::Counter {
                post_office_name: app.receipt_name.clone(),
                teller: s.full_name.clone(),
            };
            let printed = app
                .print("shift", receipt::Receipt::shift(&report, &counter))
                .await;
            if let Err(e) = app.save_shift(None) {
                tracing::error!(error = %e, "counter: the closed shift is not saved");
            }
            let variance = if sh.variance < 0 {
                format!("-{}", vnd(sh.variance.unsigned_abs()))
            } else {
                vnd(sh.variance as u64)
            };
            let body = html! {
                h1 { (M::CloseShift.text(s.lang)) }
                div.ok #shift-closed { (M::ShiftClosed.text(s.lang)) }
                table.facts {
                    tr { td { (M::Expected.text(s.lang)) } td #expected { (vnd(sh.expected_cash)) } }
                    tr { td { (M::Counted.text(s.lang)) } td #counted { (vnd(sh.counted_cash)) } }
                    tr { td { (M::Variance.text(s.lang)) } td.amount #variance { (variance) } }
                }
                @match printed {
                    Ok(()) => p #printed { (M::ShiftReport.text(s.lang)) },
                    Err(e) => div.refusal #print-error { (M::NotPrinted.text(s.lang)) ": " (e) },
                }
            };
            app.screen(&s, "/shift/close", None, body).await
        }
        Err(f) => {
            let r = app.refusal(f, None).await;
            let body = html! { (pages::refusal(s.lang, &r)) (pages::count_form(s.lang, &s.csrf, "/shift/close", M::CloseShift, "close-shift")) };
            app.screen(&s, "/shift/close", None, body).await
        }
    }
}

/// Completed transactions of this counter since `since_ms`, by kind:
/// (label, count, total amount).
pub(super) async fn shift_totals(app: &App, since_ms: i64, lang: Lang) -> Vec<(String, u64, u64)> {
    let mut by_kind: Vec<(i32, u64, u64)> = Vec::new();
    for t in transactions_since(app, since_ms).await.unwrap_or_default() {
        if t.status != pb::TxStatus::Completed as i32 {
            continue;
        }
        match by_kind.iter_mut().find(|(k, _, _)| *k == t.kind) {
            Some(x) => {
                x.1 += 1;
                x.2 = x.2.saturating_add(t.amount);
            }
            None => by_kind.push((t.kind, 1, t.amount)),
        }
    }
    by_kind.sort();
    by_kind
        .into_iter()
        .map(|(k, n, total)| (pages::kind_label(lang, k).to_string(), n, total))
        .collect()
}

pub(super) async fn transactions_since(
    app: &App,
    since_ms: i64,
) -> Result<Vec<pb::Transaction>, Failure> {
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..TODAY_PAGES_MAX {
        let r = app.link.transactions(&token).await?;
        let older = r.transactions.iter().any(|t| t.created_at_ms < since_ms);
        out.extend(
            r.transactions
                .into_iter()
                .filter(|t| t.created_at_ms >= since_ms),
        );
        if older || r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    Ok(out)
}

/// Midnight of today in Vietnam (UTC+7), Unix ms.
pub(super) fn start_of_day_ms(now_ms: i64) -> i64 {
    const OFFSET_MS: i64 = 7 * 3_600_000;
    const DAY_MS: i64 = 86_400_000;
    (now_ms + OFFSET_MS).div_euclid(DAY_MS) * DAY_MS - OFFSET_MS
}
