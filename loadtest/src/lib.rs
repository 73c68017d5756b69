//! The load generator: drives a switch with the real call sequence of each
//! flow (a cash-out is code, start, confirm; a QR payment is create, pay and
//! the merchant's notification; a bill is inquiry then payment), in closed
//! loop (`concurrency` clients, to find the maximum) or open loop (a fixed
//! arrival rate, latency measured from each flow's intended start so a
//! stalled server cannot hide its queueing), then verifies that the ledger
//! balances and that every acknowledged transaction is there with the
//! status that was acknowledged.
//!
//! The target is a running switch (its profiles), a switch started
//! in-process on its own runtime ([`Embedded`]), or a null server that
//! answers every call at once with a reply of the same size ([`null`]), the
//! ceiling the same generator reaches on the same machine.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use proto::auth::Credentials;
use proto::v1 as pb;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tonic::transport::Channel;

pub mod null;

/// The flows a load mixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flow {
    CashIn,
    CashOut,
    Bill,
    Qr,
}

impl Flow {
    pub fn name(self) -> &'static str {
        match self {
            Flow::CashIn => "cash_in",
            Flow::CashOut => "cash_out",
            Flow::Bill => "bill",
            Flow::Qr => "qr",
        }
    }
}

/// The default mix of issue 7.
pub const DEFAULT_MIX: &str = "cash_in=40,cash_out=20,bill=20,qr=20";

/// `cash_in=40,cash_out=20,bill=20,qr=20`: weights per flow.
pub fn parse_mix(s: &str) -> Result<Vec<(Flow, u32)>, String> {
    let mut mix = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected flow=weight"))?;
        let weight: u32 = weight
            .parse()
            .map_err(|_| format!("{part:?}: weight is not a whole number"))?;
        let flow = match name {
            "cash_in" => Flow::CashIn,
            "cash_out" => Flow::CashOut,
            "bill" => Flow::Bill,
            "qr" => Flow::Qr,
            _ => {
                return Err(format!(
                    "unknown flow {name:?} (cash_in, cash_out, bill, qr)"
                ));
            }
        };
        if weight > 0 {
            mix.push((flow, weight));
        }
    }
    if mix.is_empty() {
        return Err("the mix has no flow with a weight".into());
    }
    Ok(mix)
}

#[derive(Clone, Debug)]
pub enum Mode {
    Closed { concurrency: usize },
    Open { rate: u32, in_flight_max: usize },
}

#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    pub mix: Vec<(Flow, u32)>,
    pub duration: Duration,
    pub warmup: Duration,
    pub seed: u64,
    /// Every acknowledged transaction as a JSON line, flushed as it goes.
    pub record: Option<PathBuf>,
    pub progress: bool,
    /// HTTP/2 connections the generator spreads its calls over.
    pub connections: usize,
}

#[derive(Deserialize)]
struct Profile {
    role: String,
    id: String,
    switch: String,
    secret: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Customer {
    pub bank: String,
    pub account: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct BillCustomer {
    pub biller: String,
    pub customer: String,
    #[serde(default)]
    pub bills_due: usize,
}

/// Who to load and as whom.
pub struct Target {
    /// The switch's nodes; connections (and so clients) are spread over
    /// them in turn.
    pub addresses: Vec<String>,
    pub tellers: Vec<(String, Credentials)>,
    pub operator: Credentials,
    pub merchants: Vec<(String, Credentials)>,
    /// By BIN.
    pub banks: BTreeMap<String, Credentials>,
    pub customers: Vec<Customer>,
    /// Those with something due.
    pub bill_customers: Vec<BillCustomer>,
    /// For `https://` addresses.
    pub tls: TargetTls,
}

/// TLS to an `https://` switch: the CA that signed its certificate, and
/// the generator's client certificate where the switch asks for one.
#[derive(Clone, Debug, Default)]
pub struct TargetTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl Target {
    /// `connections` addresses, the nodes in turn (at least one each).
    fn spread(&self, connections: usize) -> impl Iterator<Item = &str> {
        let n = connections.max(self.addresses.len()).max(1);
        self.addresses.iter().map(String::as_str).cycle().take(n)
    }

    /// Read the profiles a switch wrote (`data/profiles/`).
    /// `addresses` empty: the address the profiles name.
    pub fn from_profiles(dir: &Path, addresses: &[String]) -> Result<Target, String> {
        let mut tellers = Vec::new();
        let mut merchants = Vec::new();
        let mut banks = BTreeMap::new();
        let mut operator = None;
        let mut switch_address = None;
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let p: Profile =
                toml::from_str(&std::fs::read_to_string(&path).map_err(|e| e.to_string())?)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            let creds = Credentials::from_hex(&p.id, &p.secret)
                .ok_or_else(|| format!("{}: secret is not hex", path.display()))?;
            switch_address.get_or_insert(p.switch.clone());
            match p.role.as_str() {
                "teller" => tellers.push((p.id, creds)),
                "merchant" => merchants.push((p.id, creds)),
                "bank" => {
                    banks.insert(p.id, creds);
                }
                "operator" => operator = Some(creds),
                _ => {}
            }
        }
        tellers.sort_by(|a, b| a.0.cmp(&b.0));
        merchants.sort_by(|a, b| a.0.cmp(&b.0));
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"))
        };
        let customers: Vec<Customer> = serde_json::from_str(&read("customers.json")?)
            .map_err(|e| format!("customers.json: {e}"))?;
        let bill_customers: Vec<BillCustomer> = match read("bill-customers.json") {
            Ok(text) => serde_json::from_str::<Vec<BillCustomer>>(&text)
                .map_err(|e| format!("bill-customers.json: {e}"))?
                .into_iter()
                .filter(|c| c.bills_due > 0)
                .collect(),
            Err(_) => Vec::new(),
        };
        if tellers.is_empty() || customers.is_empty() {
            return Err(format!(
                "{}: no teller profiles or no customers",
                dir.display()
            ));
        }
        Ok(Target {
            addresses: if addresses.is_empty() {
                vec![switch_address.ok_or("no switch address")?]
            } else {
                addresses.to_vec()
            },
            tellers,
            operator: operator.ok_or("no operator profile (needed for verification)")?,
            merchants,
            banks,
            customers,
            bill_customers,
            tls: TargetTls::default(),
        })
    }

