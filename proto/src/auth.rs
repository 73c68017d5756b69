//! Request signing, shared by the switch (which verifies) and its clients
//! (which sign). docs/PROTOCOL.md is the specification; this is the
//! reference implementation.

use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac};

pub const HEADER_KEY_ID: &str = "x-switch-key-id";
pub const HEADER_TIMESTAMP: &str = "x-switch-timestamp";
pub const HEADER_NONCE: &str = "x-switch-nonce";
pub const HEADER_SIGNATURE: &str = "x-switch-signature";
/// For client-streaming calls: lower-case hex SHA-256 of the streamed
/// content, which the signature covers in place of a message.
pub const HEADER_CONTENT_SHA256: &str = "x-switch-content-sha256";

/// The string a request's signature covers.
pub fn canonical(
    path: &str,
    key_id: &str,
    timestamp_ms: i64,
    nonce: &str,
    message: &[u8],
) -> String {
    let hash = digest::digest(&digest::SHA256, message);
    canonical_digest(
        path,
        key_id,
        timestamp_ms,
        nonce,
        &hex::encode(hash.as_ref()),
    )
}

/// The canonical string over a content digest already computed (hex).
pub fn canonical_digest(
    path: &str,
    key_id: &str,
    timestamp_ms: i64,
    nonce: &str,
    digest_hex: &str,
) -> String {
    format!("SWITCH-HMAC-SHA256\n{path}\n{key_id}\n{timestamp_ms}\n{nonce}\n{digest_hex}")
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// The content a statement upload (`Settlement/Reconcile`) signs: the
/// window's id in decimal and a newline, then the CSV file's bytes, so
/// that a signed statement cannot be replayed for another window. Fed as
/// the file is read; [`StatementDigest::finish`] gives the
/// `x-switch-content-sha256` value.
pub struct StatementDigest(digest::Context);

impl StatementDigest {
    pub fn new(window_id: u64) -> StatementDigest {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(format!("{window_id}\n").as_bytes());
        StatementDigest(ctx)
    }

    /// A biller's statement, submitted by an operator: the biller's code
    /// is signed too.
    pub fn for_biller(window_id: u64, biller: &str) -> StatementDigest {
        let mut d = StatementDigest::new(window_id);
        d.0.update(format!("biller {biller}\n").as_bytes());
        d
    }

    pub fn update(&mut self, csv_bytes: &[u8]) {
        self.0.update(csv_bytes);
    }

    /// Lower-case hex.
    pub fn finish(self) -> String {
        hex::encode(self.0.finish().as_ref())
    }

    /// The digest of a whole statement at once.
    pub fn of(window_id: u64, csv: &[u8]) -> String {
        let mut d = StatementDigest::new(window_id);
        d.update(csv);
        d.finish()
    }
}

/// Lower-case hex HMAC-SHA256 of the canonical string.
pub fn signature(
    secret: &[u8],
    path: &str,
    key_id: &str,
    timestamp_ms: i64,
    nonce: &str,
    message: &[u8],
) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hex::encode(
        hmac::sign(
            &key,
            canonical(path, key_id, timestamp_ms, nonce, message).as_bytes(),
        )
        .as_ref(),
    )
}

/// A fresh nonce: 32 hex characters from the system's random source.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system random source works");
    hex::encode(b)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A caller's credentials.
#[derive(Clone)]
pub struct Credentials {
    pub key_id: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    pub fn new(key_id: impl Into<String>, secret: Vec<u8>) -> Credentials {
        Credentials {
            key_id: key_id.into(),
            secret,
        }
    }

    /// Hex secret as profiles hold it.
    pub fn from_hex(key_id: impl Into<String>, secret_hex: &str) -> Option<Credentials> {
        Some(Credentials::new(
            key_id,
            hex::decode(secret_hex.trim()).ok()?,
        ))
    }

    /// A request for `path` (e.g. `/paymentswitch.v1.Teller/CashIn`), signed now
    /// with a fresh nonce. Sign again for every attempt.
    /// The terminal's PIN key (card PIN blocks), derived from its secret
    /// as the switch derives it (HKDF-SHA256, purpose `terminal`).
    pub fn pin_key(&self) -> crate::pin::PinKey {
        crate::pin::PinKey::derive(&self.secret, "terminal")
    }

