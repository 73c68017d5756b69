//! Cash-out with the customer's code: the notes to pay, then paid or cancelled.

use super::*;

pub(super) fn cash_out_form(s: &Session, f: &Fields, refusal: Option<&Refusal>) -> Markup {
    let lang = s.lang;
    html! {
        h1 { (M::CashOut.text(lang)) }
        @if let Some(r) = refusal { (pages::refusal(lang, r)) }
        form method="post" action="/cash-out/start" {
            (pages::hidden(&s.csrf, &[("request_id", &format!("counter-{}", token()))]))
            label for="bank" { (M::Bank.text(lang)) }
            input #bank name="bank" list="banks" autofocus value=(field(f, "bank")) autocomplete="off";
            (pages::bank_list())
            label for="account" { (M::Account.text(lang)) }
            input #account name="account" value=(field(f, "account")) autocomplete="off";
            label for="code" { (M::WithdrawalCode.text(lang)) }
            input #code name="code" inputmode="numeric" autocomplete="off";
            label for="amount" { (M::Amount.text(lang)) }
            input #amount name="amount" inputmode="numeric" value=(field(f, "amount")) autocomplete="off";
            div { button #start type="submit" { (M::Check.text(lang)) } }
        }
    }
}

pub(super) async fn cash_out_page(State(app): State<Arc<App>>, Signed(s): Signed) -> Response {
    let body = html! { @if let Some(m) = shift_required(&app, &s) { (m) } (cash_out_form(&s, &Vec::new(), None)) };
    app.screen(&s, "/cash-out", None, body).await
}

pub(super) async fn cash_out_start(
    State(app): State<Arc<App>>,
    Posted(_, s, f): Posted,
) -> Response {
    let lang = s.lang;
    let (Some(bank), Some(amount)) = (
        cash::find_bank(field(&f, "bank")),
        cash::parse_amount(field(&f, "amount")),
    ) else {
        let body = html! { div.refusal #refusal { (M::BadBank.text(lang)) " " (M::BadAmount.text(lang)) } (cash_out_form(&s, &f, None)) };
        return app.screen(&s, "/cash-out", None, body).await;
    };
    let account = field(&f, "account").trim().to_string();
    let msg = pb::CashOutStartRequest {
        client_request_id: field(&f, "request_id").to_string(),
        bank_bin: bank.bin.to_string(),
        account: account.clone(),
        code: field(&f, "code").trim().to_string(),
        amount,
        teller: s.full_name.clone(),
    };
    match app.link.cash_out_start(msg).await {
        Ok(r) => {
            let t = r.transaction.unwrap_or_default();
            if t.status != pb::TxStatus::Pending as i32 {
                return Redirect::to(&format!("/tx/{}", t.transaction_id)).into_response();
            }
            let (notes, rest) = cash::notes_for(t.amount);
            let body = html! {
                h1 { (M::CashOut.text(lang)) }
                (pages::facts(lang, &t))
                h2 { (M::PayOutNotes.text(lang)) ": " span.amount { (vnd(t.amount)) } }
                ul #notes {
                    @for (d, n) in &notes { li { (n) " × " (vnd(*d)) } }
                    @if rest > 0 { li { (vnd(rest)) } }
                }
                form method="post" action="/cash-out/confirm" style="display:inline" {
                    (pages::hidden(&s.csrf, &[("id", &t.transaction_id)]))
                    button #paid type="submit" autofocus { (M::PaidOut.text(lang)) }
                }
                form method="post" action="/cash-out/cancel" style="display:inline" {
                    (pages::hidden(&s.csrf, &[("id", &t.transaction_id)]))
                    button.danger #cancel type="submit" { (M::Cancel.text(lang)) }
                }
            };
            app.screen(&s, "/cash-out", None, body).await
        }
        Err(e) => {
            // Only the bank checks a code and a balance: never offline.
            let r = if link::unreachable(&e) {
                app.note(&e);
                Refusal::new("offline_not_deferrable", &e.message)
            } else {
                app.refusal(e, Some((bank.bin, &account))).await
            };
            app.screen(&s, "/cash-out", None, cash_out_form(&s, &f, Some(&r)))
                .await
        }
    }
}

pub(super) async fn cash_out_confirm(
    State(app): State<Arc<App>>,
    Posted(_, s, f): Posted,
) -> Response {
    let result = app.link.cash_out_confirm(field(&f, "id")).await;
    let form = |r: &Refusal| cash_out_form(&s, &Vec::new(), Some(r));
    app.after(&s, result, None, form, "/cash-out").await
}

pub(super) async fn cash_out_cancel(
    State(app): State<Arc<App>>,
    Posted(_, s, f): Posted,
) -> Response {
    let result = app.link.cash_out_cancel(field(&f, "id")).await;
    let form = |r: &Refusal| cash_out_form(&s, &Vec::new(), Some(r));
    app.after(&s, result, None, form, "/cash-out").await
}
