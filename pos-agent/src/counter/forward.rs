//! The outbox: forwarding, vouchers, refunds owed (issue #29).

use super::*;

/// Fetch the offline policy and keep it when it verifies: at start and at
/// each sign-in.
pub(super) async fn refresh_policy(app: Arc<App>) {
    match app.link.offline_policy().await {
        Ok(p)
            if p.terminal_id == app.config.profile.id
                && proto::offline::verify(&p, &app.link.pin_key()) =>
        {
            if let Err(e) = app.outbox.put_policy(&p, app.now_ms()) {
                tracing::error!(error = %e, "counter: the offline policy is not kept");
            }
        }
        Ok(_) => tracing::error!("counter: the switch's offline policy does not verify; not kept"),
        Err(f) => {
            app.note(&f);
            tracing::warn!(code = %f.code, "counter: no offline policy fetched");
        }
    }
}

/// Forward the outbox, oldest first, until `stop`: each item with its
/// request id and the time it was taken, so that a forward cut anywhere
/// and sent again completes once; each answer recorded; the final receipt
/// printed at once. While the switch is away, tries back off.
pub(super) async fn forward(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut backoff_ms: u64 = 500;
    loop {
        let wait_ms = match forward_once(&app).await {
            Ok(true) => {
                backoff_ms = 500;
                1_000
            }
            Ok(false) => {
                backoff_ms = (backoff_ms * 2).min(app.config.forward_backoff_max_ms.max(500));
                backoff_ms
            }
            Err(e) => {
                tracing::error!(error = %e, "counter: the outbox cannot be forwarded");
                5_000
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = app.wake.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(wait_ms)) => {}
        }
    }
}

/// How often the outbox is reported when nothing changed.
pub(super) const REPORT_EVERY_MS: i64 = 60_000;

/// Tell the switch what the outbox holds, when it changed or a minute
/// passed (the console shows every counter's queue).
pub(super) async fn report_outbox(app: &App) -> Result<(), String> {
    let report = app.outbox.report()?;
    let now = app.now_ms();
    let due = match &*lock(&app.reported) {
        Some((last, at)) => *last != report || now - at >= REPORT_EVERY_MS,
        None => true,
    };
    if !due {
        return Ok(());
    }
    match app.link.report_outbox(report.clone()).await {
        Ok(_) => *lock(&app.reported) = Some((report, now)),
        Err(f) => app.note(&f),
    }
    Ok(())
}

/// One pass: `Ok(false)` when the switch could not be reached.
pub(super) async fn forward_once(app: &App) -> Result<bool, String> {
    let progress = forward_items(app).await?;
    if progress && app.online.load(Ordering::Relaxed) {
        report_outbox(app).await?;
    }
    Ok(progress)
}

pub(super) async fn forward_items(app: &App) -> Result<bool, String> {
    for item in app.outbox.unprinted()? {
        print_forwarded(app, &item).await;
    }
    let queued = app.outbox.queued()?;
    if queued.is_empty() {
        if !app.online.load(Ordering::Relaxed) {
            // Probe: the panel stops waiting on the switch while offline.
            match app.link.limits(None).await {
                Ok(r) => {
                    *lock(&app.limits_seen) = r.limits;
                    app.online.store(true, Ordering::Relaxed);
                    if app.outbox.policy()?.is_none() {
                        refresh_policy_now(app).await;
                    }
                }
                Err(f) if link::unreachable(&f) => return Ok(false),
                Err(_) => app.online.store(true, Ordering::Relaxed),
            }
        }
        return Ok(true);
    }
    for item in queued {
        let sent = match item.kind.as_str() {
            "top_up" => match pb::TopUpRequest::decode(item.request.as_slice()) {
                Ok(m) => Some(app.link.top_up(m).await),
                Err(_) => None,
            },
            "bills" => match pb::PayBillsRequest::decode(item.request.as_slice()) {
                Ok(m) => Some(app.link.pay_bills(m).await),
                Err(_) => None,
            },
            "cash_in" => match pb::CashInRequest::decode(item.request.as_slice()) {
                Ok(m) => Some(app.link.cash_in(m).await),
                Err(_) => None,
            },
            _ => None,
        };
        let now = app.now_ms();
        match sent {
            None => {
                // A stored request that does not decode: a human must look;
                // the customer is owed their cash meanwhile.
                tracing::error!(voucher = %item.voucher, kind = %item.kind, "counter: an outbox item does not decode");
                app.outbox.answered(
                    item.seq,
                    Err(("unreadable", "the stored request does not decode")),
                    now,
                )?;
            }
            Some(Ok(r)) => {
                app.online.store(true, Ordering::Relaxed);
                let id = r
                    .transaction
                    .as_ref()
                    .map(|t| t.transaction_id.clone())
                    .unwrap_or_default();
                app.outbox.answered(item.seq, Ok(&id), now)?;
                tracing::info!(voucher = %item.voucher, transaction_id = %id, "counter: forwarded");
                let mut item = item;
                item.transaction_id = id;
                print_forwarded(app, &item).await;
            }
            Some(Err(f)) if link::unreachable(&f) => {
                app.online.store(false, Ordering::Relaxed);
                return Ok(false);
            }
            Some(Err(f)) => {
                app.online.store(true, Ordering::Relaxed);
                tracing::warn!(voucher = %item.voucher, code = %f.code, message = %f.message, "counter: forwarded and refused; the customer is owed a refund");
                app.outbox
                    .answered(item.seq, Err((&f.code, &f.message)), now)?;
            }
        }
    }
    Ok(true)
}

