//! Bank cards at the counter: card numbers (PANs) checked, routed and
//! masked, and PINs carried only inside ISO 9564-1 format 4 PIN blocks
//! (AES-128) under a key the two ends share. Shared by the terminal side
//! (pos-agent, tests) and the switch and issuers' simulators, like
//! [`crate::auth`].
//!
//! A terminal's PIN key is derived from its signing secret with HKDF, so
//! provisioning a terminal gives it both, and they are never the same key.

use std::fmt;

use aes::Aes128;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use ring::rand::SecureRandom;
use zeroize::Zeroizing;

/// A card number: 16 to 19 digits whose Luhn check digit holds. Prints
/// only masked (first six, last four).
#[derive(Clone, PartialEq, Eq)]
pub struct Pan(String);

/// Why a card number is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PanError {
    /// Not 16 to 19 digits.
    Form,
    /// The check digit does not hold (a mistyped number).
    Luhn,
}

impl fmt::Display for PanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PanError::Form => write!(f, "a card number is 16 to 19 digits"),
            PanError::Luhn => write!(f, "the card number's check digit is wrong (mistyped?)"),
        }
    }
}

/// The Luhn (mod 10) check over every digit, the check digit last.
pub fn luhn_ok(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let d = u32::from(b - b'0');
        sum += if i % 2 == 1 {
            let x = d * 2;
            if x > 9 { x - 9 } else { x }
        } else {
            d
        };
    }
    sum % 10 == 0
}

/// The check digit that makes `body` pass [`luhn_ok`].
pub fn luhn_digit(body: &str) -> char {
    (b'0'..=b'9')
        .map(char::from)
        .find(|d| luhn_ok(&format!("{body}{d}")))
        .expect("one digit always completes a Luhn number")
}

impl Pan {
    /// Spaces and dashes between groups are ignored.
    pub fn parse(text: &str) -> Result<Pan, PanError> {
        if text.len() > 40 {
            return Err(PanError::Form);
        }
        let digits: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if !(16..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PanError::Form);
        }
        if !luhn_ok(&digits) {
            return Err(PanError::Luhn);
        }
        Ok(Pan(digits))
    }

    /// The first six digits: a domestic (NAPAS) card's issuing bank's BIN.
    pub fn bin(&self) -> &str {
        &self.0[..6]
    }

    /// First six and last four, the rest as `*`: all a record or a
    /// receipt ever shows.
    pub fn masked(&self) -> String {
        let n = self.0.len();
        format!("{}{}{}", &self.0[..6], "*".repeat(n - 10), &self.0[n - 4..])
    }

    /// The digits, for the one call to the issuer that needs them.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A stable token for looking the card's transactions up without its
    /// number: HMAC-SHA256 under `key`, 32 hex digits.
    pub fn token(&self, key: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        hex::encode(&ring::hmac::sign(&key, self.0.as_bytes()).as_ref()[..16])
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

/// An AES-128 key that enciphers PIN blocks. Never printed, wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct PinKey(Zeroizing<[u8; 16]>);

impl fmt::Debug for PinKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinKey(…)")
    }
}

impl PinKey {
    pub fn from_bytes(b: [u8; 16]) -> PinKey {
        PinKey(Zeroizing::new(b))
    }

    /// 32 hex digits (a key file's content).
    pub fn from_hex(text: &str) -> Option<PinKey> {
        let b = hex::decode(text.trim()).ok()?;
        Some(PinKey::from_bytes(b.try_into().ok()?))
    }

    /// A key derived from `secret` for `purpose` (HKDF-SHA256): a
    /// terminal's PIN key from its signing secret (`"terminal"`), a bank's
    /// zone key from the switch's master key (`"zone/970436"`).
    pub fn derive(secret: &[u8], purpose: &str) -> PinKey {
        struct Len16;
        impl ring::hkdf::KeyType for Len16 {
            fn len(&self) -> usize {
                16
            }
        }
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"paymentswitch.v1 pin key");
        let info = [purpose.as_bytes()];
        let mut out = [0u8; 16];
        salt.extract(secret)
            .expand(&info, Len16)
            .expect("16 bytes is a valid HKDF length")
            .fill(&mut out)
            .expect("16 bytes fill");
        PinKey::from_bytes(out)
    }

    /// The key's bytes, to derive other keys from or to key an HMAC.
    pub fn expose(&self) -> &[u8] {
        &self.0[..]
    }

    fn cipher(&self) -> Aes128 {
        Aes128::new(&(*self.0).into())
    }
}

