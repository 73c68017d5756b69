//! `pos-agent counter`: the teller's screen (issue #27).
//!
//! A web app served to a browser on the counter PC, loopback by default.
//! The browser talks only to this process; this process holds the
//! terminal's secret and PIN key and signs every call to the switch, as
//! the command line does. Tellers sign in with names and passwords the
//! head of the post office sets ([`tellers`]); every transaction carries
//! the teller's name, and its receipt prints on the counter's thermal
//! printer ([`crate::receipt`]), with a copy of the printer's bytes kept
//! in the state directory (`printed/`), as a terminal's electronic
//! journal.
//!
//! A card's PIN is never typed into the counter's page: it comes from the
//! agent's PIN entry, here a PIN window served on a listener (and so an
//! origin) of its own, which the counter's page cannot read. The agent
//! builds the PIN block the moment the PIN arrives.

pub mod cash;
pub mod link;
pub mod outbox;
pub mod pages;
pub mod tellers;
pub mod text;

mod cash_in;
mod cash_out;
mod customer;
mod forward;
mod payments;
mod shift;
mod signin;
mod transactions;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::client::{Failure, Profile};
use crate::receipt::{self, Paper, escpos::Target, vnd};
use cash_in::*;
use cash_out::*;
use customer::*;
use forward::*;
use link::Link;
use outbox::{CapRefusal, Outbox};
use pages::{Panel, Who};
use payments::*;
use prost::Message;
use shift::*;
use signin::*;
use text::{Lang, M, Refusal};
use transactions::*;

/// Sessions at one counter at once (tellers take turns; a few browsers).
const SESSIONS_MAX: usize = 32;
/// Pending card payments and their outcomes kept for the waiting page.
const JOBS_MAX: usize = 64;
/// Pages of today's transactions read for the list (100 each).
const TODAY_PAGES_MAX: usize = 20;
const COOKIE: &str = "counter_session";

/// Everything the counter needs, passed explicitly.
pub struct Config {
    pub profile: Profile,
    /// Tellers (`tellers.toml`), the open shift (`shift.json`) and the
    /// printer's bytes of every receipt (`printed/`).
    pub state_dir: PathBuf,
    /// Where receipts print; `None`: only the copy in `printed/`.
    pub printer: Option<Target>,
    pub paper: Paper,
    /// A session unused this long ends; the teller signs in again.
    pub idle_timeout_ms: i64,
    /// How long a card payment waits for the customer's PIN.
    pub pin_timeout_ms: u64,
    /// The clock (Unix ms), injected so that tests can move it.
    pub now_ms: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// The longest the outbox waits between tries while the switch is
    /// away (it starts at half a second and doubles).
    pub forward_backoff_max_ms: u64,
}

/// What the customer-facing window shows.
#[derive(Clone, Debug, Default)]
pub enum CustomerView {
    #[default]
    Idle,
    Qr {
        payload: String,
        amount: u64,
        label: String,
    },
    Pin {
        amount: u64,
        label: String,
    },
}

#[derive(Clone)]
struct Session {
    /// Sign-in name and the name records and receipts carry.
    name: String,
    full_name: String,
    lang: Lang,
    /// Sent back in every form; a POST without it is refused.
    csrf: String,
    last_seen_ms: i64,
}

/// Signed-in sessions by token, ended after idle time.
#[derive(Default)]
struct Sessions {
    by_token: HashMap<String, Session>,
}

impl Sessions {
    /// The session of `token`, touched now; `None` if unknown or idle too
    /// long (then it is gone).
    fn touch(&mut self, token: &str, now_ms: i64, idle_ms: i64) -> Option<Session> {
        let s = self.by_token.get_mut(token)?;
        if now_ms.saturating_sub(s.last_seen_ms) > idle_ms {
            self.by_token.remove(token);
            return None;
        }
        s.last_seen_ms = now_ms;
        Some(s.clone())
    }

