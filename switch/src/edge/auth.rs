//! Request signing (docs/PROTOCOL.md). Every call but health and
//! reflection carries four metadata entries:
//!
//! - `x-switch-key-id`: the caller's id (a terminal, an operator);
//! - `x-switch-timestamp`: milliseconds since the UNIX epoch;
//! - `x-switch-nonce`: 16 to 64 characters from `[A-Za-z0-9_-]`, never reused;
//! - `x-switch-signature`: lower-case hex HMAC-SHA256 with the caller's
//!   secret over the canonical string
//!   `SWITCH-HMAC-SHA256\n{path}\n{key id}\n{timestamp}\n{nonce}\n{hex SHA-256 of the request message}`,
//!   where the message is the protobuf bytes of the request (the gRPC frame's
//!   payload, uncompressed).
//!
//! The layer reads the whole (unary) request body, verifies it, refuses a
//! timestamp further than the allowed skew from the switch's clock or older
//! than the switch's start (nonces are remembered in memory only), refuses a
//! nonce seen before, and hands the handlers the caller as a [`Principal`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use ring::hmac;
use tonic::Status;
use tonic::body::Body;

use crate::ids::Secret;

pub use crate::caller::{Principal, Role};
use crate::clock::now_ms;
pub use proto::auth::{
    HEADER_CONTENT_SHA256, HEADER_KEY_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};

/// Client-streaming calls: signed over the declared content digest, which
/// the handler checks against what it receives before acting on it.
pub const STREAMING_PATHS: [&str; 1] = ["/paymentswitch.v1.Settlement/Reconcile"];

/// The content digest a streaming call declared (and its signature
/// covered), for the handler to check.
#[derive(Clone, Debug)]
pub struct DeclaredDigest(pub String);

/// The calling terminal's PIN key (derived from the secret its request was
/// signed with), for opening the PIN blocks it sends.
#[derive(Clone)]
pub struct TerminalPinKey(pub proto::pin::PinKey);
/// The largest request body the switch reads.
pub const BODY_BYTES_MAX: usize = 1 << 20;
/// Nonces remembered at most (expired ones are dropped first); past it,
/// new requests are refused until some expire.
pub const NONCES_MAX: usize = 1 << 20;

pub use proto::auth::canonical;

struct Credential {
    principal: Principal,
    key: hmac::Key,
    /// The PIN key derived from the same secret (card PIN blocks).
    pin_key: proto::pin::PinKey,
    /// The key a rotation replaced (and its PIN key), accepted until the
    /// given time (`clock::now_ms`).
    previous: Option<(hmac::Key, proto::pin::PinKey, i64)>,
    /// When it was read from the store (or made here), on the switch's
    /// monotonic clock: with several nodes, older than
    /// [`KEY_RECHECK_MS`] it is read again (another node may have rotated
    /// or revoked it).
    loaded_ms: i64,
}

/// How long a node trusts what it read of a key while other nodes share
/// its store: a key revoked or rotated on one node is refused by the
/// others at most this long after.
pub const KEY_RECHECK_MS: i64 = 1_000;

/// What a caller is told when this node cannot reach the shared store.
const UNREACHABLE: &str = "unavailable: the switch cannot reach its database just now; nothing was done, try again (another node, or later)";

/// Nonces seen within the replay window, and when each may be forgotten.
#[derive(Default)]
struct Nonces {
    seen: std::collections::HashSet<String>,
    order: std::collections::VecDeque<(i64, String)>,
}

/// Credentials and the replay window.
pub struct Keys {
    credentials: RwLock<HashMap<String, Arc<Credential>>>,
    /// Keys revoked while this node runs (refused with that reason rather
    /// than as unknown).
    revoked: RwLock<std::collections::HashSet<String>>,
    /// With several nodes: keys provisioned elsewhere, nonces seen
    /// anywhere.
    shared: RwLock<Option<Arc<dyn crate::caller::SharedKeys>>>,
    nonces: Mutex<Nonces>,
    /// Each key's share of the switch.
    limits: super::rate_limit::RateLimits,
    skew_ms: i64,
    started_ms: i64,
}