    /// Whether every flow of `mix` has what it needs.
    pub fn check_mix(&self, mix: &[(Flow, u32)]) -> Result<(), String> {
        for (flow, _) in mix {
            match flow {
                Flow::Bill if self.bill_customers.is_empty() => {
                    return Err("the bill flow needs bill-customers.json with bills due".into());
                }
                Flow::Qr if self.merchants.is_empty() || self.banks.is_empty() => {
                    return Err("the qr flow needs merchant and bank profiles".into());
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Tells the starter a server is listening (or why it is not).
pub type Ready = tokio::sync::oneshot::Sender<Result<std::net::SocketAddr, String>>;
/// Resolves when the server should stop.
pub type Stopped = tokio::sync::oneshot::Receiver<()>;

/// A server on a thread and a runtime of its own, so that the generator's
/// tasks never share its threads.
pub struct ServerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Bind a loopback port and run `serve` on it; answers once `serve`
    /// says it is ready.
    pub async fn start<F, Fut>(
        name: &str,
        serve: F,
    ) -> Result<(ServerThread, std::net::SocketAddr), String>
    where
        F: FnOnce(tokio::net::TcpListener, Ready, Stopped) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(listener) => serve(listener, ready_tx, stopped).await,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                        }
                    }
                });
            })
            .map_err(|e| e.to_string())?;
        let address = ready_rx
            .await
            .map_err(|_| format!("the {name} stopped"))??;
        Ok((
            ServerThread {
                stop: Some(stop),
                thread: Some(thread),
            },
            address,
        ))
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// A switch started in-process on a temporary directory, on a runtime of
/// its own.
/// What a switch under load needs that the demo's defaults do not give: a
/// load test moves more than a day's limits, and more e-float than the
/// demo's, in minutes; it needs bills that never run out; windows close only
/// when asked.
pub fn tune_for_load(config: &mut switch::Config) {
    config.terminal_daily_max = u64::MAX;
    config.customer_daily_max = u64::MAX;
    config.customer_monthly_max = u64::MAX;
    config.post_office_daily_max = u64::MAX;
    config.post_office_monthly_max = u64::MAX;
    config.demo_efloat = 1_000_000_000_000;
    config.biller_sim.customers = 600;
    config.biller_sim.recurring_bills = true;
    config.settlement = Default::default();
    // A few terminal keys carry the whole load.
    config.rate_limit.requests_per_s = 0;
}

pub struct Embedded {
    _dir: tempfile::TempDir,
    server: ServerThread,
    /// The embedded switch's simulated banks and billers (faults are
    /// switched on through them during a run).
    pub sims: switch::sim::Simulators,
}

