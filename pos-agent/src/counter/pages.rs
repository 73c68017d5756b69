//! The counter's pages, as maud templates: markup checked when built,
//! every value escaped by construction. Keyboard first: each form's first
//! field has the focus, Enter submits, the F-keys change screens and Esc
//! goes back; every screen fits 1366×768.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use proto::v1 as pb;

use super::text::{Lang, M, Refusal};
use crate::receipt::{vietnam_time, vnd};

/// Who is at the counter, for the header.
pub struct Who<'a> {
    pub full_name: &'a str,
    pub terminal: &'a str,
    pub post_office: &'a str,
    pub csrf: &'a str,
    pub lang: Lang,
}

/// The always-visible panel: e-float and limits left, and whether the
/// counter is offline, with what it holds queued and owes back.
#[derive(Default)]
pub struct Panel {
    pub e_float: Option<u64>,
    pub limits: Vec<pb::Limit>,
    pub online: bool,
    /// Items in the outbox: how many, and their total collected.
    pub queued: (usize, u64),
    pub refunds_due: usize,
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:16px/1.4 "DejaVu Sans",Arial,sans-serif;background:#f3f5f7;color:#1b1f23}
header{display:flex;align-items:center;gap:16px;background:#0b4f8a;color:#fff;padding:6px 14px}
header .who{margin-left:auto}
header form{display:inline}
header button{background:#fff2;color:#fff;border:1px solid #fff6;padding:3px 10px}
nav{display:flex;gap:4px;background:#dde6ef;padding:4px 8px;flex-wrap:wrap}
nav a{padding:4px 10px;text-decoration:none;color:#0b4f8a;border-radius:3px}
nav a.on{background:#0b4f8a;color:#fff}
nav kbd{font-size:11px;opacity:.7;margin-right:4px}
.wrap{display:grid;grid-template-columns:1fr 300px;gap:14px;padding:14px;max-width:1366px}
main{background:#fff;padding:16px 20px;border-radius:6px;min-height:520px}
aside{background:#fff;padding:12px 14px;border-radius:6px;font-size:14px}
aside .big{font-size:22px;font-weight:bold}
aside table{width:100%;border-collapse:collapse}
aside td{padding:3px 0;border-bottom:1px solid #eee}
h1{font-size:22px;margin:0 0 12px}
label{display:block;margin:8px 0 2px;font-weight:bold}
input,select{font:inherit;padding:6px 8px;width:100%;max-width:420px;border:1px solid #9aa}
input:focus,select:focus,button:focus{outline:3px solid #f5a623}
button{font:inherit;padding:8px 18px;margin:12px 8px 0 0;border:0;border-radius:4px;background:#0b4f8a;color:#fff;cursor:pointer}
button.second{background:#6c757d}
button.danger{background:#b02a37}
.refusal{background:#fdecea;border-left:6px solid #b02a37;padding:10px 14px;margin:10px 0;font-size:18px}
.ok{background:#e8f5e9;border-left:6px solid #2e7d32;padding:10px 14px;margin:10px 0}
.note{color:#555;font-size:13px}
.facts td{padding:4px 14px 4px 0}
.facts td:first-child{color:#555}
.amount{font-size:26px;font-weight:bold}
table.list{border-collapse:collapse;width:100%;font-size:14px}
table.list th,table.list td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left}
table.count td{padding:2px 8px}
table.count input{width:90px}
.keys{font-size:12px;color:#555;padding:0 14px}
"#;

/// Keyboard: F-keys between screens, Esc back, Enter on a list submits; the drawer counts add up
/// as they are typed; a page that waits polls.
const SCRIPT: &str = r#"
document.addEventListener('keydown', function (e) {
  var go = {F2:'/cash-in',F3:'/cash-out',F4:'/bills',F6:'/topup',F7:'/today',F8:'/shift/open',F9:'/shift/close'}[e.key];
  if (go) { e.preventDefault(); location.href = go; }
  // Enter on a list submits its form, as in a text field.
  if (e.key === 'Enter' && e.target.tagName === 'SELECT' && e.target.form) { e.preventDefault(); e.target.form.requestSubmit(); }
  if (e.key === 'Escape') { e.preventDefault(); var b = document.getElementById('back'); location.href = b ? b.getAttribute('href') : '/'; }
});
function recount() {
  var t = 0;
  document.querySelectorAll('input[data-d]').forEach(function (i) {
    var n = parseInt(i.value || '0', 10); if (n > 0) t += n * parseInt(i.dataset.d, 10);
  });
  var s = document.getElementById('count-total');
  if (s) s.textContent = t.toLocaleString('de-DE') + ' ₫';
}
document.addEventListener('input', recount);
var poll = document.body && document.body.dataset.poll;
"#;

pub fn layout(
    lang: Lang,
    who: Option<&Who>,
    panel: Option<&Panel>,
    screen: &str,
    poll_ms: Option<u64>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=1366";
                title { (M::AppTitle.text(lang)) }
                style { (PreEscaped(STYLE)) }
                @if let Some(ms) = poll_ms {
                    meta http-equiv="refresh" content=(format!("{}", ms.div_ceil(1000)));
                }
            }
            body {
                header {
                    strong { (M::AppTitle.text(lang)) }
                    @if let Some(w) = who {
                        span { (w.post_office) " · " (M::Terminal.text(lang)) " " (w.terminal) }
                        span.who #who { (M::Teller.text(lang)) ": " (w.full_name) }
                        form method="post" action="/lang" {
                            input type="hidden" name="csrf" value=(w.csrf);
                            button #lang type="submit" { (M::Language.text(lang)) }
                        }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(w.csrf);
                            button #sign-out type="submit" { (M::SignOut.text(lang)) }
                        }
                    } @else {
                        span.who {
                            a style="color:#fff" href=(format!("/login?lang={}", lang.other().code())) { (M::Language.text(lang)) }
                        }
                    }
                }
                @if who.is_some() {
                    nav {
                        @for (path, key, label) in [
                            ("/cash-in", "F2", M::CashIn), ("/cash-out", "F3", M::CashOut),
                            ("/bills", "F4", M::Bills), ("/topup", "F6", M::TopUp),
                            ("/today", "F7", M::Today), ("/shift/open", "F8", M::OpenShift),
                            ("/shift/close", "F9", M::CloseShift),
                        ] {
                            a class=@if screen == path { "on" } href=(path) { kbd { (key) } (label.text(lang)) }
                        }
                        a href="/customer" target="customer" { (M::CustomerScreen.text(lang)) }
                    }
                }
                div.wrap {
                    main { (body) }
                    @if let Some(p) = panel { (panel_view(lang, p)) }
                }
                @if who.is_some() { p.keys { (M::Keys.text(lang)) } }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

fn panel_view(lang: Lang, p: &Panel) -> Markup {
    html! {
        aside #panel {
            @if !p.online {
                div.refusal #offline { (M::Offline.text(lang)) }
            }
            @if p.queued.0 > 0 {
                div.ok #queued { (M::Queued.text(lang)) ": " (p.queued.0) " · " (vnd(p.queued.1)) }
            }
            @if p.refunds_due > 0 {
                div.refusal #refunds-due { a href="/refunds" { (M::RefundsDue.text(lang)) ": " (p.refunds_due) } }
            }
            div { (M::EFloat.text(lang)) }
            div.big #e-float { (p.e_float.map_or("—".to_string(), vnd)) }
            h3 { (M::Headroom.text(lang)) }
            table {
                @for l in &p.limits {
                    tr id=(format!("left-{}", l.limit)) {
                        td { (limit_label(lang, &l.limit)) }
                        td style="text-align:right" {
                            @if l.max == u64::MAX { (M::Unlimited.text(lang)) } @else { (vnd(l.left)) }
                        }
                    }
                }
            }
        }
    }
}

pub fn limit_label(lang: Lang, limit: &str) -> &'static str {
    match limit {
        "terminal_daily" => M::TerminalDaily,
        "post_office_daily" => M::PostOfficeDaily,
        "post_office_monthly" => M::PostOfficeMonthly,
        "customer_daily" => M::CustomerDaily,
        _ => M::CustomerMonthly,
    }
    .text(lang)
}

pub fn refusal(lang: Lang, r: &Refusal) -> Markup {
    html! {
        div.refusal #refusal role="alert" {
            strong { (M::Refused.text(lang)) ": " } (r.sentence(lang))
            div.note { (M::Detail.text(lang)) ": " (r.code) " — " (r.detail) }
        }
    }
}

pub fn login(lang: Lang, error: Option<M>) -> Markup {
    html! {
        h1 { (M::SignIn.text(lang)) }
        @if let Some(e) = error { div.refusal #error { (e.text(lang)) } }
        form method="post" action="/login" {
            input type="hidden" name="lang" value=(lang.code());
            label for="name" { (M::TellerName.text(lang)) }
            input #name name="name" autofocus autocomplete="username";
            label for="password" { (M::Password.text(lang)) }
            input #password name="password" type="password" autocomplete="current-password";
            div { button #sign-in type="submit" { (M::SignIn.text(lang)) } }
        }
    }
}

/// A drawer count by denomination.
pub fn count_form(lang: Lang, csrf: &str, action: &str, button: M, id: &str) -> Markup {
    html! {
        form method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            p { (M::CountDrawer.text(lang)) }
            table.count {
                tr { th { (M::Denomination.text(lang)) } th { (M::Notes.text(lang)) } }
                @for (i, d) in super::cash::DENOMINATIONS.iter().enumerate() {
                    tr {
                        td { label for=(format!("n{d}")) { (vnd(*d)) } }
                        td { input id=(format!("n{d}")) name=(format!("n{d}")) inputmode="numeric" data-d=(d) autofocus[i == 0]; }
                    }
                }
                tr { td { strong { (M::Total.text(lang)) } } td { strong #count-total { "0 ₫" } } }
            }
            button id=(id) type="submit" { (button.text(lang)) }
        }
    }
}

pub fn hidden(csrf: &str, fields: &[(&str, &str)]) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(csrf);
        @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
    }
}

pub fn bank_list() -> Markup {
    html! {
        datalist #banks {
            @for b in qr::BANKS { option value=(format!("{} · {}", b.bin, b.short_name)) {} }
        }
    }
}

pub fn status_label(lang: Lang, s: i32) -> &'static str {
    match pb::TxStatus::try_from(s) {
        Ok(pb::TxStatus::Completed) => M::Completed,
        Ok(pb::TxStatus::Pending) => M::Pending,
        Ok(pb::TxStatus::Reversed) => M::Reversed,
        _ => M::Failed,
    }
    .text(lang)
}

pub fn kind_label(lang: Lang, k: i32) -> &'static str {
    match pb::TxKind::try_from(k) {
        Ok(pb::TxKind::CashIn) => M::CashIn,
        Ok(pb::TxKind::CashOut) => M::CashOut,
        Ok(pb::TxKind::TopUp) => M::TopUp,
        _ => M::Bills,
    }
    .text(lang)
}

/// A transaction's facts.
pub fn facts(lang: Lang, t: &pb::Transaction) -> Markup {
    html! {
        table.facts {
            tr { td { (M::Id.text(lang)) } td #tx-id { (t.transaction_id) } }
            tr { td { (M::Kind.text(lang)) } td { (kind_label(lang, t.kind)) } }
            tr { td { (M::Time.text(lang)) } td { (vietnam_time(t.created_at_ms)) } }
            @if !t.bank_name.is_empty() {
                tr { td { (M::BankShort.text(lang)) } td { (t.bank_name) " (" (t.bank_bin) ")" } }
                tr { td { (M::Account.text(lang)) } td { (t.account_masked) } }
            }
            @if !t.account_name.is_empty() { tr { td { (M::Holder.text(lang)) } td { (t.account_name) } } }
            @if !t.biller.is_empty() { tr { td { (M::Biller.text(lang)) } td { (t.biller) " · " (t.bill_customer) } } }
            tr { td { (M::Amount.text(lang)) } td.amount { (vnd(t.amount)) } }
            tr { td { (M::Fee.text(lang)) } td { (vnd(t.fee)) } }
            tr { td { (M::Status.text(lang)) } td #status { (status_label(lang, t.status)) } }
        }
    }
}

/// The customer-facing window's content.
pub fn customer_view(lang: Lang, view: &super::CustomerView) -> Markup {
    use super::CustomerView::*;
    html! {
        @match view {
            Idle => { h1 { (M::Welcome.text(lang)) } }
            Qr { payload, amount, label } => {
                h1 { (M::ScanToPay.text(lang)) }
                p { (label) }
                p.amount { (vnd(*amount)) }
                div #customer-qr { (PreEscaped(qr_svg(payload))) }
            }
            Pin { amount, label } => {
                h1 { (M::WaitingPin.text(lang)) }
                p { (label) }
                p.amount { (vnd(*amount)) }
            }
        }
    }
}

fn qr_svg(payload: &str) -> String {
    match qrcode::QrCode::new(payload.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(320, 320)
            .build(),
        Err(_) => String::new(),
    }
}
