//! What nodes sharing a store coordinate through it: turns (advisory
//! locks), the worker lease, replayed nonces, and the notice that a
//! payment was stored elsewhere. On the embedded engine there is one node,
//! and each of these is the trivial answer.

use super::*;

impl Store {
    /// Wait for the turn named `key` among every node sharing this store
    /// (on the embedded engine there is one node: nothing to wait for).
    pub async fn node_lock(&self, key: i64) -> Result<pg_kv::NodeLock, StoreError> {
        match self.kv.as_ref() {
            Kv::Journal(_) => Ok(pg_kv::NodeLock::none()),
            Kv::Postgres(k) => Ok(k.lock(key).await?),
        }
    }

    /// Whether other nodes share this store (PostgreSQL): what is
    /// unfinished here may be in flight on one of them.
    pub fn is_shared(&self) -> bool {
        matches!(*self.kv, Kv::Postgres(_))
    }

    /// On a shared store, call `on_notice` whenever any node stores a
    /// merchant's notice, until it answers false; on the embedded engine
    /// this node writes every notice itself, and nothing is called.
    pub fn listen_payments(&self, on_notice: impl Fn() -> bool + Send + Sync + 'static) {
        if let Kv::Postgres(pg) = self.kv.as_ref() {
            pg.listen_payments(on_notice);
        }
    }

    /// Record a request's nonce among every node sharing this store; false
    /// if one of them saw it already (on the embedded engine, the edge's
    /// memory is the whole record: always true).
    pub fn first_use_nonce(&self, key: &str, expires_ms: i64) -> Result<bool, StoreError> {
        match self.kv.as_ref() {
            Kv::Journal(_) => Ok(true),
            Kv::Postgres(k) => Ok(k.first_use(key, expires_ms)?),
        }
    }

    /// Forget the shared nonces past their window.
    pub async fn forget_nonces(&self, now_ms: i64) -> Result<u64, StoreError> {
        match self.kv.as_ref() {
            Kv::Journal(_) => Ok(0),
            Kv::Postgres(k) => Ok(k.forget_nonces(now_ms).await?),
        }
    }

    /// Is this node the one that runs the background jobs? Always on the
    /// embedded engine; on PostgreSQL, the holder of the worker lease
    /// (taken by the first node to ask, handed on when it dies).
    pub async fn worker_lease(&self) -> Result<bool, StoreError> {
        match self.kv.as_ref() {
            Kv::Journal(_) => Ok(true),
            Kv::Postgres(k) => Ok(k.worker_lease().await?),
        }
    }
}
