//! Bills and top-ups, in cash, by card (the PIN at the PIN entry) or by QR.

use super::*;

/// How the customer pays; offline, cash only (cards and QR need their
/// bank at once).
pub(super) fn funding_fields(lang: Lang, offline: bool) -> Markup {
    html! {
        label for="funding" { (M::Funding.text(lang)) }
        select #funding name="funding" {
            option value="cash" { (M::FundCash.text(lang)) }
            @if !offline {
                option value="card" { (M::FundCard.text(lang)) }
                option value="qr" { (M::FundQr.text(lang)) }
            }
        }
        @if !offline {
            label for="card" { (M::CardNumber.text(lang)) }
            input #card name="card" inputmode="numeric" autocomplete="off";
        }
    }
}

pub(super) async fn bills_form(
    app: &App,
    s: &Session,
    f: &Fields,
    refusal: Option<&Refusal>,
) -> Markup {
    let lang = s.lang;
    let billers = match app.link.billers().await {
        Ok(b) => {
            if let Err(e) = app.outbox.keep_billers(&b) {
                tracing::warn!(error = %e, "counter: billers not kept");
            }
            b
        }
        Err(e) => {
            app.note(&e);
            app.outbox.billers().unwrap_or_default()
        }
    };
    let chosen = field(f, "biller");
    html! {
        h1 { (M::Bills.text(lang)) }
        @if let Some(r) = refusal { (pages::refusal(lang, r)) }
        form method="post" action="/bills/inquire" {
            (pages::hidden(&s.csrf, &[]))
            label for="biller" { (M::Biller.text(lang)) }
            select #biller name="biller" autofocus {
                @for b in &billers {
                    option value=(b.code) selected[b.code == chosen] { (b.code) " · " (b.name) }
                }
            }
            label for="customer" { (M::CustomerCode.text(lang)) }
            input #customer name="customer" value=(field(f, "customer")) autocomplete="off";
            div { button #find type="submit" { (M::FindBills.text(lang)) } }
        }
    }
}

pub(super) async fn bills_page(State(app): State<Arc<App>>, Signed(s): Signed) -> Response {
    let body = html! { @if let Some(m) = shift_required(&app, &s) { (m) } (bills_form(&app, &s, &Vec::new(), None).await) };
    app.screen(&s, "/bills", None, body).await
}

