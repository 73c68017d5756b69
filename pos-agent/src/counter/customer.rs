//! The customer's window and the PIN entry.

use super::*;

pub(super) async fn customer_page(State(app): State<Arc<App>>, Signed(s): Signed) -> Response {
    let view = lock(&app.customer).clone();
    let body = html! {
        (maud::DOCTYPE)
        html lang=(s.lang.code()) {
            head { meta charset="utf-8"; title { (M::CustomerScreen.text(s.lang)) }
                style { "body{font:28px 'DejaVu Sans',sans-serif;text-align:center;padding:30px}" } }
            body {
                div #customer { (pages::customer_view(s.lang, &view)) }
                script { (maud::PreEscaped("setInterval(function(){fetch('/api/customer').then(function(r){return r.text()}).then(function(h){document.getElementById('customer').innerHTML=h})},1000)")) }
            }
        }
    };
    page(body)
}

pub(super) async fn customer_fragment(State(app): State<Arc<App>>, Signed(s): Signed) -> Response {
    let view = lock(&app.customer).clone();
    page(pages::customer_view(s.lang, &view))
}

pub(super) async fn pin_page(State(app): State<Arc<App>>) -> Response {
    let pending = lock(&app.pin)
        .as_ref()
        .map(|p| (p.job.clone(), p.amount, p.label.clone()));
    let lang = Lang::Vi;
    let body = html! {
        (maud::DOCTYPE)
        html lang="vi" {
            head { meta charset="utf-8"; title { (M::EnterPin.text(lang)) }
                style { "body{font:24px 'DejaVu Sans',sans-serif;text-align:center;padding:30px;background:#222;color:#fff}input{font-size:32px;width:8em;text-align:center}" } }
            body {
                @match pending {
                    Some((job, amount, label)) => {
                        p { (label) } p { (vnd(amount)) }
                        form method="post" action="/" {
                            input type="hidden" name="job" value=(job);
                            label for="pin" { (M::EnterPin.text(lang)) } br;
                            input #pin name="pin" type="password" inputmode="numeric" autocomplete="off" autofocus;
                        }
                    }
                    None => p #no-pin { (M::NoPinRequest.text(lang)) },
                }
            }
        }
    };
    page(body)
}

pub(super) async fn pin_submit(State(app): State<Arc<App>>, Form(f): Form<Fields>) -> Response {
    let request = {
        let mut pin = lock(&app.pin);
        if pin.as_ref().is_some_and(|p| p.job == field(&f, "job")) {
            pin.take()
        } else {
            None
        }
    };
    match request {
        Some(r) => {
            let _ = r.pin.send(field(&f, "pin").to_string());
            page(
                html! { (maud::DOCTYPE) html { body { p #pin-taken { (M::PinSent.text(Lang::Vi)) } } } },
            )
        }
        None => Redirect::to("/").into_response(),
    }
}
