//! A switch in a process of its own, for tests that SIGKILL it: the test
//! binary starts itself again with `SWITCH_PROCESS_DATA` set (its `main`
//! calls [`serve_if_asked`] first), so that it is the library's own
//! `server::open` and `serve` that die, with nothing in between.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The configuration of every process: the embedded load test's, with
/// short timeouts so that what a kill leaves is finished within seconds.
pub fn config(data: &Path, store: Option<String>) -> switch::Config {
    let mut config = switch::Config {
        data_dir: data.to_path_buf(),
        ..switch::Config::default()
    };
    config.store.url = store;
    loadtest::tune_for_load(&mut config);
    config.bank_timeout_ms = 1_000;
    // Cash-outs a kill left unconfirmed are cancelled soon after, and
    // reservations whose records a kill lost are released soon after.
    config.cash_out_confirm_timeout_ms = 3_000;
    config.reservation_grace_ms = 5_000;
    // Banks and billers in processes of their own ([`start_sim`]), as
    // `bank=BIN@ADDRESS;biller=CODE@ADDRESS`: a bank list names every bank,
    // so the demo's others stay simulated in-process.
    if let Ok(remotes) = std::env::var("SWITCH_PROCESS_REMOTES") {
        let mut banks: Vec<switch::config::BankConfig> = switch::demo::DEMO_BANKS
            .iter()
            .map(|b| switch::config::BankConfig {
                bin: b.to_string(),
                ..Default::default()
            })
            .collect();
        for part in remotes.split(';').filter(|p| !p.is_empty()) {
            let (who, address) = part.split_once('@').expect("WHO@ADDRESS");
            match who.split_once('=') {
                Some(("bank", bin)) => {
                    let bank = banks
                        .iter_mut()
                        .find(|b| b.bin == bin)
                        .expect("a demo bank");
                    bank.remote = Some(address.to_string());
                    bank.insecure = true;
                }
                Some(("biller", code)) => config.billers.push(switch::config::BillerConfig {
                    code: code.to_string(),
                    remote: Some(address.to_string()),
                    insecure: true,
                    ..Default::default()
                }),
                _ => panic!("a remote is bank=BIN@ADDRESS or biller=CODE@ADDRESS: {part}"),
            }
        }
        config.banks = banks;
    }
    config
}

/// In a child started by [`start_sim`]: serve a simulated bank or biller
/// (`SWITCH_PROCESS_SIM` = `bank:BIN` or `biller:CODE`) until killed, and
/// return true; in the test itself: false.
pub fn sim_if_asked() -> bool {
    let Ok(what) = std::env::var("SWITCH_PROCESS_SIM") else {
        return false;
    };
    let listen = std::env::var("SWITCH_PROCESS_LISTEN")
        .expect("a listen address")
        .parse()
        .expect("a socket address");
    let data = PathBuf::from(std::env::var_os("SWITCH_PROCESS_SIM_DATA").expect("a folder"));
    let process = switch::sim_process::SimProcess {
        name: "simulator",
        listen,
        data,
        tls: switch::config::TlsConfig {
            insecure: true,
            ..Default::default()
        },
    };
    // The switch's own demo settings for its billers (`config`), so that
    // both sides agree on the customers.
    let sim_config = config(Path::new("."), None).biller_sim;
    let (kind, id) = what.split_once(':').expect("bank:BIN or biller:CODE");
    let (kind, id) = (kind.to_string(), id.to_string());
    let _ = switch::sim_process::main(process, move |db| {
        let tree = db
            .keyspace(&format!("sim/{id}"), fjall::KeyspaceCreateOptions::default)
            .map_err(|e| e.to_string())?;
        match kind.as_str() {
            "bank" => Ok(switch::sim_process::Served::Bank(std::sync::Arc::new(
                switch::sim::SimBank::open(
                    &id,
                    switch::config::SimConfig::default(),
                    tree,
                    &switch::sim::demo_accounts(&id),
                )
                .map_err(|e| e.to_string())?,
            ))),
            _ => {
                let partial_allowed = switch::demo::DEMO_BILLERS
                    .iter()
                    .find(|b| b.0 == id)
                    .ok_or("not a demo biller")?
                    .3;
                Ok(switch::sim_process::Served::Biller(std::sync::Arc::new(
                    switch::sim::SimBiller::open(&id, partial_allowed, sim_config, tree)
                        .map_err(|e| e.to_string())?,
                )))
            }
        }
    });
    true
}

/// A simulated bank (`bank:BIN`) or biller (`biller:CODE`) in a process of
/// its own, in network namespace `netns`, listening on `listen` there.
pub fn start_sim(what: &str, data: &Path, netns: &str, listen: std::net::SocketAddr) -> Child {
    let this = std::env::current_exe().expect("this binary");
    Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(this)
        .env("SWITCH_PROCESS_SIM", what)
        .env("SWITCH_PROCESS_SIM_DATA", data)
        .env("SWITCH_PROCESS_LISTEN", listen.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the simulator starts")
}

/// In the child: serve until killed, and return true; in the test itself:
/// false.
pub fn serve_if_asked() -> bool {
    let Some(data) = std::env::var_os("SWITCH_PROCESS_DATA") else {
        return false;
    };
    let data = PathBuf::from(data);
    let store = std::env::var("SWITCH_PROCESS_STORE").ok();
    let listen = std::env::var("SWITCH_PROCESS_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let mut config = config(&data, store);
        // In a test's network namespace, on an address of the test's own.
        config.tls.insecure = !address.ip().is_loopback();
        let opened = switch::server::open(config, address)
            .await
            .expect("the switch opens");
        let tmp = data.join("port.tmp");
        std::fs::write(&tmp, address.port().to_string()).expect("port file");
        std::fs::rename(&tmp, data.join("port")).expect("port file");
        switch::server::serve(listener, opened, std::future::pending())
            .await
            .expect("serves");
    });
    true
}

