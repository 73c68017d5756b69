//! The gRPC edge: proto types in, proto types out, one file per service;
//! the auth layer that proves who is calling ([`auth`]); the mapping of
//! records to messages and of errors to statuses; receipts ([`receipt`]).
//! Nothing below this module sees a proto type.
//!
//! May import: `flows`, `settlement`, `store` (record types), and the
//! vocabularies at the top of the crate. Never `sim`.

pub mod admin;
pub mod auth;
pub mod bills;
pub mod console;
pub mod convert;
pub mod merchant;
pub mod payer_bank;
pub mod rate_limit;
pub mod receipt;
pub mod settlement;
pub mod teller;

pub use admin::AdminService;
pub use bills::BillsService;
pub use merchant::MerchantService;
pub use payer_bank::PayerBankService;
pub use receipt::receipt;
pub use settlement::SettlementService;
pub use teller::TellerService;
