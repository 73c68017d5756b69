//! `switch`: serve (the default) or check a stopped switch's data.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switch::Config;

#[derive(Parser)]
#[command(
    name = "switch",
    version,
    about = "Cashless payment and soft-ATM switch"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args, Clone, Default)]
struct ServeArgs {
    /// Data directory (ledger, store, demo profiles).
    #[arg(long, env = "SWITCH_DATA", global = true)]
    data: Option<PathBuf>,
    /// gRPC address.
    #[arg(long, env = "SWITCH_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Prometheus metrics address (serves /metrics).
    #[arg(long, env = "SWITCH_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// The operations console's address, or `off` [default: 127.0.0.1:8080,
    /// unless the config file names one].
    #[arg(long, env = "SWITCH_CONSOLE_LISTEN")]
    console_listen: Option<String>,
    /// TOML file overriding the defaults.
    #[arg(long, env = "SWITCH_CONFIG")]
    config: Option<PathBuf>,
    /// Keep the ledger and the records in PostgreSQL (`postgres://…`, or
    /// `host=a,b … target_session_attrs=read-write`) instead of the data
    /// directory.
    #[arg(long, env = "SWITCH_STORE", global = true)]
    store: Option<String>,
    /// The master key callers' secrets are sealed with (64 hex digits in
    /// a file; written, mode 0600, when missing). Default: `master.key` in
    /// the data directory. Every node sharing a store needs the same one.
    #[arg(long, env = "SWITCH_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// TLS: the listener's certificate chain (PEM), with --tls-key.
    #[arg(long, env = "SWITCH_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS: the listener's private key (PEM).
    #[arg(long, env = "SWITCH_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// TLS: require callers' certificates issued by this CA (PEM).
    #[arg(long, env = "SWITCH_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Allow listening in clear on an address other than loopback.
    #[arg(long, env = "SWITCH_INSECURE")]
    insecure: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve(Box<ServeArgs>),
    /// Verify a stopped switch's data: ledger invariants, journal against
    /// state, no pending transfer past its timeout (with `--store`: the
    /// ledger in PostgreSQL, which may be in use). Prints JSON.
    Check,
    /// Bring PostgreSQL's schema up to date (`--store`), then exit. `serve`
    /// does it too.
    Migrate,
}

fn config(args: &ServeArgs) -> Result<Config, String> {
    let mut c = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Config::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(d) = &args.data {
        c.data_dir = d.clone();
    }
    if let Some(l) = args.listen {
        c.listen = l;
    }
    if let Some(m) = args.metrics_listen {
        c.metrics_listen = m;
    }
    match args.console_listen.as_deref() {
        Some("off") => c.console_listen = None,
        Some(a) => {
            c.console_listen = Some(
                a.parse()
                    .map_err(|e| format!("--console-listen {a}: {e} (an address, or off)"))?,
            )
        }
        None if c.console_listen.is_none() => {
            c.console_listen = Some(([127, 0, 0, 1], 8080).into());
        }
        None => {}
    }
    if let Some(url) = &args.store {
        c.store.url = Some(url.clone());
    }
    if let Some(path) = &args.master_key_file {
        c.master_key_file = Some(path.clone());
    }
    if let Some(path) = &args.tls_cert {
        c.tls.cert_file = Some(path.clone());
    }
    if let Some(path) = &args.tls_key {
        c.tls.key_file = Some(path.clone());
    }
    if let Some(path) = &args.tls_client_ca {
        c.tls.client_ca_file = Some(path.clone());
    }
    if args.insecure {
        c.tls.insecure = true;
    }
    Ok(c)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}

/// glibc malloc cost a quarter of the CPU under load (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Logs go to stderr: stdout carries what a command answers (`check`
    // prints JSON). The storage engine's own INFO lines (every keyspace it
    // recovers) are noise to an operator.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match cli.command {
        Some(Command::Check) => runtime.block_on(check(cli.serve)),
        Some(Command::Migrate) => runtime.block_on(migrate(cli.serve)),
        Some(Command::Serve(args)) => runtime.block_on(serve(merge(cli.serve, *args))),
        None => runtime.block_on(serve(cli.serve)),
    }
}

