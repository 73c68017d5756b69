//! `loadtest`: load a switch (running, or started in-process) and verify.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(name = "loadtest", about = "Load generator for the payment switch")]
struct Args {
    /// Start a switch in-process on a temporary data directory.
    #[arg(long, conflicts_with_all = ["target", "null_server"])]
    embedded: bool,
    /// Load a null gRPC server (every call answered at once, replies of the
    /// switch's size): the ceiling for the same flags on this machine.
    #[arg(long, conflicts_with = "target")]
    null_server: bool,
    /// A running switch, e.g. http://127.0.0.1:50051 (with --profiles);
    /// given more than once, the nodes of one switch: clients are spread
    /// over them, and --verify-record reads from them all.
    #[arg(long)]
    target: Vec<String>,
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
    #[arg(long, default_value = loadtest::DEFAULT_MIX)]
    mix: String,
    /// HTTP/2 connections to spread the calls over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to measure: seconds (`30`) or with a unit (`30s`, `2m`).
    #[arg(long, default_value = "10", value_parser = seconds)]
    duration: Duration,
    /// How long to run before measuring (same forms).
    #[arg(long, default_value = "2", value_parser = seconds)]
    warmup: Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Embedded: simulated banks' (and billers') latency.
    #[arg(long, default_value_t = 0)]
    bank_latency_ms: u64,
    /// Embedded: share of bank (and biller) calls that fail as unavailable.
    #[arg(long, default_value_t = 0.0)]
    bank_error_rate: f64,
    /// Embedded: the first demo bank (MB, 970422) goes down (every call
    /// fails) this many seconds after the run starts, warm-up included ...
    #[arg(long, requires = "embedded", value_parser = seconds)]
    bank_outage_at: Option<Duration>,
    /// ... for this long.
    #[arg(long, default_value = "10", requires = "bank_outage_at", value_parser = seconds)]
    bank_outage_for: Duration,
    /// Embedded: keep the switch's ledger and records in this PostgreSQL
    /// (`postgres://…`) instead of its temporary directory.
    #[arg(long, requires = "embedded")]
    store: Option<String>,
    /// Write the report here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write every acknowledged transaction here as a JSON line.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Only verify a --record file against --target (after the switch was
    /// killed and restarted, say): no load.
    #[arg(long, requires = "profiles")]
    verify_record: Option<PathBuf>,
    /// An `https://` target's CA (PEM).
    #[arg(long, requires = "target")]
    tls_ca: Option<PathBuf>,
    /// The generator's client certificate (PEM), where the switch asks
    /// for one; with --tls-client-key.
    #[arg(long, requires_all = ["tls_ca", "tls_client_key"])]
    tls_client_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_client_cert")]
    tls_client_key: Option<PathBuf>,
}

impl Args {
    fn tls(&self) -> loadtest::TargetTls {
        loadtest::TargetTls {
            ca_file: self.tls_ca.clone(),
            cert_file: self.tls_client_cert.clone(),
            key_file: self.tls_client_key.clone(),
        }
    }
}

/// A duration: plain seconds (`30`) or with a unit (`30s`, `2m`, `500ms`).
fn seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(n) => Ok(Duration::from_secs(n)),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}")),
    }
}

