//! The in-process bank simulator: accounts with names and balances, kept in
//! the switch's data directory so that a restart keeps them; configurable
//! latency, unavailability and lost responses (the work is done, the answer
//! never arrives).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::adapters::bank::{BankAdapter, BankError, BankFuture, BankTxStatus, RejectReason};
use crate::config::SimConfig;
use crate::demo::DEMO_MERCHANTS;
use crate::ids::Reference;

use super::fault::{Fate, Fault, FaultSwitch, fate};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimAccount {
    pub account: String,
    pub name: String,
    pub balance: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SimTx {
    account: String,
    /// What it added to the account (0 for a tombstone).
    credited: u64,
    /// What it took from the account.
    #[serde(default)]
    debited: u64,
    bank_reference: String,
    reversed: bool,
}

/// A one-time cash withdrawal code.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct WithdrawalCode {
    account: String,
    amount: u64,
    expires_at_ms: i64,
    /// Wrong uses left before the code is burned.
    tries_left: u8,
    used: bool,
}

/// How long a withdrawal code lives.
pub const CODE_TTL_MS: i64 = 15 * 60 * 1000;

struct State {
    accounts: HashMap<String, SimAccount>,
    txs: HashMap<u128, SimTx>,
    codes: HashMap<String, WithdrawalCode>,
    rng: u64,
    next_reference: u64,
    /// Wrong PINs entered per card (in memory: a restart forgives them).
    wrong_pins: HashMap<String, u32>,
}

/// Wrong PINs after which a card is blocked.
const PIN_TRIES_MAX: u32 = 3;

pub struct SimBank {
    bin: String,
    config: SimConfig,
    /// The zone PIN key it shares with the switch (`with_pin_key`): PIN
    /// blocks of card debits open under it. None: it takes no cards.
    pin_key: Option<proto::pin::PinKey>,
    fault: FaultSwitch,
    state: Mutex<State>,
    /// Write-through copy of the state.
    tree: fjall::Keyspace,
}

/// A simulator's stored entry that does not decode stops it from opening:
/// it is never skipped as if it were not there.
pub(crate) fn undecodable(key: &[u8], why: impl std::fmt::Display) -> fjall::Error {
    fjall::Error::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "a simulator's stored entry {} does not decode: {why}",
            String::from_utf8_lossy(key).escape_debug()
        ),
    ))
}

pub(crate) fn stored<V: for<'de> Deserialize<'de>>(
    key: &[u8],
    v: &[u8],
) -> Result<V, fjall::Error> {
    serde_json::from_slice(v).map_err(|e| undecodable(key, e))
}

impl SimBank {
    /// Open the simulated bank `bin`, with its accounts from `tree` (or
    /// `seed_accounts` the first time).
    pub fn open(
        bin: &str,
        config: SimConfig,
        tree: fjall::Keyspace,
        seed_accounts: &[SimAccount],
    ) -> Result<SimBank, fjall::Error> {
        let mut accounts = HashMap::new();
        let mut txs = HashMap::new();
        let mut codes = HashMap::new();
        for kv in tree.iter() {
            let (k, v) = kv.into_inner()?;
            if let Some(account) = k.strip_prefix(b"a/") {
                accounts.insert(
                    String::from_utf8_lossy(account).into_owned(),
                    stored::<SimAccount>(&k, &v)?,
                );
            } else if let Some(code) = k.strip_prefix(b"c/") {
                codes.insert(
                    String::from_utf8_lossy(code).into_owned(),
                    stored::<WithdrawalCode>(&k, &v)?,
                );
            } else if let Some(r) = k.strip_prefix(b"t/") {
                let r = <[u8; 16]>::try_from(r).map_err(|_| undecodable(&k, "not a reference"))?;
                txs.insert(u128::from_be_bytes(r), stored::<SimTx>(&k, &v)?);
            }
        }
        if accounts.is_empty() {
            for a in seed_accounts {
                tree.insert(
                    format!("a/{}", a.account),
                    serde_json::to_vec(a).expect("serialisable"),
                )?;
                accounts.insert(a.account.clone(), a.clone());
            }
        }
        let seed = config.seed ^ bin.parse::<u64>().unwrap_or(1) | 1;
        let next_reference = txs.len() as u64 + 1;
        Ok(SimBank {
            bin: bin.to_string(),
            config,
            fault: FaultSwitch::default(),
            state: Mutex::new(State {
                accounts,
                txs,
                codes,
                rng: seed,
                next_reference,
                wrong_pins: HashMap::new(),
            }),
            tree,
            pin_key: None,
        })
    }

