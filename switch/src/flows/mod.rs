//! The transaction engine and the flows that run on it, one file per flow
//! family: the counter ([`counter`]), merchants' VietQR ([`merchant`]),
//! bills ([`bills`]), airtime top-ups ([`topup`]); the operator's provisioning ([`provisioning`]) and
//! merchants' payment notices ([`notify`]).
//!
//! May import: `adapters` (through their traits only), `store`, the
//! ledger, and the vocabularies at the top of the crate. Never `edge` (no
//! proto type reaches a flow) and never `sim`.

pub mod bills;
pub mod console;
pub mod counter;
pub mod engine;
pub mod fault;
pub mod fees;
pub mod limits;
pub mod merchant;
pub mod notify;
pub mod products;
pub mod provisioning;
pub mod report;
pub mod topup;

pub use engine::*;
