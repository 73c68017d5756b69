//! Provisioning for real deployments: post offices and terminals added by an
//! operator while the switch runs.

use ledger::NewTransfer;
use ring::rand::SystemRandom;

use crate::accounts::{Kind, NETWORK, code};
use crate::caller::{Credentials, Principal, Role};
use crate::clock::now_ms;
use crate::error::{ErrorCode, SwitchError};
use crate::flows::{Switch, ledger_transfers};
use crate::ids::{Secret, TxId};
use crate::store::{Merchant, Order, PostOffice, Revocation, Rotation, ShiftRecord, Terminal};

fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn internal(e: impl std::fmt::Display) -> SwitchError {
    tracing::error!(error = %e, "provisioning failed");
    SwitchError::new(
        ErrorCode::Internal,
        "provisioning failed; see the switch's log",
    )
}

/// Ids of provisioning transfers: fixed per party, so a retry funds once.
fn funding_id(kind: u16, number: u64) -> u128 {
    (0xFFFD_u128 << 112) | (u128::from(kind) << 64) | u128::from(number)
}

fn operator(p: &Principal) -> Result<(), SwitchError> {
    match p.role {
        Role::Operator => Ok(()),
        _ => Err(SwitchError::new(
            ErrorCode::PermissionDenied,
            "only an operator may provision",
        )),
    }
}

async fn accounts(switch: &Switch, new: Vec<ledger::NewAccount>) -> Result<(), SwitchError> {
    let r = switch.ledger.create_accounts(new).await.map_err(internal)?;
    match r.iter().find_map(|r| r.err()) {
        None => Ok(()),
        Some(e) => Err(internal(format!("creating accounts: {e}"))),
    }
}

async fn fund(switch: &Switch, t: NewTransfer) -> Result<(), SwitchError> {
    match ledger_transfers(&switch.ledger, vec![t]).await?.remove(0) {
        Ok(_) => Ok(()),
        Err(e) => Err(internal(format!("funding: {e}"))),
    }
}

/// A commune, as the pilot report groups post offices and merchants.
/// Provisioning one again with the same id updates its name, district and
/// whether it is in the pilot.
pub async fn provision_commune(
    switch: &Switch,
    p: &Principal,
    c: crate::store::Commune,
) -> Result<crate::store::Commune, SwitchError> {
    operator(p)?;
    if !valid_id(&c.id) {
        return Err(SwitchError::invalid(
            "commune_id must be 1 to 32 of [a-z0-9-]",
        ));
    }
    for (what, v) in [("name", &c.name), ("district", &c.district)] {
        if v.trim().is_empty() || v.chars().count() > 100 {
            return Err(SwitchError::invalid(format!(
                "{what} must be 1 to 100 characters"
            )));
        }
    }
    switch.store.put_commune(&c).map_err(internal)?;
    switch.store.durable().await.map_err(internal)?;
    tracing::info!(commune = %c.id, pilot = c.pilot, "commune provisioned");
    Ok(c)
}

/// A commune id as given: empty (none), or one that is provisioned.
fn known_commune(switch: &Switch, commune: &str) -> Result<(), SwitchError> {
    if commune.is_empty() || switch.store.commune(commune).map_err(internal)?.is_some() {
        Ok(())
    } else {
        Err(SwitchError::invalid(format!(
            "no commune {commune}: provision it first"
        )))
    }
}

