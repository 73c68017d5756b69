//! The console's users and their sessions, in the store's `Entities` tree,
//! so that every node sharing a store knows them: a session begun on one
//! node is good on another, and outlives a node's restart.
//!
//! Keys: `console_user/{name}` → [`ConsoleUser`];
//! `console_session/{id}` → [`ConsoleSession`], where `{id}` is the
//! SHA-256 of the session's token (hex). The token itself, the secret the
//! browser's cookie holds, is never stored: reading the store does not let
//! anyone act as a signed-in user.

use serde::{Deserialize, Serialize};

use super::kv::Tree;
use super::records::ConsoleUser;
use super::{Store, StoreError, decode, encode};

const SESSION_PREFIX: &str = "console_session/";

/// A console sign-in, as every node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSession {
    pub user: String,
    /// `Some(bin)`: a bank's staff, who see only that bank.
    pub bank: Option<String>,
    pub started_ms: i64,
    /// When it was last used, to the minute or so (a node writes it back
    /// only when it moved on by `touch_ms`).
    pub used_ms: i64,
    /// The user's password as of sign-in: a reset ends the session.
    pub password_set_at_ms: i64,
}

/// A session's key: from the SHA-256 of its token, never the token.
fn session_key(id: &str) -> Vec<u8> {
    format!("{SESSION_PREFIX}{id}").into_bytes()
}

impl Store {
    pub fn put_console_user(&self, u: &ConsoleUser) -> Result<(), StoreError> {
        self.put_entity("console_user", &u.name, u)
    }
    pub fn console_user(&self, name: &str) -> Result<Option<ConsoleUser>, StoreError> {
        self.entity("console_user", name)
    }
    pub fn console_users(&self) -> Result<Vec<ConsoleUser>, StoreError> {
        self.entities("console_user")
    }

    /// Record a session begun now, first dropping the ones that ended
    /// before `now_ms` (`alive` says which are alive) and, past
    /// `sessions_max`, the least recently used. (The bound holds per
    /// sign-in; two nodes signing in at once may pass it by one each.)
    /// Not yet durable: await [`Store::durable`] before answering.
    pub fn begin_console_session(
        &self,
        id: &str,
        session: &ConsoleSession,
        sessions_max: usize,
        alive: impl Fn(&ConsoleSession) -> bool,
    ) -> Result<(), StoreError> {
        let mut live: Vec<(Vec<u8>, i64)> = Vec::new();
        for entry in self
            .kv
            .scan_prefix(Tree::Entities, SESSION_PREFIX.as_bytes())
        {
            let (key, value) = entry?;
            let s: ConsoleSession = decode("console session", &key, &value)?;
            if alive(&s) {
                live.push((key, s.used_ms));
            } else {
                self.kv.remove(Tree::Entities, &key)?;
            }
        }
        live.sort_by_key(|(_, used)| *used);
        let over = (live.len() + 1).saturating_sub(sessions_max);
        for (key, _) in live.iter().take(over) {
            self.kv.remove(Tree::Entities, key)?;
        }
        Ok(self
            .kv
            .put(Tree::Entities, &session_key(id), encode(session))?)
    }

    pub fn console_session(&self, id: &str) -> Result<Option<ConsoleSession>, StoreError> {
        let key = session_key(id);
        self.kv
            .get(Tree::Entities, &key)?
            .map(|v| decode("console session", &key, &v))
            .transpose()
    }

    /// Note that the session was used at `now_ms`, if it was last noted
    /// more than `touch_ms` before (a write per request would make every
    /// page a journal write).
    pub fn touch_console_session(
        &self,
        id: &str,
        session: &ConsoleSession,
        now_ms: i64,
        touch_ms: i64,
    ) -> Result<(), StoreError> {
        if now_ms - session.used_ms < touch_ms {
            return Ok(());
        }
        let touched = ConsoleSession {
            used_ms: now_ms,
            ..session.clone()
        };
        Ok(self
            .kv
            .put(Tree::Entities, &session_key(id), encode(&touched))?)
    }

    pub fn end_console_session(&self, id: &str) -> Result<(), StoreError> {
        Ok(self.kv.remove(Tree::Entities, &session_key(id))?)
    }
}
