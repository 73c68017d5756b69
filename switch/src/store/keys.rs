//! Keys' lifecycle: revocations and rotations, kept so that a revoked key
//! stays refused and a rotated one's previous secret ends on time, across
//! restarts and on every node.

use super::*;

impl Store {
    pub fn put_revocation(&self, r: &Revocation) -> Result<(), StoreError> {
        self.put_entity("revoked", &r.key_id, r)
    }

    pub fn put_rotation(&self, r: &Rotation) -> Result<(), StoreError> {
        self.put_entity("rotated", &r.key_id, r)
    }

    pub fn rotations(&self) -> Result<Vec<Rotation>, StoreError> {
        self.entities("rotated")
    }

    pub fn rotation(&self, key_id: &str) -> Result<Option<Rotation>, StoreError> {
        self.entity("rotated", key_id)
    }

    pub fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        self.entities("revoked")
    }

    pub fn revocation(&self, key_id: &str) -> Result<Option<Revocation>, StoreError> {
        self.entity("revoked", key_id)
    }
}