impl Embedded {
    /// Start it; the target is its address and the profiles it wrote.
    pub async fn start(
        tune: impl FnOnce(&mut switch::Config) + Send + 'static,
    ) -> Result<(Embedded, Target), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut config = switch::Config {
            data_dir: dir.path().to_path_buf(),
            ..switch::Config::default()
        };
        tune_for_load(&mut config);
        tune(&mut config);
        let sims = std::sync::Arc::new(std::sync::Mutex::new(None));
        let handed = sims.clone();
        let (server, address) =
            ServerThread::start("embedded switch", |listener, ready, stopped| async move {
                let address = listener.local_addr().expect("bound");
                let opened = match switch::server::open(config, address).await {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                        return;
                    }
                };
                *handed.lock().unwrap_or_else(|e| e.into_inner()) = Some(opened.sims.clone());
                let _ = ready.send(Ok(address));
                let _ = switch::server::serve(listener, opened, async {
                    let _ = stopped.await;
                })
                .await;
            })
            .await?;
        let target =
            Target::from_profiles(&dir.path().join("profiles"), &[format!("http://{address}")])?;
        let sims = sims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or("the embedded switch handed over no simulators")?;
        Ok((
            Embedded {
                _dir: dir,
                server,
                sims,
            },
            target,
        ))
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// Who acknowledged a transaction, to ask about it again.
#[derive(Clone, Copy, Debug)]
enum Asker {
    Teller(usize),
    Bank(usize),
}

/// What happened to one acknowledged transaction.
#[derive(Clone, Debug)]
struct Acked {
    transaction_id: String,
    asker: Asker,
    status: &'static str,
}

#[derive(Default)]
struct Stats {
    completed: AtomicU64,
    failed: AtomicU64,
    /// Completed and failed in the last progress interval.
    recent: AtomicU64,
    recent_failed: AtomicU64,
}

/// A merchant notification arrives before or after the payment's answer.
enum Notice {
    Arrived,
    Waiting(tokio::sync::oneshot::Sender<()>),
}

struct Shared {
    target: Target,
    channels: Vec<Channel>,
    stats: Stats,
    histograms: Mutex<BTreeMap<Flow, Histogram<u64>>>,
    errors: Mutex<BTreeMap<String, u64>>,
    /// The first message seen for each error code.
    error_samples: Mutex<BTreeMap<String, String>>,
    acked: Mutex<Vec<Acked>>,
    record: Option<Mutex<tokio::fs::File>>,
    measuring: AtomicBool,
    next_request: AtomicU64,
    run_id: String,
    /// Notifications by transaction id (QR flow).
    notices: std::sync::Mutex<HashMap<String, Notice>>,
    bank_bins: Vec<String>,
}

/// How long a QR flow waits for the merchant's notification.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(10);

fn error_name(s: &tonic::Status) -> String {
    s.metadata()
        .get("x-error-code")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:?}", s.code()).to_lowercase())
}

fn status_name(s: i32) -> &'static str {
    match pb::TxStatus::try_from(s) {
        Ok(pb::TxStatus::Completed) => "completed",
        Ok(pb::TxStatus::Pending) => "pending",
        Ok(pb::TxStatus::Failed) => "failed",
        Ok(pb::TxStatus::Reversed) => "reversed",
        _ => "unknown",
    }
}

/// A small seeded generator (xorshift64*), one per worker.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn pick(mix: &[(Flow, u32)], rng: &mut Rng) -> Flow {
    let total: u64 = mix.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut r = rng.below(total);
    for (flow, w) in mix {
        if r < u64::from(*w) {
            return *flow;
        }
        r -= u64::from(*w);
    }
    mix[mix.len() - 1].0
}

/// A flow's outcome: the acknowledged transaction and who can ask for it.
type FlowResult = Result<(pb::Transaction, Asker), tonic::Status>;

impl Shared {
    fn channel(&self, n: u64) -> Channel {
        self.channels[(n % self.channels.len() as u64) as usize].clone()
    }

    fn request_id(&self) -> String {
        format!(
            "{}-{}",
            self.run_id,
            self.next_request.fetch_add(1, Ordering::Relaxed)
        )
    }

    async fn cash_in(&self, terminal: usize, customer: &Customer, ch: Channel) -> FlowResult {
        let (_, creds) = &self.target.tellers[terminal];
        let m = pb::CashInRequest {
            client_request_id: self.request_id(),
            bank_bin: customer.bank.clone(),
            account: customer.account.clone(),
            amount: 50_000,
            teller: String::new(),
            offline_taken_at_ms: 0,
        };
        let r = pb::teller_client::TellerClient::new(ch)
            .cash_in(creds.sign("/paymentswitch.v1.Teller/CashIn", m))
            .await?;
        Ok((
            r.into_inner().transaction.unwrap_or_default(),
            Asker::Teller(terminal),
        ))
    }