/// `cargo test` lists tests with `--list`: answer with `name`.
pub fn listing(name: &str) -> bool {
    if std::env::args().any(|a| a == "--list") {
        println!("{name}: test");
        return true;
    }
    false
}

/// Start a switch process on `data` (and `store`); wait until it listens.
/// Its log is appended to `data/switch.log`.
pub fn start(data: &Path, store: Option<&str>) -> (Child, String) {
    start_in(data, store, None, &[])
}

/// The same, in network namespace `netns` (its name, and the address
/// the switch listens on there) or, `None`, on loopback here.
/// `env`: more of the child's environment (`SWITCH_PROCESS_REMOTES`).
pub fn start_in(
    data: &Path,
    store: Option<&str>,
    netns: Option<(&str, std::net::Ipv4Addr)>,
    env: &[(&str, String)],
) -> (Child, String) {
    let _ = std::fs::remove_file(data.join("port"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("switch.log"))
        .expect("log");
    let this = std::env::current_exe().expect("this binary");
    let (mut command, host) = match netns {
        Some((name, address)) => {
            let mut c = Command::new("ip");
            // `ip netns exec` execs the program: the child is the switch.
            c.args(["netns", "exec", name]).arg(&this);
            c.env("SWITCH_PROCESS_LISTEN", format!("{address}:0"));
            (c, address.to_string())
        }
        None => (Command::new(&this), "127.0.0.1".to_string()),
    };
    command
        .env("SWITCH_PROCESS_DATA", data)
        // Warnings, and who holds the worker lease (the partition tests
        // read it).
        .env("RUST_LOG", "warn,switch::store::pg_kv=info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    if let Some(url) = store {
        command.env("SWITCH_PROCESS_STORE", url);
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = command.spawn().expect("the switch process starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(port) = std::fs::read_to_string(data.join("port")) {
            return (child, format!("http://{host}:{port}"));
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

/// The default mix in a closed loop of 16 clients for `duration`, each
/// acknowledged transaction recorded in `record`.
pub fn load(record: Option<PathBuf>, seed: u64, duration: Duration) -> loadtest::Options {
    loadtest::Options {
        mode: loadtest::Mode::Closed { concurrency: 16 },
        mix: loadtest::parse_mix("cash_in=40,cash_out=20,bill=20,qr=20").expect("mix"),
        duration,
        warmup: Duration::ZERO,
        seed,
        record,
        progress: false,
        connections: 2,
    }
}

/// Wait (up to `limit`) until nothing is unfinished, the reversal queue is
/// empty and the ledger holds no reservation; the ledger's invariants hold
/// at every look.
pub async fn settled(switch: &switch::flows::Switch, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let unfinished = switch.store.unfinished().expect("unfinished");
        let queued = switch.store.reversals().expect("reversal queue");
        let check = switch.ledger.check().await.expect("ledger check");
        assert!(check.violations.is_empty(), "{:?}", check.violations);
        if unfinished.is_empty() && queued.is_empty() && check.pending_transfers == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left unfinished: {:?}; queued reversals: {}; reservations: {}",
            unfinished
                .iter()
                .map(|t| (t.id.clone(), t.stage))
                .collect::<Vec<_>>(),
            queued.len(),
            check.pending_transfers
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// After losing a node or the primary: a short run through `target` fails
/// nothing (`mix`), every transaction in `record` reads back with its
/// status, and, seen from another node opened here on `url` (a node does
/// not take over at start what may be in flight elsewhere), what the loss
/// interrupted is finished by the survivors. Returns how many records the
/// loss left unfinished when that node first looked. `master_key`: the
/// nodes' master key (the looking node needs it too).
pub fn serves_on_and_loses_nothing(
    runtime: &tokio::runtime::Runtime,
    target: impl Fn() -> loadtest::Target,
    mix: &str,
    record: &Path,
    url: &str,
    master_key: &Path,
) -> usize {
    let mut options = load(None, 10, Duration::from_secs(2));
    options.mix = loadtest::parse_mix(mix).expect("mix");
    let after = runtime
        .block_on(loadtest::run(target(), options))
        .expect("a report");
    assert!(
        after["completed"].as_u64() > Some(0) && after["failed"] == 0,
        "serving on: {after}"
    );
    let verified = runtime
        .block_on(loadtest::verify_record(target(), record, 2))
        .expect("verification ran");
    assert_eq!(verified["ok"], true, "{verified}");
    runtime.block_on(async {
        let look = tempfile::tempdir().expect("the looking node's folder");
        let mut config = config(look.path(), Some(url.to_string()));
        config.master_key_file = Some(master_key.to_path_buf());
        let opened = switch::server::open(config, "127.0.0.1:1".parse().expect("address"))
            .await
            .expect("another node opens");
        let left = opened.switch.store.unfinished().expect("unfinished").len();
        settled(&opened.switch, Duration::from_secs(120)).await;
        left
    })
}
