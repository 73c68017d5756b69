//! `biller-sim`: one simulated demo biller (EVN, NUOCVP, VNPT or VIETTEL)
//! served over the `BillerAdapter` gRPC service, so the switch can run
//! against a biller in another process (`[[billers]] remote = …`).
//!
//! biller-sim --code EVN --listen 127.0.0.1:6100 --data DIR
//!            [--latency-ms N] [--error-rate F] [--lost-response-rate F]
//!            [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]] [--insecure]
//!
//! Its customers are the demo network's for that biller (the switch's
//! `profiles/bill-customers.json`). Like the switch, it refuses to listen
//! in clear beyond loopback.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use switch::sim_process::{Served, SimArgs};

#[derive(Parser)]
#[command(
    name = "biller-sim",
    about = "A simulated biller behind the BillerAdapter gRPC service"
)]
struct Args {
    /// The demo biller's code.
    #[arg(long)]
    code: String,
    /// Customers it has (the first has nothing due); the switch's
    /// `[biller_sim] customers` must match for the demo profiles to agree.
    #[arg(long, default_value_t = 6)]
    customers: usize,
    /// A paid-up customer gets next month's bill at once (load tests).
    #[arg(long)]
    recurring_bills: bool,
    #[command(flatten)]
    sim: SimArgs,
}

/// glibc malloc cost a quarter of the CPU under load (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let (process, mut config) = args.sim.split("biller-sim", 6100);
    config.customers = args.customers;
    config.recurring_bills = args.recurring_bills;
    switch::sim_process::main(process, |db| {
        let Some(&(code, _, _, partial_allowed, _, _)) =
            switch::demo::DEMO_BILLERS.iter().find(|b| b.0 == args.code)
        else {
            let known: Vec<_> = switch::demo::DEMO_BILLERS.iter().map(|b| b.0).collect();
            return Err(format!(
                "no demo biller {:?} (known: {})",
                args.code,
                known.join(", ")
            ));
        };
        let tree = db
            .keyspace(
                &format!("biller/{code}"),
                fjall::KeyspaceCreateOptions::default,
            )
            .map_err(|e| e.to_string())?;
        let sim = switch::sim::SimBiller::open(code, partial_allowed, config, tree)
            .map_err(|e| e.to_string())?;
        Ok(Served::Biller(Arc::new(sim)))
    })
}
