//! Callers' secrets at rest: sealed with the operator's master key
//! (AES-256-GCM), never stored in the clear (issue #15).
//!
//! A sealed secret is `sealed-v1:` and the hex of a fresh 96-bit nonce,
//! the ciphertext and its tag; the caller's key id is the associated data,
//! so a sealed secret copied onto another caller's record does not open.
//! The master key is 32 bytes, hex in a file the operator provides
//! (`--master-key-file`); a switch started without one writes one beside
//! its data (mode 0600) on first start. Every node sharing a store needs
//! the same key: the store keeps a sealed check value, and a node whose
//! key does not open it refuses to start.
//!
//! Records written before secrets were sealed hold the hex itself; they
//! read as before and are sealed at the next start
//! ([`crate::server::open`]).

use std::fmt;
use std::io::Write;
use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::ids::Secret;

const PREFIX: &str = "sealed-v1:";
const KEY_BYTES: usize = 32;

/// The key every caller's secret is sealed with, and the root of the keys
/// derived from it (banks' zone PIN keys, the card-token key): every node
/// holding the same master key derives the same.
pub struct MasterKey {
    aead: LessSafeKey,
    /// HKDF input for derived keys (never the sealing key itself).
    derive_from: proto::pin::PinKey,
    /// Card tokens are made under this (derived once: every card payment
    /// needs it).
    card_token: proto::pin::PinKey,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// A caller's secret as the store keeps it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedSecret(String);

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_sealed() {
            "SealedSecret(sealed)"
        } else {
            "SealedSecret(<plain, redacted>)"
        })
    }
}

impl SealedSecret {
    /// Sealed, or (written by an earlier version) the hex in the clear.
    pub fn is_sealed(&self) -> bool {
        self.0.starts_with(PREFIX)
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> MasterKey {
        let derive_from = proto::pin::PinKey::derive(bytes, "master key derivations");
        MasterKey {
            aead: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key"),
            ),
            card_token: proto::pin::PinKey::derive(derive_from.expose(), "card token"),
            derive_from,
        }
    }

    /// The zone PIN key the switch shares with an in-process simulated
    /// bank `bin` (a real bank's is configured: `[[banks]] pin_key_file`).
    pub fn zone_pin_key(&self, bin: &str) -> proto::pin::PinKey {
        proto::pin::PinKey::derive(self.derive_from.expose(), &format!("zone/{bin}"))
    }

    /// The key card tokens are made under.
    pub fn card_token_key(&self) -> &proto::pin::PinKey {
        &self.card_token
    }

    /// The key in `path` (64 hex digits); when there is no such file,
    /// a new key written there, readable by its owner only.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, String> {
        let shown = path.display();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| <[u8; KEY_BYTES]>::try_from(b).ok())
                    .ok_or_else(|| format!("{shown}: a master key is 64 hex digits"))?;
                Ok(MasterKey::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; KEY_BYTES];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| "the system random source failed".to_string())?;
                // Written whole under another name, then linked into place,
                // which fails if another process (a node starting beside
                // this one) got there first: then its key is the key.
                let tmp = path.with_extension(format!("tmp-{}", hex::encode(&bytes[..4])));
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let written = options.open(&tmp).and_then(|mut file| {
                    file.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())?;
                    file.sync_all()
                });
                let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        tracing::warn!(path = %shown, "no master key: wrote a new one (keep it apart from backups of the data)");
                        Ok(MasterKey::from_bytes(&bytes))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        MasterKey::load_or_create(path)
                    }
                    Err(e) => Err(format!("{shown}: {e}")),
                }
            }
            Err(e) => Err(format!("{shown}: {e}")),
        }
    }

    /// Seal `secret`, the secret of key id `key_id`.
    pub fn seal(&self, key_id: &str, secret: &Secret) -> SealedSecret {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut data = secret.expose_bytes().to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key_id.as_bytes()),
                &mut data,
            )
            .expect("sealing a short secret");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        SealedSecret(format!("{PREFIX}{}", hex::encode(out)))
    }

    /// The secret of key id `key_id`, from what the store keeps.
    pub fn open(&self, key_id: &str, sealed: &SealedSecret) -> Result<Secret, String> {
        let Some(body) = sealed.0.strip_prefix(PREFIX) else {
            return Secret::from_hex(&sealed.0)
                .ok_or_else(|| format!("the stored secret of {key_id} is not hex"));
        };
        let bytes = hex::decode(body)
            .ok()
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(|| format!("the sealed secret of {key_id} is malformed"))?;
        let (nonce, sealed_bytes) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("NONCE_LEN bytes");
        let mut data = sealed_bytes.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(key_id.as_bytes()), &mut data)
            .map_err(|_| {
                format!(
                    "the sealed secret of {key_id} does not open with this master key \
                     (every node needs the key the store was sealed with)"
                )
            })?;
        Secret::from_hex(&hex::encode(plain))
            .ok_or_else(|| format!("the sealed secret of {key_id} is too short"))
    }
}

/// What the store keeps to tell whether a node's master key is the one its
/// secrets are sealed with.
pub const CHECK_KEY_ID: &str = "master-key-check";

/// The plain text of that check value.
pub fn check_secret() -> Secret {
    Secret::from_hex(&"5357".repeat(16)).expect("32 bytes of hex")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_its_key_and_id_only_and_plain_hex_still_reads() {
        let key = MasterKey::from_bytes(&[7; 32]);
        let secret = Secret::generate(&SystemRandom::new());
        let sealed = key.seal("tho-tang-1", &secret);
        assert!(sealed.is_sealed());
        assert!(!sealed.0.contains(&secret.expose_hex()));
        assert_eq!(key.open("tho-tang-1", &sealed).unwrap(), secret);
        // Another caller's record, another key, a damaged value: refused.
        assert!(key.open("tho-tang-2", &sealed).is_err());
        let other = MasterKey::from_bytes(&[8; 32]);
        assert!(other.open("tho-tang-1", &sealed).is_err());
        let mut damaged = sealed.clone();
        let last = damaged.0.pop().unwrap();
        damaged.0.push(if last == '0' { '1' } else { '0' });
        assert!(key.open("tho-tang-1", &damaged).is_err());
        assert!(key.open("x", &SealedSecret(format!("{PREFIX}zz"))).is_err());
        // Two seals of one secret differ (fresh nonces).
        assert_ne!(key.seal("tho-tang-1", &secret), sealed);
        // Written by an earlier version: the hex itself.
        let plain = SealedSecret(secret.expose_hex());
        assert!(!plain.is_sealed());
        assert_eq!(key.open("anyone", &plain).unwrap(), secret);
        assert!(!format!("{plain:?}").contains(&secret.expose_hex()));
    }

    #[test]
    fn a_key_file_is_written_once_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let first = MasterKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = MasterKey::load_or_create(&path).unwrap();
        let s = first.seal("a", &check_secret());
        assert_eq!(again.open("a", &s).unwrap(), check_secret());
        std::fs::write(&path, "not hex").unwrap();
        assert!(MasterKey::load_or_create(&path).is_err());
    }
}
