//! What the operations console reads and does beyond the gRPC services'
//! own calls, as methods of the switch with the caller's principal: the
//! console never reads the store or the ledger itself (issue #26, item 4).
//! Its sessions live in the shared store, so that another node, or this
//! one restarted, keeps a user signed in.

use crate::caller::{Principal, Role};
use crate::error::{ErrorCode, SwitchError};
use crate::flows::{Switch, storage};
use crate::ids::TxId;
use crate::store::console::ConsoleSession;
use crate::store::{ConsoleUser, Merchant, PostOffice, Terminal, TxRecord};

/// A transaction's ledger legs, each with what the ledger says of it
/// (`None`: not reserved).
pub type Legs = Vec<(ledger::NewTransfer, Option<ledger::TransferStatus>)>;

/// The provisioned network, as the console lists it.
pub struct Network {
    pub post_offices: Vec<PostOffice>,
    pub terminals: Vec<Terminal>,
    pub merchants: Vec<Merchant>,
}

fn operator(p: &Principal, what: &str) -> Result<(), SwitchError> {
    if p.role == Role::Operator {
        Ok(())
    } else {
        Err(SwitchError::new(
            ErrorCode::PermissionDenied,
            format!("only operators see {what}"),
        ))
    }
}

impl Switch {
    /// A console session by its id (a hash of its token); an unreadable one
    /// is an error, never an absence.
    pub fn console_session(&self, id: &str) -> Result<Option<ConsoleSession>, SwitchError> {
        self.store.console_session(id).map_err(storage)
    }

    /// A console user as the store has it now (disabled or given a new
    /// password on any node: their sessions end).
    pub fn console_user(&self, name: &str) -> Result<Option<ConsoleUser>, SwitchError> {
        self.store.console_user(name).map_err(storage)
    }

    /// Move a session's idle clock on, at most every `every_ms`.
    pub fn touch_console_session(
        &self,
        id: &str,
        session: &ConsoleSession,
        now_ms: i64,
        every_ms: i64,
    ) -> Result<(), SwitchError> {
        self.store
            .touch_console_session(id, session, now_ms, every_ms)
            .map_err(storage)
    }

    /// Forget a session found expired or no longer its user's.
    pub fn end_console_session(&self, id: &str) -> Result<(), SwitchError> {
        self.store.end_console_session(id).map_err(storage)
    }

    /// Begin a console session (at most `sessions_max` alive by `alive`,
    /// the oldest ended first): answered once durable, so that every node,
    /// and a restart, knows it.
    pub async fn begin_console_session(
        &self,
        id: &str,
        session: &ConsoleSession,
        sessions_max: usize,
        alive: impl Fn(&ConsoleSession) -> bool,
    ) -> Result<(), SwitchError> {
        self.store
            .begin_console_session(id, session, sessions_max, alive)
            .map_err(storage)?;
        self.store.durable().await.map_err(storage)
    }

    /// A sign-out: answered once the store has it.
    pub async fn sign_out_console_session(&self, id: &str) -> Result<(), SwitchError> {
        self.store.end_console_session(id).map_err(storage)?;
        self.store.durable().await.map_err(storage)
    }

    /// Reversals waiting in the durable queue.
    pub fn reversals_waiting(&self, p: &Principal) -> Result<usize, SwitchError> {
        operator(p, "the reversal queue")?;
        Ok(self.store.reversals().map_err(storage)?.len())
    }

    /// The newest transactions `keep` accepts: at most `limit`, looking at
    /// most at `scan_max` records.
    pub fn recent_transactions(
        &self,
        p: &Principal,
        limit: usize,
        scan_max: usize,
        keep: impl Fn(&TxRecord) -> bool,
    ) -> Result<Vec<TxRecord>, SwitchError> {
        operator(p, "every transaction")?;
        self.store
            .recent_txs(limit, scan_max, keep)
            .map_err(storage)
    }

    /// One transaction's record, with its ledger legs and what the ledger
    /// says of each (`None`: not reserved).
    pub async fn transaction_with_legs(
        &self,
        p: &Principal,
        id: TxId,
    ) -> Result<Option<(TxRecord, Legs)>, SwitchError> {
        operator(p, "every transaction")?;
        let Some(t) = self.store.get_tx(id).map_err(storage)? else {
            return Ok(None);
        };
        let mut legs = Vec::new();
        if !t.steps.is_empty() {
            for l in self.legs(&t)? {
                let status = self
                    .ledger
                    .transfer(l.id)
                    .await
                    .map_err(storage)?
                    .map(|x| x.status());
                legs.push((l, status));
            }
        }
        Ok(Some((t, legs)))
    }

    /// The provisioned network: post offices, terminals, merchants.
    pub fn network(&self, p: &Principal) -> Result<Network, SwitchError> {
        operator(p, "the network")?;
        Ok(Network {
            post_offices: self.store.post_offices().map_err(storage)?,
            terminals: self.store.terminals().map_err(storage)?,
            merchants: self.store.merchants().map_err(storage)?,
        })
    }

    /// One merchant's record.
    pub fn merchant_record(&self, p: &Principal, id: &str) -> Result<Merchant, SwitchError> {
        operator(p, "merchants")?;
        self.store
            .merchant(id)
            .map_err(storage)?
            .ok_or_else(|| SwitchError::new(ErrorCode::UnknownMerchant, "no such merchant"))
    }
}