pub async fn provision_post_office(
    switch: &Switch,
    p: &Principal,
    id: &str,
    name: &str,
    initial_float: u64,
    commune: &str,
) -> Result<PostOffice, SwitchError> {
    operator(p)?;
    known_commune(switch, commune)?;
    if !valid_id(id) {
        return Err(SwitchError::invalid(
            "post_office_id must be 1 to 32 of [a-z0-9-]",
        ));
    }
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err(SwitchError::invalid("name must be 1 to 100 characters"));
    }
    let _one_at_a_time = switch
        .take_turn(&switch.provisioning, crate::flows::turn::PROVISIONING)
        .await?;
    let existing = switch.store.post_offices().map_err(internal)?;
    if existing.iter().any(|o| o.id == id) {
        return Err(SwitchError::new(
            ErrorCode::AlreadyExists,
            format!("post office {id} exists"),
        ));
    }
    let number = existing.iter().map(|o| o.number).max().unwrap_or(0) + 1;
    accounts(
        switch,
        [
            Kind::EFloat,
            Kind::CashControl,
            Kind::Commission,
            Kind::CashVariance,
        ]
        .map(|k| k.new_account(number))
        .to_vec(),
    )
    .await?;
    if initial_float > 0 {
        let t = NewTransfer::single(
            funding_id(Kind::EFloat as u16, number),
            Kind::FloatReserve.id(NETWORK),
            Kind::EFloat.id(number),
            initial_float,
            code::FLOAT_TOPUP,
        );
        fund(switch, t).await?;
    }
    let office = PostOffice {
        id: id.to_string(),
        name: name.to_string(),
        number,
        commune: commune.to_string(),
    };
    switch.store.put_post_office(&office).map_err(internal)?;
    switch.store.durable().await.map_err(internal)?;
    switch.add_numbers(std::slice::from_ref(&office), &[]);
    tracing::info!(
        post_office = id,
        number,
        initial_float,
        "post office provisioned"
    );
    Ok(office)
}

pub async fn provision_terminal(
    switch: &Switch,
    keys: &dyn Credentials,
    p: &Principal,
    id: &str,
    post_office_id: &str,
    opening_cash: u64,
) -> Result<(Terminal, Secret), SwitchError> {
    operator(p)?;
    if !valid_id(id) {
        return Err(SwitchError::invalid(
            "terminal_id must be 1 to 32 of [a-z0-9-]",
        ));
    }
    let _one_at_a_time = switch
        .take_turn(&switch.provisioning, crate::flows::turn::PROVISIONING)
        .await?;
    let office = switch
        .store
        .post_offices()
        .map_err(internal)?
        .into_iter()
        .find(|o| o.id == post_office_id)
        .ok_or_else(|| {
            SwitchError::new(
                ErrorCode::InvalidArgument,
                format!("no post office {post_office_id}"),
            )
        })?;
    let terminals = switch.store.terminals().map_err(internal)?;
    if terminals.iter().any(|t| t.id == id) || id == "operator" {
        return Err(SwitchError::new(
            ErrorCode::AlreadyExists,
            format!("terminal {id} exists"),
        ));
    }
    let in_office = terminals
        .iter()
        .filter(|t| t.post_office_id == post_office_id)
        .count() as u64;
    if in_office >= 99 {
        return Err(SwitchError::invalid(
            "a post office has at most 99 terminals",
        ));
    }
    let number = office.number * 100 + in_office + 1;
    accounts(switch, vec![Kind::Drawer.new_account(number)]).await?;
    if opening_cash > 0 {
        let t = NewTransfer::single(
            funding_id(Kind::Drawer as u16, number),
            Kind::Drawer.id(number),
            Kind::CashControl.id(office.number),
            opening_cash,
            code::OPENING_CASH,
        );
        fund(switch, t).await?;
    }
    let rng = SystemRandom::new();
    let secret = Secret::generate(&rng);
    let terminal = Terminal {
        id: id.to_string(),
        post_office_id: post_office_id.to_string(),
        number,
        secret: switch.master_key.seal(id, &secret),
    };
    switch.store.put_terminal(&terminal).map_err(internal)?;
    switch
        .store
        .put_shift(&ShiftRecord::open(
            TxId::new(&rng, now_ms()).to_string(),
            id,
            now_ms(),
            opening_cash,
            opening_cash,
        ))
        .map_err(internal)?;
    switch.store.durable().await.map_err(internal)?;
    switch.add_numbers(&[], std::slice::from_ref(&terminal));
    keys.insert(
        Principal {
            id: id.to_string(),
            role: Role::Teller {
                post_office_id: post_office_id.to_string(),
            },
        },
        &secret,
    );
    tracing::info!(
        terminal = id,
        post_office = post_office_id,
        number,
        "terminal provisioned"
    );
    Ok((terminal, secret))
}

/// A merchant to provision.
pub struct NewMerchant<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub city: &'a str,
    pub mcc: &'a str,
    pub bank_bin: &'a str,
    pub account: &'a str,
    /// Its commune's id, or empty.
    pub commune: &'a str,
}

