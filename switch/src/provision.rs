//! The demo network a fresh data directory starts with: six post offices
//! (the pilot communes Thổ Tang, Tam Đảo, Hướng Đạo, Lãng Công, and Vĩnh
//! Yên, Phúc Yên), two teller terminals each, prefunded e-float and an
//! opening cash drawer; six banks with simulated customers; an operator.
//! Client profiles go to `data/profiles/` with owner-only permissions.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use ledger::{NewAccount, NewTransfer};
use ring::rand::SystemRandom;
use serde::Serialize;

use crate::accounts::{Kind, NETWORK, bank_number, code};
use crate::demo::{
    DEMO_BANKS, DEMO_COMMUNES, DEMO_MERCHANT_COMMUNES, DEMO_MERCHANTS, DEMO_POST_OFFICE_COMMUNES,
    DEMO_POST_OFFICES, OPENING_CASH_VND,
};
use crate::error::{ErrorCode, SwitchError};
use crate::flows::{Switch, ledger_transfers};
use crate::ids::Secret;
use crate::sim::demo_customers;
use crate::store::{Operator, PostOffice, Terminal};

#[derive(Serialize)]
struct Profile<'a> {
    role: &'a str,
    id: &'a str,
    switch: String,
    secret: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    post_office: Option<&'a str>,
    /// A teller's post office as its receipts print it.
    #[serde(skip_serializing_if = "Option::is_none")]
    post_office_name: Option<&'a str>,
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

fn io(e: impl std::fmt::Display) -> SwitchError {
    SwitchError::new(ErrorCode::Internal, format!("provisioning failed: {e}"))
}

/// Provisioning transfers have fixed ids, so that provisioning again after a
/// crash funds nothing twice.
fn provisioning_id(n: u64) -> u128 {
    (0xFFFE_u128 << 112) | u128::from(n)
}

/// Every bank's and biller's ledger account, at every start: a party the
/// configuration adds later (a remote biller, a network that sells
/// airtime since an upgrade) has its account before any flow names it.
/// Creating an account that exists as it is changes nothing.
pub async fn party_accounts(switch: &Switch) -> Result<(), SwitchError> {
    let mut accounts: Vec<NewAccount> = switch
        .billers
        .all()
        .map(|b| Kind::Biller.new_account(b.number))
        .collect();
    accounts.extend(
        switch
            .routes
            .bins()
            .map(|b| Kind::Bank.new_account(bank_number(b))),
    );
    let created = switch.ledger.create_accounts(accounts).await.map_err(io)?;
    if let Some(e) = created.iter().find_map(|r| r.err()) {
        return Err(io(format!("creating the parties' accounts: {e}")));
    }
    Ok(())
}

