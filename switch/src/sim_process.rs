//! The process around a simulator served over gRPC: the `main` that
//! `bank-sim` and `biller-sim` share, and their common command line. Wiring,
//! like `server`: it opens the engine the way the switch does and serves
//! with the listener's TLS rules.

use std::sync::Arc;

use crate::sim::service::{serve_biller_sim, serve_sim};
use crate::sim::{SimBank, SimBiller};

/// What a simulator process is told on its command line.
pub struct SimProcess {
    /// `bank-sim`, `biller-sim`: how its errors begin.
    pub name: &'static str,
    pub listen: std::net::SocketAddr,
    /// Where the simulator keeps its state.
    pub data: std::path::PathBuf,
    /// The listener's TLS, with the switch's rules: clear only on loopback
    /// unless `insecure`.
    pub tls: crate::config::TlsConfig,
}

/// What a simulator serves, once its state is open.
pub enum Served {
    Bank(Arc<SimBank>),
    Biller(Arc<SimBiller>),
}

/// The `main` of `bank-sim` and `biller-sim`: logs to stderr, open the
/// state (`open` makes the simulator from the data directory's engine),
/// serve until Ctrl-C, then flush.
pub fn main(
    process: SimProcess,
    open: impl FnOnce(&fjall::Database) -> Result<Served, String>,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    // Logs go to stderr; the storage engine's own INFO lines (every
    // keyspace it recovers) are noise to an operator.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into()),
        )
        .init();
    let name = process.name;
    let fail = |e: String| {
        eprintln!("{name}: {e}");
        ExitCode::FAILURE
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let tls = match crate::server::listener_tls(&process.tls, process.listen) {
            Ok(tls) => tls,
            Err(e) => return fail(e.to_string()),
        };
        let db = match crate::store::Store::open_engine(&process.data) {
            Ok(db) => db,
            Err(e) => return fail(format!("{}: {e}", process.data.display())),
        };
        let served = match open(&db) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let listener = match tokio::net::TcpListener::bind(process.listen).await {
            Ok(l) => l,
            Err(e) => return fail(format!("cannot listen on {}: {e}", process.listen)),
        };
        tracing::info!(address = %process.listen, tls = tls.is_some(), "{name} serving");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let served = match served {
            Served::Bank(sim) => serve_sim(listener, sim, tls, shutdown).await,
            Served::Biller(sim) => serve_biller_sim(listener, sim, tls, shutdown).await,
        };
        match served {
            Ok(()) => {
                let _ = db.persist(fjall::PersistMode::SyncAll);
                ExitCode::SUCCESS
            }
            Err(e) => fail(e.to_string()),
        }
    })
}

/// The command line both simulators share.
#[derive(clap::Args)]
pub struct SimArgs {
    /// Where to listen (loopback, on the simulator's usual port, unless given).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Where the simulator keeps its state.
    #[arg(long)]
    data: std::path::PathBuf,
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of calls that fail as unavailable before doing anything.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Share of calls that do their work and never answer.
    #[arg(long, default_value_t = 0.0)]
    lost_response_rate: f64,
    /// The server certificate chain (PEM), with --tls-key.
    #[arg(long)]
    tls_cert: Option<std::path::PathBuf>,
    #[arg(long)]
    tls_key: Option<std::path::PathBuf>,
    /// Callers (the switch) must present a certificate from this CA.
    #[arg(long)]
    tls_client_ca: Option<std::path::PathBuf>,
    /// Listen in clear beyond loopback.
    #[arg(long)]
    insecure: bool,
}

impl SimArgs {
    /// The process's settings and the simulator's, for `name` whose usual
    /// port is `port`.
    pub fn split(self, name: &'static str, port: u16) -> (SimProcess, crate::config::SimConfig) {
        let process = SimProcess {
            name,
            listen: self
                .listen
                .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], port))),
            data: self.data,
            tls: crate::config::TlsConfig {
                cert_file: self.tls_cert,
                key_file: self.tls_key,
                client_ca_file: self.tls_client_ca,
                insecure: self.insecure,
            },
        };
        let config = crate::config::SimConfig {
            latency_ms: self.latency_ms,
            error_rate: self.error_rate,
            lost_response_rate: self.lost_response_rate,
            ..Default::default()
        };
        (process, config)
    }
}