    /// What the customer's bank app does, then the teller's two calls.
    async fn cash_out(&self, terminal: usize, customer: &Customer, ch: Channel) -> FlowResult {
        let (_, creds) = &self.target.tellers[terminal];
        let code = pb::IssueWithdrawalCodeRequest {
            bank_bin: customer.bank.clone(),
            account: customer.account.clone(),
            amount: 50_000,
        };
        let code = pb::simulator_client::SimulatorClient::new(ch.clone())
            .issue_withdrawal_code(
                creds.sign("/paymentswitch.v1.Simulator/IssueWithdrawalCode", code),
            )
            .await?
            .into_inner()
            .code;
        let mut teller = pb::teller_client::TellerClient::new(ch);
        let m = pb::CashOutStartRequest {
            client_request_id: self.request_id(),
            bank_bin: customer.bank.clone(),
            account: customer.account.clone(),
            code,
            amount: 50_000,
            teller: String::new(),
        };
        let started = teller
            .cash_out_start(creds.sign("/paymentswitch.v1.Teller/CashOutStart", m))
            .await?
            .into_inner();
        let m = pb::CashOutConfirmRequest {
            transaction_id: started
                .transaction
                .map(|t| t.transaction_id)
                .unwrap_or_default(),
        };
        let r = teller
            .cash_out_confirm(creds.sign("/paymentswitch.v1.Teller/CashOutConfirm", m))
            .await?;
        Ok((
            r.into_inner().transaction.unwrap_or_default(),
            Asker::Teller(terminal),
        ))
    }

    /// Inquiry, then payment in cash of everything due.
    async fn bill(&self, terminal: usize, pick: u64, ch: Channel) -> FlowResult {
        let (_, creds) = &self.target.tellers[terminal];
        let c =
            &self.target.bill_customers[(pick % self.target.bill_customers.len() as u64) as usize];
        let mut bills = pb::bills_client::BillsClient::new(ch);
        let m = pb::InquireBillsRequest {
            biller: c.biller.clone(),
            customer: c.customer.clone(),
        };
        bills
            .inquire_bills(creds.sign("/paymentswitch.v1.Bills/InquireBills", m))
            .await?;
        let m = pb::PayBillsRequest {
            client_request_id: self.request_id(),
            biller: c.biller.clone(),
            customer: c.customer.clone(),
            bill_ids: Vec::new(),
            funding: pb::Funding::Cash as i32,
            ..Default::default()
        };
        let r = bills
            .pay_bills(creds.sign("/paymentswitch.v1.Bills/PayBills", m))
            .await?;
        Ok((
            r.into_inner().transaction.unwrap_or_default(),
            Asker::Teller(terminal),
        ))
    }

