//! `bank-sim`: one simulated bank served over the `BankAdapter` gRPC
//! service, so the switch can run against a bank in another process.
//!
//! bank-sim --bin 970422 --listen 127.0.0.1:6000 --data DIR
//!          [--latency-ms N] [--error-rate F] [--lost-response-rate F]
//!          [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]] [--insecure]
//!
//! Like the switch, it refuses to listen in clear beyond loopback.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "bank-sim",
    about = "A simulated bank behind the BankAdapter gRPC service"
)]
struct Args {
    /// The bank's NAPAS BIN; its demo customers are the switch's for that BIN.
    #[arg(long)]
    bin: String,
    #[arg(long, default_value = "127.0.0.1:6000")]
    listen: std::net::SocketAddr,
    /// Where the bank keeps its accounts.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    lost_response_rate: f64,
    /// The bank's server certificate chain (PEM), with --tls-key.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Callers (the switch) must present a certificate from this CA.
    #[arg(long)]
    tls_client_ca: Option<PathBuf>,
    /// Listen in clear beyond loopback.
    #[arg(long)]
    insecure: bool,
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
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let tls = switch::config::TlsConfig {
            cert_file: args.tls_cert.clone(),
            key_file: args.tls_key.clone(),
            client_ca_file: args.tls_client_ca.clone(),
            insecure: args.insecure,
        };
        let tls = match switch::server::listener_tls(&tls, args.listen) {
            Ok(tls) => tls,
            Err(e) => {
                eprintln!("bank-sim: {e}");
                return ExitCode::FAILURE;
            }
        };
        let db = match switch::store::Store::open_engine(&args.data) {
            Ok(db) => db,
            Err(e) => {
                eprintln!("bank-sim: {}: {e}", args.data.display());
                return ExitCode::FAILURE;
            }
        };
        let config = switch::config::SimConfig {
            latency_ms: args.latency_ms,
            error_rate: args.error_rate,
            lost_response_rate: args.lost_response_rate,
            ..Default::default()
        };
        let tree = match db.keyspace(
            &format!("sim/{}", args.bin),
            fjall::KeyspaceCreateOptions::default,
        ) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("bank-sim: {}: {e}", args.data.display());
                return ExitCode::FAILURE;
            }
        };
        let sim = match switch::sim::SimBank::open(
            &args.bin,
            config,
            tree,
            &switch::sim::demo_accounts(&args.bin),
        ) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                eprintln!("bank-sim: {e}");
                return ExitCode::FAILURE;
            }
        };
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("bank-sim: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(bin = %args.bin, address = %args.listen, tls = tls.is_some(), "bank-sim serving");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match switch::sim::service::serve_sim(listener, sim, tls, shutdown).await {
            Ok(()) => {
                let _ = db.persist(fjall::PersistMode::SyncAll);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bank-sim: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