    /// Take cards, their PIN blocks enciphered under `key`.
    pub fn with_pin_key(mut self, key: proto::pin::PinKey) -> SimBank {
        self.pin_key = Some(key);
        self
    }

    /// Verify the PIN in `pin_block` for `card_number`, then debit the
    /// card's account.
    fn card_take(
        &self,
        reference: Reference,
        card_number: &str,
        pin_block: &str,
        amount: u64,
    ) -> Result<String, BankError> {
        let refuse = |reason, message: &str| {
            Err(BankError::Rejected {
                reason,
                message: message.to_string(),
            })
        };
        let Some(key) = &self.pin_key else {
            return refuse(RejectReason::Other, "this bank takes no cards here");
        };
        let Ok(pan) = proto::pin::Pan::parse(card_number) else {
            return refuse(RejectReason::AccountNotFound, "no such card");
        };
        // A repeated reference answers what it did, without the PIN again.
        if self.lock().txs.contains_key(&reference.as_u128()) {
            return self.take(reference, "", None, amount);
        }
        let found = self
            .lock()
            .accounts
            .keys()
            .map(|a| (a.clone(), demo_card(&self.bin, a)))
            .find(|(_, (card, _))| card == pan.expose());
        let Some((account, (_, pin))) = found else {
            return refuse(RejectReason::AccountNotFound, "no such card");
        };
        let tries = self
            .lock()
            .wrong_pins
            .get(pan.expose())
            .copied()
            .unwrap_or(0);
        if tries >= PIN_TRIES_MAX {
            return refuse(
                RejectReason::PinTriesExceeded,
                "the card is blocked: too many wrong PINs",
            );
        }
        let entered = match proto::pin::decipher(key, pin_block, &pan) {
            Ok(p) => p,
            Err(_) => return refuse(RejectReason::Other, "the PIN block does not open"),
        };
        if !entered.is(&pin) {
            let mut s = self.lock();
            let n = s.wrong_pins.entry(pan.expose().to_string()).or_insert(0);
            *n += 1;
            return if *n >= PIN_TRIES_MAX {
                refuse(
                    RejectReason::PinTriesExceeded,
                    "wrong PIN; the card is now blocked",
                )
            } else {
                refuse(RejectReason::IncorrectPin, "wrong PIN")
            };
        }
        self.lock().wrong_pins.remove(pan.expose());
        self.take(reference, &account, None, amount)
    }

    pub fn account(&self, account: &str) -> Option<SimAccount> {
        self.lock().accounts.get(account).cloned()
    }

    /// Issue a one-time withdrawal code for `amount` from `account`, as the
    /// customer's bank app would.
    pub fn issue_withdrawal_code(
        &self,
        account: &str,
        amount: u64,
        now_ms: i64,
    ) -> Result<(String, i64), BankError> {
        let mut s = self.lock();
        if !s.accounts.contains_key(account) {
            return Err(BankError::Rejected {
                reason: RejectReason::AccountNotFound,
                message: "no such account".into(),
            });
        }
        if amount == 0 {
            return Err(BankError::Rejected {
                reason: RejectReason::Other,
                message: "amount must be more than zero".into(),
            });
        }
        let code = loop {
            s.rng ^= s.rng << 13;
            s.rng ^= s.rng >> 7;
            s.rng ^= s.rng << 17;
            let c = format!("{:08}", s.rng % 100_000_000);
            if !s.codes.contains_key(&c) {
                break c;
            }
        };
        let w = WithdrawalCode {
            account: account.to_string(),
            amount,
            expires_at_ms: now_ms + CODE_TTL_MS,
            tries_left: 3,
            used: false,
        };
        s.codes.insert(code.clone(), w.clone());
        drop(s);
        self.persist_code(&code, &w);
        Ok((code, w.expires_at_ms))
    }