/// Add a merchant: its record, its static code and its credential (the
/// secret is returned once).
pub async fn provision_merchant(
    switch: &Switch,
    keys: &dyn Credentials,
    p: &Principal,
    m: NewMerchant<'_>,
) -> Result<(Merchant, Secret, String), SwitchError> {
    operator(p)?;
    known_commune(switch, m.commune)?;
    let _one_at_a_time = switch
        .take_turn(&switch.provisioning, crate::flows::turn::PROVISIONING)
        .await?;
    if !valid_id(m.id) || m.id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SwitchError::invalid(
            "merchant_id must be 1 to 32 of [a-z0-9-], not all digits",
        ));
    }
    let printable = |s: &str, max: usize| {
        (1..=max).contains(&s.chars().count()) && s.chars().all(|c| (' '..='~').contains(&c))
    };
    if !printable(m.name, 25) || !printable(m.city, 15) {
        return Err(SwitchError::invalid(
            "name (up to 25) and city (up to 15) must be printable ASCII",
        ));
    }
    if m.mcc.len() != 4 || !m.mcc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SwitchError::invalid("mcc must be four digits"));
    }
    if switch.routes.get(m.bank_bin).is_none() {
        return Err(SwitchError::new(
            ErrorCode::UnknownBank,
            format!("no bank with BIN {}", m.bank_bin),
        ));
    }
    if !crate::flows::valid_account(m.account) {
        return Err(SwitchError::invalid(
            "account must be 6 to 19 letters or digits",
        ));
    }
    let taken = switch.store.merchant(m.id).map_err(internal)?.is_some()
        || switch
            .store
            .terminals()
            .map_err(internal)?
            .iter()
            .any(|t| t.id == m.id)
        || m.id == "operator";
    if taken {
        return Err(SwitchError::new(
            ErrorCode::AlreadyExists,
            format!("{} is taken", m.id),
        ));
    }
    let secret = Secret::generate(&SystemRandom::new());
    let merchant = Merchant {
        id: m.id.to_string(),
        name: m.name.to_string(),
        city: m.city.to_string(),
        mcc: m.mcc.to_string(),
        bank_bin: m.bank_bin.to_string(),
        account: m.account.to_string(),
        secret: switch.master_key.seal(m.id, &secret),
        commune: m.commune.to_string(),
        created_at_ms: crate::clock::now_ms(),
    };
    let payload = add_merchant(switch, &merchant)?;
    switch.store.durable().await.map_err(internal)?;
    keys.insert(
        Principal {
            id: merchant.id.clone(),
            role: Role::Merchant,
        },
        &secret,
    );
    tracing::info!(merchant = m.id, bank = m.bank_bin, "merchant provisioned");
    Ok((merchant, secret, payload))
}

/// Record a merchant and its static code; answers the code's payload.
pub fn add_merchant(switch: &Switch, m: &Merchant) -> Result<String, SwitchError> {
    let payload = crate::flows::merchant::static_payload(m)?;
    switch
        .store
        .put_order(&Order {
            qr_id: crate::flows::merchant::static_qr_id(&m.id),
            merchant_id: Some(m.id.clone()),
            bill_tx: None,
            amount: None,
            reference: None,
            purpose: None,
            payload: payload.clone(),
            created_at_ms: now_ms(),
            expires_at_ms: None,
        })
        .map_err(internal)?;
    switch.store.put_merchant(m).map_err(internal)?;
    Ok(payload)
}

/// The caller a key id names, as the store holds it: who they are, and
/// how to store a new secret for them.
enum Holder {
    Terminal(Terminal),
    Merchant(Merchant),
    Operator(crate::store::Operator),
    Bank(crate::store::BankClient),
}

impl Holder {
    fn find(switch: &Switch, key_id: &str) -> Result<Option<Holder>, SwitchError> {
        let store = &switch.store;
        Ok(if let Some(t) = store.terminal(key_id).map_err(internal)? {
            Some(Holder::Terminal(t))
        } else if let Some(m) = store.merchant(key_id).map_err(internal)? {
            Some(Holder::Merchant(m))
        } else if let Some(o) = store.operator(key_id).map_err(internal)? {
            Some(Holder::Operator(o))
        } else {
            store
                .bank_client(key_id)
                .map_err(internal)?
                .map(Holder::Bank)
        })
    }