    /// A card and its PIN as a terminal sends them: the number and a format
    /// 4 PIN block under this terminal's PIN key.
    pub fn card(&self, card_number: &str, pin: &str) -> Result<(String, String), String> {
        let pan = crate::pin::Pan::parse(card_number).map_err(|e| e.to_string())?;
        let pin = crate::pin::Pin::new(pin).ok_or("a PIN is 4 to 12 digits")?;
        let block = crate::pin::encipher(
            &self.pin_key(),
            &pin,
            &pan,
            &ring::rand::SystemRandom::new(),
        );
        Ok((pan.expose().to_string(), block))
    }

    pub fn sign<M: prost::Message>(&self, path: &str, message: M) -> tonic::Request<M> {
        self.sign_at(path, message, now_ms(), &nonce())
    }

    /// A client-streaming call for `path` whose streamed content has the
    /// SHA-256 `digest_hex`: the signature covers the digest, which the
    /// switch checks against what arrives before acting on it.
    pub fn sign_stream<S>(&self, path: &str, digest_hex: &str, stream: S) -> tonic::Request<S> {
        let (timestamp_ms, nonce) = (now_ms(), nonce());
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.secret);
        let text = canonical_digest(path, &self.key_id, timestamp_ms, &nonce, digest_hex);
        let sig = hex::encode(hmac::sign(&key, text.as_bytes()).as_ref());
        let mut req = tonic::Request::new(stream);
        let md = req.metadata_mut();
        for (k, v) in [
            (HEADER_KEY_ID, self.key_id.as_str()),
            (HEADER_TIMESTAMP, &timestamp_ms.to_string()),
            (HEADER_NONCE, &nonce),
            (HEADER_SIGNATURE, &sig),
            (HEADER_CONTENT_SHA256, digest_hex),
        ] {
            if let Ok(v) = v.parse() {
                md.insert(k, v);
            }
        }
        req
    }

    pub fn sign_at<M: prost::Message>(
        &self,
        path: &str,
        message: M,
        timestamp_ms: i64,
        nonce: &str,
    ) -> tonic::Request<M> {
        let bytes = message.encode_to_vec();
        let sig = signature(
            &self.secret,
            path,
            &self.key_id,
            timestamp_ms,
            nonce,
            &bytes,
        );
        let mut req = tonic::Request::new(message);
        let md = req.metadata_mut();
        let put = |md: &mut tonic::metadata::MetadataMap, k: &'static str, v: &str| {
            if let Ok(v) = v.parse() {
                md.insert(k, v);
            }
        };
        put(md, HEADER_KEY_ID, &self.key_id);
        put(md, HEADER_TIMESTAMP, &timestamp_ms.to_string());
        put(md, HEADER_NONCE, nonce);
        put(md, HEADER_SIGNATURE, &sig);
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example in docs/PROTOCOL.md, whose values were computed
    /// independently (Python's hashlib and hmac).
    #[test]
    fn the_documented_example_signs_to_the_documented_value() {
        let secret: Vec<u8> = (0u8..32).collect();
        let message = [0x0a, 0x03, b'r', b'-', b'1'];
        let c = canonical(
            "/paymentswitch.v1.Teller/CashIn",
            "tho-tang-1",
            1_700_000_000_000,
            "0123456789abcdef",
            &message,
        );
        assert_eq!(
            c,
            "SWITCH-HMAC-SHA256\n/paymentswitch.v1.Teller/CashIn\ntho-tang-1\n1700000000000\n0123456789abcdef\n\
             a728631b98ca8dbf41b072c35b793297aef4db7e5a5ff5f8903f9c196c73bff4"
        );
        let sig = signature(
            &secret,
            "/paymentswitch.v1.Teller/CashIn",
            "tho-tang-1",
            1_700_000_000_000,
            "0123456789abcdef",
            &message,
        );
        assert_eq!(
            sig,
            "9aa4d019876dc51d64fbd7b947c57a625e2300fe0368ee818dbed89387e54a26"
        );
    }

    /// PROTOCOL.md's streaming example (computed there with Python's
    /// hashlib), fed whole and in pieces.
    #[test]
    fn a_statements_digest_names_its_window() {
        let csv = b"transaction_id,amount,direction,status,posted_at\n";
        let want = "6dd22ac7f4ed1550f731aa744c972fdeee6e2a090abe219790304fef4daae565";
        assert_eq!(StatementDigest::of(1, csv), want);
        let mut d = StatementDigest::new(1);
        for piece in csv.chunks(7) {
            d.update(piece);
        }
        assert_eq!(d.finish(), want);
        assert_ne!(StatementDigest::of(2, csv), want);
        assert_ne!(sha256_hex(csv), want);
    }
}
