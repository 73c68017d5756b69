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
use link::Link;
use outbox::{CapRefusal, Outbox};
use pages::{Panel, Who};
use prost::Message;
use text::{Lang, M, Refusal};

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
    /// says so).
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
            let raster = receipt::render::render(&r, paper);
            let bytes = receipt::escpos::commands(&raster)?;
            std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            match &target {
                Some(t) => receipt::escpos::send(&bytes, t),
                None => Ok(()),
            }
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
        if let Err(e) = &r {
            tracing::warn!(transaction_id = %t.transaction_id, error = %e, "counter: receipt not printed");
        }
        lock(&self.printed).insert(t.transaction_id.clone());
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

// ---- sign-in ----

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    lang: String,
    #[serde(default)]
    ended: Option<String>,
}

async fn home(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = app.session(&headers) {
        return r.into_response();
    }
    let open = lock(&app.shift).is_some();
    Redirect::to(if open { "/cash-in" } else { "/shift/open" }).into_response()
}

async fn login_page(Query(q): Query<LoginQuery>) -> Response {
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

async fn login(State(app): State<Arc<App>>, Form(f): Form<Fields>) -> Response {
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

async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    match app.posted(&headers, &f) {
        Ok((t, s)) => {
            tracing::info!(teller = %s.name, "counter: teller signed out");
            lock(&app.sessions).by_token.remove(&t);
            Redirect::to("/login").into_response()
        }
        Err(r) => r.into_response(),
    }
}

async fn switch_lang(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    match app.posted(&headers, &f) {
        Ok((t, s)) => {
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
        Err(r) => r.into_response(),
    }
}

// ---- shifts ----

fn count_of(f: &Fields) -> Option<Vec<(u64, u64)>> {
    cash::DENOMINATIONS
        .iter()
        .map(|d| {
            let v = field(f, &format!("n{d}")).trim();
            let n = if v.is_empty() {
                0
            } else {
                v.parse::<u64>().ok()?
            };
            (n <= cash::NOTES_MAX).then_some((*d, n))
        })
        .collect()
}

async fn shift_open_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (_, s) = match app.session(&headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let open = lock(&app.shift).clone();
    let body = html! {
        h1 { (M::OpenShift.text(s.lang)) }
        @if let Some(sh) = open {
            div.ok #shift-open { (M::ShiftOpened.text(s.lang)) " " (receipt::vietnam_time(sh.opened_at_ms)) " · " (vnd(sh.opening_cash)) }
        } @else {
            (pages::count_form(s.lang, &s.csrf, "/shift/open", M::OpenShift, "open-shift"))
        }
    };
    app.screen(&s, "/shift/open", None, body).await
}

async fn shift_open(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let (_, s) = match app.posted(&headers, &f) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let Some(cash) = count_of(&f).and_then(|c| cash::total(&c)) else {
        let body = html! { div.refusal { (M::BadCount.text(s.lang)) } (pages::count_form(s.lang, &s.csrf, "/shift/open", M::OpenShift, "open-shift")) };
        return app.screen(&s, "/shift/open", None, body).await;
    };
    match app.link.open_shift(cash).await {
        Ok(sh) => {
            let local = LocalShift {
                shift_id: sh.shift_id,
                opened_at_ms: sh.opened_at_ms,
                opening_cash: sh.opening_cash,
                teller: s.full_name.clone(),
            };
            if let Err(e) = app.save_shift(Some(local)) {
                tracing::error!(error = %e, "counter: the open shift is not saved");
            }
            Redirect::to("/cash-in").into_response()
        }
        Err(f) if f.code == "shift_already_open" => {
            // Opened earlier from this terminal (another browser, the
            // command line): the counter carries on with it.
            let local = LocalShift {
                shift_id: String::new(),
                opened_at_ms: app.now_ms(),
                opening_cash: cash,
                teller: s.full_name.clone(),
            };
            let _ = app.save_shift(Some(local));
            Redirect::to("/cash-in").into_response()
        }
        Err(f) => {
            let r = app.refusal(f, None).await;
            let body = html! { (pages::refusal(s.lang, &r)) (pages::count_form(s.lang, &s.csrf, "/shift/open", M::OpenShift, "open-shift")) };
            app.screen(&s, "/shift/open", None, body).await
        }
    }
}

async fn shift_close_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (_, s) = match app.session(&headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let body = html! {
        h1 { (M::CloseShift.text(s.lang)) }
        @if let Some(m) = shift_required(&app, &s) { (m) }
        @else { (pages::count_form(s.lang, &s.csrf, "/shift/close", M::CloseShift, "close-shift")) }
    };
    app.screen(&s, "/shift/close", None, body).await
}

async fn shift_close(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let (_, s) = match app.posted(&headers, &f) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let Some((count, cash)) = count_of(&f).and_then(|c| cash::total(&c).map(|t| (c, t))) else {
        let body = html! { div.refusal { (M::BadCount.text(s.lang)) } (pages::count_form(s.lang, &s.csrf, "/shift/close", M::CloseShift, "close-shift")) };
        return app.screen(&s, "/shift/close", None, body).await;
    };
    // Nothing may stay behind a closed shift: what waits in the outbox,
    // and cash owed back to customers.
    let (queued, refunds) = app.outbox_summary();
    if queued.0 > 0 || refunds > 0 {
        let r = if queued.0 > 0 {
            Refusal::new(
                "queue_not_empty",
                &format!("{} items wait to be sent", queued.0),
            )
        } else {
            Refusal::new("refunds_due", &format!("{refunds} refunds are owed"))
        };
        let body = html! { (pages::refusal(s.lang, &r)) (pages::count_form(s.lang, &s.csrf, "/shift/close", M::CloseShift, "close-shift")) };
        return app.screen(&s, "/shift/close", None, body).await;
    }
    let opened = lock(&app.shift).clone();
    match app.link.close_shift(cash).await {
        Ok(sh) => {
            let since = opened
                .as_ref()
                .map_or(sh.opened_at_ms, |o| o.opened_at_ms.min(sh.opened_at_ms));
            let totals = shift_totals(&app, since, s.lang).await;
            let report = receipt::ShiftReport {
                shift_id: sh.shift_id.clone(),
                terminal_id: sh.terminal_id.clone(),
                teller: s.full_name.clone(),
                opened_at_ms: sh.opened_at_ms,
                closed_at_ms: sh.closed_at_ms,
                opening_cash: sh.opening_cash,
                counted: count,
                counted_cash: sh.counted_cash,
                expected_cash: sh.expected_cash,
                variance: sh.variance,
                totals,
            };
            let counter = receipt::Counter {
                post_office_name: app.receipt_name.clone(),
                teller: s.full_name.clone(),
            };
            let printed = app
                .print("shift", receipt::Receipt::shift(&report, &counter))
                .await;
            if let Err(e) = app.save_shift(None) {
                tracing::error!(error = %e, "counter: the closed shift is not saved");
            }
            let variance = if sh.variance < 0 {
                format!("-{}", vnd(sh.variance.unsigned_abs()))
            } else {
                vnd(sh.variance as u64)
            };
            let body = html! {
                h1 { (M::CloseShift.text(s.lang)) }
                div.ok #shift-closed { (M::ShiftClosed.text(s.lang)) }
                table.facts {
                    tr { td { (M::Expected.text(s.lang)) } td #expected { (vnd(sh.expected_cash)) } }
                    tr { td { (M::Counted.text(s.lang)) } td #counted { (vnd(sh.counted_cash)) } }
                    tr { td { (M::Variance.text(s.lang)) } td.amount #variance { (variance) } }
                }
                @match printed {
                    Ok(()) => p #printed { (M::ShiftReport.text(s.lang)) },
                    Err(e) => div.refusal #print-error { (M::NotPrinted.text(s.lang)) ": " (e) },
                }
            };
            app.screen(&s, "/shift/close", None, body).await
        }
        Err(f) => {
            let r = app.refusal(f, None).await;
            let body = html! { (pages::refusal(s.lang, &r)) (pages::count_form(s.lang, &s.csrf, "/shift/close", M::CloseShift, "close-shift")) };
            app.screen(&s, "/shift/close", None, body).await
        }
    }
}

/// Completed transactions of this counter since `since_ms`, by kind:
/// (label, count, total amount).
async fn shift_totals(app: &App, since_ms: i64, lang: Lang) -> Vec<(String, u64, u64)> {
    let mut by_kind: Vec<(i32, u64, u64)> = Vec::new();
    for t in transactions_since(app, since_ms).await.unwrap_or_default() {
        if t.status != pb::TxStatus::Completed as i32 {
            continue;
        }
        match by_kind.iter_mut().find(|(k, _, _)| *k == t.kind) {
            Some(x) => {
                x.1 += 1;
                x.2 = x.2.saturating_add(t.amount);
            }
            None => by_kind.push((t.kind, 1, t.amount)),
        }
    }
    by_kind.sort();
    by_kind
        .into_iter()
        .map(|(k, n, total)| (pages::kind_label(lang, k).to_string(), n, total))
        .collect()
}

async fn transactions_since(app: &App, since_ms: i64) -> Result<Vec<pb::Transaction>, Failure> {
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..TODAY_PAGES_MAX {
        let r = app.link.transactions(&token).await?;
        let older = r.transactions.iter().any(|t| t.created_at_ms < since_ms);
        out.extend(
            r.transactions
                .into_iter()
                .filter(|t| t.created_at_ms >= since_ms),
        );
        if older || r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    Ok(out)
}

/// Midnight of today in Vietnam (UTC+7), Unix ms.
fn start_of_day_ms(now_ms: i64) -> i64 {
    const OFFSET_MS: i64 = 7 * 3_600_000;
    const DAY_MS: i64 = 86_400_000;
    (now_ms + OFFSET_MS).div_euclid(DAY_MS) * DAY_MS - OFFSET_MS
}

// ---- cash-in ----

fn cash_in_form(s: &Session, f: &Fields, refusal: Option<&Refusal>) -> Markup {
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

async fn cash_in_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (_, s) = match app.session(&headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let body = html! { @if let Some(m) = shift_required(&app, &s) { (m) } (cash_in_form(&s, &Vec::new(), None)) };
    app.screen(&s, "/cash-in", None, body).await
}

async fn cash_in_check(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let (_, s) = match app.posted(&headers, &f) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
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

async fn cash_in_confirm(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let (_, s) = match app.posted(&headers, &f) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let Some(amount) = cash::parse_amount(field(&f, "amount")) else {
        return app
            .screen(&s, "/cash-in", None, cash_in_form(&s, &f, None))
            .await;
    };
    let (bank, account) = (field(&f, "bank"), field(&f, "account"));
    let msg = pb::CashInRequest {
        offline_taken_at_ms: 0,
        client_request_id: field(&f, "request_id").to_string(),
        bank_bin: bank.to_string(),
        account: account.to_string(),
        amount,
        teller: s.full_name.clone(),
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

// ---- cash-out ----

fn cash_out_form(s: &Session, f: &Fields, refusal: Option<&Refusal>) -> Markup {
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

async fn cash_out_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (_, s) = match app.session(&headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let body = html! { @if let Some(m) = shift_required(&app, &s) { (m) } (cash_out_form(&s, &Vec::new(), None)) };
    app.screen(&s, "/cash-out", None, body).await
}

async fn cash_out_start(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let (_, s) = match app.posted(&headers, &f) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
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

async fn cash_out_confirm(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let (_, s) = match app.posted(&headers, &f) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let result = app.link.cash_out_confirm(field(&f, "id")).await;
    let form = |r: &Refusal| cash_out_form(&s, &Vec::new(), Some(r));
    app.after(&s, result, None, form, "/cash-out").await
}

async fn cash_out_cancel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let (_, s) = match app.posted(&headers, &f) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let result = app.link.cash_out_cancel(field(&f, "id")).await;
    let form = |r: &Refusal| cash_out_form(&s, &Vec::new(), Some(r));
    app.after(&s, result, None, form, "/cash-out").await
}

// ---- bills and top-ups ----

/// How the customer pays; offline, cash only (cards and QR need their
/// bank at once).
fn funding_fields(lang: Lang, offline: bool) -> Markup {
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

async fn bills_form(app: &App, s: &Session, f: &Fields, refusal: Option<&Refusal>) -> Markup {
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

async fn bills_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (_, s) = match app.session(&headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let body = html! { @if let Some(m) = shift_required(&app, &s) { (m) } (bills_form(&app, &s, &Vec::new(), None).await) };
    app.screen(&s, "/bills", None, body).await
}

async fn bills_inquire(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let (_, s) = match app.posted(&headers, &f) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
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

fn funding_of(s: &str) -> pb::Funding {
    match s {
        "card" => pb::Funding::Card,
        "qr" => pb::Funding::Qr,
        _ => pb::Funding::Cash,
    }
}

/// A payment: at once for cash and QR; for a card, after the customer's
/// PIN arrives at the PIN entry (the page waits on `/job/{id}`).
async fn pay(
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
enum Payment {
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

async fn bills_pay(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let (_, s) = match app.posted(&headers, &f) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let bill_ids: Vec<String> = f
        .iter()
        .filter(|(k, _)| k == "bill")
        .map(|(_, v)| v.clone())
        .collect();
    let msg = pb::PayBillsRequest {
        offline_taken_at_ms: 0,
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

const PROVIDERS: [&str; 3] = ["VIETTEL", "VINAPHONE", "MOBIFONE"];
const TOPUP_AMOUNTS: [u64; 8] = [
    10_000, 20_000, 30_000, 50_000, 100_000, 200_000, 300_000, 500_000,
];

fn topup_form(s: &Session, f: &Fields, refusal: Option<&Refusal>) -> Markup {
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

async fn topup_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (_, s) = match app.session(&headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let body = html! { @if let Some(m) = shift_required(&app, &s) { (m) } (topup_form(&s, &Vec::new(), None)) };
    app.screen(&s, "/topup", None, body).await
}

async fn topup_pay(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let (_, s) = match app.posted(&headers, &f) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let amount = cash::parse_amount(field(&f, "amount")).unwrap_or(0);
    let msg = pb::TopUpRequest {
        offline_taken_at_ms: 0,
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

// ---- a transaction, a waiting card payment, today's list ----

#[derive(Deserialize)]
struct TxQuery {
    #[serde(default)]
    printed: Option<String>,
}

async fn tx_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<TxQuery>,
) -> Response {
    let (_, s) = match app.session(&headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
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

async fn tx_print(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let (_, s) = match app.posted(&headers, &f) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
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

async fn job_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (_, s) = match app.session(&headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
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
struct TodayQuery {
    #[serde(default)]
    q: String,
}

async fn today_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<TodayQuery>,
) -> Response {
    let (_, s) = match app.session(&headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
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

// ---- the customer's window and the PIN entry ----

async fn customer_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (_, s) = match app.session(&headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
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

async fn customer_fragment(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (_, s) = match app.session(&headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let view = lock(&app.customer).clone();
    page(pages::customer_view(s.lang, &view))
}

async fn pin_page(State(app): State<Arc<App>>) -> Response {
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

async fn pin_submit(State(app): State<Arc<App>>, Form(f): Form<Fields>) -> Response {
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

// ---- the outbox: forwarding, vouchers, refunds owed ----

/// Fetch the offline policy and keep it when it verifies: at start and at
/// each sign-in.
async fn refresh_policy(app: Arc<App>) {
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
async fn forward(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
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
const REPORT_EVERY_MS: i64 = 60_000;

/// Tell the switch what the outbox holds, when it changed or a minute
/// passed (the console shows every counter's queue).
async fn report_outbox(app: &App) -> Result<(), String> {
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
async fn forward_once(app: &App) -> Result<bool, String> {
    let progress = forward_items(app).await?;
    if progress && app.online.load(Ordering::Relaxed) {
        report_outbox(app).await?;
    }
    Ok(progress)
}

async fn forward_items(app: &App) -> Result<bool, String> {
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

async fn refresh_policy_now(app: &App) {
    if let Ok(p) = app.link.offline_policy().await
        && p.terminal_id == app.config.profile.id
        && proto::offline::verify(&p, &app.link.pin_key())
    {
        let _ = app.outbox.put_policy(&p, app.now_ms());
    }
}

/// The final receipt of a forwarded item, printed once.
async fn print_forwarded(app: &App, item: &outbox::Item) {
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

async fn voucher_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Response {
    let (_, s) = match app.session(&headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
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

async fn refunds_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (_, s) = match app.session(&headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
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

async fn refund_returned(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(seq): Path<i64>,
    Form(f): Form<Fields>,
) -> Response {
    let (_, s) = match app.posted(&headers, &f) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    match app.outbox.refund_returned(seq, app.now_ms()) {
        Ok(()) => tracing::info!(seq, teller = %s.name, "counter: refund handed back"),
        Err(e) => tracing::warn!(seq, error = %e, "counter: refund not recorded"),
    }
    Redirect::to("/refunds").into_response()
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