/// A PIN in the clear: 4 to 12 digits, held only while it is re-enciphered
/// (an HSM would hold it in production). Never printed, wiped on drop.
pub struct Pin(Zeroizing<Vec<u8>>);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin(****)")
    }
}

impl Pin {
    pub fn new(digits: &str) -> Option<Pin> {
        ((4..=12).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Pin(Zeroizing::new(digits.bytes().map(|b| b - b'0').collect())))
    }

    /// Whether this is `digits` (the issuer's check; constant time in the
    /// digits compared).
    pub fn is(&self, digits: &str) -> bool {
        let want: Vec<u8> = digits.bytes().map(|b| b.wrapping_sub(b'0')).collect();
        want.len() == self.0.len()
            && want
                .iter()
                .zip(self.0.iter())
                .fold(0u8, |differ, (a, b)| differ | (a ^ b))
                == 0
    }
}

/// Why a PIN block does not open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinBlockError {
    /// Not 32 hex digits.
    Form,
    /// It does not decipher to a format 4 PIN field under this key and card
    /// (another key, another card, or tampered).
    Garbled,
}

impl fmt::Display for PinBlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinBlockError::Form => write!(f, "a PIN block is 32 hex digits"),
            PinBlockError::Garbled => write!(
                f,
                "the PIN block does not open under this terminal's key for this card"
            ),
        }
    }
}

/// The plain-text PAN field: the length past 12, the digits, zeros.
fn pan_field(pan: &Pan) -> [u8; 16] {
    let digits = pan.0.as_bytes();
    let mut nibbles = [0u8; 32];
    nibbles[0] = (digits.len() - 12) as u8;
    for (i, d) in digits.iter().enumerate() {
        nibbles[1 + i] = d - b'0';
    }
    pack(&nibbles)
}

fn pack(nibbles: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibbles[2 * i] << 4) | nibbles[2 * i + 1];
    }
    out
}