    fn principal(&self) -> Principal {
        match self {
            Holder::Terminal(t) => Principal {
                id: t.id.clone(),
                role: Role::Teller {
                    post_office_id: t.post_office_id.clone(),
                },
            },
            Holder::Merchant(m) => Principal {
                id: m.id.clone(),
                role: Role::Merchant,
            },
            Holder::Operator(o) => Principal {
                id: o.id.clone(),
                role: Role::Operator,
            },
            Holder::Bank(b) => Principal {
                id: b.bin.clone(),
                role: Role::Bank,
            },
        }
    }

    /// The caller's secret as stored.
    fn sealed(&self) -> &crate::secrets::SealedSecret {
        match self {
            Holder::Terminal(t) => &t.secret,
            Holder::Merchant(m) => &m.secret,
            Holder::Operator(o) => &o.secret,
            Holder::Bank(b) => &b.secret,
        }
    }

    /// Store `secret` as the caller's (the old one is gone).
    fn store_secret(self, switch: &Switch, secret: &Secret) -> Result<(), SwitchError> {
        let key = &switch.master_key;
        let store = &switch.store;
        match self {
            Holder::Terminal(t) => store.put_terminal(&Terminal {
                secret: key.seal(&t.id, secret),
                ..t
            }),
            Holder::Merchant(m) => store.put_merchant(&Merchant {
                secret: key.seal(&m.id, secret),
                ..m
            }),
            Holder::Operator(o) => store.put_operator(&crate::store::Operator {
                secret: key.seal(&o.id, secret),
                ..o
            }),
            Holder::Bank(b) => store.put_bank_client(&crate::store::BankClient {
                secret: key.seal(&b.bin, secret),
                ..b
            }),
        }
        .map_err(internal)
    }
}

/// Checks common to revoking and rotating: an operator, not their own key
/// (an operator locked out by mistake could not undo it), a key that
/// exists.
fn key_to_change(
    switch: &Switch,
    p: &Principal,
    key_id: &str,
    verb: &str,
) -> Result<Holder, SwitchError> {
    if p.role != Role::Operator {
        return Err(SwitchError::new(
            ErrorCode::PermissionDenied,
            format!("only an operator may {verb} keys"),
        ));
    }
    if key_id == p.id {
        return Err(SwitchError::invalid(format!(
            "an operator cannot {verb} their own key; ask another operator"
        )));
    }
    Holder::find(switch, key_id)?
        .ok_or_else(|| SwitchError::new(ErrorCode::UnknownKey, format!("no key {key_id}")))
}

/// Revoke a caller's key: refused on this node at once, on every other
/// node sharing the store within [`crate::edge::auth::KEY_RECHECK_MS`].
/// Revoking a revoked key answers the first revocation.
pub async fn revoke_key(
    switch: &Switch,
    keys: &dyn Credentials,
    p: &Principal,
    key_id: &str,
    reason: &str,
) -> Result<Revocation, SwitchError> {
    if reason.trim().is_empty() || reason.chars().count() > 200 {
        return Err(SwitchError::invalid("reason must be 1 to 200 characters"));
    }
    let _one_at_a_time = switch
        .take_turn(&switch.provisioning, crate::flows::turn::PROVISIONING)
        .await?;
    key_to_change(switch, p, key_id, "revoke")?;
    if let Some(done) = switch.store.revocation(key_id).map_err(internal)? {
        keys.revoke(key_id);
        return Ok(done);
    }
    let revocation = Revocation {
        key_id: key_id.to_string(),
        at_ms: now_ms(),
        by: p.id.clone(),
        reason: reason.to_string(),
    };
    switch.store.put_revocation(&revocation).map_err(internal)?;
    switch.store.durable().await.map_err(internal)?;
    keys.revoke(key_id);
    tracing::warn!(key = key_id, by = %p.id, reason, "key revoked");
    Ok(revocation)
}

