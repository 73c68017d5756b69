//! The operations console: server-rendered pages served by the switch on
//! its own tokio runtime (`--console-listen`, axum), for operators and for
//! banks' settlement staff, who see only their bank.
//!
//! Sign-in is by a console user's name and password (made with
//! `pos-agent admin console-user`; Argon2id hashes in the store). A
//! session is a random token in an `HttpOnly`, `SameSite=Strict` cookie
//! (`Secure` when the console is told it sits behind TLS); every action is
//! a POST carrying the session's CSRF token, refused without it. Pages call
//! the same `Switch` methods the gRPC services do, as the signed-in user's
//! principal, so the roles' rules are the API's rules.
//!
//! Sessions live in the store (`store::console`), kept by the SHA-256 of
//! their token: a session begun on one node is good on every node sharing
//! the store, and outlives a restart. The CSRF token is derived from the
//! session's token, so neither secret is stored.

// A refusal here is a whole HTTP answer, handed straight back to axum;
// boxing it would buy nothing on this path.
#![allow(clippy::result_large_err)]

mod counters;
pub mod html;
mod reports;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

use crate::caller::{Principal, Role};
use crate::error::SwitchError;
use crate::flows::Switch;
use crate::settlement::reconcile::Counterparty;
use crate::store::{self, TxRecord, WindowState};
use html::{bars, csrf_field, esc, page, table, vnd};

/// Sessions kept at most (the least recently used goes first).
const SESSIONS_MAX: usize = 1_000;
/// A session's last use is written back at most this often.
const SESSION_TOUCH_MS: i64 = 60_000;
/// A session ends this long after sign-in…
const SESSION_TTL_MS: i64 = 8 * 3_600_000;
/// …or after this long unused.
const SESSION_IDLE_MS: i64 = 30 * 60_000;
const COOKIE: &str = "switch_console";

/// Who is signed in: the stored session, and the CSRF token its forms
/// must carry.
#[derive(Clone, Debug)]
struct Session {
    user: String,
    /// `Some(bin)`: a bank's staff, who see only that bank.
    bank: Option<String>,
    csrf: String,
    /// The store's key of the session (the SHA-256 of its token).
    id: String,
}

/// The store's name for a session: the SHA-256 of its token.
pub fn session_id(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

/// The CSRF token of the session whose token is `token`: derived, so that
/// it is never stored, and tied to that session alone.
fn csrf_of(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, format!("csrf:{token}").as_bytes());
    hex::encode(&d.as_ref()[..16])
}

fn alive(s: &store::console::ConsoleSession, now: i64) -> bool {
    now - s.started_ms < SESSION_TTL_MS && now - s.used_ms < SESSION_IDLE_MS
}

impl Session {
    /// The principal the console acts as: the API's rules apply.
    fn principal(&self) -> Principal {
        match &self.bank {
            Some(bin) => Principal {
                id: bin.clone(),
                role: Role::Bank,
            },
            None => Principal {
                id: format!("console:{}", self.user),
                role: Role::Operator,
            },
        }
    }
}

/// The console's state: the switch (whose store holds the sessions).
pub struct Console {
    switch: Arc<Switch>,
    /// Mark cookies `Secure` (the console is reached over TLS, through a
    /// terminating proxy).
    secure_cookies: bool,
    rng: SystemRandom,
}

/// Serve the console on `listener` until `shutdown` resolves: over TLS
/// with `tls` (then its cookies are `Secure`), or in clear.
pub async fn serve(
    listener: tokio::net::TcpListener,
    switch: Arc<Switch>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    secure_cookies: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let console = Arc::new(Console {
        switch,
        secure_cookies: secure_cookies || tls.is_some(),
        rng: SystemRandom::new(),
    });
    match tls {
        Some(tls) => {
            axum::serve(TlsListener { tcp: listener, tls }, router(console))
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, router(console))
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// The console's TLS: the switch's own certificate and key (PEM). No
/// client certificate is asked: staff sign in with their password.
pub fn tls_acceptor(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("{}: {e}", key_file.display()))?;
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("the console's certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TCP connections and completes their TLS handshakes (each within
/// five seconds: a client that stalls its handshake holds nobody up long).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, peer) = match self.tcp.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "console accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let handshake = self.tls.accept(tcp);
            match tokio::time::timeout(std::time::Duration::from_secs(5), handshake).await {
                Ok(Ok(tls)) => return (tls, peer),
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "console TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "console TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/overview") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/overview", get(overview))
        .route("/api/overview", get(overview_json))
        .route("/transactions", get(transactions))
        .route("/transactions/{id}", get(transaction))
        .route("/settlement", get(settlement))
        .route("/settlement/close", post(close_window))
        .route("/settlement/{id}", get(window))
        .route("/settlement/{id}/csv", get(window_csv))
        .route("/settlement/{id}/settle", post(settle_window))
        .route("/reconciliation", get(reconciliation))
        .route("/reconciliation/resolve", post(resolve))
        .route("/liquidity", get(liquidity))
        .route("/reports", get(reports::reports))
        .route("/counters", get(counters::counters))
        .route("/liquidity/{action}", post(move_money))
        .route("/provisioning", get(provisioning))
        .route("/provisioning/merchants/{id}/sign", get(merchant_sign))
        .with_state(console)
}

/// The value of a `Result<_, Response>`, or the refusal as the handler's
/// answer.
macro_rules! page {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(refusal) => return refusal,
        }
    };
}