fn merge(global: ServeArgs, local: ServeArgs) -> ServeArgs {
    ServeArgs {
        data: local.data.or(global.data),
        listen: local.listen.or(global.listen),
        metrics_listen: local.metrics_listen.or(global.metrics_listen),
        console_listen: local.console_listen.or(global.console_listen),
        config: local.config.or(global.config),
        store: local.store.or(global.store),
        master_key_file: local.master_key_file.or(global.master_key_file),
        tls_cert: local.tls_cert.or(global.tls_cert),
        tls_key: local.tls_key.or(global.tls_key),
        tls_client_ca: local.tls_client_ca.or(global.tls_client_ca),
        insecure: local.insecure || global.insecure,
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switch: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(config.metrics_listen)
        .install()
    {
        tracing::error!(error = %e, address = %config.metrics_listen, "metrics exporter did not start");
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("switch: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    match switch::run(listener, config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "switch stopped on an error");
            ExitCode::FAILURE
        }
    }
}

/// Per-currency totals as `check` prints them (u128 as strings).
fn currencies_json(totals: &[ledger::CurrencyTotals]) -> Vec<serde_json::Value> {
    totals
        .iter()
        .map(|c| {
            serde_json::json!({
                "currency": c.currency,
                "debits_posted": c.debits_posted.to_string(),
                "credits_posted": c.credits_posted.to_string(),
                "debits_pending": c.debits_pending.to_string(),
                "credits_pending": c.credits_pending.to_string(),
            })
        })
        .collect()
}

async fn migrate(args: ServeArgs) -> ExitCode {
    let Some(url) = args.store else {
        eprintln!("switch: migrate needs --store postgres://…");
        return ExitCode::from(2);
    };
    match switch::store::pg_ledger::migrate(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switch: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `check --store`: the ledger's invariants over PostgreSQL.
async fn check_postgres(url: &str) -> ExitCode {
    let result = async {
        let ledger = switch::store::pg_ledger::PgLedger::open_with(url, 1).await?;
        ledger.check().await
    }
    .await;
    match result {
        Ok(check) => {
            let ok = check.violations.is_empty();
            println!(
                "{}",
                serde_json::json!({
                    "ok": ok,
                    "store": "postgres",
                    "last_commit": check.seq,
                    "accounts": check.accounts,
                    "pending_transfers": check.pending_transfers,
                    "currencies": currencies_json(&check.currencies),
                    "violations": check.violations,
                })
            );
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({"ok": false, "error": e.to_string()})
            );
            ExitCode::FAILURE
        }
    }
}

/// Why `data` is not a switch's data directory to check, if it is not.
fn not_a_data_directory(data: &std::path::Path) -> Option<String> {
    if !data.is_dir() {
        return Some(format!(
            "the data directory {} does not exist",
            data.display()
        ));
    }
    let ledger = data.join("ledger");
    (!ledger.is_dir()).then(|| {
        format!(
            "{} holds no ledger ({} is missing): not a switch's data directory",
            data.display(),
            ledger.display()
        )
    })
}

async fn check(args: ServeArgs) -> ExitCode {
    if let Some(url) = &args.store {
        return check_postgres(url).await;
    }
    let data = args.data.unwrap_or_else(|| PathBuf::from("data"));
    // Opening a ledger creates its directory: a mistyped path would be
    // made, found empty and called clean.
    if let Some(problem) = not_a_data_directory(&data) {
        println!("{}", serde_json::json!({"ok": false, "error": problem}));
        return ExitCode::FAILURE;
    }
    // The switch's records ride in the ledger's journal: opened with the
    // store's link, so that nothing they still need is removed, and the
    // store replays them below (a check that they decode).
    let link = switch::store::LedgerLink::new();
    let opened = ledger::Ledger::open_attached(
        ledger::Config::new(data.join("ledger")),
        std::sync::Arc::new(switch::clock::SwitchClock),
        None,
        Some(link.clone()),
    );
    let (ledger, report) = match opened {
        Ok(l) => l,
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({"ok": false, "error": e.to_string()})
            );
            return ExitCode::FAILURE;
        }
    };
    let check = match ledger.check() {
        Ok(c) => c,
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({"ok": false, "error": e.to_string()})
            );
            return ExitCode::FAILURE;
        }
    };
    let mut violations = check.violations.clone();
    let ledger = std::sync::Arc::new(ledger);
    match switch::store::Store::open_logged(&data.join("switch"), ledger.clone(), &link) {
        Ok(store) => drop(store),
        Err(e) => violations.push(format!("the switch's records: {e}")),
    }
    if let Some(d) = &report.dropped {
        violations.push(format!(
            "journal damage: {} bytes dropped at {}:{} ({})",
            d.bytes,
            d.segment.display(),
            d.offset,
            d.reason
        ));
    }
    let ok = violations.is_empty();
    println!(
        "{}",
        serde_json::json!({
            "ok": ok,
            "records": check.seq,
            "accounts": check.accounts,
            "pending_transfers": check.pending_transfers,
            "recovery": report.to_string(),
            "currencies": currencies_json(&check.currencies),
            "violations": violations,
        })
    );
    if let Ok(ledger) = std::sync::Arc::try_unwrap(ledger) {
        let _ = ledger.close();
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