/// Give a caller a new secret (returned once). The old one is still
/// accepted for `key_rotation_grace_ms` (while the caller installs the new
/// profile), then refused: on this node from the rotation on, on every
/// other node within [`crate::edge::auth::KEY_RECHECK_MS`]. Answers the
/// caller, the new secret, and until when the old one is accepted.
pub async fn rotate_key(
    switch: &Switch,
    keys: &dyn Credentials,
    p: &Principal,
    key_id: &str,
) -> Result<(Principal, Secret, i64), SwitchError> {
    let _one_at_a_time = switch
        .take_turn(&switch.provisioning, crate::flows::turn::PROVISIONING)
        .await?;
    let holder = key_to_change(switch, p, key_id, "rotate")?;
    if switch.store.revocation(key_id).map_err(internal)?.is_some() {
        return Err(SwitchError::new(
            ErrorCode::KeyRevoked,
            format!("{key_id} was revoked; provision it anew under another id"),
        ));
    }
    let principal = holder.principal();
    let previous = switch
        .master_key
        .open(key_id, holder.sealed())
        .map_err(internal)?;
    let until_ms = now_ms().saturating_add(switch.config.key_rotation_grace_ms as i64);
    let secret = Secret::generate(&SystemRandom::new());
    switch
        .store
        .put_rotation(&Rotation {
            key_id: key_id.to_string(),
            previous: switch.master_key.seal(key_id, &previous),
            until_ms,
        })
        .map_err(internal)?;
    holder.store_secret(switch, &secret)?;
    switch.store.durable().await.map_err(internal)?;
    keys.rotate(principal.clone(), &secret, &previous, until_ms);
    tracing::info!(key = key_id, by = %p.id, previous_until_ms = until_ms, "key rotated");
    Ok((principal, secret, until_ms))
}

/// Make a console user (`role` `operator`, or `bank` with the bank it
/// sees); answers the user and a new password, shown once. Only its
/// Argon2id hash is kept.
pub async fn create_console_user(
    switch: &Switch,
    p: &Principal,
    name: &str,
    role: &str,
    bank_bin: &str,
) -> Result<(crate::store::ConsoleUser, String), SwitchError> {
    operator(p)?;
    if !(1..=32).contains(&name.len())
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(SwitchError::invalid("name must be 1 to 32 of [a-z0-9._-]"));
    }
    match (role, bank_bin) {
        ("operator", "") => {}
        ("bank", bin) if switch.routes.get(bin).is_some() => {}
        ("bank", bin) => {
            return Err(SwitchError::new(
                ErrorCode::UnknownBank,
                format!("no bank with BIN {bin:?}"),
            ));
        }
        _ => {
            return Err(SwitchError::invalid(
                "role must be operator, or bank with its bank_bin",
            ));
        }
    }
    let _one_at_a_time = switch
        .take_turn(&switch.provisioning, crate::flows::turn::PROVISIONING)
        .await?;
    if switch.store.console_user(name).map_err(internal)?.is_some() {
        return Err(SwitchError::new(
            ErrorCode::AlreadyExists,
            format!("a console user {name} exists"),
        ));
    }
    let password = new_password()?;
    let hash = hash_password(password.clone()).await?;
    let now = now_ms();
    let user = crate::store::ConsoleUser {
        name: name.to_string(),
        role: role.to_string(),
        bank_bin: bank_bin.to_string(),
        password_hash: hash,
        created_at_ms: now,
        created_by: p.id.clone(),
        password_set_at_ms: now,
        disabled: None,
    };
    switch.store.put_console_user(&user).map_err(internal)?;
    switch.store.durable().await.map_err(internal)?;
    tracing::info!(user = name, role, bank = bank_bin, by = %p.id, "console user created");
    Ok((user, password))
}

/// 24 characters a person can read out and type (96 random bits).
fn new_password() -> Result<String, SwitchError> {
    let rng = SystemRandom::new();
    let mut raw = [0u8; 15];
    ring::rand::SecureRandom::fill(&rng, &mut raw).map_err(|_| internal("no randomness"))?;
    Ok(raw
        .iter()
        .flat_map(|b| [b >> 4, b & 0xF])
        .take(24)
        .map(|n| char::from(b"abcdefghjkmnpqrstuvwxyz23456789"[usize::from(n)]))
        .collect())
}

