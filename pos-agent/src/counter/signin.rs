//! Signing in and out, and the language.

use super::*;

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    #[serde(default)]
    lang: String,
    #[serde(default)]
    ended: Option<String>,
}

pub(super) async fn home(State(app): State<Arc<App>>, _: Signed) -> Response {
    let open = lock(&app.shift).is_some();
    Redirect::to(if open { "/cash-in" } else { "/shift/open" }).into_response()
}

pub(super) async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    let lang = Lang::parse(&q.lang);
    let error = q.ended.map(|_| M::SessionEnded);
    page(pages::layout(
        lang,
        None,
        None,
        "/login",
        None,
        pages::login(lang, error),
    ))
}

pub(super) async fn login(State(app): State<Arc<App>>, Form(f): Form<Fields>) -> Response {
    let lang = Lang::parse(field(&f, "lang"));
    let (name, password) = (
        field(&f, "name").trim().to_string(),
        field(&f, "password").to_string(),
    );
    let state_dir = app.config.state_dir.clone();
    // Argon2 takes tens of milliseconds of CPU: off the async workers.
    let found = tokio::task::spawn_blocking(move || {
        let book = tellers::Book::load(&state_dir)?;
        Ok::<_, String>(book.verify(&name, &password).cloned())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match found {
        Ok(Some(t)) => {
            let token = token();
            let now = app.now_ms();
            tracing::info!(teller = %t.name, "counter: teller signed in");
            // The offline caps come with each sign-in.
            tokio::spawn(refresh_policy(app.clone()));
            lock(&app.sessions).insert(
                token.clone(),
                Session {
                    name: t.name,
                    full_name: t.full_name,
                    lang,
                    csrf: crate::counter::token(),
                    last_seen_ms: now,
                },
                now,
                app.config.idle_timeout_ms,
            );
            let mut r = Redirect::to("/").into_response();
            let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(None) => page(pages::layout(
            lang,
            None,
            None,
            "/login",
            None,
            pages::login(lang, Some(M::WrongPassword)),
        )),
        Err(e) => {
            tracing::error!(error = %e, "counter: the tellers' book does not read");
            (StatusCode::INTERNAL_SERVER_ERROR, e).into_response()
        }
    }
}

pub(super) async fn logout(State(app): State<Arc<App>>, Posted(t, s, _): Posted) -> Response {
    tracing::info!(teller = %s.name, "counter: teller signed out");
    lock(&app.sessions).by_token.remove(&t);
    Redirect::to("/login").into_response()
}

/// Vietnamese or English, back to the page the teller was on.
pub(super) async fn switch_lang(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Posted(t, s, _): Posted,
) -> Response {
    if let Some(x) = lock(&app.sessions).by_token.get_mut(&t) {
        x.lang = s.lang.other();
    }
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| {
            r.find("://")
                .and_then(|i| r[i + 3..].find('/').map(|j| r[i + 3 + j..].to_string()))
        })
        .unwrap_or_else(|| "/".to_string());
    Redirect::to(&back).into_response()
}
