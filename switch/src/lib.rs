//! The payment switch: a gRPC server that tellers' terminals, merchants and
//! banks call, that routes each request to a bank or biller adapter, and that
//! records every obligation in the double-entry ledger. `main.rs` is thin;
//! [`server::run`] is the whole server, given a listener, a
//! [`config::Config`] and a shutdown future.
//!
//! The folders are layers; each module's doc says what it may import, and
//! `tests/layering.rs` checks that dependencies point one way:
//!
//! ```text
//! edge ─▶ flows, settlement ─▶ adapters, store ─▶ ledger
//! sim ─▶ adapters          (wired in by server, provision, sim_process only)
//! ```
//!
//! The files at the top (`config`, `ids`, `fees`, `accounts`, `error`,
//! `caller`, `clock`, `telemetry`, `demo`, `topup`) are small vocabularies every layer may use;
//! `server` and `provision` are start-up wiring, the only code that knows
//! the simulators (with `sim_process`, the simulator binaries' `main`).

pub mod accounts;
pub mod adapters;
pub mod caller;
pub mod civil;
pub mod clock;
pub mod config;
pub mod demo;
pub mod edge;
pub mod error;
pub mod fees;
pub mod flows;
pub mod ids;
pub mod provision;
pub mod secrets;
pub mod server;
pub mod settlement;
pub mod sim;
pub mod sim_process;
pub mod store;
pub mod telemetry;
pub mod topup;

pub use config::Config;
pub use server::run;
