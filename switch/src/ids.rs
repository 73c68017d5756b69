//! Identifiers, masking and secrets.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};

/// A transaction id: 128 random bits whose low 8 bits are zero, so that the
/// ledger transfers of one transaction are `id | leg` (up to 255 legs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(u128);

impl TxId {
    pub fn random(rng: &SystemRandom) -> TxId {
        let mut b = [0u8; 16];
        rng.fill(&mut b).expect("the system random source works");
        TxId(u128::from_be_bytes(b) & !0xff | 0x100)
    }
    pub fn from_u128(v: u128) -> Option<TxId> {
        (v & 0xff == 0 && v != 0).then_some(TxId(v))
    }
    pub fn as_u128(self) -> u128 {
        self.0
    }
    /// The ledger transfer id of leg `leg` (1..=255).
    pub fn leg(self, leg: u8) -> u128 {
        debug_assert!(leg > 0);
        self.0 | u128::from(leg)
    }
    pub fn parse(s: &str) -> Option<TxId> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        TxId::from_u128(u128::from_str_radix(s, 16).ok()?)
    }
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl TxId {
    /// The reference of the transaction's call number `step` to a bank or
    /// biller (step 0 is the transaction id itself).
    pub fn reference(self, step: u8) -> Reference {
        Reference(self.0 | u128::from(step))
    }
}

/// What the switch names one call to a bank or biller by, and what the
/// party must treat as its idempotency key: a transaction id with the
/// call's step in the low 8 bits. A transaction that calls the same bank
/// twice (a QR payment between two accounts of one bank) so uses two
/// references; statements name references, and reconciliation maps each
/// back to its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference(u128);

impl Reference {
    pub fn tx_id(self) -> TxId {
        TxId(self.0 & !0xff)
    }
    pub fn step(self) -> u8 {
        (self.0 & 0xff) as u8
    }
    pub fn as_u128(self) -> u128 {
        self.0
    }
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
    pub fn parse(s: &str) -> Option<Reference> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let v = u128::from_str_radix(s, 16).ok()?;
        (v & !0xff != 0).then_some(Reference(v))
    }
}

impl From<TxId> for Reference {
    fn from(id: TxId) -> Reference {
        Reference(id.0)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// An account number as logs, errors and receipts show it: all but the last
/// four characters replaced.
pub fn mask_account(account: &str) -> String {
    let n = account.chars().count();
    let keep = n.min(4);
    let mut out = "*".repeat(n - keep);
    out.extend(account.chars().skip(n - keep));
    out
}

/// A shared secret. It cannot be printed: `Debug` and `Display` show a
/// placeholder, so it never reaches a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn generate(rng: &SystemRandom) -> Secret {
        let mut b = vec![0u8; 32];
        rng.fill(&mut b).expect("the system random source works");
        Secret(b)
    }
    pub fn from_hex(s: &str) -> Option<Secret> {
        let b = hex::decode(s.trim()).ok()?;
        (b.len() >= 16).then_some(Secret(b))
    }
    /// The secret as hex, for writing a client profile (never for a log).
    pub fn expose_hex(&self) -> String {
        hex::encode(&self.0)
    }
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_ids_leave_room_for_legs_and_parse_back() {
        let rng = SystemRandom::new();
        let id = TxId::random(&rng);
        assert_eq!(id.as_u128() & 0xff, 0);
        assert_eq!(TxId::parse(&id.to_string()), Some(id));
        assert_eq!(id.leg(3) & !0xff, id.as_u128());
        assert_eq!(TxId::parse("xyz"), None);
        assert_eq!(
            TxId::parse(&format!("{:032x}", 5u128)),
            None,
            "low bits must be zero"
        );
    }

    #[test]
    fn references_name_a_step_of_a_transaction() {
        let id = TxId::random(&SystemRandom::new());
        let r = id.reference(1);
        assert_ne!(r, Reference::from(id));
        assert_eq!((r.tx_id(), r.step()), (id, 1));
        assert_eq!(Reference::parse(&r.to_string()), Some(r));
        assert_eq!(Reference::parse(&id.to_string()), Some(id.into()));
        assert_eq!(Reference::parse(&format!("{:032x}", 5u128)), None);
    }

    #[test]
    fn masking_keeps_only_the_last_four() {
        assert_eq!(mask_account("0123456789"), "******6789");
        assert_eq!(mask_account("12345"), "*2345");
        assert_eq!(mask_account("1234"), "1234");
        assert_eq!(mask_account(""), "");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::generate(&SystemRandom::new());
        assert_eq!(format!("{s:?} {s}"), "Secret(<redacted>) <redacted>");
        assert_eq!(Secret::from_hex(&s.expose_hex()), Some(s));
    }
}