fn now_ms() -> i64 {
    crate::clock::monotonic_ms()
}

/// A session's times are the switch's time (wall-anchored, as every node
/// and a restart agree on), not this process's monotonic clock: sessions
/// live in the store.
fn session_now_ms() -> i64 {
    crate::clock::now_ms()
}

impl Console {
    fn token(&self) -> String {
        let mut b = [0u8; 32];
        self.rng
            .fill(&mut b)
            .expect("the system random source works");
        hex::encode(b)
    }

    /// The session the request's cookie names, still alive (and touched).
    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let token = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == COOKIE)
            .map(|(_, v)| v.to_string())?;
        let id = session_id(&token);
        let stored = match self.switch.console_session(&id) {
            Ok(s) => s?,
            Err(e) => {
                tracing::error!(error = %e, "console session unreadable; refused");
                return None;
            }
        };
        let now = session_now_ms();
        if !alive(&stored, now) {
            if let Err(e) = self.switch.end_console_session(&id) {
                tracing::warn!(error = %e, "an ended console session could not be removed");
            }
            return None;
        }
        // The user as the store has it now, so that disabling them or
        // resetting their password on any node ends this session.
        let current = match self.switch.console_user(&stored.user) {
            Ok(u) => u.is_some_and(|u| {
                u.disabled.is_none() && u.password_set_at_ms == stored.password_set_at_ms
            }),
            Err(e) => {
                tracing::error!(user = %stored.user, error = %e, "console user unreadable; session refused");
                false
            }
        };
        if !current {
            if let Err(e) = self.switch.end_console_session(&id) {
                tracing::warn!(error = %e, "an ended console session could not be removed");
            }
            return None;
        }
        if let Err(e) = self
            .switch
            .touch_console_session(&id, &stored, now, SESSION_TOUCH_MS)
        {
            // Only the idle clock is behind: the session goes on.
            tracing::warn!(user = %stored.user, error = %e, "console session not touched");
        }
        Some(Session {
            user: stored.user,
            bank: stored.bank,
            csrf: csrf_of(&token),
            id,
        })
    }

    fn cookie(&self, token: &str, max_age_s: i64) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
        ))
        .expect("a cookie of hex digits is a valid header")
    }
}

/// What a page answers when something is refused or fails.
fn failure(e: SwitchError) -> Response {
    let status = match e.code.grpc() {
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        status,
        Html(page(
            "Refused",
            &[("/overview", "Back")],
            "",
            None,
            &format!(
                "<p class=\"err\" id=\"error\">{}: {}</p>",
                esc(e.code.as_str()),
                esc(&e.message)
            ),
        )),
    )
        .into_response()
}

fn forbidden(why: &str) -> Response {
    failure(SwitchError::new(
        crate::error::ErrorCode::PermissionDenied,
        why,
    ))
}

/// The signed-in session, or the way to the sign-in page.
fn signed_in(c: &Console, headers: &HeaderMap) -> Result<Session, Response> {
    c.session(headers)
        .ok_or_else(|| Redirect::to("/login").into_response())
}

/// An operator's session, or a refusal.
fn operator(c: &Console, headers: &HeaderMap) -> Result<Session, Response> {
    let s = signed_in(c, headers)?;
    if s.bank.is_some() {
        return Err(forbidden("this page is for operators"));
    }
    Ok(s)
}