impl Keys {
    /// `started_ms`: when this run of the switch began; a request signed
    /// earlier is refused (its nonce may have been seen by the run before,
    /// whose memory of nonces is gone).
    pub fn new(skew_ms: u64, started_ms: i64, limits: crate::config::RateLimitConfig) -> Keys {
        Keys {
            credentials: RwLock::new(HashMap::new()),
            revoked: RwLock::new(Default::default()),
            shared: RwLock::new(None),
            nonces: Mutex::new(Nonces::default()),
            limits: super::rate_limit::RateLimits::new(limits),
            skew_ms: skew_ms as i64,
            started_ms,
        }
    }

    /// Consult `shared` for keys this node does not know and for nonces.
    pub fn share(&self, shared: Arc<dyn crate::caller::SharedKeys>) {
        *self.shared.write().unwrap_or_else(|e| e.into_inner()) = Some(shared);
    }

    fn shared(&self) -> Option<Arc<dyn crate::caller::SharedKeys>> {
        self.shared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The credential for `key_id`: known here (and, with several nodes,
    /// read from the store within [`KEY_RECHECK_MS`]), or read from the
    /// store now.
    fn credential(&self, key_id: &str) -> Result<Arc<Credential>, Status> {
        let revoked = || Status::unauthenticated("unauthenticated: this key was revoked");
        if self
            .revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key_id)
        {
            return Err(revoked());
        }
        let shared = self.shared();
        let cached = self
            .credentials
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key_id)
            .cloned();
        let now = crate::clock::monotonic_ms();
        match (cached, &shared) {
            (Some(c), None) => return Ok(c),
            (Some(c), Some(_)) if now - c.loaded_ms < KEY_RECHECK_MS => {
                return Ok(c);
            }
            _ => {}
        }
        let unknown = || Status::unauthenticated("unauthenticated: unknown key id");
        let shared = shared.ok_or_else(unknown)?;
        let state = shared.lookup(key_id).map_err(|e| {
            // Logged at ERROR where it is found (the store says when
            // PostgreSQL is unreachable and when it answers again).
            tracing::warn!(error = %e, "the shared key registry could not be read");
            Status::unavailable(UNREACHABLE)
        })?;
        match state {
            crate::caller::KeyState::Active(principal, secret, previous) => {
                let previous = previous.as_ref().map(|(s, until_ms)| (s, *until_ms));
                self.put(principal, &secret, previous);
            }
            crate::caller::KeyState::Revoked => {
                self.forget(key_id);
                return Err(revoked());
            }
            crate::caller::KeyState::Unknown => {
                self.forget(key_id);
                return Err(unknown());
            }
        }
        self.credentials
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key_id)
            .cloned()
            .ok_or_else(unknown)
    }

    fn forget(&self, key_id: &str) {
        self.credentials
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key_id);
    }

    pub fn insert(&self, principal: Principal, secret: &Secret) {
        self.put(principal, secret, None);
    }

    fn put(&self, principal: Principal, secret: &Secret, previous: Option<(&Secret, i64)>) {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose_bytes());
        let pin_key = proto::pin::PinKey::derive(secret.expose_bytes(), "terminal");
        let previous = previous.map(|(s, until_ms)| {
            (
                hmac::Key::new(hmac::HMAC_SHA256, s.expose_bytes()),
                proto::pin::PinKey::derive(s.expose_bytes(), "terminal"),
                until_ms,
            )
        });
        let id = principal.id.clone();
        self.credentials
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Arc::new(Credential {
                    principal,
                    key,
                    pin_key,
                    previous,
                    loaded_ms: crate::clock::monotonic_ms(),
                }),
            );
    }

    /// Verify a unary call over its one message.
    fn verify(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<(Principal, TerminalPinKey), Status> {
        // The message: one uncompressed gRPC frame.
        let message = match body {
            [0, l0, l1, l2, l3, rest @ ..]
                if u32::from_be_bytes([*l0, *l1, *l2, *l3]) as usize == rest.len() =>
            {
                rest
            }
            [1, ..] => {
                return Err(Status::unauthenticated(
                    "unauthenticated: compressed requests are not accepted",
                ));
            }
            _ => {
                return Err(Status::unauthenticated(
                    "unauthenticated: the body is not one gRPC message",
                ));
            }
        };
        self.verify_digest(parts, &proto::auth::sha256_hex(message))
    }

    /// Verify the headers and the signature over `digest_hex`, the
    /// SHA-256 of the message (or of the declared streamed content).
    fn verify_digest(
        &self,
        parts: &http::request::Parts,
        digest_hex: &str,
    ) -> Result<(Principal, TerminalPinKey), Status> {
        let header = |name: &str| -> Result<&str, Status> {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Status::unauthenticated(format!("unauthenticated: missing {name}")))
        };
        let key_id = header(HEADER_KEY_ID)?;
        let timestamp = header(HEADER_TIMESTAMP)?;
        let nonce = header(HEADER_NONCE)?;
        let signature = header(HEADER_SIGNATURE)?;
        let timestamp_ms: i64 = timestamp.parse().map_err(|_| {
            Status::unauthenticated("unauthenticated: timestamp is not milliseconds")
        })?;
        if !(16..=64).contains(&nonce.len())
            || !nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Status::unauthenticated(
                "unauthenticated: nonce must be 16 to 64 of [A-Za-z0-9_-]",
            ));
        }
        let credential = self.credential(key_id)?;
        let signature = hex::decode(signature)
            .map_err(|_| Status::unauthenticated("unauthenticated: signature is not hex"))?;
        let text = proto::auth::canonical_digest(
            parts.uri.path(),
            key_id,
            timestamp_ms,
            nonce,
            digest_hex,
        );
        let now = now_ms();
        let signed_by = |key: &hmac::Key| hmac::verify(key, text.as_bytes(), &signature).is_ok();
        let pin_key = if signed_by(&credential.key) {
            credential.pin_key.clone()
        } else {
            match &credential.previous {
                Some((key, pin_key, until_ms)) if now < *until_ms && signed_by(key) => {
                    pin_key.clone()
                }
                _ => return Err(Status::unauthenticated("unauthenticated: bad signature")),
            }
        };
        if (timestamp_ms - now).abs() > self.skew_ms {
            return Err(Status::unauthenticated(
                "unauthenticated: stale timestamp (check the terminal's clock)",
            ));
        }
        if timestamp_ms < self.started_ms {
            return Err(Status::unauthenticated(
                "unauthenticated: signed before the switch started; sign again",
            ));
        }
        if let Err(retry_after_ms) = self.limits.take(key_id, crate::clock::monotonic_ms()) {
            metrics::counter!("switch_requests_rate_limited_total").increment(1);
            let mut status: Status = crate::error::SwitchError::new(
                crate::error::ErrorCode::RateLimited,
                format!("too many requests from {key_id}; try again in {retry_after_ms} ms"),
            )
            .into();
            if let Ok(v) = retry_after_ms.to_string().parse() {
                status.metadata_mut().insert("retry-after-ms", v);
            }
            return Err(status);
        }
        let mut nonces = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
        // A request is accepted only within the skew of the switch's clock,
        // so a nonce need not be remembered past twice the skew.
        while nonces
            .order
            .front()
            .is_some_and(|(expires, _)| *expires <= now)
        {
            let (_, old) = nonces.order.pop_front().expect("front exists");
            nonces.seen.remove(&old);
        }
        let seen = format!("{key_id}\n{nonce}");
        if nonces.seen.contains(&seen) {
            return Err(Status::unauthenticated("unauthenticated: replayed nonce"));
        }
        if nonces.seen.len() >= NONCES_MAX {
            return Err(Status::resource_exhausted(
                "too many requests in the replay window",
            ));
        }
        nonces.seen.insert(seen.clone());
        nonces.order.push_back((now + 2 * self.skew_ms, seen));
        drop(nonces);
        // Every node's nonces: a request replayed to another node.
        if let Some(shared) = self.shared() {
            match shared.first_use(key_id, nonce, now + 2 * self.skew_ms) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(Status::unauthenticated("unauthenticated: replayed nonce"));
                }
                Err(e) => {
                    // Logged once where it is found (the store says when
                    // PostgreSQL is unreachable and when it is back).
                    tracing::warn!(error = %e, "the shared nonce record could not be written");
                    return Err(Status::unavailable(UNREACHABLE));
                }
            }
        }
        Ok((credential.principal.clone(), TerminalPinKey(pin_key)))
    }
}

