//! The simulated banks and billers of the demo and the tests: they
//! implement the adapter traits and are wired in at start-up
//! ([`crate::server`]) when the configuration names no remote party. The
//! `bank-sim` binary serves one over gRPC ([`service`]); the switch serves
//! what a customer's bank app would do ([`bank_app`]) only while banks are
//! simulated.
//!
//! May import: `adapters` (to implement them), `config`, `demo`, `ids`.
//! Nothing outside start-up wiring imports this module.

use std::collections::HashMap;
use std::sync::Arc;

pub mod bank;
pub mod bank_app;
pub mod biller;
pub mod fault;
pub mod service;

pub use bank::{SimAccount, SimBank, demo_accounts, demo_card, demo_customers};
pub use biller::SimBiller;
pub use fault::Fault;

/// The simulators running in this process, by BIN and by biller code (the
/// demo and tests inspect customers' balances and switch faults on through
/// them).
#[derive(Clone, Default)]
pub struct Simulators {
    pub banks: HashMap<String, Arc<SimBank>>,
    pub billers: HashMap<String, Arc<SimBiller>>,
}
