//! A transaction's page (printing once when a QR payment finishes), a card payment waiting for its PIN, today's list with search and reprint.

use super::*;

#[derive(Deserialize)]
pub(super) struct TxQuery {
    #[serde(default)]
    printed: Option<String>,
}

pub(super) async fn tx_page(
    State(app): State<Arc<App>>,
    Signed(s): Signed,
    Path(id): Path<String>,
    Query(q): Query<TxQuery>,
) -> Response {
    let lang = s.lang;
    let t = match app.link.transaction(&id).await {
        Ok(t) => t,
        Err(e) => {
            let r = app.refusal(e, None).await;
            return app
                .screen(&s, "/today", None, pages::refusal(lang, &r))
                .await;
        }
    };
    let pending = t.status == pb::TxStatus::Pending as i32;
    let mut printed = q.printed.unwrap_or_default();
    // A QR payment completes while its page waits: print it once then.
    if pending {
        lock(&app.waiting).insert(t.transaction_id.clone());
    } else if lock(&app.waiting).remove(&t.transaction_id) {
        if t.status == pb::TxStatus::Completed as i32 {
            printed = match app.print_tx(&t, &s.full_name).await {
                Ok(()) => "ok".into(),
                Err(e) => e,
            };
        }
        *lock(&app.customer) = CustomerView::Idle;
    }
    let back = match pb::TxKind::try_from(t.kind) {
        Ok(pb::TxKind::CashOut) => "/cash-out",
        Ok(pb::TxKind::BillPayment) => "/bills",
        Ok(pb::TxKind::TopUp) => "/topup",
        _ => "/cash-in",
    };
    let body = html! {
        h1 { (pages::kind_label(lang, t.kind)) }
        (pages::facts(lang, &t))
        @if !t.error_code.is_empty() {
            (pages::refusal(lang, &Refusal::new(&t.error_code, &t.error_message)))
        }
        @if pending && !t.qr_payload.is_empty() { div.ok #waiting-qr { (M::WaitingQr.text(lang)) } }
        @if printed == "ok" { div.ok #printed { (M::Printed.text(lang)) } }
        @else if !printed.is_empty() { div.refusal #print-error { (M::NotPrinted.text(lang)) ": " (printed) } }
        a #back href=(back) autofocus { (M::NewTransaction.text(lang)) }
        " "
        form method="post" action=(format!("/tx/{}/print", t.transaction_id)) style="display:inline" {
            (pages::hidden(&s.csrf, &[]))
            button.second #reprint type="submit" { (M::Reprint.text(lang)) }
        }
    };
    app.screen(&s, back, pending.then_some(1_500), body).await
}

pub(super) async fn tx_print(
    State(app): State<Arc<App>>,

    Path(id): Path<String>,
    Posted(_, s, _): Posted,
) -> Response {
    match app.link.transaction(&id).await {
        Ok(t) => {
            let printed = match app.print_tx(&t, &s.full_name).await {
                Ok(()) => "ok".to_string(),
                Err(e) => e,
            };
            Redirect::to(&format!("/tx/{id}?printed={}", urlencode(&printed))).into_response()
        }
        Err(e) => {
            let r = app.refusal(e, None).await;
            app.screen(&s, "/today", None, pages::refusal(s.lang, &r))
                .await
        }
    }
}

pub(super) async fn job_page(
    State(app): State<Arc<App>>,
    Signed(s): Signed,
    Path(id): Path<String>,
) -> Response {
    let done = match lock(&app.jobs).get(&id) {
        None => return (StatusCode::NOT_FOUND, "no such payment").into_response(),
        Some(Job::Waiting) => None,
        Some(Job::Done(Ok(tx))) => Some(Ok(tx.clone())),
        Some(Job::Done(Err(r))) => Some(Err(Refusal {
            code: r.code.clone(),
            detail: r.detail.clone(),
            limit: r.limit,
            range: r.range,
        })),
    };
    match done {
        Some(Ok(tx)) => {
            let printed = if lock(&app.printed).contains(&tx) {
                "ok"
            } else {
                ""
            };
            Redirect::to(&format!("/tx/{tx}?printed={printed}")).into_response()
        }
        Some(Err(r)) => {
            let body = html! { (pages::refusal(s.lang, &r)) a #back href="/bills" autofocus { (M::Back.text(s.lang)) } };
            app.screen(&s, "/bills", None, body).await
        }
        None => {
            let body = html! { h1 { (M::FundCard.text(s.lang)) } div.ok #waiting-pin { (M::WaitingPin.text(s.lang)) } };
            app.screen(&s, "/bills", Some(1_000), body).await
        }
    }
}

#[derive(Deserialize)]
pub(super) struct TodayQuery {
    #[serde(default)]
    q: String,
}

pub(super) async fn today_page(
    State(app): State<Arc<App>>,
    Signed(s): Signed,
    Query(q): Query<TodayQuery>,
) -> Response {
    let lang = s.lang;
    let since = start_of_day_ms(app.now_ms());
    let all = match transactions_since(&app, since).await {
        Ok(t) => t,
        Err(e) => {
            let r = app.refusal(e, None).await;
            return app
                .screen(&s, "/today", None, pages::refusal(lang, &r))
                .await;
        }
    };
    let needle = q.q.trim().to_lowercase();
    let needle_digits: String = needle.chars().filter(char::is_ascii_digit).collect();
    let shown: Vec<&pb::Transaction> = all
        .iter()
        .filter(|t| {
            needle.is_empty()
                || t.transaction_id.to_lowercase().contains(&needle)
                || t.account_masked.to_lowercase().contains(&needle)
                || t.bill_customer.to_lowercase().contains(&needle)
                || t.account_name.to_lowercase().contains(&needle)
                || (!needle_digits.is_empty() && t.amount.to_string() == needle_digits)
        })
        .collect();
    let body = html! {
        h1 { (M::Today.text(lang)) }
        form method="get" action="/today" {
            label for="q" { (M::Search.text(lang)) }
            input #q name="q" value=(q.q) autofocus;
        }
        @if shown.is_empty() { p #none { (M::NoTransactions.text(lang)) } }
        @else {
            table.list #today {
                tr { th { (M::Time.text(lang)) } th { (M::Kind.text(lang)) } th { (M::Id.text(lang)) } th { (M::Amount.text(lang)) } th { (M::Status.text(lang)) } th {} }
                @for t in &shown {
                    tr {
                        td { (receipt::vietnam_time(t.created_at_ms)) }
                        td { (pages::kind_label(lang, t.kind)) }
                        td { a href=(format!("/tx/{}", t.transaction_id)) { (t.transaction_id) } }
                        td { (vnd(t.amount)) }
                        td { (pages::status_label(lang, t.status)) }
                        td {
                            form method="post" action=(format!("/tx/{}/print", t.transaction_id)) {
                                (pages::hidden(&s.csrf, &[]))
                                button.second.reprint type="submit" style="margin:0;padding:2px 8px" { (M::Reprint.text(lang)) }
                            }
                        }
                    }
                }
            }
        }
    };
    app.screen(&s, "/today", None, body).await
}