    /// The merchant's code, the payer bank's payment, the merchant's
    /// notification.
    async fn qr(&self, merchant: usize, customer: &Customer, ch: Channel) -> FlowResult {
        let (_, mcreds) = &self.target.merchants[merchant];
        let request_id = self.request_id();
        let m = pb::CreateQrRequest {
            client_request_id: request_id.clone(),
            amount: 20_000,
            reference: request_id.chars().rev().take(20).collect(),
            purpose: String::new(),
            expires_in_s: 0,
        };
        let code = pb::merchant_client::MerchantClient::new(ch.clone())
            .create_qr(mcreds.sign("/paymentswitch.v1.Merchant/CreateQr", m))
            .await?
            .into_inner();
        let bank = self
            .bank_bins
            .iter()
            .position(|b| *b == customer.bank)
            .unwrap_or(0);
        let bcreds = &self.target.banks[&self.bank_bins[bank]];
        let m = pb::PayQrRequest {
            client_request_id: request_id,
            payload: code.payload,
            payer_account: customer.account.clone(),
            amount: 0,
        };
        let tx = pb::payer_bank_client::PayerBankClient::new(ch)
            .pay_qr(bcreds.sign("/paymentswitch.v1.PayerBank/PayQr", m))
            .await?
            .into_inner()
            .transaction
            .unwrap_or_default();
        let wait = {
            let mut notices = self.notices.lock().unwrap_or_else(|e| e.into_inner());
            match notices.remove(&tx.transaction_id) {
                Some(Notice::Arrived) => None,
                _ => {
                    let (send, recv) = tokio::sync::oneshot::channel();
                    notices.insert(tx.transaction_id.clone(), Notice::Waiting(send));
                    Some(recv)
                }
            }
        };
        if let Some(recv) = wait
            && !matches!(tokio::time::timeout(NOTICE_TIMEOUT, recv).await, Ok(Ok(())))
        {
            self.notices
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&tx.transaction_id);
            return Err(tonic::Status::deadline_exceeded("no merchant notification")).map_err(
                |s| {
                    let mut s = s;
                    if let Ok(v) = "notification_missing".parse() {
                        s.metadata_mut().insert("x-error-code", v);
                    }
                    s
                },
            );
        }
        Ok((tx, Asker::Bank(bank)))
    }

    /// Run one flow's real sequence of calls; record its latency from
    /// `intended` (the intended start in open loop).
    async fn run_flow(&self, flow: Flow, worker: u64, rng: &mut Rng, intended: Instant) {
        let customer =
            &self.target.customers[rng.below(self.target.customers.len() as u64) as usize];
        let terminal = (worker % self.target.tellers.len() as u64) as usize;
        let ch = self.channel(worker);
        let result = match flow {
            Flow::CashIn => self.cash_in(terminal, customer, ch).await,
            Flow::CashOut => self.cash_out(terminal, customer, ch).await,
            Flow::Bill => {
                // A closed-loop worker keeps to its own customer (an open
                // loop's flows take turns): two flows never race for one
                // bill while there are more customers than clients.
                self.bill(terminal, worker, ch).await
            }
            Flow::Qr => {
                let merchant = rng.below(self.target.merchants.len() as u64) as usize;
                self.qr(merchant, customer, ch).await
            }
        };
        let micros = intended.elapsed().as_micros() as u64;
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        match result {
            Ok((t, asker)) => {
                self.stats.completed.fetch_add(1, Ordering::Relaxed);
                self.stats.recent.fetch_add(1, Ordering::Relaxed);
                let mut h = self.histograms.lock().await;
                let _ = h
                    .entry(flow)
                    .or_insert_with(|| Histogram::new(3).expect("histogram"))
                    .record(micros.max(1));
                drop(h);
                let acked = Acked {
                    transaction_id: t.transaction_id,
                    asker,
                    status: status_name(t.status),
                };
                if let Some(f) = &self.record {
                    let who = match asker {
                        Asker::Teller(i) => &self.target.tellers[i].0,
                        Asker::Bank(i) => &self.bank_bins[i],
                    };
                    let line = format!(
                        "{}\n",
                        serde_json::json!({"transaction_id": acked.transaction_id, "terminal": who, "flow": flow.name(), "status": acked.status})
                    );
                    let mut f = f.lock().await;
                    let _ = f.write_all(line.as_bytes()).await;
                    let _ = f.flush().await;
                }
                self.acked.lock().await.push(acked);
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                self.stats.recent_failed.fetch_add(1, Ordering::Relaxed);
                let name = error_name(&e);
                *self.errors.lock().await.entry(name.clone()).or_default() += 1;
                self.error_samples
                    .lock()
                    .await
                    .entry(name)
                    .or_insert_with(|| format!("{}: {}", flow.name(), e.message()));
            }
        }
    }

    /// Keep one `WatchPayments` stream per merchant open, reconnecting
    /// after the last notice seen, and wake the flows waiting for them.
    async fn watch(
        self: Arc<Self>,
        merchant: usize,
        stop: Arc<AtomicBool>,
        ready: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut ready = Some(ready);
        let (_, creds) = &self.target.merchants[merchant];
        let mut after = u64::MAX;
        // Each reconnection tries the next connection, so a watcher whose
        // node died moves to another (a switch's nodes share the notices).
        let mut attempt: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut client =
                pb::merchant_client::MerchantClient::new(self.channel(merchant as u64 + attempt));
            attempt += 1;
            // Start from the newest: earlier payments are not this run's.
            if after == u64::MAX {
                let m = pb::ListPaymentsRequest {
                    page_size: 1,
                    page_token: String::new(),
                };
                after = match client
                    .list_payments(creds.sign("/paymentswitch.v1.Merchant/ListPayments", m))
                    .await
                {
                    Ok(r) => r.into_inner().payments.first().map_or(0, |p| p.seq),
                    Err(_) => 0,
                };
            }
            let m = pb::WatchPaymentsRequest { after_seq: after };
            let Ok(stream) = client
                .watch_payments(creds.sign("/paymentswitch.v1.Merchant/WatchPayments", m))
                .await
            else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let mut stream = stream.into_inner();
            // Subscribed: the load may start.
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            // Read without interruption (the task is aborted at the end).
            while let Ok(Some(n)) = stream.message().await {
                after = after.max(n.seq);
                let mut notices = self.notices.lock().unwrap_or_else(|e| e.into_inner());
                match notices.remove(&n.transaction_id) {
                    Some(Notice::Waiting(w)) => {
                        let _ = w.send(());
                    }
                    _ => {
                        notices.insert(n.transaction_id, Notice::Arrived);
                    }
                }
            }
        }
    }
}

async fn connect(address: &str, tls: &TargetTls) -> Result<Channel, String> {
    proto::tls::ClientTls {
        ca_file: tls.ca_file.as_deref(),
        cert_file: tls.cert_file.as_deref(),
        key_file: tls.key_file.as_deref(),
    }
    .endpoint(address)?
    .connect()
    .await
    .map_err(|e| format!("cannot reach {address}: {e}"))
}