    fn persist_code(&self, code: &str, w: &WithdrawalCode) {
        let _ = self.tree.insert(
            format!("c/{code}"),
            serde_json::to_vec(w).expect("serialisable"),
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fate(&self) -> Fate {
        fate(&self.config, &mut self.lock().rng)
    }

    async fn latency(&self) {
        let latency = self.fault.latency(&self.config);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    fn persist_account(&self, a: &SimAccount) {
        let _ = self.tree.insert(
            format!("a/{}", a.account),
            serde_json::to_vec(a).expect("serialisable"),
        );
    }

    fn persist_tx(&self, reference: Reference, t: &SimTx) {
        let mut k = b"t/".to_vec();
        k.extend_from_slice(&reference.to_bytes());
        let _ = self
            .tree
            .insert(k, serde_json::to_vec(t).expect("serialisable"));
    }

    /// A call that moves money: under a lost-answers fault the work is done
    /// and the answer never comes (the caller's timeout decides); otherwise
    /// as [`SimBank::call`].
    async fn money_call<T>(
        &self,
        work: impl FnOnce() -> Result<T, BankError>,
    ) -> Result<T, BankError> {
        if matches!(
            self.fault.get(),
            Fault::LoseAnswers | Fault::LoseAnswersAndStatus
        ) {
            let _ = work();
            return std::future::pending().await;
        }
        self.call(work).await
    }

    /// Run `work` under the configured fate.
    async fn call<T>(&self, work: impl FnOnce() -> Result<T, BankError>) -> Result<T, BankError> {
        self.latency().await;
        if self.fault.get() == Fault::Down {
            return Err(BankError::Unavailable(format!(
                "bank {} is down (simulated)",
                self.bin
            )));
        }
        match self.fate() {
            Fate::Unavailable => Err(BankError::Unavailable(format!(
                "bank {} is unavailable (simulated)",
                self.bin
            ))),
            Fate::Answer => work(),
            Fate::LoseResponse => {
                let _ = work();
                // The answer never comes; the caller's timeout decides.
                std::future::pending::<()>().await;
                unreachable!("pending never resolves")
            }
        }
    }
}

impl SimBank {
    /// Debit `total` from `account` under `reference`, after checking the
    /// one-time code when there is one (with the amount it must be bound to).
    fn take(
        &self,
        reference: Reference,
        account: &str,
        code: Option<(&str, u64)>,
        total: u64,
    ) -> Result<String, BankError> {
        let reject = |reason, message: &str| {
            Err(BankError::Rejected {
                reason,
                message: message.to_string(),
            })
        };
        let mut s = self.lock();
        if let Some(t) = s.txs.get(&reference.as_u128()) {
            return if t.reversed {
                reject(RejectReason::AlreadyReversed, "reference was reversed")
            } else {
                Ok(t.bank_reference.clone())
            };
        }
        let mut used = None;
        if let Some((code, amount)) = code {
            let now = crate::clock::now_ms();
            let Some(w) = s.codes.get_mut(code) else {
                return reject(
                    RejectReason::InvalidCode,
                    "the withdrawal code is not valid",
                );
            };
            if w.used || w.tries_left == 0 {
                return reject(
                    RejectReason::InvalidCode,
                    "the withdrawal code is not valid",
                );
            }
            if w.account != account || w.amount != amount {
                w.tries_left -= 1;
                let w = w.clone();
                drop(s);
                self.persist_code(code, &w);
                return reject(
                    RejectReason::InvalidCode,
                    "the withdrawal code does not match the account and amount",
                );
            }
            if w.expires_at_ms <= now {
                return reject(RejectReason::CodeExpired, "the withdrawal code expired");
            }
            used = Some(code);
        }
        let Some(a) = s.accounts.get_mut(account) else {
            return reject(RejectReason::AccountNotFound, "no such account");
        };
        if a.balance < total {
            return reject(RejectReason::InsufficientFunds, "insufficient funds");
        }
        a.balance -= total;
        let a = a.clone();
        let w = used.map(|code| {
            let w = s.codes.get_mut(code).expect("checked above");
            w.used = true;
            (code, w.clone())
        });
        s.next_reference += 1;
        let t = SimTx {
            account: account.to_string(),
            credited: 0,
            debited: total,
            bank_reference: format!("{}{:010}", self.bin, s.next_reference),
            reversed: false,
        };
        s.txs.insert(reference.as_u128(), t.clone());
        drop(s);
        self.persist_account(&a);
        if let Some((code, w)) = w {
            self.persist_code(code, &w);
        }
        self.persist_tx(reference, &t);
        Ok(t.bank_reference)
    }
}

impl SimBank {
    /// Switch a fault on (credits; `Down`: every call) or off.
    pub fn set_fault(&self, f: Fault) {
        self.fault.set(f);
    }

    /// Make every call this much slower (0: back to the configured latency).
    pub fn set_extra_latency_ms(&self, ms: u64) {
        self.fault.set_extra_latency_ms(ms);
    }

    fn credit_now(
        &self,
        reference: Reference,
        account: &str,
        amount: u64,
    ) -> Result<String, BankError> {
        let mut s = self.lock();
        if let Some(t) = s.txs.get(&reference.as_u128()) {
            return if t.reversed {
                Err(BankError::Rejected {
                    reason: RejectReason::AlreadyReversed,
                    message: "reference was reversed".into(),
                })
            } else {
                Ok(t.bank_reference.clone())
            };
        }
        let Some(a) = s.accounts.get_mut(account) else {
            return Err(BankError::Rejected {
                reason: RejectReason::AccountNotFound,
                message: "no such account".into(),
            });
        };
        a.balance += amount;
        let a = a.clone();
        s.next_reference += 1;
        let t = SimTx {
            account: account.to_string(),
            credited: amount,
            debited: 0,
            bank_reference: format!("{}{:010}", self.bin, s.next_reference),
            reversed: false,
        };
        s.txs.insert(reference.as_u128(), t.clone());
        drop(s);
        self.persist_account(&a);
        self.persist_tx(reference, &t);
        Ok(t.bank_reference)
    }
}

impl BankAdapter for SimBank {
    fn name_inquiry<'a>(&'a self, account: &'a str) -> BankFuture<'a, String> {
        Box::pin(self.call(move || {
            self.lock()
                .accounts
                .get(account)
                .map(|a| a.name.clone())
                .ok_or_else(|| BankError::Rejected {
                    reason: RejectReason::AccountNotFound,
                    message: "no such account".into(),
                })
        }))
    }

    fn credit<'a>(
        &'a self,
        reference: Reference,
        account: &'a str,
        amount: u64,
    ) -> BankFuture<'a, String> {
        Box::pin(self.money_call(move || self.credit_now(reference, account, amount)))
    }

    fn debit_with_code<'a>(
        &'a self,
        reference: Reference,
        account: &'a str,
        code: &'a str,
        amount: u64,
        fee: u64,
    ) -> BankFuture<'a, String> {
        Box::pin(
            self.money_call(move || {
                self.take(reference, account, Some((code, amount)), amount + fee)
            }),
        )
    }

    fn debit<'a>(
        &'a self,
        reference: Reference,
        account: &'a str,
        amount: u64,
    ) -> BankFuture<'a, String> {
        Box::pin(self.money_call(move || self.take(reference, account, None, amount)))
    }

    fn card_debit<'a>(
        &'a self,
        reference: Reference,
        card_number: &'a str,
        pin_block: &'a str,
        amount: u64,
    ) -> BankFuture<'a, String> {
        Box::pin(self.money_call(move || self.card_take(reference, card_number, pin_block, amount)))
    }

    fn reverse(&self, reference: Reference) -> BankFuture<'_, ()> {
        Box::pin(self.call(move || {
            let mut s = self.lock();
            let t = s.txs.entry(reference.as_u128()).or_insert_with(|| SimTx {
                account: String::new(),
                credited: 0,
                debited: 0,
                bank_reference: String::new(),
                reversed: false,
            });
            if t.reversed {
                return Ok(());
            }
            t.reversed = true;
            let t = t.clone();
            let account = s.accounts.get_mut(&t.account).map(|a| {
                a.balance = a.balance.saturating_sub(t.credited) + t.debited;
                a.clone()
            });
            drop(s);
            if let Some(a) = account {
                self.persist_account(&a);
            }
            self.persist_tx(reference, &t);
            Ok(())
        }))
    }

    fn status(&self, reference: Reference) -> BankFuture<'_, BankTxStatus> {
        Box::pin(self.call(move || {
            if self.fault.get() == Fault::LoseAnswersAndStatus {
                return Err(BankError::Unavailable(
                    "status is failing (simulated)".into(),
                ));
            }
            Ok(match self.lock().txs.get(&reference.as_u128()) {
                None => BankTxStatus::NotFound,
                Some(t) if t.reversed => BankTxStatus::Reversed,
                Some(t) => BankTxStatus::Completed {
                    bank_reference: t.bank_reference.clone(),
                },
            })
        }))
    }
}
const NAMES: [&str; 8] = [
    "NGUYEN VAN AN",
    "TRAN THI BICH",
    "LE VAN CUONG",
    "PHAM THI DUNG",
    "HOANG VAN EM",
    "VU THI HOA",
    "DANG VAN KHOA",
    "BUI THI LAN",
];