impl crate::caller::Credentials for Keys {
    fn insert(&self, principal: Principal, secret: &Secret) {
        Keys::insert(self, principal, secret)
    }

    fn rotate(&self, principal: Principal, secret: &Secret, previous: &Secret, until_ms: i64) {
        self.put(principal, secret, Some((previous, until_ms)));
    }

    fn revoke(&self, id: &str) {
        self.forget(id);
        self.revoked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string());
    }
}

/// Paths that need no signature.
fn public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

#[derive(Clone)]
pub struct AuthLayer {
    keys: Arc<Keys>,
}

impl AuthLayer {
    pub fn new(keys: Arc<Keys>) -> AuthLayer {
        AuthLayer { keys }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            keys: self.keys.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    keys: Arc<Keys>,
}

impl<S> tower::Service<http::Request<Body>> for Auth<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The ready service goes with this call; a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let keys = self.keys.clone();
        Box::pin(async move {
            if public(req.uri().path()) {
                return inner.call(req).await;
            }
            let (mut parts, body) = req.into_parts();
            if STREAMING_PATHS.contains(&parts.uri.path()) {
                let declared = parts
                    .headers
                    .get(HEADER_CONTENT_SHA256)
                    .and_then(|v| v.to_str().ok())
                    .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
                    .map(str::to_ascii_lowercase);
                let Some(declared) = declared else {
                    return Ok(Status::unauthenticated(format!(
                        "unauthenticated: missing {HEADER_CONTENT_SHA256} (64 hex digits)"
                    ))
                    .into_http());
                };
                return match keys.verify_digest(&parts, &declared) {
                    Ok((principal, pin_key)) => {
                        parts.extensions.insert(principal);
                        parts.extensions.insert(pin_key);
                        parts.extensions.insert(DeclaredDigest(declared));
                        inner.call(http::Request::from_parts(parts, body)).await
                    }
                    Err(status) => {
                        tracing::warn!(
                            path = parts.uri.path(),
                            reason = status.message(),
                            "request refused by authentication"
                        );
                        Ok(status.into_http())
                    }
                };
            }
            let bytes = match http_body_util::Limited::new(body, BODY_BYTES_MAX)
                .collect()
                .await
            {
                Ok(c) => c.to_bytes(),
                Err(_) => {
                    return Ok(
                        Status::invalid_argument("request body unreadable or over 1 MiB")
                            .into_http(),
                    );
                }
            };
            match keys.verify(&parts, &bytes) {
                Ok((principal, pin_key)) => {
                    parts.extensions.insert(principal);
                    parts.extensions.insert(pin_key);
                    inner
                        .call(http::Request::from_parts(
                            parts,
                            Body::new(http_body_util::Full::new(bytes)),
                        ))
                        .await
                }
                Err(status) => {
                    tracing::warn!(
                        path = parts.uri.path(),
                        reason = status.message(),
                        "request refused by authentication"
                    );
                    Ok(status.into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> Keys {
        let keys = Keys::new(300_000, 0, crate::config::RateLimitConfig::default());
        let secret = Secret::from_hex(&"ab".repeat(32)).unwrap();
        let principal = Principal {
            id: "tho-tang-1".into(),
            role: Role::Operator,
        };
        keys.insert(principal, &secret);
        keys
    }

    /// Header values as a client could send them: any bytes HTTP allows.
    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..80),
            "[0-9]{0,20}".prop_map(String::into_bytes),
            "[A-Za-z0-9_-]{0,70}".prop_map(String::into_bytes),
            Just(b"tho-tang-1".to_vec()),
        ]
    }

    proptest! {
        /// No metadata and no body, whatever their bytes and lengths, makes
        /// the signature check panic: it answers, and never lets an
        /// unsigned call through.
        #[test]
        fn any_metadata_and_body_get_an_answer_never_a_panic(
            headers in proptest::collection::vec((0usize..6, value()), 0..8),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            path in "/[A-Za-z0-9./]{0,40}",
        ) {
            let names = [
                HEADER_KEY_ID,
                HEADER_TIMESTAMP,
                HEADER_NONCE,
                HEADER_SIGNATURE,
                HEADER_CONTENT_SHA256,
                "x-other",
            ];
            let mut request = http::Request::builder().uri(path.as_str());
            for (name, v) in &headers {
                if let Ok(v) = http::HeaderValue::from_bytes(v) {
                    request = request.header(names[*name], v);
                }
            }
            let Ok(request) = request.body(()) else {
                return Ok(());
            };
            let (parts, ()) = request.into_parts();
            let keys = keys();
            // A random signature over random content never verifies.
            prop_assert!(keys.verify(&parts, &body).is_err());
            prop_assert!(keys.verify_digest(&parts, &"0".repeat(64)).is_err());
        }
    }
}