    fn insert(&mut self, token: String, s: Session, now_ms: i64, idle_ms: i64) {
        self.by_token
            .retain(|_, x| now_ms.saturating_sub(x.last_seen_ms) <= idle_ms);
        if self.by_token.len() >= SESSIONS_MAX
            && let Some(oldest) = self
                .by_token
                .iter()
                .min_by_key(|(_, x)| x.last_seen_ms)
                .map(|(k, _)| k.clone())
        {
            self.by_token.remove(&oldest);
        }
        self.by_token.insert(token, s);
    }
}

/// The shift this counter opened, as it remembers it (`shift.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct LocalShift {
    shift_id: String,
    opened_at_ms: i64,
    opening_cash: u64,
    teller: String,
}

/// A card payment waiting for its PIN, then for the switch.
enum Job {
    Waiting,
    Done(Result<String, Refusal>),
}

/// The PIN entry's one pending request (one PIN pad per counter).
struct PinRequest {
    job: String,
    amount: u64,
    label: String,
    pin: tokio::sync::oneshot::Sender<String>,
}

struct App {
    config: Config,
    link: Link,
    /// The post office as the header shows it.
    post_office: String,
    /// As receipts print it (empty: the receipt names it by its id).
    receipt_name: String,
    sessions: Mutex<Sessions>,
    shift: Mutex<Option<LocalShift>>,
    customer: Mutex<CustomerView>,
    pin: Mutex<Option<PinRequest>>,
    jobs: Mutex<HashMap<String, Job>>,
    /// Transactions whose receipt printed (the card payment's waiting page
    /// says so; one that failed to print is not here).
    printed: Mutex<HashSet<String>>,
    /// What the counter took while offline, until forwarded (SQLite).
    outbox: Outbox,
    /// Whether the last call reached the switch. While not, pages do not
    /// wait on it for the panel; the forwarder probes it.
    online: AtomicBool,
    /// The limits as last read: what the counter knows of them offline.
    limits_seen: Mutex<Vec<pb::Limit>>,
    /// Wakes the forwarder when an item is queued.
    wake: tokio::sync::Notify,
    /// What the switch was last told the outbox holds, and when.
    reported: Mutex<Option<(pb::OutboxReport, i64)>>,
    /// Pending transactions whose page is waiting (a QR shown to the
    /// customer): each prints once, when its page first sees it finish.
    waiting: Mutex<HashSet<String>>,
    print_seq: AtomicU64,
}

fn token() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source");
    hex::encode(b)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Fields = Vec<(String, String)>;

fn field<'a>(f: &'a Fields, k: &str) -> &'a str {
    f.iter()
        .find(|(x, _)| x == k)
        .map_or("", |(_, v)| v.as_str())
}

fn page(m: Markup) -> Response {
    Html(m.into_string()).into_response()
}