/// A form's CSRF token must be the session's.
fn check_csrf(s: &Session, token: &str) -> Result<(), Response> {
    let same = token.len() == s.csrf.len()
        && token
            .bytes()
            .zip(s.csrf.bytes())
            .fold(0u8, |d, (a, b)| d | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        tracing::warn!(user = %s.user, "console action without its CSRF token refused");
        Err((
            StatusCode::FORBIDDEN,
            Html(
                "<p id=\"error\">refused: the form's CSRF token is missing or wrong</p>"
                    .to_string(),
            ),
        )
            .into_response())
    }
}

fn nav(s: &Session) -> Vec<(&'static str, &'static str)> {
    if s.bank.is_some() {
        vec![
            ("/settlement", "Settlement"),
            ("/reconciliation", "Reconciliation"),
            ("/reports", "Reports"),
        ]
    } else {
        vec![
            ("/overview", "Overview"),
            ("/transactions", "Transactions"),
            ("/settlement", "Settlement"),
            ("/reconciliation", "Reconciliation"),
            ("/liquidity", "Liquidity"),
            ("/reports", "Reports"),
            ("/counters", "Counters"),
            ("/provisioning", "Provisioning"),
        ]
    }
}

fn render(s: &Session, title: &str, current: &str, body: &str) -> Response {
    let who = match &s.bank {
        Some(bin) => format!("{} (bank {bin})", s.user),
        None => format!("{} (operator)", s.user),
    };
    let body = format!("<p id=\"who\">Signed in as {}</p>{body}", esc(&who));
    Html(page(title, &nav(s), current, Some(&s.csrf), &body)).into_response()
}

// ---- sign-in ----

async fn login_page() -> Html<String> {
    Html(page(
        "Sign in",
        &[],
        "",
        None,
        "<form method=\"post\" action=\"/login\" id=\"login\">\
         <p><label>Name <input name=\"name\" id=\"name\" autocomplete=\"username\"></label></p>\
         <p><label>Password <input name=\"password\" id=\"password\" type=\"password\" autocomplete=\"current-password\"></label></p>\
         <p><button id=\"sign-in\">Sign in</button></p></form>",
    ))
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
}

async fn login(State(c): State<Arc<Console>>, Form(f): Form<LoginForm>) -> Response {
    let user =
        match crate::flows::provisioning::console_sign_in(&c.switch, &f.name, &f.password).await {
            Ok(u) => u,
            Err(e) => return failure(e),
        };
    let Some(user) = user else {
        tracing::warn!(user = %f.name.chars().take(32).collect::<String>(), "console sign-in refused");
        return (
            StatusCode::UNAUTHORIZED,
            Html(page(
                "Sign in",
                &[],
                "",
                None,
                "<p class=\"err\" id=\"error\">Wrong name or password.</p><p><a href=\"/login\">Try again</a></p>",
            )),
        )
            .into_response();
    };
    let token = c.token();
    let now = session_now_ms();
    let session = store::console::ConsoleSession {
        user: user.name.clone(),
        bank: (user.role == "bank").then(|| user.bank_bin.clone()),
        started_ms: now,
        used_ms: now,
        password_set_at_ms: user.password_set_at_ms,
    };
    // Signed in means durable: every node, and a restart, knows it.
    let begun = c
        .switch
        .begin_console_session(&session_id(&token), &session, SESSIONS_MAX, |s| {
            alive(s, now)
        })
        .await;
    if let Err(e) = begun {
        return failure(e);
    }
    tracing::info!(user = %user.name, role = %user.role, "console sign-in");
    let to = if session.bank.is_some() {
        "/settlement"
    } else {
        "/overview"
    };
    let mut r = Redirect::to(to).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, c.cookie(&token, SESSION_TTL_MS / 1000));
    r
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let s = page!(signed_in(&c, &headers));
    page!(check_csrf(&s, &f.csrf));
    let ended = c.switch.sign_out_console_session(&s.id).await;
    if let Err(e) = ended {
        return failure(e);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(header::SET_COOKIE, c.cookie("", 0));
    r
}

// ---- overview ----

async fn overview(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = page!(operator(&c, &headers));
    let body = format!(
        "<h2>Last five minutes (10-second steps)</h2>{}{}{}\
         <h2>Reversal queue</h2><div class=\"card\"><b id=\"queue\">…</b>jobs waiting</div>\
         <h2>Banks' and billers' circuits</h2><table><tr><th>party</th><th>state</th></tr><tbody id=\"breakers\"></tbody></table>\
         <h2>Low float</h2><table><tr><th>post office</th><th>e-float (VND)</th></tr><tbody id=\"lowfloat\"></tbody></table>\
         <script>{}</script>",
        html::live_chart("rps", "Requests per second", "/s"),
        html::live_chart("ok", "Succeeded", "%"),
        html::live_chart("p99", "p99 latency", "ms"),
        html::OVERVIEW_SCRIPT
    );
    render(&s, "Overview", "/overview", &body)
}

