//! The load generator: drives a switch with the real call sequence of each
//! flow, in closed loop (`concurrency` clients, to find the maximum) or open
//! loop (a fixed arrival rate, latency measured from each request's intended
//! send time so a stalled server cannot hide its queueing), then verifies
//! that the ledger balances and that every acknowledged transaction is there
//! with the status that was acknowledged.

use std::collections::BTreeMap;
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

/// The flows the switch offers today.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flow {
    CashIn,
    CashOut,
}

impl Flow {
    pub fn name(self) -> &'static str {
        match self {
            Flow::CashIn => "cash_in",
            Flow::CashOut => "cash_out",
        }
    }
}

/// `cash_in=70,cash_out=30`: weights per flow.
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
            "bill" | "qr" => {
                return Err(format!("the {name} flow does not exist in the switch yet"));
            }
            _ => return Err(format!("unknown flow {name:?} (cash_in, cash_out)")),
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

/// Who to load and as whom.
pub struct Target {
    pub address: String,
    pub tellers: Vec<(String, Credentials)>,
    pub operator: Credentials,
    pub customers: Vec<Customer>,
}

impl Target {
    /// Read the profiles a switch wrote (`data/profiles/`).
    pub fn from_profiles(dir: &Path, address: Option<&str>) -> Result<Target, String> {
        let mut tellers = Vec::new();
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
                "operator" => operator = Some(creds),
                _ => {}
            }
        }
        tellers.sort_by(|a, b| a.0.cmp(&b.0));
        let customers: Vec<Customer> = serde_json::from_str(
            &std::fs::read_to_string(dir.join("customers.json"))
                .map_err(|e| format!("customers.json: {e}"))?,
        )
        .map_err(|e| format!("customers.json: {e}"))?;
        if tellers.is_empty() || customers.is_empty() {
            return Err(format!(
                "{}: no teller profiles or no customers",
                dir.display()
            ));
        }
        Ok(Target {
            address: address
                .map(str::to_string)
                .or(switch_address)
                .ok_or("no switch address")?,
            tellers,
            operator: operator.ok_or("no operator profile (needed for verification)")?,
            customers,
        })
    }
}

/// A switch started in-process on a temporary directory.
pub struct Embedded {
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl Embedded {
    /// Start it; the target is its address and the profiles it wrote.
    pub async fn start(
        tune: impl FnOnce(&mut switch::Config),
    ) -> Result<(Embedded, Target), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut config = switch::Config {
            data_dir: dir.path().to_path_buf(),
            ..switch::Config::default()
        };
        // A load test moves more than a day's limits in minutes.
        config.terminal_daily_max = u64::MAX;
        config.customer_daily_max = u64::MAX;
        tune(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let (sw, keys) = switch::server::open(config, address)
            .await
            .map_err(|e| e.to_string())?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            let _ = switch::server::serve(listener, sw, keys, async {
                let _ = stopped.await;
            })
            .await;
        });
        let target = Target::from_profiles(
            &dir.path().join("profiles"),
            Some(&format!("http://{address}")),
        )?;
        Ok((
            Embedded {
                _dir: dir,
                stop: Some(stop),
                served: Some(served),
            },
            target,
        ))
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.served.take() {
            let _ = h.await;
        }
    }
}

/// What happened to one acknowledged transaction.
#[derive(Clone, Debug)]
struct Acked {
    transaction_id: String,
    terminal: usize,
    status: &'static str,
}

#[derive(Default)]
struct Stats {
    completed: AtomicU64,
    failed: AtomicU64,
    /// Completed in the last progress interval.
    recent: AtomicU64,
}

struct Shared {
    target: Target,
    channel: Channel,
    stats: Stats,
    histograms: Mutex<BTreeMap<Flow, Histogram<u64>>>,
    errors: Mutex<BTreeMap<String, u64>>,
    acked: Mutex<Vec<Acked>>,
    record: Option<Mutex<tokio::fs::File>>,
    measuring: AtomicBool,
    next_request: AtomicU64,
    run_id: String,
}

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