/// Serve the counter on `listener` and its PIN window on `pin_listener`
/// until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    pin_listener: TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    if config.profile.role != "teller" {
        return Err(format!(
            "this is a {} profile; the counter needs a teller's",
            config.profile.role
        ));
    }
    std::fs::create_dir_all(config.state_dir.join("printed"))
        .map_err(|e| format!("{}: {e}", config.state_dir.display()))?;
    tellers::Book::load(&config.state_dir)?;
    let shift = match std::fs::read(config.state_dir.join("shift.json")) {
        Ok(b) => {
            Some(serde_json::from_slice(&b).map_err(|e| format!("shift.json does not read: {e}"))?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("shift.json: {e}")),
    };
    let link = Link::open(&config.profile)?;
    let outbox = Outbox::open(&config.state_dir.join("outbox.db"))?;
    let receipt_name = config.profile.post_office_name.clone().unwrap_or_default();
    let post_office = match (
        &config.profile.post_office_name,
        &config.profile.post_office,
    ) {
        (Some(name), _) => name.clone(),
        (None, Some(id)) => format!("Bưu điện {id}"),
        (None, None) => "Bưu điện".to_string(),
    };
    let app = Arc::new(App {
        config,
        link,
        post_office,
        receipt_name,
        sessions: Mutex::default(),
        shift: Mutex::new(shift),
        customer: Mutex::default(),
        pin: Mutex::default(),
        jobs: Mutex::default(),
        printed: Mutex::default(),
        outbox,
        online: AtomicBool::new(true),
        limits_seen: Mutex::default(),
        wake: tokio::sync::Notify::new(),
        reported: Mutex::default(),
        waiting: Mutex::default(),
        print_seq: AtomicU64::new(0),
    });
    let counter = Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/lang", post(switch_lang))
        .route("/shift/open", get(shift_open_page).post(shift_open))
        .route("/shift/close", get(shift_close_page).post(shift_close))
        .route("/cash-in", get(cash_in_page))
        .route("/cash-in/check", post(cash_in_check))
        .route("/cash-in/confirm", post(cash_in_confirm))
        .route("/cash-out", get(cash_out_page))
        .route("/cash-out/start", post(cash_out_start))
        .route("/cash-out/confirm", post(cash_out_confirm))
        .route("/cash-out/cancel", post(cash_out_cancel))
        .route("/bills", get(bills_page))
        .route("/bills/inquire", post(bills_inquire))
        .route("/bills/pay", post(bills_pay))
        .route("/topup", get(topup_page))
        .route("/topup/pay", post(topup_pay))
        .route("/tx/{id}", get(tx_page))
        .route("/tx/{id}/print", post(tx_print))
        .route("/job/{id}", get(job_page))
        .route("/today", get(today_page))
        .route("/customer", get(customer_page))
        .route("/api/customer", get(customer_fragment))
        .route("/voucher/{number}", get(voucher_page))
        .route("/refunds", get(refunds_page))
        .route("/refunds/{seq}", post(refund_returned))
        .with_state(app.clone());
    let pin = Router::new()
        .route("/", get(pin_page).post(pin_submit))
        .with_state(app.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(refresh_policy(app.clone()));
    let forwarder = tokio::spawn(forward(app, stop_rx.clone()));
    let mut stop_pin = stop_rx.clone();
    let mut stop_counter = stop_rx;
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let pin_server = axum::serve(pin_listener, pin).with_graceful_shutdown(async move {
        let _ = stop_pin.wait_for(|s| *s).await;
    });
    let counter_server = axum::serve(listener, counter).with_graceful_shutdown(async move {
        let _ = stop_counter.wait_for(|s| *s).await;
    });
    let (a, b) = tokio::join!(counter_server, pin_server);
    let _ = forwarder.await;
    a.and(b).map_err(|e| e.to_string())
}

/// Why a request gets no page of a signed-in teller.
enum Denied {
    /// No session: sign in.
    SignIn,
    /// The session ended after idle time: sign in again, told why.
    Ended,
    /// A form without the session's CSRF token (an old page, or another
    /// site's form).
    Csrf(Lang),
}

/// A signed-in teller's request: the session.
struct Signed(Session);

impl axum::extract::FromRequestParts<Arc<App>> for Signed {
    type Rejection = Denied;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        app.session(&parts.headers).map(|(_, s)| Signed(s))
    }
}

/// A signed-in teller's form post whose CSRF token matches: the session's
/// token, the session and the form's fields.
struct Posted(String, Session, Fields);

impl axum::extract::FromRequest<Arc<App>> for Posted {
    type Rejection = Response;

    async fn from_request(
        req: axum::extract::Request,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let Form(f) = Form::<Fields>::from_request(req, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let (t, s) = app
            .posted(&headers, &f)
            .map_err(IntoResponse::into_response)?;
        Ok(Posted(t, s, f))
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::SignIn => Redirect::to("/login").into_response(),
            Denied::Ended => Redirect::to("/login?ended=1").into_response(),
            Denied::Csrf(lang) => (StatusCode::FORBIDDEN, M::CsrfFailed.text(lang)).into_response(),
        }
    }
}

impl App {
    fn now_ms(&self) -> i64 {
        (self.config.now_ms)()
    }

