//! SIGKILL at random points in every flow (#19): many short runs of a switch
//! process under the default mix, each killed at a random moment and
//! started again on the same data. At the end, on the same data: every
//! transaction a client saw acknowledged is there with the status it was
//! acknowledged with, nothing is left unfinished (in doubt, half-reversed,
//! a cash-out past its deadline), the reversal queue is empty, and the
//! ledger balances with no reservation left.
//!
//! The switch process is this test binary itself, started again with
//! `KILL_LOOP_DATA` set (no test harness: `harness = false`), so that it is
//! the library's own `server::run` that dies, with nothing in between.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs killed; each kill falls somewhere in the middle of the load.
const CYCLES: u64 = 8;
/// How long each run's load lasts; the kill comes before its end.
const LOAD_MS: u64 = 3_000;
const KILL_AFTER_MS_MIN: u64 = 200;

fn config(data: &Path) -> switch::Config {
    let mut config = switch::Config {
        data_dir: data.to_path_buf(),
        ..switch::Config::default()
    };
    // As the embedded load test: limits and e-float for minutes of load,
    // bills that never run out, windows closed by hand only.
    config.terminal_daily_max = u64::MAX;
    config.customer_daily_max = u64::MAX;
    config.demo_efloat = 1_000_000_000_000;
    config.biller_sim.customers = 600;
    config.biller_sim.recurring_bills = true;
    config.settlement = Default::default();
    config.bank_timeout_ms = 1_000;
    // Cash-outs a kill left unconfirmed are cancelled soon after.
    config.cash_out_confirm_timeout_ms = 3_000;
    // Reservations whose records a kill lost are released soon after.
    config.reservation_grace_ms = 5_000;
    config
}

/// The child: a switch on `KILL_LOOP_DATA` until it is killed. Its port is
/// written to `port` once it listens.
fn serve(data: PathBuf) {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let opened = switch::server::open(config(&data), address)
            .await
            .expect("the switch opens after a kill");
        let tmp = data.join("port.tmp");
        std::fs::write(&tmp, address.port().to_string()).expect("port file");
        std::fs::rename(&tmp, data.join("port")).expect("port file");
        switch::server::serve(listener, opened, std::future::pending())
            .await
            .expect("serves");
    });
}

fn start_child(data: &Path) -> (Child, String) {
    let _ = std::fs::remove_file(data.join("port"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("switch.log"))
        .expect("log");
    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .env("KILL_LOOP_DATA", data)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("the switch process starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(port) = std::fs::read_to_string(data.join("port")) {
            return (child, format!("http://127.0.0.1:{port}"));
        }
        let exited = child.try_wait().expect("child status");
        if exited.is_some() || Instant::now() >= deadline {
            let log = std::fs::read_to_string(data.join("switch.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "the switch never listened ({exited:?}); its log ends:\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A small deterministic generator: the kill points are the same on every
/// run of the test (and printed), so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn options(record: PathBuf, seed: u64) -> loadtest::Options {
    loadtest::Options {
        mode: loadtest::Mode::Closed { concurrency: 16 },
        mix: loadtest::parse_mix("cash_in=40,cash_out=20,bill=20,qr=20").expect("mix"),
        duration: Duration::from_millis(LOAD_MS),
        warmup: Duration::ZERO,
        seed,
        record: Some(record),
        progress: false,
        connections: 2,
    }
}

fn kill_loop() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = match std::env::var_os("KILL_LOOP_KEEP") {
        Some(keep) => PathBuf::from(keep),
        None => dir.path().to_path_buf(),
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut rng = Lcg(0x5eed);
    let mut records = Vec::new();
    for cycle in 0..CYCLES {
        let (mut child, address) = start_child(&data);
        let target =
            loadtest::Target::from_profiles(&data.join("profiles"), &[address]).expect("profiles");
        let record = data.join(format!("acked-{cycle}.jsonl"));
        records.push(record.clone());
        let kill_after_ms = KILL_AFTER_MS_MIN + rng.below(LOAD_MS - KILL_AFTER_MS_MIN);
        let load = runtime.spawn(loadtest::run(target, options(record, cycle + 1)));
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        // The generator's own verification fails against a dead switch;
        // what counts is what it recorded as acknowledged.
        let report = runtime.block_on(load).expect("the generator ran");
        let completed = report
            .as_ref()
            .map(|r| r["completed"].as_u64().unwrap_or(0))
            .unwrap_or(0);
        eprintln!("run {cycle}: killed after {kill_after_ms} ms, {completed} flows acknowledged");
    }
    let acked: usize = records
        .iter()
        .map(|r| {
            std::fs::read_to_string(r)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        })
        .sum();
    assert!(acked > 0, "the runs acknowledged nothing to check");

    // The last start, in this process: recovery, the deadlines and the
    // reversal queue run; then everything acknowledged is checked.
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let opened = switch::server::open(config(&data), address)
            .await
            .expect("the switch opens after the last kill");
        let switch = opened.switch.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(switch::server::serve(listener, opened, async {
            let _ = stopped.await;
        }));
        for record in &records {
            let target = loadtest::Target::from_profiles(
                &data.join("profiles"),
                &[format!("http://{address}")],
            )
            .expect("profiles");
            let v = loadtest::verify_record(target, record, 2)
                .await
                .expect("verification ran");
            assert_eq!(v["ok"], true, "{}: {v}", record.display());
        }
        // A reservation whose record a kill lost (the record is made durable
        // while the ledger reserves) moved no money and expires by its own
        // timeout: wait for those too.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let unfinished = switch.store.unfinished().expect("unfinished");
            let queued = switch.store.reversals().expect("reversal queue");
            let check = switch.ledger.check().await.expect("ledger check");
            assert!(check.violations.is_empty(), "{:?}", check.violations);
            if unfinished.is_empty() && queued.is_empty() && check.pending_transfers == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "left unfinished: {:?}; queued reversals: {}; reservations: {}",
                unfinished
                    .iter()
                    .map(|t| (t.id.clone(), t.status))
                    .collect::<Vec<_>>(),
                queued.len(),
                check.pending_transfers
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let _ = stop.send(());
        served.await.expect("joined").expect("served");
    });
    eprintln!("kill loop: {CYCLES} runs killed, {acked} acknowledged transactions intact");
}

fn main() {
    if let Some(data) = std::env::var_os("KILL_LOOP_DATA") {
        serve(PathBuf::from(data));
        return;
    }
    // `cargo test` passes its own arguments (a filter, --list): answer a
    // listing with this one test, and run it otherwise.
    if std::env::args().any(|a| a == "--list") {
        println!("kill_loop: test");
        return;
    }
    kill_loop();
    println!("test kill_loop ... ok");
}