/// Provision the demo network on an empty data directory.
pub async fn demo(switch: &Switch, profiles: &Path, listen: SocketAddr) -> Result<(), SwitchError> {
    let rng = SystemRandom::new();
    std::fs::create_dir_all(profiles).map_err(io)?;
    let mut accounts: Vec<NewAccount> = vec![
        Kind::FloatReserve.new_account(NETWORK),
        Kind::SwitchIncome.new_account(NETWORK),
        Kind::QrClearing.new_account(NETWORK),
    ];
    accounts.extend(
        switch
            .billers
            .all()
            .map(|b| Kind::Biller.new_account(b.number)),
    );
    accounts.extend(
        switch
            .routes
            .bins()
            .map(|b| Kind::Bank.new_account(bank_number(b))),
    );
    let mut transfers = Vec::new();
    let mut post_offices = Vec::new();
    let mut terminals = Vec::new();
    for (i, (id, name)) in DEMO_POST_OFFICES.iter().enumerate() {
        let number = i as u64 + 1;
        accounts.extend(
            [
                Kind::EFloat,
                Kind::CashControl,
                Kind::Commission,
                Kind::CashVariance,
            ]
            .map(|k| k.new_account(number)),
        );
        transfers.push(NewTransfer::single(
            provisioning_id(number),
            Kind::FloatReserve.id(NETWORK),
            Kind::EFloat.id(number),
            switch.config.demo_efloat,
            code::FLOAT_TOPUP,
        ));
        post_offices.push(PostOffice {
            id: id.to_string(),
            name: name.to_string(),
            number,
            commune: DEMO_POST_OFFICE_COMMUNES[i].to_string(),
        });
        for t in 1..=2u64 {
            let terminal_number = number * 100 + t;
            accounts.push(Kind::Drawer.new_account(terminal_number));
            transfers.push(NewTransfer::single(
                provisioning_id(terminal_number),
                Kind::Drawer.id(terminal_number),
                Kind::CashControl.id(number),
                OPENING_CASH_VND,
                code::OPENING_CASH,
            ));
            let (terminal_id, secret) = (format!("{id}-{t}"), Secret::generate(&rng));
            terminals.push((
                Terminal {
                    secret: switch.master_key.seal(&terminal_id, &secret),
                    id: terminal_id,
                    post_office_id: id.to_string(),
                    number: terminal_number,
                },
                secret,
            ));
        }
    }
    let created = switch.ledger.create_accounts(accounts).await.map_err(io)?;
    if let Some(e) = created.iter().find_map(|r| r.err()) {
        return Err(io(format!("creating accounts: {e}")));
    }
    if let Some(e) = ledger_transfers(&switch.ledger, transfers)
        .await?
        .iter()
        .find_map(|r| r.err())
    {
        return Err(io(format!("funding: {e}")));
    }
    let address = format!("http://{listen}");
    for (id, name, district, pilot) in DEMO_COMMUNES {
        switch
            .store
            .put_commune(&crate::store::Commune {
                id: id.to_string(),
                name: name.to_string(),
                district: district.to_string(),
                pilot,
            })
            .map_err(io)?;
    }
    for p in &post_offices {
        switch.store.put_post_office(p).map_err(io)?;
    }
    let now = crate::clock::now_ms();
    for (t, secret) in &terminals {
        switch.store.put_terminal(t).map_err(io)?;
        // Each terminal starts with its first shift open on the opening cash.
        switch
            .store
            .put_shift(&crate::store::ShiftRecord::open(
                crate::ids::TxId::new(&rng, now).to_string(),
                &t.id,
                now,
                OPENING_CASH_VND,
                OPENING_CASH_VND,
            ))
            .map_err(io)?;
        let profile = Profile {
            role: "teller",
            id: &t.id,
            switch: address.clone(),
            secret: secret.expose_hex(),
            post_office: Some(&t.post_office_id),
            post_office_name: post_offices
                .iter()
                .find(|p| p.id == t.post_office_id)
                .map(|p| p.name.as_str()),
        };
        write_private(
            &profiles.join(format!("{}.toml", t.id)),
            &toml::to_string(&profile).map_err(io)?,
        )
        .map_err(io)?;
    }
    let secret = Secret::generate(&rng);
    let operator = Operator {
        id: "operator".into(),
        secret: switch.master_key.seal("operator", &secret),
    };
    switch.store.put_operator(&operator).map_err(io)?;
    let profile = Profile {
        role: "operator",
        id: &operator.id,
        switch: address.clone(),
        secret: secret.expose_hex(),
        post_office: None,
        post_office_name: None,
    };
    write_private(
        &profiles.join("operator.toml"),
        &toml::to_string(&profile).map_err(io)?,
    )
    .map_err(io)?;
    // The demo's merchants, then the pilot communes' one-stop desks (fee
    // collectors: MCC 9399, paid into the commune's budget account).
    let merchants = DEMO_MERCHANTS.into_iter().zip(DEMO_MERCHANT_COMMUNES).map(
        |((id, name, city, mcc, bin, account), commune)| {
            (id, name, city, mcc, commune, bin, account)
        },
    );
    let collectors =
        crate::demo::DEMO_COLLECTORS
            .into_iter()
            .map(|(id, name, city, commune, bin, account)| {
                (
                    id,
                    name,
                    city,
                    crate::flows::fees::COLLECTOR_MCC,
                    commune,
                    bin,
                    account,
                )
            });
    for (id, name, city, mcc, commune, bin, account) in merchants.chain(collectors) {
        if switch.routes.get(bin).is_none() {
            continue;
        }
        let secret = Secret::generate(&rng);
        let m = crate::store::Merchant {
            id: id.to_string(),
            name: name.to_string(),
            city: city.to_string(),
            mcc: mcc.to_string(),
            bank_bin: bin.to_string(),
            account: account.to_string(),
            secret: switch.master_key.seal(id, &secret),
            commune: commune.to_string(),
            created_at_ms: crate::clock::now_ms(),
        };
        crate::flows::provisioning::add_merchant(switch, &m)?;
        if mcc == crate::flows::fees::COLLECTOR_MCC {
            let items = crate::demo::DEMO_FEES
                .iter()
                .map(|(code, name, price, unit, basis)| crate::store::FeeItem {
                    code: code.to_string(),
                    name: name.to_string(),
                    unit_price: *price,
                    unit: unit.to_string(),
                    legal_basis: basis.to_string(),
                })
                .collect();
            switch
                .store
                .put_fee_catalogue(&crate::store::FeeCatalogue {
                    collector_id: id.to_string(),
                    items,
                })
                .map_err(io)?;
        }
        let profile = Profile {
            role: "merchant",
            id,
            switch: address.clone(),
            secret: secret.expose_hex(),
            post_office: None,
            post_office_name: None,
        };
        write_private(
            &profiles.join(format!("{id}.toml")),
            &toml::to_string(&profile).map_err(io)?,
        )
        .map_err(io)?;
    }
    for bin in switch.routes.bins() {
        let secret = Secret::generate(&rng);
        let b = crate::store::BankClient {
            bin: bin.to_string(),
            secret: switch.master_key.seal(bin, &secret),
        };
        switch.store.put_bank_client(&b).map_err(io)?;
        let profile = Profile {
            role: "bank",
            id: bin,
            switch: address.clone(),
            secret: secret.expose_hex(),
            post_office: None,
            post_office_name: None,
        };
        write_private(
            &profiles.join(format!("bank-{bin}.toml")),
            &toml::to_string(&profile).map_err(io)?,
        )
        .map_err(io)?;
    }
    let customers = switch.config.biller_sim.customers;
    let bill_customers: Vec<serde_json::Value> = crate::demo::DEMO_BILLERS
        .iter()
        .flat_map(|b| {
            crate::sim::biller::demo_customers(b.0, customers).into_iter().map(move |c| {
                let due: u64 = c.bills.iter().map(|x| x.amount).sum();
                serde_json::json!({"biller": b.0, "customer": c.customer, "name": c.name, "bills_due": c.bills.len(), "amount_due": due})
            })
        })
        .collect();
    write_private(
        &profiles.join("bill-customers.json"),
        &serde_json::to_string_pretty(&bill_customers).map_err(io)?,
    )
    .map_err(io)?;
    let customers: Vec<serde_json::Value> = DEMO_BANKS
        .iter()
        .flat_map(|bin| {
            demo_customers(bin).into_iter().map(move |c| {
                // The simulated issuer's card for the account, and its PIN
                // (demo data: a real issuer never tells anyone a PIN).
                let (card, pin) = crate::sim::demo_card(bin, &c.account);
                serde_json::json!({"bank": bin, "account": c.account, "name": c.name, "balance": c.balance, "card": card, "pin": pin})
            })
        })
        .collect();
    write_private(
        &profiles.join("customers.json"),
        &serde_json::to_string_pretty(&customers).map_err(io)?,
    )
    .map_err(io)?;
    switch.store.mark_provisioned().map_err(io)?;
    switch.store.durable().await.map_err(io)?;
    tracing::info!(post_offices = post_offices.len(), terminals = terminals.len(), profiles = %profiles.display(), "demo network provisioned");
    Ok(())
}