/// Run the load and verify; the report is what `--json` writes.
pub async fn run(target: Target, options: Options) -> Result<serde_json::Value, String> {
    target.check_mix(&options.mix)?;
    let mut channels = Vec::new();
    for address in target.spread(options.connections) {
        channels.push(connect(address, &target.tls).await?);
    }
    let record = match &options.record {
        Some(path) => Some(Mutex::new(
            tokio::fs::File::create(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => None,
    };
    let bank_bins: Vec<String> = target.banks.keys().cloned().collect();
    let shared = Arc::new(Shared {
        target,
        channels,
        stats: Stats::default(),
        histograms: Mutex::new(BTreeMap::new()),
        errors: Mutex::new(BTreeMap::new()),
        error_samples: Mutex::new(BTreeMap::new()),
        acked: Mutex::new(Vec::new()),
        record,
        measuring: AtomicBool::new(options.warmup.is_zero()),
        next_request: AtomicU64::new(0),
        run_id: format!("lt{}-{}", options.seed, proto::auth::now_ms()),
        notices: std::sync::Mutex::new(HashMap::new()),
        bank_bins,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut watchers = Vec::new();
    if options.mix.iter().any(|(f, _)| *f == Flow::Qr) {
        for m in 0..shared.target.merchants.len() {
            let (ready, subscribed) = tokio::sync::oneshot::channel();
            watchers.push(tokio::spawn(shared.clone().watch(m, stop.clone(), ready)));
            // No QR flow before every merchant's stream is open, or its
            // first notices would come before the watcher's cursor.
            if tokio::time::timeout(Duration::from_secs(10), subscribed)
                .await
                .is_err()
            {
                return Err(format!(
                    "merchant {} could not watch its payments",
                    shared.target.merchants[m].0
                ));
            }
        }
    }
    let started = Instant::now();
    let workers: Vec<tokio::task::JoinHandle<()>> = match options.mode {
        Mode::Closed { concurrency } => (0..concurrency)
            .map(|i| {
                let (shared, stop, mix) = (shared.clone(), stop.clone(), options.mix.clone());
                let mut rng =
                    Rng(options.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64 + 1) | 1);
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let flow = pick(&mix, &mut rng);
                        shared
                            .run_flow(flow, i as u64, &mut rng, Instant::now())
                            .await;
                    }
                })
            })
            .collect(),
        Mode::Open {
            rate,
            in_flight_max,
        } => {
            let (shared, stop, mix) = (shared.clone(), stop.clone(), options.mix.clone());
            let seed = options.seed;
            vec![tokio::spawn(async move {
                let slots = Arc::new(tokio::sync::Semaphore::new(in_flight_max));
                let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
                let mut rng = Rng(seed | 1);
                let begin = Instant::now();
                let mut n: u64 = 0;
                let mut in_flight = tokio::task::JoinSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let intended = begin + interval.mul_f64(n as f64);
                    tokio::time::sleep_until(intended.into()).await;
                    // A full in-flight set delays the send, and the latency
                    // still counts from the intended time.
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        break;
                    };
                    let flow = pick(&mix, &mut rng);
                    let mut worker_rng = Rng(rng.next() | 1);
                    let shared = shared.clone();
                    in_flight.spawn(async move {
                        shared.run_flow(flow, n, &mut worker_rng, intended).await;
                        drop(permit);
                    });
                    while in_flight.try_join_next().is_some() {}
                    n += 1;
                }
                // Flows in flight finish (they are counted if measuring).
                while in_flight.join_next().await.is_some() {}
            })]
        }
    };
    // Warm-up, then the measured run, with a progress line every second.
    if !options.warmup.is_zero() {
        tokio::time::sleep(options.warmup).await;
        shared.measuring.store(true, Ordering::Relaxed);
    }
    let measured_from = Instant::now();
    let cpu_from = process_cpu();
    let completed_from = shared.stats.completed.load(Ordering::Relaxed);
    while measured_from.elapsed() < options.duration {
        tokio::time::sleep(
            Duration::from_secs(1).min(options.duration.saturating_sub(measured_from.elapsed())),
        )
        .await;
        if options.progress {
            let recent = shared.stats.recent.swap(0, Ordering::Relaxed);
            let recent_failed = shared.stats.recent_failed.swap(0, Ordering::Relaxed);
            let p99 = shared
                .histograms
                .lock()
                .await
                .values()
                .fold(0, |m, h| m.max(h.value_at_quantile(0.99)));
            eprintln!(
                "[{:>4.0}s] {recent}/s  errors {recent_failed}/s  p99 {:.1} ms  completed {}  failed {}",
                started.elapsed().as_secs_f64(),
                p99 as f64 / 1000.0,
                shared.stats.completed.load(Ordering::Relaxed),
                shared.stats.failed.load(Ordering::Relaxed)
            );
        }
    }
    let measured_s = measured_from.elapsed().as_secs_f64();
    let cpu_s = process_cpu()
        .zip(cpu_from)
        .map(|(b, a)| b.saturating_sub(a).as_secs_f64());
    let completed_in_window = shared
        .stats
        .completed
        .load(Ordering::Relaxed)
        .saturating_sub(completed_from);
    shared.measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    for w in watchers {
        w.abort();
    }
    let verification = verify(&shared).await;
    let histograms = shared.histograms.lock().await;
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    let mut flows = serde_json::Map::new();
    for (flow, h) in histograms.iter() {
        all.add(h).expect("histograms merge");
        flows.insert(
            flow.name().into(),
            serde_json::json!({
                "completed": h.len(),
                "transactions_per_second": (h.len() as f64 / measured_s).round(),
                "latency_us": latency(h),
            }),
        );
    }
    let completed = shared.stats.completed.load(Ordering::Relaxed);
    Ok(serde_json::json!({
        "mode": match options.mode { Mode::Closed { .. } => "closed", Mode::Open { .. } => "open" },
        "concurrency": match options.mode { Mode::Closed { concurrency } => concurrency, Mode::Open { .. } => 0 },
        "rate": match options.mode { Mode::Open { rate, .. } => rate, Mode::Closed { .. } => 0 },
        "mix": options.mix.iter().map(|(f, w)| format!("{}={w}", f.name())).collect::<Vec<_>>().join(","),
        "duration_s": measured_s,
        "completed": completed,
        "failed": shared.stats.failed.load(Ordering::Relaxed),
        "transactions_per_second": (completed as f64 / measured_s).round(),
        "latency_us": latency(&all),
        "flows": flows,
        "errors": *shared.errors.lock().await,
        "error_samples": *shared.error_samples.lock().await,
        "cpu": cpu_s.map(|s| serde_json::json!({
            "process_seconds": s,
            "per_flow_us": (s * 1e6 / completed_in_window.max(1) as f64).round(),
        })),
        "verification": verification,
    }))
}

