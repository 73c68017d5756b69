//! The parties the switch calls: banks ([`bank::BankAdapter`], routed by
//! NAPAS BIN) and billers ([`biller::BillerAdapter`], by code), each behind
//! one trait with one module per connector ([`remote_bank`] and
//! [`remote_biller`] for parties reached over gRPC, sharing [`remote`]), and the circuit breaker in front of every one
//! ([`breaker`]).
//!
//! May import: the vocabularies at the top of the crate and `proto` (for
//! the remote connector's wire). Never `flows`, `store`, `edge` or `sim`.

pub mod bank;
pub mod biller;
pub mod breaker;
pub mod remote;
pub mod remote_bank;
pub mod remote_biller;