/// The allocator the embedded switch runs on too (see the workspace manifest).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
            duration: args.duration,
            warmup: args.warmup,
            seed: args.seed,
            record: args.record.clone(),
            progress: true,
            connections: args.connections,
        };
        if let Some(record) = &args.verify_record {
            let target = match loadtest::Target::from_profiles(
                args.profiles.as_deref().expect("clap requires it"),
                &args.target,
            ) {
                Ok(t) => loadtest::Target {
                    tls: args.tls(),
                    ..t
                },
                Err(e) => {
                    eprintln!("loadtest: {e}");
                    return ExitCode::FAILURE;
                }
            };
            return match loadtest::verify_record(target, record, args.connections).await {
                Ok(v) => {
                    println!("{v}");
                    if v["ok"] == true { ExitCode::SUCCESS } else { ExitCode::FAILURE }
                }
                Err(e) => {
                    eprintln!("loadtest: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        let (latency_ms, error_rate) = (args.bank_latency_ms, args.bank_error_rate);
        let store = args.store.clone();
        let mut null = None;
        let mut switch_metrics = None;
        let (embedded, target) = if args.null_server {
            match loadtest::null::NullServer::start().await {
                Ok((n, target)) => {
                    null = Some(n);
                    (None, target)
                }
                Err(e) => {
                    eprintln!("loadtest: starting the null server: {e}");
                    return ExitCode::FAILURE;
                }
            }
        } else if args.embedded {
            // The embedded switch's own metrics: where its time went.
            switch_metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(STAGE_BUCKETS_S)
                .and_then(|b| b.install_recorder())
                .map_err(|e| eprintln!("loadtest: no switch metrics: {e}"))
                .ok();
            let started = loadtest::Embedded::start(move |c| {
                for sim in [&mut c.sim, &mut c.biller_sim] {
                    sim.latency_ms = latency_ms;
                    sim.error_rate = error_rate;
                }
                c.bank_timeout_ms = c.bank_timeout_ms.max(latency_ms * 4);
                c.store.url = store;
            })
            .await;
            match started {
                Ok((e, target)) => {
                    if let Some(at) = args.bank_outage_at {
                        let bank = e.sims.banks.get(switch::demo::DEMO_BANKS[0]).cloned();
                        let outage_for = args.bank_outage_for;
                        tokio::spawn(async move {
                            let Some(bank) = bank else { return };
                            tokio::time::sleep(at).await;
                            eprintln!("loadtest: bank {} down for {outage_for:?}", switch::demo::DEMO_BANKS[0]);
                            bank.set_fault(switch::sim::Fault::Down);
                            tokio::time::sleep(outage_for).await;
                            bank.set_fault(switch::sim::Fault::None);
                            eprintln!("loadtest: bank {} back", switch::demo::DEMO_BANKS[0]);
                        });
                    }
                    (Some(e), target)
                }
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
            match loadtest::Target::from_profiles(profiles, &args.target) {
                Ok(t) => (
                    None,
                    loadtest::Target {
                        tls: args.tls(),
                        ..t
                    },
                ),
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
        if let Some(n) = null {
            n.stop().await;
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
        if let Some(flows) = report["flows"].as_object() {
            for (name, f) in flows {
                println!(
                    "  {name:<9} {:>8} completed  {:>6}/s  p50 {:>7} us  p99 {:>7} us  p999 {:>7} us",
                    f["completed"], f["transactions_per_second"], f["latency_us"]["p50"], f["latency_us"]["p99"], f["latency_us"]["p999"]
                );
            }
        }
        if let Some(us) = report["cpu"]["per_flow_us"].as_f64() {
            let scope = if args.embedded {
                "the generator and the embedded switch"
            } else if args.null_server {
                "the generator and the null server"
            } else {
                "the generator only"
            };
            println!("CPU per completed flow: {us:.0} us ({scope}, this machine's cores together)");
        }
        if let Some(m) = &switch_metrics {
            print_stages(&m.render());
        }
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

/// Bucket bounds (seconds) for the embedded switch's latencies.
const STAGE_BUCKETS_S: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

/// One latency of the embedded switch, from its Prometheus text.
#[derive(Debug, PartialEq)]
struct StageRow {
    /// The metric without `_seconds`, with its labels.
    key: String,
    count: f64,
    mean_ms: f64,
    /// The bucket bounds (ms) under which 50%, 99%, 99.9% and all fell: a
    /// rare stall that holds many requests (one slow fsync, say) shows in
    /// the last, where a quantile by count hides it.
    under_ms: [f64; 4],
}

/// The embedded switch's latencies (stages of a flow, fsyncs, requests by
/// method) from its Prometheus text.
fn stage_rows(text: &str) -> Vec<StageRow> {
    let wanted = [
        "switch_stage_seconds",
        "switch_store_fsync_seconds",
        "ledger_fsync_seconds",
        "ledger_apply_seconds",
        "switch_request_seconds",
    ];
    #[derive(Default)]
    struct Row {
        /// (bound, cumulative count), in the exporter's (ascending) order.
        buckets: Vec<(f64, f64)>,
        sum: f64,
        count: f64,
    }
    let mut rows: std::collections::BTreeMap<String, Row> = Default::default();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(name) = wanted.iter().find(|w| series.starts_with(*w)) else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(f64::NAN);
        let rest = &series[name.len()..];
        let (part, labels) = rest.split_once('{').unwrap_or((rest, ""));
        let labels = labels.trim_end_matches('}');
        let (le, labels): (Vec<&str>, Vec<&str>) = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .partition(|l| l.starts_with("le="));
        let key = format!(
            "{}{{{}}}",
            name.trim_end_matches("_seconds"),
            labels.join(",")
        );
        let row = rows.entry(key).or_default();
        match part {
            "_bucket" => {
                let bound = le
                    .first()
                    .map_or("", |l| l.trim_start_matches("le=").trim_matches('"'));
                row.buckets
                    .push((bound.parse().unwrap_or(f64::INFINITY), value));
            }
            "_sum" => row.sum = value,
            "_count" => row.count = value,
            _ => {}
        }
    }
    rows.into_iter()
        .map(|(key, row)| {
            let under = |q: f64| {
                row.buckets
                    .iter()
                    .find(|(_, n)| *n >= q * row.count)
                    .map_or(f64::INFINITY, |(b, _)| b * 1e3)
            };
            StageRow {
                key,
                count: row.count,
                mean_ms: row.sum / row.count.max(1.0) * 1e3,
                under_ms: [under(0.5), under(0.99), under(0.999), under(1.0)],
            }
        })
        .collect()
}

fn print_stages(text: &str) {
    let rows = stage_rows(text);
    if rows.is_empty() {
        return;
    }
    println!(
        "the switch's own latencies (count, mean ms, and the bucket bound in ms under which p50 / p99 / p999 / all fell):"
    );
    for r in rows {
        let [p50, p99, p999, max] = r.under_ms;
        println!(
            "  {:<45} {:>8} {:>8.2} {p50:>7} {p99:>7} {p999:>7} {max:>7}",
            r.key, r.count, r.mean_ms
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_read_from_the_exporters_buckets() {
        let text = r#"# TYPE switch_stage_seconds histogram
switch_stage_seconds_bucket{stage="ledger",le="0.001"} 500
switch_stage_seconds_bucket{stage="ledger",le="0.01"} 990
switch_stage_seconds_bucket{stage="ledger",le="0.1"} 999
switch_stage_seconds_bucket{stage="ledger",le="+Inf"} 1000
switch_stage_seconds_sum{stage="ledger"} 2
switch_stage_seconds_count{stage="ledger"} 1000
ledger_fsync_seconds_bucket{le="0.001"} 10
ledger_fsync_seconds_bucket{le="+Inf"} 10
ledger_fsync_seconds_sum 0.005
ledger_fsync_seconds_count 10
switch_requests_total{method="cash_in",code="ok"} 7
"#;
        let rows = stage_rows(text);
        assert_eq!(
            rows,
            vec![
                StageRow {
                    key: "ledger_fsync{}".into(),
                    count: 10.0,
                    mean_ms: 0.5,
                    under_ms: [1.0, 1.0, 1.0, 1.0],
                },
                StageRow {
                    key: r#"switch_stage{stage="ledger"}"#.into(),
                    count: 1000.0,
                    mean_ms: 2.0,
                    under_ms: [1.0, 10.0, 100.0, f64::INFINITY],
                },
            ]
        );
    }
}