async fn overview_json(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = page!(operator(&c, &headers));
    let series: Vec<serde_json::Value> = crate::telemetry::recent()
        .series(now_ms())
        .iter()
        .map(|b| {
            let total = b.ok + b.failed;
            serde_json::json!({
                "per_s": b.per_s(),
                "ok_percent": if total == 0 { 100.0 } else { b.ok as f64 * 100.0 / total as f64 },
                "p99_ms": b.p99_ms(),
            })
        })
        .collect();
    let mut breakers: Vec<serde_json::Value> = c
        .switch
        .routes
        .all()
        .map(|b| serde_json::json!({"party": format!("{} ({})", b.name, b.bin), "state": format!("{:?}", b.breaker.state()).to_lowercase()}))
        .collect();
    breakers.extend(c.switch.billers.all().map(|b| {
        serde_json::json!({"party": b.code, "state": format!("{:?}", b.breaker.state()).to_lowercase()})
    }));
    let queue = match c.switch.reversals_waiting(&s.principal()) {
        Ok(n) => n,
        Err(e) => return failure(e),
    };
    let system = Principal {
        id: "console".into(),
        role: Role::Operator,
    };
    let low: Vec<serde_json::Value> = match c.switch.liquidity(&system, "").await {
        Ok(l) => l
            .iter()
            .filter(|x| x.low_float)
            .map(|x| serde_json::json!({"post_office": x.post_office_id, "efloat": x.efloat}))
            .collect(),
        Err(e) => return failure(e),
    };
    axum::Json(serde_json::json!({
        "series": series, "breakers": breakers, "reversal_queue": queue, "low_float": low,
    }))
    .into_response()
}

// ---- transactions ----

