//! Commits transfers in a loop from several threads and prints one line per
//! acknowledged transfer, `ack <id>`, flushed at once. The crash tests kill it
//! with SIGKILL at random moments and then check that every acknowledged
//! transfer survived; operators can use it to soak-test a disk.
//!
//! Usage: ledger-stress --data DIR [--clients N] [--segment-size-max-bytes N]
//!        [--checkpoint-interval-bytes N] [--transfers-max N]

use std::io::Write;
use std::sync::Arc;

use ledger::*;

const ACCOUNTS: u128 = 64;

struct Args {
    data: std::path::PathBuf,
    clients: usize,
    segment_size_max_bytes: u64,
    checkpoint_interval_bytes: u64,
    transfers_max: u64,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        data: std::path::PathBuf::new(),
        clients: 4,
        segment_size_max_bytes: 64 << 20,
        checkpoint_interval_bytes: 256 << 20,
        transfers_max: u64::MAX,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--data" => args.data = value.clone().into(),
            "--clients" => args.clients = number()? as usize,
            "--segment-size-max-bytes" => args.segment_size_max_bytes = number()?,
            "--checkpoint-interval-bytes" => args.checkpoint_interval_bytes = number()?,
            "--transfers-max" => args.transfers_max = number()?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.data.as_os_str().is_empty() {
        return Err("--data DIR is required".into());
    }
    Ok(args)
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ledger-stress: {e}");
            std::process::exit(2);
        }
    };
    let mut config = Config::new(&args.data);
    config.segment_size_max_bytes = args.segment_size_max_bytes;
    config.checkpoint_interval_bytes = args.checkpoint_interval_bytes;
    let clock = Arc::new(SystemClock);
    let (ledger, report) = match Ledger::open(config, clock.clone()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ledger-stress: open: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("ledger-stress: recovered {report}");
    // Accounts and their funding are idempotent: same ids every run.
    let accounts = (1..=ACCOUNTS)
        .map(|id| NewAccount {
            id,
            currency: 704,
            code: 1,
            flags: if id == 1 {
                AccountFlags::empty()
            } else {
                AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
            },
            user_data: 0,
        })
        .collect();
    ledger.create_accounts(accounts).expect("accounts");
    let funding = (2..=ACCOUNTS)
        .map(|id| NewTransfer::single(id, 1, id, 1_000_000_000, 1))
        .collect();
    ledger.create_transfers(funding).expect("funding");
    // Ids unique across runs: the run's start time in the high bits.
    let run = u128::from(clock.now_ns()) << 64;
    let ledger = Arc::new(ledger);
    let per_client = args.transfers_max / args.clients as u64;
    let threads: Vec<_> = (0..args.clients as u128)
        .map(|c| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                let mut x = (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                for n in 0..per_client as u128 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let id = run | (c << 48) | (n * 3 + 1);
                    let (dr, cr) = (2 + u128::from(x % 63), 2 + u128::from((x >> 8) % 63));
                    let cr = if cr == dr { 1 } else { cr };
                    // Plain transfers, and a pending + post chain.
                    let batch = if x.is_multiple_of(4) {
                        vec![
                            NewTransfer::pending(id, dr, cr, 1 + x % 500, 2, 0).linked(),
                            NewTransfer::post(id + 1, id, None),
                        ]
                    } else {
                        vec![NewTransfer::single(id, dr, cr, 1 + x % 500, 1)]
                    };
                    let ids: Vec<u128> = batch.iter().map(|t| t.id).collect();
                    let results = match ledger.create_transfers(batch) {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("ledger-stress: {e}");
                            std::process::exit(1);
                        }
                    };
                    let mut out = std::io::stdout().lock();
                    for (id, r) in ids.iter().zip(results) {
                        if r.is_ok() {
                            let _ = writeln!(out, "ack {id}");
                        }
                    }
                    let _ = out.flush();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    match Arc::try_unwrap(ledger) {
        Ok(l) => l.close().expect("close"),
        Err(_) => unreachable!("threads joined"),
    }
}
