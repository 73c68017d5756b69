//! The payment switch: a gRPC server that tellers' terminals call, that
//! routes each request to a bank adapter by NAPAS BIN, and that records every
//! obligation in the double-entry ledger. `main.rs` is thin; [`server::run`]
//! is the whole server, given a listener, a [`config::Config`] and a
//! shutdown future.

pub mod accounts;
pub mod admin;
pub mod auth;
pub mod bank;
pub mod biller;
pub mod bills;
pub mod config;
pub mod error;
pub mod fees;
pub mod flows;
pub mod grpc;
pub mod ids;
pub mod kv;
pub mod merchant;
pub mod notify;
pub mod provision;
pub mod recon;
pub mod remote;
pub mod server;
pub mod settlement;
pub mod sim;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use server::run;