#[derive(Deserialize, Default)]
struct TxQuery {
    #[serde(default)]
    id: String,
    #[serde(default)]
    terminal: String,
    #[serde(default)]
    post_office: String,
    /// The last four digits of an account, or a card token.
    #[serde(default)]
    account: String,
    #[serde(default)]
    status: String,
    /// Local (UTC+7) dates, `YYYY-MM-DD`, both included.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

fn tx_row(t: &TxRecord) -> Vec<String> {
    vec![
        format!("<a href=\"/transactions/{0}\">{0}</a>", esc(&t.id)),
        esc(crate::flows::kind_label(t.kind)),
        esc(crate::flows::status_label(t.status)),
        esc(&t.terminal_id),
        esc(&t.post_office_id),
        esc(&t.account_shown()),
        format!("<span class=\"n\">{}</span>", vnd(i128::from(t.amount))),
        esc(&crate::civil::date_time(t.created_at_ms)),
    ]
}

async fn transactions(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<TxQuery>,
) -> Response {
    let s = page!(operator(&c, &headers));
    if !q.id.is_empty() {
        return Redirect::to(&format!("/transactions/{}", q.id.trim())).into_response();
    }
    let date_or_empty = |s: &str| s.is_empty() || crate::civil::is_date(s);
    if !date_or_empty(&q.from) || !date_or_empty(&q.to) {
        return failure(SwitchError::invalid("dates are YYYY-MM-DD"));
    }
    let keep = |t: &TxRecord| {
        // `YYYY-MM-DD` dates compare as text.
        let day = crate::civil::date(t.created_at_ms);
        let day = day.as_str();
        (q.terminal.is_empty() || t.terminal_id == q.terminal)
            && (q.post_office.is_empty() || t.post_office_id == q.post_office)
            && (q.status.is_empty() || crate::flows::status_label(t.status) == q.status)
            && (q.from.is_empty() || day >= q.from.as_str())
            && (q.to.is_empty() || day <= q.to.as_str())
            && (q.account.is_empty()
                || t.account.ends_with(&q.account)
                || t.card_token.as_deref() == Some(q.account.as_str()))
    };
    let found = match c
        .switch
        .recent_transactions(&s.principal(), 100, 20_000, keep)
    {
        Ok(f) => f,
        Err(e) => return failure(e),
    };
    let rows: Vec<Vec<String>> = found.iter().map(tx_row).collect();
    let body = format!(
        "<form method=\"get\" action=\"/transactions\" id=\"search\">\
         <input name=\"id\" placeholder=\"transaction id\"> <input name=\"terminal\" placeholder=\"terminal\" value=\"{}\"> \
         <input name=\"post_office\" placeholder=\"post office\" value=\"{}\"> <input name=\"account\" placeholder=\"account's last digits or card token\" value=\"{}\"> \
         <select name=\"status\"><option value=\"\">any status</option><option>completed</option><option>pending</option><option>failed</option><option>reversed</option></select> \
         from <input name=\"from\" type=\"date\" value=\"{}\"> to <input name=\"to\" type=\"date\" value=\"{}\"> \
         <button>Search</button></form><p>Newest first; the latest 20,000 transactions are searched.</p>{}",
        esc(&q.terminal),
        esc(&q.post_office),
        esc(&q.account),
        esc(&q.from),
        esc(&q.to),
        table(
            "transactions",
            &[
                "id",
                "kind",
                "status",
                "terminal",
                "post office",
                "account",
                "amount (VND)",
                "created"
            ],
            &rows
        )
    );
    render(&s, "Transactions", "/transactions", &body)
}

async fn transaction(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let s = page!(operator(&c, &headers));
    let not_found = || {
        failure(SwitchError::new(
            crate::error::ErrorCode::TransactionNotFound,
            "no such transaction",
        ))
    };
    let Some(tx_id) = crate::ids::TxId::parse(&id) else {
        return not_found();
    };
    let (t, ledger_legs) = match c.switch.transaction_with_legs(&s.principal(), tx_id).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return failure(e),
    };
    let steps: Vec<Vec<String>> = t
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let party = match &st.party {
                store::Party::Bank(b) => format!("bank {b}"),
                store::Party::Biller(b) => format!("biller {b}"),
            };
            let action = match &st.action {
                store::Action::Credit { .. } => "credit",
                store::Action::Debit { .. } => "debit",
                store::Action::DebitWithCode { .. } => "debit with code",
                store::Action::CardDebit { .. } => "card debit",
                store::Action::PayBills { .. } => "pay bills",
                store::Action::TopUp { .. } => "top-up",
            };
            vec![
                i.to_string(),
                esc(&party),
                action.to_string(),
                vnd(i128::from(st.amount)),
                esc(st.party_reference.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let legs: Vec<Vec<String>> = ledger_legs
        .iter()
        .map(|(l, status)| {
            vec![
                format!("{:032x}", l.id),
                format!("{:032x}", l.debit_account_id),
                format!("{:032x}", l.credit_account_id),
                vnd(i128::from(l.amount)),
                status.map_or_else(
                    || "not reserved".to_string(),
                    |x| format!("{x:?}").to_lowercase(),
                ),
            ]
        })
        .collect();
    let linked = match (&t.paid_by, &t.pays_for) {
        (Some(x), _) => format!(
            "<p>Paid by <a href=\"/transactions/{0}\">{0}</a></p>",
            esc(x)
        ),
        (_, Some(x)) => format!(
            "<p>Pays for <a href=\"/transactions/{0}\">{0}</a></p>",
            esc(x)
        ),
        _ => String::new(),
    };
    let body = format!(
        "{linked}<h2>Steps</h2>{}<h2>Ledger legs</h2>{}<h2>Receipt</h2><pre id=\"receipt\">{}</pre>",
        table(
            "steps",
            &["#", "party", "call", "amount (VND)", "party's reference"],
            &steps
        ),
        table(
            "legs",
            &["transfer", "debit", "credit", "amount (VND)", "status"],
            &legs
        ),
        esc(&crate::edge::receipt::receipt(&t))
    );
    render(&s, &format!("Transaction {}", t.id), "/transactions", &body)
}

// ---- settlement ----

async fn settlement(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = page!(signed_in(&c, &headers));
    let windows = match c.switch.list_windows(&s.principal()) {
        Ok(w) => w,
        Err(e) => return failure(e),
    };
    let rows: Vec<Vec<String>> = windows
        .iter()
        .rev()
        .map(|w| {
            let link = if w.state == WindowState::Open {
                w.id.to_string()
            } else {
                format!("<a href=\"/settlement/{0}\">{0}</a>", w.id)
            };
            vec![
                link,
                w.state.label().to_string(),
                esc(&crate::civil::date_time(w.opened_at_ms)),
                w.closed_at_ms
                    .map(crate::civil::date_time)
                    .map(|t| esc(&t))
                    .unwrap_or_default(),
                esc(w.settlement_reference.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let open = windows.iter().find(|w| w.state == WindowState::Open);
    let close = match (open, &s.bank) {
        (Some(w), None) => format!(
            "<form method=\"post\" action=\"/settlement/close\" id=\"close\">{}<input type=\"hidden\" name=\"window\" value=\"{}\"><button id=\"close-window\">Close window {}</button></form>",
            csrf_field(&s.csrf),
            w.id,
            w.id
        ),
        _ => String::new(),
    };
    let body = format!(
        "{close}{}",
        table(
            "windows",
            &[
                "window",
                "state",
                "opened",
                "closed",
                "settlement reference"
            ],
            &rows
        )
    );
    render(&s, "Settlement", "/settlement", &body)
}

#[derive(Deserialize)]
struct CloseForm {
    #[serde(default)]
    csrf: String,
    window: u64,
}

async fn close_window(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<CloseForm>,
) -> Response {
    let s = page!(operator(&c, &headers));
    page!(check_csrf(&s, &f.csrf));
    match c.switch.close_window(&s.principal(), f.window).await {
        Ok(w) => {
            tracing::info!(user = %s.user, window = w.id, "window closed from the console");
            Redirect::to(&format!("/settlement/{}", w.id)).into_response()
        }
        Err(e) => failure(e),
    }
}

#[derive(Deserialize, Default)]
struct ReportQuery {
    /// One participant's line (a bank's staff: only their own).
    #[serde(default)]
    participant: String,
}

fn report(
    c: &Console,
    s: &Session,
    id: u64,
    q: &ReportQuery,
) -> Result<(store::WindowRecord, Vec<store::Position>), Response> {
    c.switch
        .window_report(&s.principal(), id, &q.participant)
        .map_err(failure)
}

async fn window(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let s = page!(signed_in(&c, &headers));
    let (w, positions) = page!(report(&c, &s, id, &q));
    let rows: Vec<Vec<String>> = positions
        .iter()
        .map(|p| {
            vec![
                esc(&p.participant),
                esc(&p.kind),
                p.count.to_string(),
                vnd(i128::from(p.gross_debits)),
                vnd(i128::from(p.gross_credits)),
                vnd(i128::from(p.fees)),
                vnd(i128::from(p.net)),
            ]
        })
        .collect();
    let chart: Vec<(String, i128)> = positions
        .iter()
        .map(|p| (format!("{} {}", p.kind, p.participant), i128::from(p.net)))
        .collect();
    let settle = match (&s.bank, w.state) {
        (None, WindowState::Closed) => format!(
            "<form method=\"post\" action=\"/settlement/{}/settle\" id=\"settle\">{}<input name=\"reference\" placeholder=\"the funds transfer's reference\"><button>Settle</button></form>",
            w.id,
            csrf_field(&s.csrf)
        ),
        _ => String::new(),
    };
    let body = format!(
        "<p>State: <span id=\"state\">{}</span>{}</p><p><a id=\"csv\" href=\"/settlement/{}/csv\">Download CSV</a></p>{settle}\
         <h2>Net positions</h2>{}{}",
        w.state.label(),
        w.report_sha256
            .as_deref()
            .map(|h| format!("; report SHA-256 {}", esc(h)))
            .unwrap_or_default(),
        w.id,
        bars("positions-chart", &chart),
        table(
            "report",
            &[
                "participant",
                "kind",
                "transfers",
                "debits",
                "credits",
                "fees",
                "net"
            ],
            &rows
        )
    );
    render(&s, &format!("Window {}", w.id), "/settlement", &body)
}

async fn window_csv(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let s = page!(signed_in(&c, &headers));
    let (_, positions) = page!(report(&c, &s, id, &q));
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"window-{id}.csv\""),
            ),
        ],
        store::Report::csv(&positions),
    )
        .into_response()
}

#[derive(Deserialize)]
struct SettleForm {
    #[serde(default)]
    csrf: String,
    reference: String,
}

async fn settle_window(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Form(f): Form<SettleForm>,
) -> Response {
    let s = page!(operator(&c, &headers));
    page!(check_csrf(&s, &f.csrf));
    match c
        .switch
        .settle_window(&s.principal(), id, &f.reference)
        .await
    {
        Ok(_) => Redirect::to(&format!("/settlement/{id}")).into_response(),
        Err(e) => failure(e),
    }
}

// ---- reconciliation ----

async fn reconciliation(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = page!(signed_in(&c, &headers));
    let mut sections = String::new();
    let all = match c.switch.reconciliations(&s.principal(), 200) {
        Ok(all) => all,
        Err(e) => return failure(e),
    };
    for (report, exceptions) in all {
        let party = if report.biller.is_empty() {
            format!("bank {}", report.bank_bin)
        } else {
            format!("biller {}", report.biller)
        };
        let classes: Vec<Vec<String>> = report
            .classes
            .iter()
            .map(|(class, (n, amount))| vec![esc(class), n.to_string(), vnd(i128::from(*amount))])
            .collect();
        let mut rows = Vec::new();
        for e in exceptions {
            let resolution = match (&e.resolution, &s.bank) {
                (Some(r), _) => format!("{} ({})", esc(&r.note), esc(&r.by)),
                (None, Some(_)) => String::new(),
                (None, None) => format!(
                    "<form method=\"post\" action=\"/reconciliation/resolve\" class=\"inline resolve\">{}\
                     <input type=\"hidden\" name=\"window\" value=\"{}\"><input type=\"hidden\" name=\"bank\" value=\"{}\">\
                     <input type=\"hidden\" name=\"biller\" value=\"{}\"><input type=\"hidden\" name=\"exception\" value=\"{}\">\
                     <input name=\"note\" placeholder=\"what was found\"><button>Resolve</button></form>",
                    csrf_field(&s.csrf),
                    report.window_id,
                    esc(&report.bank_bin),
                    esc(&report.biller),
                    esc(&e.id)
                ),
            };
            rows.push(vec![
                esc(&e.id),
                esc(&e.class),
                esc(&e.transaction_id),
                e.line.to_string(),
                esc(&e.reason),
                resolution,
            ]);
        }
        sections.push_str(&format!(
            "<h2>Window {} · {} · {} lines</h2>{}{}",
            report.window_id,
            esc(&party),
            report.lines,
            table("classes", &["class", "count", "amount (VND)"], &classes),
            table(
                "exceptions",
                &["id", "class", "transaction", "line", "why", "resolution"],
                &rows
            )
        ));
    }
    if sections.is_empty() {
        sections = "<p>No statement reconciled yet.</p>".into();
    }
    render(&s, "Reconciliation", "/reconciliation", &sections)
}

#[derive(Deserialize)]
struct ResolveForm {
    #[serde(default)]
    csrf: String,
    window: u64,
    #[serde(default)]
    bank: String,
    #[serde(default)]
    biller: String,
    exception: String,
    note: String,
}

async fn resolve(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<ResolveForm>,
) -> Response {
    let s = page!(operator(&c, &headers));
    page!(check_csrf(&s, &f.csrf));
    let who = if f.biller.is_empty() {
        Counterparty::Bank(f.bank)
    } else {
        Counterparty::Biller(f.biller)
    };
    match c
        .switch
        .resolve_exception(&s.principal(), f.window, &who, &f.exception, &f.note)
        .await
    {
        Ok(_) => Redirect::to("/reconciliation").into_response(),
        Err(e) => failure(e),
    }
}

// ---- liquidity ----

async fn liquidity(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = page!(operator(&c, &headers));
    let all = match c.switch.liquidity(&s.principal(), "").await {
        Ok(l) => l,
        Err(e) => return failure(e),
    };
    let mut rows = String::new();
    for l in &all {
        let class = if l.low_float { " class=\"low\"" } else { "" };
        let drawers: Vec<String> = l
            .drawers
            .iter()
            .map(|(t, cash)| format!("{} {}", esc(t), vnd(i128::from(*cash))))
            .collect();
        rows.push_str(&format!(
            "<tr{class}><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.post_office_id),
            vnd(i128::from(l.efloat)),
            if l.low_float { "LOW" } else { "" },
            drawers.join("<br>")
        ));
    }
    let body = format!(
        "<table id=\"liquidity\"><tr><th>post office</th><th>e-float (VND)</th><th></th><th>drawers (VND)</th></tr>{rows}</table>\
         <h2>Top up a post office's e-float</h2><form method=\"post\" action=\"/liquidity/topup\" id=\"topup\">{}\
         <input name=\"post_office\" placeholder=\"post office\"> <input name=\"amount\" placeholder=\"amount (VND)\"> <button>Top up</button></form>\
         <h2>Sweep cash from a drawer</h2><form method=\"post\" action=\"/liquidity/sweep\" id=\"sweep\">{}\
         <input name=\"terminal\" placeholder=\"terminal\"> <input name=\"amount\" placeholder=\"amount (VND)\"> <button>Sweep</button></form>",
        csrf_field(&s.csrf),
        csrf_field(&s.csrf)
    );
    render(&s, "Liquidity", "/liquidity", &body)
}

#[derive(Deserialize)]
struct MoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    post_office: String,
    #[serde(default)]
    terminal: String,
    amount: String,
}

fn amount(text: &str) -> Result<u64, Response> {
    text.trim()
        .replace(',', "")
        .parse::<u64>()
        .map_err(|_| failure(SwitchError::invalid("amount must be whole đồng")))
}

/// A top-up of a post office's e-float or a sweep of a drawer's cash.
async fn move_money(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path(action): Path<String>,
    Form(f): Form<MoveForm>,
) -> Response {
    let s = page!(operator(&c, &headers));
    page!(check_csrf(&s, &f.csrf));
    let n = page!(amount(&f.amount));
    // Each form submission is a request of its own.
    let request_id = format!("console-{}", &c.token()[..24]);
    let p = s.principal();
    let done = match action.as_str() {
        "topup" => {
            c.switch
                .top_up_float(&p, &request_id, &f.post_office, n)
                .await
        }
        "sweep" => c.switch.sweep_cash(&p, &request_id, &f.terminal, n).await,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match done {
        Ok(_) => Redirect::to("/liquidity").into_response(),
        Err(e) => failure(e),
    }
}

// ---- provisioning ----

async fn provisioning(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = page!(operator(&c, &headers));
    let (offices, terminals, merchants) = match c.switch.network(&s.principal()) {
        Ok(n) => (n.post_offices, n.terminals, n.merchants),
        Err(e) => return failure(e),
    };
    let offices: Vec<Vec<String>> = offices
        .iter()
        .map(|o| vec![esc(&o.id), esc(&o.name), o.number.to_string()])
        .collect();
    let terminals: Vec<Vec<String>> = terminals
        .iter()
        .map(|t| vec![esc(&t.id), esc(&t.post_office_id), t.number.to_string()])
        .collect();
    let merchants: Vec<Vec<String>> = merchants
        .iter()
        .map(|m| {
            vec![
                esc(&m.id),
                esc(&m.name),
                esc(&m.city),
                esc(&m.mcc),
                format!(
                    "{} {}",
                    esc(&m.bank_bin),
                    esc(&crate::ids::mask_account(&m.account))
                ),
                format!(
                    "<a href=\"/provisioning/merchants/{}/sign\">VietQR sign</a>",
                    esc(&m.id)
                ),
            ]
        })
        .collect();
    let body = format!(
        "<h2>Post offices</h2>{}<h2>Terminals</h2>{}<h2>Merchants</h2>{}\
         <p>New post offices, terminals and merchants are provisioned with <code>pos-agent admin</code>; their secrets are shown once, there.</p>",
        table("post-offices", &["id", "name", "ledger number"], &offices),
        table(
            "terminals",
            &["id", "post office", "ledger number"],
            &terminals
        ),
        table(
            "merchants",
            &["id", "name", "city", "MCC", "account", ""],
            &merchants
        )
    );
    render(&s, "Provisioning", "/provisioning", &body)
}

async fn merchant_sign(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let s = page!(operator(&c, &headers));
    let m = match c.switch.merchant_record(&s.principal(), &id) {
        Ok(m) => m,
        Err(e) => return failure(e),
    };
    let payload = match crate::flows::merchant::static_payload(&m) {
        Ok(p) => p,
        Err(e) => return failure(e),
    };
    let svg =
        match qrcode::QrCode::with_error_correction_level(payload.as_bytes(), qrcode::EcLevel::M) {
            Ok(code) => code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(320, 320)
                .build()
                // Inline in HTML: no XML declaration.
                .split_once("<svg")
                .map(|(_, svg)| format!("<svg{svg}"))
                .unwrap_or_default(),
            Err(e) => return failure(SwitchError::invalid(format!("the code does not draw: {e}"))),
        };
    // A page to print: the code, the merchant's name, nothing else.
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0}</title>\
         <style>body{{font-family:system-ui,sans-serif;text-align:center}}h1{{margin:.4em}}</style></head>\
         <body><h1 id=\"merchant\">{0}</h1><p>{1}</p><div id=\"qr\">{svg}</div><p>VietQR · {2}</p><!-- {3} --></body></html>",
        esc(&m.name),
        esc(&m.city),
        esc(&m.bank_bin),
        esc(&payload)
    ))
    .into_response()
}
