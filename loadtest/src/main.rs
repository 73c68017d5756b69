//! `loadtest`: load a switch (running, or started in-process) and verify.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(name = "loadtest", about = "Load generator for the payment switch")]
struct Args {
    /// Start a switch in-process on a temporary data directory.
    #[arg(long, conflicts_with = "target")]
    embedded: bool,
    /// A running switch, e.g. http://127.0.0.1:50051 (with --profiles).
    #[arg(long)]
    target: Option<String>,
    /// The switch's profile directory (data/profiles).
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// Closed loop: this many clients, each sending its next flow when the
    /// last one ends.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open loop: this many flows a second (latency from the intended send time).
    #[arg(long)]
    rate: Option<u32>,
    #[arg(long, default_value = "cash_in=70,cash_out=30")]
    mix: String,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Embedded: simulated banks' latency.
    #[arg(long, default_value_t = 0)]
    bank_latency_ms: u64,
    /// Embedded: share of bank calls that fail as unavailable.
    #[arg(long, default_value_t = 0.0)]
    bank_error_rate: f64,
    /// Write the report here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write every acknowledged transaction here as a JSON line.
    #[arg(long)]
    record: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let mix = match loadtest::parse_mix(&args.mix) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("loadtest: --mix: {e}");
                return ExitCode::from(2);
            }
        };
        let options = loadtest::Options {
            mode: match args.rate {
                Some(rate) => loadtest::Mode::Open { rate, in_flight_max: 10_000 },
                None => loadtest::Mode::Closed { concurrency: args.concurrency },
            },
            mix,
            duration: Duration::from_secs(args.duration),
            warmup: Duration::from_secs(args.warmup),
            seed: args.seed,
            record: args.record.clone(),
            progress: true,
        };
        let (embedded, target) = if args.embedded {
            let started = loadtest::Embedded::start(|c| {
                c.sim.latency_ms = args.bank_latency_ms;
                c.sim.error_rate = args.bank_error_rate;
                c.bank_timeout_ms = c.bank_timeout_ms.max(args.bank_latency_ms * 4);
            })
            .await;
            match started {
                Ok((e, target)) => (Some(e), target),
                Err(e) => {
                    eprintln!("loadtest: starting the embedded switch: {e}");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            let Some(profiles) = &args.profiles else {
                eprintln!("loadtest: give --embedded, or --target with --profiles");
                return ExitCode::from(2);
            };
            match loadtest::Target::from_profiles(profiles, args.target.as_deref()) {
                Ok(t) => (None, t),
                Err(e) => {
                    eprintln!("loadtest: {e}");
                    return ExitCode::FAILURE;
                }
            }
        };
        let report = loadtest::run(target, options).await;
        if let Some(e) = embedded {
            e.stop().await;
        }
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                eprintln!("loadtest: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "{} mode: {} completed, {} failed in {:.1} s: {} per second; latency p50 {} us, p99 {} us, p999 {} us, max {} us; verification {}",
            report["mode"].as_str().unwrap_or(""),
            report["completed"],
            report["failed"],
            report["duration_s"].as_f64().unwrap_or(0.0),
            report["transactions_per_second"],
            report["latency_us"]["p50"],
            report["latency_us"]["p99"],
            report["latency_us"]["p999"],
            report["latency_us"]["max"],
            if report["verification"]["ok"] == true { "clean" } else { "FAILED" },
        );
        if !report["errors"].as_object().is_none_or(|e| e.is_empty()) {
            println!("errors: {}", report["errors"]);
        }
        if let Some(path) = &args.json
            && let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&report).unwrap_or_default())
        {
            eprintln!("loadtest: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        if report["verification"]["ok"] == true { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    })
}