    /// The signed-in session of a request, or the way to the sign-in page.
    fn session(&self, headers: &HeaderMap) -> Result<(String, Session), Denied> {
        let token = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == COOKIE)
            .map(|(_, v)| v.to_string());
        let now = self.now_ms();
        let found = token
            .as_ref()
            .and_then(|t| lock(&self.sessions).touch(t, now, self.config.idle_timeout_ms));
        match (token, found) {
            (Some(t), Some(s)) => Ok((t, s)),
            (Some(_), None) => Err(Denied::Ended),
            _ => Err(Denied::SignIn),
        }
    }

    /// The session of a form post whose CSRF token matches.
    fn posted(&self, headers: &HeaderMap, f: &Fields) -> Result<(String, Session), Denied> {
        let (t, s) = self.session(headers)?;
        if field(f, "csrf") != s.csrf {
            return Err(Denied::Csrf(s.lang));
        }
        Ok((t, s))
    }

    async fn panel(&self) -> Panel {
        let (queued, refunds_due) = self.outbox_summary();
        let offline = Panel {
            e_float: None,
            limits: lock(&self.limits_seen).clone(),
            online: false,
            queued,
            refunds_due,
        };
        // Offline, the page does not wait on the switch: the forwarder
        // finds out when it is back.
        if !self.online.load(Ordering::Relaxed) {
            return offline;
        }
        match self.link.limits(None).await {
            Ok(r) => {
                *lock(&self.limits_seen) = r.limits.clone();
                Panel {
                    e_float: Some(r.e_float),
                    limits: r.limits,
                    online: true,
                    queued,
                    refunds_due,
                }
            }
            Err(e) => {
                if link::unreachable(&e) {
                    self.online.store(false, Ordering::Relaxed);
                } else {
                    tracing::warn!(code = %e.code, message = %e.message, "counter: limits not read");
                }
                Panel {
                    online: !link::unreachable(&e),
                    ..offline
                }
            }
        }
    }

    /// (items queued, their total collected) and refunds owed.
    fn outbox_summary(&self) -> ((usize, u64), usize) {
        let queued = self.outbox.queued().unwrap_or_else(|e| {
            tracing::error!(error = %e, "counter: the outbox does not read");
            Vec::new()
        });
        let total = queued.iter().map(|i| i.amount.saturating_add(i.fee)).sum();
        let refunds = self.outbox.refunds_due().map_or(0, |r| r.len());
        ((queued.len(), total), refunds)
    }

    /// Note a call's failure: one that did not reach the switch turns the
    /// counter offline.
    fn note(&self, f: &Failure) {
        if link::unreachable(f) {
            self.online.store(false, Ordering::Relaxed);
        }
    }

    /// The offline policy the switch last sent this terminal, if it
    /// verifies (signed for this terminal, unchanged).
    fn policy(&self) -> Option<pb::OfflinePolicy> {
        let p = match self.outbox.policy() {
            Ok(p) => p?,
            Err(e) => {
                tracing::error!(error = %e, "counter: the stored offline policy does not read");
                return None;
            }
        };
        let ok = p.terminal_id == self.config.profile.id
            && proto::offline::verify(&p, &self.link.pin_key());
        if !ok {
            tracing::error!("counter: the stored offline policy does not verify");
        }
        ok.then_some(p)
    }

    /// The holder's name for a cash-in taken offline: one this counter
    /// showed within the policy's age, where the policy lets cash-ins wait.
    fn offline_name(&self, bin: &str, account: &str) -> Result<String, Refusal> {
        let Some(policy) = self.policy() else {
            return Err(Refusal::new(
                "offline_no_policy",
                "no verified offline policy",
            ));
        };
        if !policy.cash_in {
            return Err(Refusal::new(
                "offline_not_deferrable",
                "cash-ins may not wait",
            ));
        }
        let since = self.now_ms().saturating_sub(policy.name_inquiry_max_age_ms);
        match self.outbox.seen_name(bin, account, since) {
            Ok(Some(name)) => Ok(name),
            Ok(None) => Err(Refusal::new(
                "offline_not_seen",
                "the holder was not shown recently",
            )),
            Err(e) => Err(Refusal::new("internal", &e)),
        }
    }

    /// The bills this counter inquired for the customer within the
    /// policy's age, where the policy lets bills wait.
    fn offline_bills(
        &self,
        biller: &str,
        customer: &str,
    ) -> Result<pb::InquireBillsResponse, Refusal> {
        let Some(policy) = self.policy() else {
            return Err(Refusal::new(
                "offline_no_policy",
                "no verified offline policy",
            ));
        };
        if !policy.bills {
            return Err(Refusal::new("offline_not_deferrable", "bills may not wait"));
        }
        let since = self.now_ms().saturating_sub(policy.bill_inquiry_max_age_ms);
        match self.outbox.seen_bills(biller, customer, since) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(Refusal::new(
                "offline_not_seen",
                "the bills were not inquired recently",
            )),
            Err(e) => Err(Refusal::new("internal", &e)),
        }
    }

    /// A cash top-up or bill payment the switch could not be reached for,
    /// taken offline with its time (a bill payment pinned to the bills the
    /// customer paid for).
    async fn offline_payment(&self, s: &Session, what: &Payment) -> Result<String, Refusal> {
        let now = self.now_ms();
        match what {
            Payment::TopUp(m) => {
                let mut m = m.clone();
                m.offline_taken_at_ms = now;
                let label = format!("{} · {}", m.provider, m.phone);
                self.take_offline(
                    s,
                    pb::TxKind::TopUp,
                    &m.client_request_id,
                    m.encode_to_vec(),
                    m.amount,
                    "NẠP TIỀN ĐIỆN THOẠI",
                    label,
                    now,
                )
                .await
            }
            Payment::Bills(m) => {
                let seen = self.offline_bills(&m.biller, &m.customer)?;
                let chosen: Vec<&pb::BillItem> = seen
                    .bills
                    .iter()
                    .filter(|b| m.bill_ids.is_empty() || m.bill_ids.contains(&b.bill_id))
                    .collect();
                if chosen.is_empty() {
                    return Err(Refusal::new("bill_not_due", "none of these bills is due"));
                }
                let mut m = m.clone();
                m.offline_taken_at_ms = now;
                m.bill_ids = chosen.iter().map(|b| b.bill_id.clone()).collect();
                let amount = chosen.iter().map(|b| b.amount).sum();
                let label = format!("{} · {} · {}", m.biller, m.customer, seen.customer_name);
                self.take_offline(
                    s,
                    pb::TxKind::BillPayment,
                    &m.client_request_id,
                    m.encode_to_vec(),
                    amount,
                    "THANH TOÁN HÓA ĐƠN",
                    label,
                    now,
                )
                .await
            }
        }
    }

    /// The fee the switch will charge, as the policy states it.
    fn offline_fee(&self, kind: pb::TxKind, amount: u64) -> Option<u64> {
        let policy = self.policy()?;
        let rule = policy.fees.iter().find(|f| f.kind == kind as i32)?;
        Some(outbox::fee(rule, amount))
    }

    /// Take a request while the switch cannot be reached: queue it in the
    /// outbox within the policy's caps and print the provisional voucher.
    /// The answer is the voucher's number, or why it cannot wait.
    #[allow(clippy::too_many_arguments)]
    async fn take_offline(
        &self,
        s: &Session,
        kind: pb::TxKind,
        request_id: &str,
        request: Vec<u8>,
        amount: u64,
        title: &str,
        label: String,
        taken_at_ms: i64,
    ) -> Result<String, Refusal> {
        let Some(policy) = self.policy() else {
            return Err(Refusal::new(
                "offline_no_policy",
                "no verified offline policy",
            ));
        };
        let allowed = match kind {
            pb::TxKind::TopUp => policy.top_up,
            pb::TxKind::BillPayment => policy.bills,
            pb::TxKind::CashIn => policy.cash_in,
            _ => false,
        };
        let Some(rule) = policy
            .fees
            .iter()
            .find(|f| f.kind == kind as i32)
            .filter(|_| allowed)
        else {
            return Err(Refusal::new(
                "offline_not_deferrable",
                "the offline policy does not let this wait",
            ));
        };
        let fee = outbox::fee(rule, amount);
        // What the counter last knew was left of its own limits.
        let left = lock(&self.limits_seen)
            .iter()
            .filter(|l| l.limit.starts_with("terminal_") || l.limit.starts_with("post_office_"))
            .map(|l| l.left)
            .min();
        let kind_label = match kind {
            pb::TxKind::TopUp => "top_up",
            pb::TxKind::BillPayment => "bills",
            _ => "cash_in",
        };
        let voucher = match self.outbox.enqueue(
            &policy,
            left,
            &self.config.profile.id,
            request_id,
            kind_label,
            &request,
            amount,
            fee,
            &label,
            &s.full_name,
            taken_at_ms,
        ) {
            Ok(Ok(v)) => v,
            Ok(Err(cap)) => {
                let detail = match cap {
                    CapRefusal::OneMax(m) => format!("one offline item is at most {m}"),
                    CapRefusal::TotalMax { max, queued } => {
                        format!("{queued} of {max} already queued")
                    }
                    CapRefusal::CountMax(n) => format!("{n} items already queued"),
                    CapRefusal::Limit { left } => format!("{left} left under the counter's limits"),
                };
                return Err(Refusal::new("offline_cap", &detail));
            }
            Err(e) => {
                tracing::error!(error = %e, "counter: the outbox refused a write");
                return Err(Refusal::new("internal", &e));
            }
        };
        tracing::info!(voucher = %voucher, request_id, amount, fee, "counter: taken offline");
        self.wake.notify_one();
        let v = receipt::Voucher {
            number: voucher.clone(),
            terminal_id: self.config.profile.id.clone(),
            teller: s.full_name.clone(),
            taken_at_ms,
            title: title.to_string(),
            label,
            amount,
            fee,
        };
        let counter = receipt::Counter {
            post_office_name: self.receipt_name.clone(),
            teller: s.full_name.clone(),
        };
        if let Err(e) = self
            .print(&voucher, receipt::Receipt::voucher(&v, &counter))
            .await
        {
            tracing::warn!(voucher = %voucher, error = %e, "counter: voucher not printed");
        }
        Ok(voucher)
    }

    async fn screen(
        &self,
        s: &Session,
        screen: &str,
        poll_ms: Option<u64>,
        body: Markup,
    ) -> Response {
        let panel = self.panel().await;
        let who = Who {
            full_name: &s.full_name,
            terminal: &self.config.profile.id,
            post_office: &self.post_office,
            csrf: &s.csrf,
            lang: s.lang,
        };
        page(pages::layout(
            s.lang,
            Some(&who),
            Some(&panel),
            screen,
            poll_ms,
            body,
        ))
    }

    /// A refusal as the customer hears it, with the limit's headroom read
    /// from the switch when the refusal is a limit's.
    async fn refusal(&self, f: Failure, customer: Option<(&str, &str)>) -> Refusal {
        let mut r = Refusal::new(&f.code, &f.message);
        if let Some(limit) = text::limit_of(&f.code)
            && let Ok(l) = self.link.limits(customer).await
            && let Some(l) = l.limits.iter().find(|l| l.limit == limit)
        {
            r.limit = Some((l.max, l.left));
        }
        r
    }

    /// Print `receipt` on the counter's printer and keep the printer's
    /// bytes in `printed/`. The answer says what to tell the teller.
    async fn print(&self, label: &str, r: receipt::Receipt) -> Result<(), String> {
        let paper = self.config.paper;
        let target = self.config.printer.clone();
        let seq = self.print_seq.fetch_add(1, Ordering::Relaxed);
        let path = self
            .config
            .state_dir
            .join("printed")
            .join(format!("{}-{seq:04}-{label}.escpos", self.now_ms()));
        tokio::task::spawn_blocking(move || {
            receipt::escpos::print_kept(&r, paper, &path, target.as_ref())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn print_tx(&self, t: &pb::Transaction, teller: &str) -> Result<(), String> {
        let counter = receipt::Counter {
            post_office_name: self.receipt_name.clone(),
            teller: teller.to_string(),
        };
        let r = self
            .print(&t.transaction_id, receipt::Receipt::of(t, &counter))
            .await;
        match &r {
            Ok(()) => {
                lock(&self.printed).insert(t.transaction_id.clone());
            }
            Err(e) => {
                tracing::warn!(transaction_id = %t.transaction_id, error = %e, "counter: receipt not printed");
            }
        }
        r
    }

    fn save_shift(&self, shift: Option<LocalShift>) -> Result<(), String> {
        let path = self.config.state_dir.join("shift.json");
        match &shift {
            Some(s) => {
                let tmp = path.with_extension("json.tmp");
                let bytes = serde_json::to_vec(s).map_err(|e| e.to_string())?;
                std::fs::write(&tmp, bytes)
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            None => match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            },
        }
        *lock(&self.shift) = shift;
        Ok(())
    }

    /// After a money-moving call: on success the transaction's page (with
    /// its receipt printed when done); on a refusal, the form again.
    async fn after(
        &self,
        s: &Session,
        result: Result<pb::TransactionResponse, Failure>,
        customer: Option<(&str, &str)>,
        again: impl FnOnce(&Refusal) -> Markup,
        screen: &str,
    ) -> Response {
        match result {
            Ok(r) => {
                let t = r.transaction.unwrap_or_default();
                let printed = if t.status == pb::TxStatus::Completed as i32 {
                    match self.print_tx(&t, &s.full_name).await {
                        Ok(()) => "ok".to_string(),
                        Err(e) => e,
                    }
                } else {
                    if !t.qr_payload.is_empty() {
                        *lock(&self.customer) = CustomerView::Qr {
                            payload: t.qr_payload.clone(),
                            amount: t.amount.saturating_add(t.fee),
                            label: t.biller.clone(),
                        };
                    }
                    String::new()
                };
                let to = format!("/tx/{}?printed={}", t.transaction_id, urlencode(&printed));
                Redirect::to(&to).into_response()
            }
            Err(f) => {
                let r = self.refusal(f, customer).await;
                self.screen(s, screen, None, again(&r)).await
            }
        }
    }
}

/// `******6789`, as receipts show accounts.
fn mask(account: &str) -> String {
    let n = account.chars().count();
    let tail: String = account.chars().skip(n.saturating_sub(4)).collect();
    format!("{}{tail}", "*".repeat(n.saturating_sub(4).min(6)))
}

fn bank_name(bin: &str) -> String {
    qr::bank_by_bin(bin).map_or_else(|| bin.to_string(), |b| b.short_name.to_string())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn shift_required(app: &App, s: &Session) -> Option<Markup> {
    lock(&app.shift)
        .is_none()
        .then(|| html! { div.refusal #no-shift { (M::NoShift.text(s.lang)) " " a href="/shift/open" { (M::OpenShift.text(s.lang)) } } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(last_seen_ms: i64) -> Session {
        Session {
            name: "lan".into(),
            full_name: "Lan".into(),
            lang: Lang::Vi,
            csrf: "c".into(),
            last_seen_ms,
        }
    }

    #[test]
    fn a_session_ends_after_idle_time_and_not_before() {
        let mut s = Sessions::default();
        s.insert("t".into(), session(1_000), 1_000, 900_000);
        assert!(
            s.touch("t", 901_000, 900_000).is_some(),
            "used just in time"
        );
        assert!(
            s.touch("t", 901_000 + 900_000, 900_000).is_some(),
            "each use restarts the clock"
        );
        assert!(
            s.touch("t", 901_000 + 1_800_001, 900_000).is_none(),
            "idle too long"
        );
        assert!(s.touch("t", 0, 900_000).is_none(), "and gone");
    }

    #[test]
    fn sessions_are_bounded() {
        let mut s = Sessions::default();
        for i in 0..(SESSIONS_MAX as i64 + 5) {
            s.insert(format!("t{i}"), session(i), i, 900_000);
        }
        assert_eq!(s.by_token.len(), SESSIONS_MAX);
        assert!(!s.by_token.contains_key("t0"), "the oldest gave way");
    }

    #[test]
    fn today_starts_at_midnight_in_vietnam() {
        // 2026-11-30 17:00 UTC is midnight on 1 December in Vietnam.
        let midnight = 1_796_058_000_000;
        assert_eq!(start_of_day_ms(midnight), midnight);
        assert_eq!(start_of_day_ms(midnight + 86_399_999), midnight);
        assert_eq!(start_of_day_ms(midnight - 1), midnight - 86_400_000);
    }
}