/// CPU time used so far by this process, every thread (user and system).
fn process_cpu() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given
    // and nothing else; on failure it writes nothing and we do not read it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: getrusage succeeded, so the struct is initialised.
    let u = unsafe { usage.assume_init() };
    let micros = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Some(micros(u.ru_utime) + micros(u.ru_stime))
}

/// Verify a `--record` file against a switch (for instance after it was
/// killed mid-run and restarted): the ledger balances and every recorded
/// transaction is there with the status that was acknowledged.
pub async fn verify_record(
    target: Target,
    record: &Path,
    connections: usize,
) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(record).map_err(|e| format!("{}: {e}", record.display()))?;
    let mut channels = Vec::new();
    for address in target.spread(connections) {
        channels.push(connect(address, &target.tls).await?);
    }
    let bank_bins: Vec<String> = target.banks.keys().cloned().collect();
    let mut acked = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // A line cut short by a crash of the generator itself is skipped.
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let who = v["terminal"].as_str().unwrap_or_default();
        let asker = if let Some(i) = target.tellers.iter().position(|(id, _)| id == who) {
            Asker::Teller(i)
        } else if let Some(i) = bank_bins.iter().position(|b| b == who) {
            Asker::Bank(i)
        } else {
            return Err(format!("line {}: no profile for {who:?}", n + 1));
        };
        let status = match v["status"].as_str() {
            Some("completed") => "completed",
            Some("pending") => "pending",
            Some("failed") => "failed",
            Some("reversed") => "reversed",
            _ => return Err(format!("line {}: no status", n + 1)),
        };
        acked.push(Acked {
            transaction_id: v["transaction_id"].as_str().unwrap_or_default().to_string(),
            asker,
            status,
        });
    }
    let shared = Arc::new(Shared {
        target,
        channels,
        stats: Stats::default(),
        histograms: Mutex::new(BTreeMap::new()),
        errors: Mutex::new(BTreeMap::new()),
        error_samples: Mutex::new(BTreeMap::new()),
        acked: Mutex::new(acked),
        record: None,
        measuring: AtomicBool::new(false),
        next_request: AtomicU64::new(0),
        run_id: String::new(),
        notices: std::sync::Mutex::new(HashMap::new()),
        bank_bins,
    });
    Ok(verify(&shared).await)
}

