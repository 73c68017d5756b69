//! Identifiers, masking and secrets.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};

/// A transaction id: the creation time in milliseconds (48 bits), 72
/// random bits, and 8 zero bits, so that the ledger transfers of one
/// transaction are `id | leg` (up to 255 legs).
///
/// Time first, as TigerBeetle advises for its ids: every index keyed by
/// transaction or transfer id (the ledger's, the switch store's, a bank's)
/// then inserts near its right edge, into pages that are in cache and dirty
/// already, instead of anywhere in a tree larger than the cache. The random
/// part keeps ids unguessable and distinct within a millisecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(u128);

impl TxId {
    /// A new id for something created at `at_ms` (Unix milliseconds).
    pub fn new(rng: &SystemRandom, at_ms: i64) -> TxId {
        let mut b = [0u8; 16];
        rng.fill(&mut b[6..15])
            .expect("the system random source works");
        let ms = u64::try_from(at_ms).unwrap_or(0) & ((1 << 48) - 1);
        b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        // Never zero, whatever the clock says.
        TxId(u128::from_be_bytes(b) | 0x100)
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
        let id = TxId::new(&rng, 1_700_000_000_000);
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
    fn tx_ids_sort_by_time_and_differ_within_a_millisecond() {
        let rng = SystemRandom::new();
        let at = 1_700_000_000_000;
        let same: std::collections::HashSet<TxId> =
            (0..1000).map(|_| TxId::new(&rng, at)).collect();
        assert_eq!(same.len(), 1000);
        let first = same.iter().max().unwrap();
        let later = TxId::new(&rng, at + 1);
        assert!(later > *first, "{later} after {first}");
        assert_eq!((later.as_u128() >> 80) as i64, at + 1, "time leads");
        // A clock before 1970 or past 2^48 ms still gives a valid id.
        assert!(TxId::from_u128(TxId::new(&rng, -5).as_u128()).is_some());
        assert!(TxId::from_u128(TxId::new(&rng, i64::MAX).as_u128()).is_some());
    }

    #[test]
    fn references_name_a_step_of_a_transaction() {
        let id = TxId::new(&SystemRandom::new(), 1_700_000_000_000);
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