pub(super) async fn bills_inquire(
    State(app): State<Arc<App>>,
    Posted(_, s, f): Posted,
) -> Response {
    let lang = s.lang;
    let (biller, customer) = (field(&f, "biller"), field(&f, "customer").trim());
    let (r, offline) = match app.link.inquire_bills(biller, customer).await {
        Ok(r) => {
            if let Err(e) = app.outbox.saw_bills(&r, app.now_ms()) {
                tracing::warn!(error = %e, "counter: inquired bills not kept");
            }
            (r, false)
        }
        Err(e) if link::unreachable(&e) => {
            app.note(&e);
            match app.offline_bills(biller, customer) {
                Ok(r) => (r, true),
                Err(r) => {
                    let body = bills_form(&app, &s, &f, Some(&r)).await;
                    return app.screen(&s, "/bills", None, body).await;
                }
            }
        }
        Err(e) => {
            let r = app.refusal(e, None).await;
            let body = bills_form(&app, &s, &f, Some(&r)).await;
            return app.screen(&s, "/bills", None, body).await;
        }
    };
    let body = html! {
        h1 { (M::Bills.text(lang)) }
        @if offline { div.refusal #offline-note { (M::OfflineNote.text(lang)) } }
        table.facts {
            tr { td { (M::Biller.text(lang)) } td { (r.biller_name) } }
            tr { td { (M::Customer.text(lang)) } td #bill-customer { (r.customer_name) " · " (r.customer) } }
        }
        @if r.nothing_due {
            div.ok #nothing-due { (M::NothingDue.text(lang)) }
            a #back href="/bills" { (M::Back.text(lang)) }
        } @else {
            form method="post" action="/bills/pay" {
                (pages::hidden(&s.csrf, &[("biller", &r.biller), ("customer", &r.customer), ("request_id", &format!("counter-{}", token()))]))
                table.list #bills {
                    tr { th {} th { (M::Period.text(lang)) } th { (M::DueDate.text(lang)) } th { (M::Amount.text(lang)) } }
                    @for b in &r.bills {
                        tr {
                            td {
                                // The ids always go with the payment, so a
                                // payment forwarded later pays these bills
                                // and no other.
                                @if r.partial_allowed {
                                    input type="checkbox" name="bill" value=(b.bill_id) checked style="width:auto";
                                } @else {
                                    input type="hidden" name="bill" value=(b.bill_id);
                                    input type="checkbox" checked disabled style="width:auto";
                                }
                            }
                            td { (b.period) } td { (b.due_date) } td { (vnd(b.amount)) }
                        }
                    }
                }
                table.facts {
                    tr { td { (M::Total.text(lang)) } td.amount #bills-total { (vnd(r.total)) } }
                    tr { td { (M::Fee.text(lang)) } td #fee { (vnd(r.fee)) } }
                    tr { td { (M::ToCollect.text(lang)) } td.amount { (vnd(r.total.saturating_add(r.fee))) } }
                }
                (funding_fields(lang, offline))
                div { button #pay type="submit" autofocus { (M::Pay.text(lang)) } a #back href="/bills" { (M::Back.text(lang)) } }
            }
        }
    };
    app.screen(&s, "/bills", None, body).await
}

pub(super) fn funding_of(s: &str) -> pb::Funding {
    match s {
        "card" => pb::Funding::Card,
        "qr" => pb::Funding::Qr,
        _ => pb::Funding::Cash,
    }
}

/// A payment: at once for cash and QR; for a card, after the customer's
/// PIN arrives at the PIN entry (the page waits on `/job/{id}`).
pub(super) async fn pay(
    app: Arc<App>,
    s: Session,
    f: Fields,
    what: Payment,
    amount: u64,
    label: String,
) -> Response {
    let funding = funding_of(field(&f, "funding"));
    if funding != pb::Funding::Card {
        let screen = what.screen();
        return match what.send(&app, None).await {
            Ok(r) => app.after(&s, Ok(r), None, |_| html! {}, screen).await,
            Err(e) if link::unreachable(&e) => {
                app.note(&e);
                let taken = if funding == pb::Funding::Cash {
                    app.offline_payment(&s, &what).await
                } else {
                    Err(Refusal::new("offline_not_deferrable", &e.message))
                };
                match taken {
                    Ok(v) => Redirect::to(&format!("/voucher/{v}")).into_response(),
                    Err(r) => {
                        let body = match &what {
                            Payment::Bills(_) => bills_form(&app, &s, &f, Some(&r)).await,
                            Payment::TopUp(_) => topup_form(&s, &f, Some(&r)),
                        };
                        app.screen(&s, screen, None, body).await
                    }
                }
            }
            Err(e) => {
                let r = app.refusal(e, None).await;
                let body = match &what {
                    Payment::Bills(_) => bills_form(&app, &s, &f, Some(&r)).await,
                    Payment::TopUp(_) => topup_form(&s, &f, Some(&r)),
                };
                app.screen(&s, screen, None, body).await
            }
        };
    }
    let card = field(&f, "card").trim().to_string();
    let job = token();
    let (pin_tx, pin_rx) = tokio::sync::oneshot::channel::<String>();
    {
        let mut jobs = lock(&app.jobs);
        if jobs.len() >= JOBS_MAX {
            jobs.retain(|_, j| matches!(j, Job::Waiting));
        }
        jobs.insert(job.clone(), Job::Waiting);
    }
    // One PIN pad: a newer payment takes it over (the older one ends
    // without a PIN when its sender is dropped).
    *lock(&app.pin) = Some(PinRequest {
        job: job.clone(),
        amount,
        label: label.clone(),
        pin: pin_tx,
    });
    *lock(&app.customer) = CustomerView::Pin { amount, label };
    let timeout = std::time::Duration::from_millis(app.config.pin_timeout_ms);
    let app2 = app.clone();
    let job2 = job.clone();
    let teller = s.full_name.clone();
    tokio::spawn(async move {
        let outcome = match tokio::time::timeout(timeout, pin_rx).await {
            Ok(Ok(pin)) => match app2.link.card(&card, &pin) {
                Ok(fields) => match what.send(&app2, Some(fields)).await {
                    Ok(r) => {
                        let t = r.transaction.unwrap_or_default();
                        if t.status == pb::TxStatus::Completed as i32 {
                            let _ = app2.print_tx(&t, &teller).await;
                        }
                        Ok(t.transaction_id)
                    }
                    Err(e) if link::unreachable(&e) => {
                        app2.note(&e);
                        Err(Refusal::new("offline_not_deferrable", &e.message))
                    }
                    Err(e) => Err(app2.refusal(e, None).await),
                },
                Err(m) => Err(Refusal::new("invalid_card", &m)),
            },
            _ => Err(Refusal::new("pin_timeout", "no PIN arrived")),
        };
        {
            let mut pin = lock(&app2.pin);
            if pin.as_ref().is_some_and(|p| p.job == job2) {
                *pin = None;
            }
        }
        *lock(&app2.customer) = CustomerView::Idle;
        lock(&app2.jobs).insert(job2, Job::Done(outcome));
    });
    Redirect::to(&format!("/job/{job}")).into_response()
}

/// What a payment form sends.
pub(super) enum Payment {
    Bills(pb::PayBillsRequest),
    TopUp(pb::TopUpRequest),
}

impl Payment {
    fn screen(&self) -> &'static str {
        match self {
            Payment::Bills(_) => "/bills",
            Payment::TopUp(_) => "/topup",
        }
    }

    async fn send(
        &self,
        app: &App,
        card: Option<(String, String)>,
    ) -> Result<pb::TransactionResponse, Failure> {
        let (card_number, pin_block) = card.unwrap_or_default();
        match self {
            Payment::Bills(m) => {
                let mut m = m.clone();
                m.card_number = card_number;
                m.pin_block = pin_block;
                app.link.pay_bills(m).await
            }
            Payment::TopUp(m) => {
                let mut m = m.clone();
                m.card_number = card_number;
                m.pin_block = pin_block;
                app.link.top_up(m).await
            }
        }
    }
}

pub(super) async fn bills_pay(State(app): State<Arc<App>>, Posted(_, s, f): Posted) -> Response {
    let bill_ids: Vec<String> = f
        .iter()
        .filter(|(k, _)| k == "bill")
        .map(|(_, v)| v.clone())
        .collect();
    let msg = pb::PayBillsRequest {
        client_request_id: field(&f, "request_id").to_string(),
        biller: field(&f, "biller").to_string(),
        customer: field(&f, "customer").to_string(),
        bill_ids,
        funding: funding_of(field(&f, "funding")) as i32,
        teller: s.full_name.clone(),
        ..Default::default()
    };
    // The amount for the PIN pad: the bills' total, read again.
    let amount = if msg.funding == pb::Funding::Card as i32 {
        match app.link.inquire_bills(&msg.biller, &msg.customer).await {
            Ok(r) => r.total.saturating_add(r.fee),
            Err(_) => 0,
        }
    } else {
        0
    };
    let label = format!("{} · {}", msg.biller, msg.customer);
    pay(app, s, f, Payment::Bills(msg), amount, label).await
}

pub(super) const PROVIDERS: [&str; 3] = ["VIETTEL", "VINAPHONE", "MOBIFONE"];
pub(super) const TOPUP_AMOUNTS: [u64; 8] = [
    10_000, 20_000, 30_000, 50_000, 100_000, 200_000, 300_000, 500_000,
];

pub(super) fn topup_form(s: &Session, f: &Fields, refusal: Option<&Refusal>) -> Markup {
    let lang = s.lang;
    html! {
        h1 { (M::TopUp.text(lang)) }
        @if let Some(r) = refusal { (pages::refusal(lang, r)) }
        form method="post" action="/topup/pay" {
            (pages::hidden(&s.csrf, &[("request_id", &format!("counter-{}", token()))]))
            label for="provider" { (M::Provider.text(lang)) }
            select #provider name="provider" autofocus {
                @for p in PROVIDERS { option value=(p) selected[p == field(f, "provider")] { (p) } }
            }
            label for="phone" { (M::Phone.text(lang)) }
            input #phone name="phone" inputmode="tel" value=(field(f, "phone")) autocomplete="off";
            label for="amount" { (M::Amount.text(lang)) }
            select #amount name="amount" {
                @for a in TOPUP_AMOUNTS { option value=(a) selected[a.to_string() == field(f, "amount")] { (vnd(a)) } }
            }
            (funding_fields(lang, false))
            div { button #pay type="submit" { (M::Pay.text(lang)) } }
        }
    }
}

pub(super) async fn topup_page(State(app): State<Arc<App>>, Signed(s): Signed) -> Response {
    let body = html! { @if let Some(m) = shift_required(&app, &s) { (m) } (topup_form(&s, &Vec::new(), None)) };
    app.screen(&s, "/topup", None, body).await
}

pub(super) async fn topup_pay(State(app): State<Arc<App>>, Posted(_, s, f): Posted) -> Response {
    let amount = cash::parse_amount(field(&f, "amount")).unwrap_or(0);
    let msg = pb::TopUpRequest {
        client_request_id: field(&f, "request_id").to_string(),
        provider: field(&f, "provider").to_string(),
        phone: field(&f, "phone").to_string(),
        amount,
        funding: funding_of(field(&f, "funding")) as i32,
        teller: s.full_name.clone(),
        ..Default::default()
    };
    let label = format!("{} · {}", msg.provider, msg.phone);
    pay(app, s, f, Payment::TopUp(msg), amount, label).await
}
