//! Who is calling: what the edge's signature check proved, and what the
//! flows check a request against.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Teller {
        post_office_id: String,
    },
    Operator,
    /// A merchant's device; the principal's id is the merchant's id.
    Merchant,
    /// A bank calling for its customers; the principal's id is its BIN.
    Bank,
}

/// Who is calling, as the signature proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub role: Role,
}

/// A key as the store holds it.
pub enum KeyState {
    /// In use, with the secret a rotation replaced while it is still
    /// accepted (until the given time).
    Active(
        Principal,
        crate::ids::Secret,
        Option<(crate::ids::Secret, i64)>,
    ),
    /// An operator revoked it.
    Revoked,
    /// Never provisioned.
    Unknown,
}

/// What several nodes sharing one store know together about callers: a
/// key provisioned, rotated or revoked on another node since this one
/// loaded it, and the nonces every node has seen (a request replayed to
/// another node is refused). On one node the edge's own memory is enough.
pub trait SharedKeys: Send + Sync {
    /// The key `id` as the store holds it now.
    fn lookup(&self, id: &str) -> Result<KeyState, String>;
    /// Record `nonce` of `key_id` until `expires_ms`; false if any node has
    /// recorded it already.
    fn first_use(&self, key_id: &str, nonce: &str, expires_ms: i64) -> Result<bool, String>;
}

/// Where the flows register a caller they provision, so that its next
/// request verifies (the edge's key registry implements it).
pub trait Credentials: Send + Sync {
    /// A new key.
    fn insert(&self, principal: Principal, secret: &crate::ids::Secret);
    /// A new secret for a key; the previous one is accepted until
    /// `previous_until_ms`.
    fn rotate(
        &self,
        principal: Principal,
        secret: &crate::ids::Secret,
        previous: &crate::ids::Secret,
        previous_until_ms: i64,
    );
    /// A revoked key: refused from now on.
    fn revoke(&self, id: &str);
}
