//! SIGKILL at random points in every flow (#19): many short runs of a switch
//! process under the default mix, each killed at a random moment and
//! started again on the same data. At the end, on the same data: every
//! transaction a client saw acknowledged is there with the status it was
//! acknowledged with, nothing is left unfinished (in doubt, half-reversed,
//! a cash-out past its deadline), the reversal queue is empty, and the
//! ledger balances with no reservation left.

mod process;

use std::path::PathBuf;
use std::time::Duration;

/// Runs killed; each kill falls somewhere in the middle of the load.
const CYCLES: u64 = 8;
/// How long each run's load lasts; the kill comes before its end.
const LOAD_MS: u64 = 3_000;
const KILL_AFTER_MS_MIN: u64 = 200;

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
        let (mut child, address) = process::start(&data, None);
        let target =
            loadtest::Target::from_profiles(&data.join("profiles"), &[address]).expect("profiles");
        let record = data.join(format!("acked-{cycle}.jsonl"));
        records.push(record.clone());
        let kill_after_ms = KILL_AFTER_MS_MIN + rng.below(LOAD_MS - KILL_AFTER_MS_MIN);
        let options = process::load(Some(record), cycle + 1, Duration::from_millis(LOAD_MS));
        let load = runtime.spawn(loadtest::run(target, options));
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
        let opened = switch::server::open(process::config(&data, None), address)
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
        // A reservation whose record a kill lost (the record is made
        // durable while the ledger reserves) moved no money and expires by
        // its own timeout: wait for those too.
        process::settled(&switch, Duration::from_secs(90)).await;
        let _ = stop.send(());
        served.await.expect("joined").expect("served");
    });
    eprintln!("kill loop: {CYCLES} runs killed, {acked} acknowledged transactions intact");
}

fn main() {
    if process::serve_if_asked() || process::listing("kill_loop") {
        return;
    }
    kill_loop();
    println!("test kill_loop ... ok");
}