/// Every simulated account of bank `bin`: its customers and the demo
/// merchants and communes' budget accounts it keeps.
pub fn demo_accounts(bin: &str) -> Vec<SimAccount> {
    let mut out = demo_customers(bin);
    out.extend(
        DEMO_MERCHANTS
            .iter()
            .filter(|m| m.4 == bin)
            .map(|m| SimAccount {
                account: m.5.to_string(),
                name: m.1.to_string(),
                balance: 0,
            }),
    );
    out.extend(
        crate::demo::DEMO_COLLECTORS
            .iter()
            .filter(|c| c.4 == bin)
            .map(|c| SimAccount {
                account: c.5.to_string(),
                name: c.1.to_string(),
                balance: 0,
            }),
    );
    out
}

/// The card a demo account holds at bank `bin`, and its PIN (the same
/// every time): the BIN, the account's last nine digits, a Luhn check
/// digit; the PIN from the account's digits.
pub fn demo_card(bin: &str, account: &str) -> (String, String) {
    let digits: String = account.chars().filter(char::is_ascii_digit).collect();
    let tail = &digits[digits.len().saturating_sub(9)..];
    let body = format!("{bin}{tail:0>9}");
    let card = format!("{body}{}", proto::pin::luhn_digit(&body));
    let n: u64 = tail.parse().unwrap_or(0);
    (card, format!("{:04}", 1_000 + n % 9_000))
}

/// The simulated customers of bank `bin` (the same every time).
pub fn demo_customers(bin: &str) -> Vec<SimAccount> {
    let b: u64 = bin.parse().unwrap_or(0);
    (0..5u64)
        .map(|i| {
            let n = (b * 7_919 + i * 104_729) % 1_000_000_000;
            SimAccount {
                account: format!("{}{:09}", i % 10, n),
                name: NAMES[((b + i) % NAMES.len() as u64) as usize].to_string(),
                balance: 5_000_000 * (i + 1),
            }
        })
        .collect()
}