/// A verification call that takes longer counts as missing (and is
/// reported as timed out): verification must end.
const VERIFY_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a lookup refused as rate-limited is asked again (after the
/// switch's hint, backing off) before it counts as missing. A count of
/// tries was not enough: 32 lookups in flight for a handful of terminals
/// drain their buckets, and hints of a few milliseconds spent 50 tries in
/// well under a second (a clean run reported `rate_limited` as missing).
const VERIFY_RATE_LIMITED_WAIT: Duration = Duration::from_secs(120);
/// Lookups verification keeps in flight.
const VERIFY_IN_FLIGHT_MAX: usize = 32;

fn latency(h: &Histogram<u64>) -> serde_json::Value {
    serde_json::json!({
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

/// The ledger balances (asked as an operator) and every acknowledged
/// transaction is found with the status acknowledged.
async fn verify(shared: &Arc<Shared>) -> serde_json::Value {
    let mut admin = pb::admin_client::AdminClient::new(shared.channel(0));
    let check = tokio::time::timeout(
        VERIFY_CALL_TIMEOUT * 12,
        admin.check_ledger(shared.target.operator.sign(
            "/paymentswitch.v1.Admin/CheckLedger",
            pb::CheckLedgerRequest {},
        )),
    )
    .await;
    let (balanced, violations) = match check {
        Ok(Ok(r)) => {
            let r = r.into_inner();
            (r.balanced, r.violations)
        }
        Ok(Err(e)) => (false, vec![format!("check failed: {e}")]),
        Err(_) => (false, vec!["check timed out".to_string()]),
    };
    let acked = shared.acked.lock().await.clone();
    let missing = Arc::new(AtomicU64::new(0));
    let status_mismatch = Arc::new(AtomicU64::new(0));
    let timed_out = Arc::new(AtomicU64::new(0));
    // Why each missing one was not found, by the switch's error code.
    let missing_why = Arc::new(std::sync::Mutex::new(BTreeMap::<String, u64>::new()));
    let mut lookups = tokio::task::JoinSet::new();
    for (n, a) in acked.iter().cloned().enumerate() {
        if lookups.len() >= VERIFY_IN_FLIGHT_MAX {
            lookups.join_next().await;
        }
        let (shared, missing, status_mismatch, timed_out, missing_why) = (
            shared.clone(),
            missing.clone(),
            status_mismatch.clone(),
            timed_out.clone(),
            missing_why.clone(),
        );
        lookups.spawn(async move {
            let creds = match a.asker {
                Asker::Teller(i) => &shared.target.tellers[i].1,
                Asker::Bank(i) => &shared.target.banks[&shared.bank_bins[i]],
            };
            let m = pb::GetTransactionRequest {
                transaction_id: a.transaction_id.clone(),
            };
            let mut teller = pb::teller_client::TellerClient::new(shared.channel(n as u64));
            // A switch that rate-limits the key says when to ask again.
            let mut tries = 0u32;
            let give_up = tokio::time::Instant::now() + VERIFY_RATE_LIMITED_WAIT;
            let lookup = loop {
                let lookup = tokio::time::timeout(
                    VERIFY_CALL_TIMEOUT,
                    teller.get_transaction(
                        creds.sign("/paymentswitch.v1.Teller/GetTransaction", m.clone()),
                    ),
                )
                .await;
                match &lookup {
                    Ok(Err(s))
                        if s.code() == tonic::Code::ResourceExhausted
                            && tokio::time::Instant::now() < give_up =>
                    {
                        tries += 1;
                        let backoff_ms = 10u64 << tries.min(7);
                        let wait_ms = s
                            .metadata()
                            .get("retry-after-ms")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(100)
                            .max(backoff_ms)
                            .clamp(1, 2_000);
                        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                    }
                    _ => break lookup,
                }
            };
            match lookup {
                Err(_) => {
                    timed_out.fetch_add(1, Ordering::Relaxed);
                    missing.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(s)) => {
                    missing.fetch_add(1, Ordering::Relaxed);
                    let why = s
                        .metadata()
                        .get("x-error-code")
                        .and_then(|v| v.to_str().ok())
                        .map_or_else(|| format!("{:?}", s.code()), str::to_string);
                    *missing_why
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(why)
                        .or_default() += 1;
                }
                Ok(Ok(r)) => {
                    let now = r
                        .into_inner()
                        .transaction
                        .map(|t| status_name(t.status))
                        .unwrap_or("unknown");
                    // A pending answer may have resolved since; anything
                    // else must match.
                    if now != a.status && a.status != "pending" {
                        status_mismatch.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while lookups.join_next().await.is_some() {}
    let (missing, status_mismatch, timed_out) = (
        missing.load(Ordering::Relaxed),
        status_mismatch.load(Ordering::Relaxed),
        timed_out.load(Ordering::Relaxed),
    );
    serde_json::json!({
        "ledger_balanced": balanced,
        "violations": violations,
        "acknowledged": acked.len(),
        "missing": missing,
        "missing_why": *missing_why.lock().unwrap_or_else(|p| p.into_inner()),
        "status_mismatch": status_mismatch,
        "timed_out": timed_out,
        "ok": balanced && missing == 0 && status_mismatch == 0,
    })
}
