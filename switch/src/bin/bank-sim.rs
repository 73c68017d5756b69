//! `bank-sim`: one simulated bank served over the `BankAdapter` gRPC
//! service, so the switch can run against a bank in another process.
//!
//! bank-sim --bin 970422 --listen 127.0.0.1:6000 --data DIR
//!          [--latency-ms N] [--error-rate F] [--lost-response-rate F]
//!          [--pin-key-file HEX32]
//!          [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]] [--insecure]
//!
//! Like the switch, it refuses to listen in clear beyond loopback.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use switch::sim_process::{Served, SimArgs};

#[derive(Parser)]
#[command(
    name = "bank-sim",
    about = "A simulated bank behind the BankAdapter gRPC service"
)]
struct Args {
    /// The bank's NAPAS BIN; its demo customers are the switch's for that BIN.
    #[arg(long)]
    bin: String,
    /// The zone PIN key it shares with the switch (32 hex digits): card
    /// PIN blocks open under it. Without it the bank takes no cards.
    #[arg(long)]
    pin_key_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    sim: SimArgs,
}

/// glibc malloc cost a quarter of the CPU under load (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let (process, config) = args.sim.split("bank-sim", 6000);
    switch::sim_process::main(process, |db| {
        let tree = db
            .keyspace(
                &format!("sim/{}", args.bin),
                fjall::KeyspaceCreateOptions::default,
            )
            .map_err(|e| e.to_string())?;
        let mut sim = switch::sim::SimBank::open(
            &args.bin,
            config,
            tree,
            &switch::sim::demo_accounts(&args.bin),
        )
        .map_err(|e| e.to_string())?;
        if let Some(path) = &args.pin_key_file {
            sim = sim.with_pin_key(switch::server::read_pin_key(path)?);
        }
        Ok(Served::Bank(Arc::new(sim)))
    })
}