fn xor(a: &mut [u8; 16], b: &[u8; 16]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// Encipher `pin` for `pan` under `key` as an ISO 9564-1 format 4 PIN
/// block: the PIN field (control 4, length, digits, fill `A`, then random)
/// enciphered, XORed with the PAN field, enciphered again. Lower-case hex.
pub fn encipher(key: &PinKey, pin: &Pin, pan: &Pan, rng: &dyn SecureRandom) -> String {
    let mut nibbles = [0xAu8; 32];
    nibbles[0] = 4;
    nibbles[1] = pin.0.len() as u8;
    nibbles[2..2 + pin.0.len()].copy_from_slice(&pin.0);
    let mut random = [0u8; 8];
    rng.fill(&mut random)
        .expect("the system random source works");
    for (i, r) in random.iter().enumerate() {
        nibbles[16 + 2 * i] = r >> 4;
        nibbles[17 + 2 * i] = r & 0xF;
    }
    let mut block = pack(&nibbles).into();
    let cipher = key.cipher();
    cipher.encrypt_block(&mut block);
    let mut mid: [u8; 16] = block.into();
    xor(&mut mid, &pan_field(pan));
    let mut block = mid.into();
    cipher.encrypt_block(&mut block);
    let out: [u8; 16] = block.into();
    hex::encode(out)
}

/// Open a format 4 PIN block for `pan` under `key`.
pub fn decipher(key: &PinKey, block_hex: &str, pan: &Pan) -> Result<Pin, PinBlockError> {
    let bytes = hex::decode(block_hex).map_err(|_| PinBlockError::Form)?;
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| PinBlockError::Form)?;
    let cipher = key.cipher();
    let mut block = bytes.into();
    cipher.decrypt_block(&mut block);
    let mut mid: [u8; 16] = block.into();
    xor(&mut mid, &pan_field(pan));
    let mut block = mid.into();
    cipher.decrypt_block(&mut block);
    let field: [u8; 16] = block.into();
    let nibble = |i: usize| (field[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0xF;
    let n = usize::from(nibble(1));
    if nibble(0) != 4 || !(4..=12).contains(&n) {
        return Err(PinBlockError::Garbled);
    }
    let digits: Zeroizing<Vec<u8>> = Zeroizing::new((2..2 + n).map(nibble).collect());
    if digits.iter().any(|d| *d > 9) || (2 + n..16).any(|i| nibble(i) != 0xA) {
        return Err(PinBlockError::Garbled);
    }
    Ok(Pin(digits))
}

/// Re-encipher a terminal's PIN block under the issuer's zone key (what an
/// HSM's PIN translation does); the PIN is in the clear only inside.
pub fn translate(
    from: &PinKey,
    to: &PinKey,
    block_hex: &str,
    pan: &Pan,
    rng: &dyn SecureRandom,
) -> Result<String, PinBlockError> {
    let pin = decipher(from, block_hex, pan)?;
    Ok(encipher(to, &pin, pan, rng))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VCB_CARD: &str = "9704366800000000017";

    #[test]
    fn card_numbers_are_checked_and_masked() {
        assert!(luhn_ok("4111111111111111"));
        assert!(!luhn_ok("4111111111111112"));
        let pan = Pan::parse("9704 3668 0000 0000 017").unwrap();
        assert_eq!(pan.expose(), VCB_CARD);
        assert_eq!(pan.bin(), "970436");
        assert_eq!(pan.masked(), "970436*********0017");
        assert_eq!(format!("{pan:?}"), "Pan(970436*********0017)");
        assert_eq!(Pan::parse("9704366800000000018"), Err(PanError::Luhn));
        assert_eq!(Pan::parse("970436"), Err(PanError::Form));
        assert_eq!(Pan::parse("97043668000000000a8"), Err(PanError::Form));
        let body = "970422123456789";
        let full = format!("{body}{}", luhn_digit(body));
        assert!(Pan::parse(&full).is_ok());
        assert_eq!(pan.token(b"k1"), pan.token(b"k1"));
        assert_ne!(pan.token(b"k1"), pan.token(b"k2"));
    }

    #[test]
    fn a_pin_block_opens_only_under_its_key_and_card() {
        let rng = ring::rand::SystemRandom::new();
        let terminal = PinKey::derive(b"terminal secret", "terminal");
        let zone = PinKey::derive(b"master", "zone/970436");
        assert_ne!(terminal, zone);
        let pan = Pan::parse(VCB_CARD).unwrap();
        let pin = Pin::new("1234").unwrap();
        let a = encipher(&terminal, &pin, &pan, &rng);
        let b = encipher(&terminal, &pin, &pan, &rng);
        assert_eq!(a.len(), 32);
        assert_ne!(a, b, "random fill: the same PIN never gives the same block");
        assert!(decipher(&terminal, &a, &pan).unwrap().is("1234"));
        assert!(!decipher(&terminal, &a, &pan).unwrap().is("1235"));
        assert_eq!(
            decipher(&zone, &a, &pan).err(),
            Some(PinBlockError::Garbled)
        );
        let other = Pan::parse("4111111111111111").unwrap();
        assert_eq!(
            decipher(&terminal, &a, &other).err(),
            Some(PinBlockError::Garbled)
        );
        assert_eq!(
            decipher(&terminal, "zz", &pan).err(),
            Some(PinBlockError::Form)
        );
        let z = translate(&terminal, &zone, &a, &pan, &rng).unwrap();
        assert!(decipher(&zone, &z, &pan).unwrap().is("1234"));
        assert_eq!(format!("{:?}", Pin::new("9999").unwrap()), "Pin(****)");
        assert!(Pin::new("123").is_none() && Pin::new("12a4").is_none());
        for len in 4..=12 {
            let digits: String = (0..len)
                .map(|i| char::from(b'0' + (i % 10) as u8))
                .collect();
            let block = encipher(&zone, &Pin::new(&digits).unwrap(), &pan, &rng);
            assert!(decipher(&zone, &block, &pan).unwrap().is(&digits), "{len}");
        }
    }
}