pub(super) async fn refresh_policy_now(app: &App) {
    if let Ok(p) = app.link.offline_policy().await
        && p.terminal_id == app.config.profile.id
        && proto::offline::verify(&p, &app.link.pin_key())
    {
        let _ = app.outbox.put_policy(&p, app.now_ms());
    }
}

/// The final receipt of a forwarded item, printed once.
pub(super) async fn print_forwarded(app: &App, item: &outbox::Item) {
    let t = match app.link.transaction(&item.transaction_id).await {
        Ok(t) => t,
        Err(f) => {
            app.note(&f);
            return;
        }
    };
    if app.print_tx(&t, &item.teller).await.is_ok()
        && let Err(e) = app.outbox.printed(item.seq)
    {
        tracing::error!(error = %e, "counter: a printed receipt is not marked");
    }
}

pub(super) async fn voucher_page(
    State(app): State<Arc<App>>,
    Signed(s): Signed,
    Path(number): Path<String>,
) -> Response {
    let lang = s.lang;
    let item = app
        .outbox
        .all()
        .unwrap_or_default()
        .into_iter()
        .find(|i| i.voucher == number);
    let body = html! {
        @match item {
            Some(i) => {
                h1 { (M::VoucherNumber.text(lang)) " " span #voucher { (i.voucher) } }
                div.ok #voucher-taken { (M::Voucher.text(lang)) }
                table.facts {
                    tr { td { (M::Customer.text(lang)) } td { (i.label) } }
                    tr { td { (M::Amount.text(lang)) } td.amount { (vnd(i.amount)) } }
                    tr { td { (M::Fee.text(lang)) } td { (vnd(i.fee)) } }
                    tr { td { (M::ToCollect.text(lang)) } td.amount #voucher-total { (vnd(i.amount.saturating_add(i.fee))) } }
                }
                a #back href="/" autofocus { (M::NewTransaction.text(lang)) }
            }
            None => p { (number) },
        }
    };
    app.screen(&s, "/", None, body).await
}

pub(super) async fn refunds_page(State(app): State<Arc<App>>, Signed(s): Signed) -> Response {
    let lang = s.lang;
    let due = app.outbox.refunds_due().unwrap_or_default();
    let body = html! {
        h1 { (M::RefundsDue.text(lang)) }
        @if due.is_empty() { p #no-refunds { (M::NoRefunds.text(lang)) } }
        table.list #refunds {
            @for i in &due {
                tr {
                    td { (i.voucher) } td { (receipt::vietnam_time(i.taken_at_ms)) } td { (i.label) }
                    td.amount { (vnd(i.amount.saturating_add(i.fee))) }
                    td { (Refusal::new(&i.error_code, &i.error_message).sentence(lang)) }
                    td {
                        form method="post" action=(format!("/refunds/{}", i.seq)) {
                            (pages::hidden(&s.csrf, &[]))
                            button.refund type="submit" { (M::RefundReturned.text(lang)) }
                        }
                    }
                }
            }
        }
    };
    app.screen(&s, "/refunds", None, body).await
}

pub(super) async fn refund_returned(
    State(app): State<Arc<App>>,

    Path(seq): Path<i64>,
    Posted(_, s, _): Posted,
) -> Response {
    match app.outbox.refund_returned(seq, app.now_ms()) {
        Ok(()) => tracing::info!(seq, teller = %s.name, "counter: refund handed back"),
        Err(e) => tracing::warn!(seq, error = %e, "counter: refund not recorded"),
    }
    Redirect::to("/refunds").into_response()
}