/// Every console user, by name.
pub fn console_users(
    switch: &Switch,
    p: &Principal,
) -> Result<Vec<crate::store::ConsoleUser>, SwitchError> {
    operator(p)?;
    let mut users = switch.store.console_users().map_err(internal)?;
    users.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(users)
}

/// Change console user `name` under the provisioning turn with `change`,
/// durably.
async fn change_console_user(
    switch: &Switch,
    name: &str,
    change: impl FnOnce(&mut crate::store::ConsoleUser),
) -> Result<crate::store::ConsoleUser, SwitchError> {
    let _one_at_a_time = switch
        .take_turn(&switch.provisioning, crate::flows::turn::PROVISIONING)
        .await?;
    let Some(mut user) = switch.store.console_user(name).map_err(internal)? else {
        return Err(SwitchError::new(
            ErrorCode::UnknownConsoleUser,
            format!("no console user {name:?}"),
        ));
    };
    change(&mut user);
    switch.store.put_console_user(&user).map_err(internal)?;
    switch.store.durable().await.map_err(internal)?;
    Ok(user)
}

/// Stop console user `name` from signing in; their sessions end at their
/// next request (every node reads the user again then). Disabling a
/// disabled user answers the first disabling.
pub async fn disable_console_user(
    switch: &Switch,
    p: &Principal,
    name: &str,
    reason: &str,
) -> Result<crate::store::ConsoleUser, SwitchError> {
    operator(p)?;
    if reason.trim().is_empty() || reason.chars().count() > 200 {
        return Err(SwitchError::invalid("reason must be 1 to 200 characters"));
    }
    let user = change_console_user(switch, name, |u| {
        u.disabled.get_or_insert_with(|| crate::store::Disabled {
            at_ms: now_ms(),
            by: p.id.clone(),
            reason: reason.to_string(),
        });
    })
    .await?;
    tracing::warn!(user = name, by = %p.id, reason, "console user disabled");
    Ok(user)
}

/// A new password for console user `name` (answered once; only its hash is
/// kept): their sessions end, and a disabled user may sign in again.
pub async fn reset_console_password(
    switch: &Switch,
    p: &Principal,
    name: &str,
) -> Result<(crate::store::ConsoleUser, String), SwitchError> {
    operator(p)?;
    let password = new_password()?;
    let hash = hash_password(password.clone()).await?;
    let user = change_console_user(switch, name, |u| {
        u.password_hash = hash;
        // Strictly later, so that every session taken before ends.
        u.password_set_at_ms = now_ms().max(u.password_set_at_ms + 1);
        u.disabled = None;
    })
    .await?;
    tracing::warn!(user = name, by = %p.id, "console password reset");
    Ok((user, password))
}

/// Argon2id with the crate's default parameters (19 MiB, 2 passes), off
/// the async workers: a hash takes tens of milliseconds.
async fn hash_password(password: String) -> Result<String, SwitchError> {
    use argon2::PasswordHasher;
    tokio::task::spawn_blocking(move || {
        let salt = argon2::password_hash::SaltString::generate(
            &mut argon2::password_hash::rand_core::OsRng,
        );
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(internal)
    })
    .await
    .map_err(internal)?
}

/// The console user `name` if `password` is theirs. An unknown name costs
/// the same hash as a known one, so the answer's time tells nothing.
pub async fn console_sign_in(
    switch: &Switch,
    name: &str,
    password: &str,
) -> Result<Option<crate::store::ConsoleUser>, SwitchError> {
    use argon2::PasswordVerifier;
    let user = if name.len() <= 32 {
        switch.store.console_user(name).map_err(internal)?
    } else {
        None
    };
    // A hash of a password nobody has, verified when the name is unknown.
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let stored = match &user {
        Some(u) => u.password_hash.clone(),
        None => match DECOY.get() {
            Some(d) => d.clone(),
            None => {
                let d = hash_password("not a password anyone has".into()).await?;
                DECOY.get_or_init(|| d).clone()
            }
        },
    };
    let password = password.to_string();
    let ok = tokio::task::spawn_blocking(move || {
        argon2::password_hash::PasswordHash::new(&stored)
            .map(|h| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(internal)?;
    Ok(user.filter(|u| ok && u.disabled.is_none()))
}
