//! Cash-in: the holder's name and the fee before the teller confirms.

use super::*;

pub(super) fn cash_in_form(s: &Session, f: &Fields, refusal: Option<&Refusal>) -> Markup {
    let lang = s.lang;
    html! {
        h1 { (M::CashIn.text(lang)) }
        @if let Some(r) = refusal { (pages::refusal(lang, r)) }
        form method="post" action="/cash-in/check" {
            (pages::hidden(&s.csrf, &[]))
            label for="bank" { (M::Bank.text(lang)) }
            input #bank name="bank" list="banks" autofocus value=(field(f, "bank")) autocomplete="off";
            (pages::bank_list())
            label for="account" { (M::Account.text(lang)) }
            input #account name="account" value=(field(f, "account")) autocomplete="off";
            label for="amount" { (M::Amount.text(lang)) }
            input #amount name="amount" inputmode="numeric" value=(field(f, "amount")) autocomplete="off";
            div { button #check type="submit" { (M::Check.text(lang)) } }
        }
    }
}

pub(super) async fn cash_in_page(State(app): State<Arc<App>>, Signed(s): Signed) -> Response {
    let body = html! { @if let Some(m) = shift_required(&app, &s) { (m) } (cash_in_form(&s, &Vec::new(), None)) };
    app.screen(&s, "/cash-in", None, body).await
}

pub(super) async fn cash_in_check(
    State(app): State<Arc<App>>,
    Posted(_, s, f): Posted,
) -> Response {
    let lang = s.lang;
    let local = |m: M| Refusal::new("input", m.text(lang));
    let Some(bank) = cash::find_bank(field(&f, "bank")) else {
        let mut r = local(M::BadBank);
        r.code = "unknown_bank".into();
        return app
            .screen(&s, "/cash-in", None, cash_in_form(&s, &f, Some(&r)))
            .await;
    };
    let Some(amount) = cash::parse_amount(field(&f, "amount")) else {
        let body = html! { div.refusal #refusal { (M::BadAmount.text(lang)) } (cash_in_form(&s, &f, None)) };
        return app.screen(&s, "/cash-in", None, body).await;
    };
    let account = field(&f, "account").trim().to_string();
    let customer = Some((bank.bin, account.as_str()));
    let (name, quote, limits) = tokio::join!(
        app.link.name_inquiry(bank.bin, &account),
        app.link.quote_fee(pb::TxKind::CashIn, amount),
        app.link.limits(customer),
    );
    let (name, offline) = match name {
        Ok(n) => {
            if let Err(e) = app
                .outbox
                .saw_name(bank.bin, &account, &n.account_name, app.now_ms())
            {
                tracing::warn!(error = %e, "counter: a holder's name not kept");
            }
            (n, false)
        }
        Err(e) if link::unreachable(&e) => {
            app.note(&e);
            match app.offline_name(bank.bin, &account) {
                Ok(holder) => (
                    pb::NameInquiryResponse {
                        bank_bin: bank.bin.to_string(),
                        bank_name: bank.short_name.to_string(),
                        account_masked: mask(&account),
                        account_name: holder,
                    },
                    true,
                ),
                Err(r) => {
                    return app
                        .screen(&s, "/cash-in", None, cash_in_form(&s, &f, Some(&r)))
                        .await;
                }
            }
        }
        Err(e) => {
            let r = app.refusal(e, customer).await;
            return app
                .screen(&s, "/cash-in", None, cash_in_form(&s, &f, Some(&r)))
                .await;
        }
    };
    let fee = match &quote {
        Ok(q) => q.fee,
        Err(_) => app.offline_fee(pb::TxKind::CashIn, amount).unwrap_or(0),
    };
    let customer_left: Vec<pb::Limit> = limits
        .map(|l| {
            l.limits
                .into_iter()
                .filter(|l| l.limit.starts_with("customer_"))
                .collect()
        })
        .unwrap_or_default();
    let request_id = format!("counter-{}", token());
    let amount_text = amount.to_string();
    let body = html! {
        h1 { (M::CashIn.text(lang)) }
        @if offline { div.refusal #offline-note { (M::OfflineNote.text(lang)) } }
        p { (M::ConfirmHolder.text(lang)) }
        table.facts {
            tr { td { (M::BankShort.text(lang)) } td { (name.bank_name) " (" (name.bank_bin) ")" } }
            tr { td { (M::Account.text(lang)) } td { (name.account_masked) } }
            tr { td { (M::Holder.text(lang)) } td.amount #holder { (name.account_name) } }
            tr { td { (M::Amount.text(lang)) } td #confirm-amount { (vnd(amount)) } }
            tr { td { (M::Fee.text(lang)) } td #fee { (vnd(fee)) } }
            tr { td { (M::ToCollect.text(lang)) } td.amount { (vnd(amount.saturating_add(fee))) } }
            @for l in &customer_left {
                tr {
                    td { (pages::limit_label(lang, &l.limit)) }
                    td { @if l.max == u64::MAX { (M::Unlimited.text(lang)) } @else { (vnd(l.left)) } }
                }
            }
        }
        form method="post" action="/cash-in/confirm" {
            (pages::hidden(&s.csrf, &[("bank", bank.bin), ("account", &account), ("amount", &amount_text), ("request_id", &request_id)]))
            button #confirm type="submit" autofocus { (M::Confirm.text(lang)) }
            a #back href="/cash-in" { (M::Back.text(lang)) }
        }
    };
    app.screen(&s, "/cash-in", None, body).await
}

pub(super) async fn cash_in_confirm(
    State(app): State<Arc<App>>,
    Posted(_, s, f): Posted,
) -> Response {
    let Some(amount) = cash::parse_amount(field(&f, "amount")) else {
        return app
            .screen(&s, "/cash-in", None, cash_in_form(&s, &f, None))
            .await;
    };
    let (bank, account) = (field(&f, "bank"), field(&f, "account"));
    let msg = pb::CashInRequest {
        client_request_id: field(&f, "request_id").to_string(),
        bank_bin: bank.to_string(),
        account: account.to_string(),
        amount,
        teller: s.full_name.clone(),
        offline_taken_at_ms: 0,
    };
    let result = app.link.cash_in(msg.clone()).await;
    let form = |r: &Refusal| cash_in_form(&s, &f, Some(r));
    if let Err(e) = &result
        && link::unreachable(e)
    {
        app.note(e);
        let now = app.now_ms();
        let mut m = msg;
        m.offline_taken_at_ms = now;
        let holder = app.offline_name(bank, account).unwrap_or_default();
        let label = format!("{} · {} · {holder}", bank_name(bank), mask(account));
        let taken = app
            .take_offline(
                &s,
                pb::TxKind::CashIn,
                &m.client_request_id,
                m.encode_to_vec(),
                amount,
                "NỘP TIỀN VÀO TÀI KHOẢN",
                label,
                now,
            )
            .await;
        return match taken {
            Ok(v) => Redirect::to(&format!("/voucher/{v}")).into_response(),
            Err(r) => app.screen(&s, "/cash-in", None, form(&r)).await,
        };
    }
    app.after(&s, result, Some((bank, account)), form, "/cash-in")
        .await
}