impl Shared {
    /// Run one flow's real sequence of calls; record its latency from
    /// `intended` (the intended send time in open loop).
    async fn run_flow(&self, flow: Flow, terminal: usize, rng: &mut Rng, intended: Instant) {
        let (id, creds) = &self.target.tellers[terminal];
        let customer =
            &self.target.customers[rng.below(self.target.customers.len() as u64) as usize];
        let request_id = format!(
            "{}-{}",
            self.run_id,
            self.next_request.fetch_add(1, Ordering::Relaxed)
        );
        let mut teller = pb::teller_client::TellerClient::new(self.channel.clone());
        let result = match flow {
            Flow::CashIn => {
                let m = pb::CashInRequest {
                    client_request_id: request_id,
                    bank_bin: customer.bank.clone(),
                    account: customer.account.clone(),
                    amount: 10_000,
                };
                teller
                    .cash_in(creds.sign("/switch.v1.Teller/CashIn", m))
                    .await
                    .map(|r| r.into_inner())
            }
            Flow::CashOut => {
                // What the customer's bank app does, then the teller's two calls.
                let mut sim = pb::simulator_client::SimulatorClient::new(self.channel.clone());
                let code = pb::IssueWithdrawalCodeRequest {
                    bank_bin: customer.bank.clone(),
                    account: customer.account.clone(),
                    amount: 50_000,
                };
                match sim
                    .issue_withdrawal_code(
                        creds.sign("/switch.v1.Simulator/IssueWithdrawalCode", code),
                    )
                    .await
                {
                    Err(e) => Err(e),
                    Ok(code) => {
                        let m = pb::CashOutStartRequest {
                            client_request_id: request_id,
                            bank_bin: customer.bank.clone(),
                            account: customer.account.clone(),
                            code: code.into_inner().code,
                            amount: 50_000,
                        };
                        match teller
                            .cash_out_start(creds.sign("/switch.v1.Teller/CashOutStart", m))
                            .await
                        {
                            Err(e) => Err(e),
                            Ok(started) => {
                                let id = started
                                    .into_inner()
                                    .transaction
                                    .map(|t| t.transaction_id)
                                    .unwrap_or_default();
                                let m = pb::CashOutConfirmRequest { transaction_id: id };
                                teller
                                    .cash_out_confirm(
                                        creds.sign("/switch.v1.Teller/CashOutConfirm", m),
                                    )
                                    .await
                                    .map(|r| r.into_inner())
                            }
                        }
                    }
                }
            }
        };
        let micros = intended.elapsed().as_micros() as u64;
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        match result {
            Ok(r) => {
                let t = r.transaction.unwrap_or_default();
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
                    terminal,
                    status: status_name(t.status),
                };
                if let Some(f) = &self.record {
                    let line = format!(
                        "{}\n",
                        serde_json::json!({"transaction_id": acked.transaction_id, "terminal": id, "flow": flow.name(), "status": acked.status})
                    );
                    let mut f = f.lock().await;
                    let _ = f.write_all(line.as_bytes()).await;
                    let _ = f.flush().await;
                }
                self.acked.lock().await.push(acked);
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                *self.errors.lock().await.entry(error_name(&e)).or_default() += 1;
            }
        }
    }
}

