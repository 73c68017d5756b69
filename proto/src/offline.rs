//! The offline policy a switch sends a counter, signed for that terminal:
//! HMAC-SHA256 over the message's protobuf encoding with `signature`
//! empty, under a key derived from the terminal's PIN key (itself derived
//! from the terminal's secret), so that the agent can trust the copy it
//! keeps for when the link is down, and a policy meant for one terminal
//! does not verify at another.

use prost::Message;

use crate::pin::PinKey;
use crate::v1::OfflinePolicy;

fn key(pin_key: &PinKey) -> ring::hmac::Key {
    let derived = PinKey::derive(pin_key.expose(), "offline policy");
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.expose())
}

fn unsigned_bytes(policy: &OfflinePolicy) -> Vec<u8> {
    let mut p = policy.clone();
    p.signature.clear();
    p.encode_to_vec()
}

/// Sign `policy` (its `signature` is replaced).
pub fn sign(policy: &mut OfflinePolicy, pin_key: &PinKey) {
    let tag = ring::hmac::sign(&key(pin_key), &unsigned_bytes(policy));
    policy.signature = hex::encode(tag.as_ref());
}

/// Whether `policy` carries its signature under `pin_key`.
pub fn verify(policy: &OfflinePolicy, pin_key: &PinKey) -> bool {
    let Ok(tag) = hex::decode(&policy.signature) else {
        return false;
    };
    ring::hmac::verify(&key(pin_key), &unsigned_bytes(policy), &tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_verifies_only_unchanged_and_for_its_terminal() {
        let mine = PinKey::derive(b"secret one", "terminal");
        let other = PinKey::derive(b"secret two", "terminal");
        let mut p = OfflinePolicy {
            top_up: true,
            one_max: 2_000_000,
            terminal_id: "tho-tang-1".into(),
            ..Default::default()
        };
        sign(&mut p, &mine);
        assert!(verify(&p, &mine));
        assert!(!verify(&p, &other));
        let mut raised = p.clone();
        raised.one_max = 200_000_000;
        assert!(!verify(&raised, &mine));
        let mut unsigned = p.clone();
        unsigned.signature.clear();
        assert!(!verify(&unsigned, &mine));
    }
}
