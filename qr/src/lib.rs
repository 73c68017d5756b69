//! EMVCo merchant-presented QR codes and their VietQR profile.
//!
//! - [`Payload::parse`] reads any EMVCo payload into a tree (unknown and
//!   reserved objects kept, so [`Payload::encode`] gives back the same
//!   bytes) and verifies its CRC; [`validate`] checks EMVCo's field rules.
//! - [`decode`] does both and reads the VietQR profile into [`VietQr`].
//! - [`encode`] generates static and dynamic VietQR payloads from a [`Spec`].
//! - [`bank_by_bin`] names NAPAS banks.
//!
//! Errors ([`QrError`]) name the tag path and the character offset. No input
//! makes this crate panic.

mod banks;
mod crc;
mod emv;
mod error;
mod tlv;
mod vietqr;

pub use banks::{BANKS, Bank, bank_by_bin};
pub use crc::{crc16, crc16_hex};
pub use emv::{amount_problem, validate};
pub use error::{ErrorKind, QrError, TagPath};
pub use tlv::{Object, PAYLOAD_CHARS_MAX, Payload, Raw, TlvIter, is_template};
pub use vietqr::{
    ACCOUNT_CHARS_MAX, CURRENCY_VND, Initiation, NAPAS_GUID, Service, Spec, VietQr, decode, encode,
    from_payload,
};