/// Run the load and verify; the report is what `--json` writes.
pub async fn run(target: Target, options: Options) -> Result<serde_json::Value, String> {
    let channel = Channel::from_shared(target.address.clone())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("cannot reach {}: {e}", target.address))?;
    let record = match &options.record {
        Some(path) => Some(Mutex::new(
            tokio::fs::File::create(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => None,
    };
    let shared = Arc::new(Shared {
        target,
        channel,
        stats: Stats::default(),
        histograms: Mutex::new(BTreeMap::new()),
        errors: Mutex::new(BTreeMap::new()),
        acked: Mutex::new(Vec::new()),
        record,
        measuring: AtomicBool::new(options.warmup.is_zero()),
        next_request: AtomicU64::new(0),
        run_id: format!("lt{}-{}", options.seed, proto::auth::now_ms()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tellers = shared.target.tellers.len();
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
                            .run_flow(flow, i % tellers, &mut rng, Instant::now())
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
                    let terminal = (n % tellers as u64) as usize;
                    tokio::spawn(async move {
                        shared
                            .run_flow(flow, terminal, &mut worker_rng, intended)
                            .await;
                        drop(permit);
                    });
                    n += 1;
                }
            })]
        }
    };
    // Warm-up, then the measured run, with a progress line every second.
    if !options.warmup.is_zero() {
        tokio::time::sleep(options.warmup).await;
        shared.measuring.store(true, Ordering::Relaxed);
    }
    let measured_from = Instant::now();
    while measured_from.elapsed() < options.duration {
        tokio::time::sleep(
            Duration::from_secs(1).min(options.duration.saturating_sub(measured_from.elapsed())),
        )
        .await;
        if options.progress {
            let recent = shared.stats.recent.swap(0, Ordering::Relaxed);
            let p99 = shared
                .histograms
                .lock()
                .await
                .values()
                .fold(0, |m, h| m.max(h.value_at_quantile(0.99)));
            eprintln!(
                "[{:>4.0}s] {recent}/s  p99 {:.1} ms  completed {}  failed {}",
                started.elapsed().as_secs_f64(),
                p99 as f64 / 1000.0,
                shared.stats.completed.load(Ordering::Relaxed),
                shared.stats.failed.load(Ordering::Relaxed)
            );
        }
    }
    let measured_s = measured_from.elapsed().as_secs_f64();
    shared.measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    // Let open-loop requests in flight finish (they are not counted).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let verification = verify(&shared).await;
    let histograms = shared.histograms.lock().await;
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    let mut flows = serde_json::Map::new();
    for (flow, h) in histograms.iter() {
        all.add(h).expect("histograms merge");
        flows.insert(
            flow.name().into(),
            serde_json::json!({"completed": h.len(), "latency_us": latency(h)}),
        );
    }
    let completed = shared.stats.completed.load(Ordering::Relaxed);
    Ok(serde_json::json!({
        "mode": match options.mode { Mode::Closed { .. } => "closed", Mode::Open { .. } => "open" },
        "concurrency": match options.mode { Mode::Closed { concurrency } => concurrency, Mode::Open { .. } => 0 },
        "rate": match options.mode { Mode::Open { rate, .. } => rate, Mode::Closed { .. } => 0 },
        "duration_s": measured_s,
        "completed": completed,
        "failed": shared.stats.failed.load(Ordering::Relaxed),
        "transactions_per_second": (completed as f64 / measured_s).round(),
        "latency_us": latency(&all),
        "flows": flows,
        "errors": *shared.errors.lock().await,
        "verification": verification,
    }))
}

/// A verification call that takes longer counts as missing (and is
/// reported as timed out): verification must end.
const VERIFY_CALL_TIMEOUT: Duration = Duration::from_secs(5);

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
async fn verify(shared: &Shared) -> serde_json::Value {
    let mut admin = pb::admin_client::AdminClient::new(shared.channel.clone());
    let check = tokio::time::timeout(
        VERIFY_CALL_TIMEOUT * 6,
        admin.check_ledger(
            shared
                .target
                .operator
                .sign("/switch.v1.Admin/CheckLedger", pb::CheckLedgerRequest {}),
        ),
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
    let (mut missing, mut status_mismatch, mut timed_out) = (0u64, 0u64, 0u64);
    let mut teller = pb::teller_client::TellerClient::new(shared.channel.clone());
    for a in &acked {
        let (_, creds) = &shared.target.tellers[a.terminal];
        let m = pb::GetTransactionRequest {
            transaction_id: a.transaction_id.clone(),
        };
        let lookup = tokio::time::timeout(
            VERIFY_CALL_TIMEOUT,
            teller.get_transaction(creds.sign("/switch.v1.Teller/GetTransaction", m)),
        )
        .await;
        let Ok(lookup) = lookup else {
            timed_out += 1;
            missing += 1;
            continue;
        };
        match lookup {
            Ok(r) => {
                let now = r
                    .into_inner()
                    .transaction
                    .map(|t| status_name(t.status))
                    .unwrap_or("unknown");
                // A pending answer may have resolved since; anything else must match.
                if now != a.status && a.status != "pending" {
                    status_mismatch += 1;
                }
            }
            Err(_) => missing += 1,
        }
    }
    serde_json::json!({
        "ledger_balanced": balanced,
        "violations": violations,
        "acknowledged": acked.len(),
        "missing": missing,
        "status_mismatch": status_mismatch,
        "timed_out": timed_out,
        "ok": balanced && missing == 0 && status_mismatch == 0,
    })
}
