//! `run`: open the data, provision the demo network on first start, finish
//! what a crash left unfinished, serve until `shutdown` resolves, then drain
//! in-flight requests and flush.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ledger::{Config as LedgerConfig, Ledger};
use tokio::net::TcpListener;

use crate::adapters::bank::{Bank, Routes};
use crate::adapters::breaker::Breaker;
use crate::caller::{Principal, Role};
use crate::config::Config;
use crate::edge::auth::{AuthLayer, Keys};
use crate::edge::{
    AdminService, BillsService, MerchantService, PayerBankService, SettlementService, TellerService,
};
use crate::flows::Switch;
use crate::provision;
use crate::sim::{SimBank, SimBiller, Simulators};
use crate::store::Store;
use crate::store::ledger::LedgerStore;
use crate::store::pg_ledger::PgLedger;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An opened switch, ready to serve.
pub struct Opened {
    pub switch: Arc<Switch>,
    /// Every caller's key; provisioning adds to it while serving.
    pub keys: Arc<Keys>,
    /// The simulators wired in for banks and billers the configuration
    /// names no remote party for (the demo and tests reach them here).
    pub sims: Simulators,
    /// The listener's TLS, read from the configured files (None: clear,
    /// which `open` allows on loopback only unless told otherwise).
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

/// A zone PIN key file: 32 hex digits.
pub fn read_pin_key(path: &std::path::Path) -> Result<proto::pin::PinKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    proto::pin::PinKey::from_hex(&text)
        .ok_or_else(|| format!("{}: a PIN key is 32 hex digits", path.display()))
}

/// Every biller the switch routes to: the demo's four, each simulated
/// in-process unless a `[[billers]]` entry gives it a `remote`, and the
/// billers the configuration defines beyond them (remote only).
fn billers(
    config: &Config,
    store: &Store,
    sims: &mut Simulators,
) -> Result<crate::adapters::biller::Billers, BoxError> {
    use crate::adapters::biller::{Biller, BillerAdapter, Billers};
    let mut out = Billers::default();
    let mut numbers = std::collections::HashSet::new();
    let demo = crate::demo::DEMO_BILLERS.iter().map(|d| d.0);
    let configured = config.billers.iter().map(|b| b.code.as_str());
    let mut seen = std::collections::HashSet::new();
    for code in demo.chain(configured) {
        if !seen.insert(code) {
            continue;
        }
        let entries: Vec<_> = config.billers.iter().filter(|b| b.code == code).collect();
        if entries.len() > 1 {
            return Err(format!("biller {code} has {} [[billers]] entries", entries.len()).into());
        }
        let entry = entries.first().copied().cloned().unwrap_or_default();
        if code.is_empty() || code.len() > 16 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("biller code {code:?} is not 1 to 16 letters or digits").into());
        }
        let demo = crate::demo::DEMO_BILLERS.iter().find(|d| d.0 == code);
        let missing = |field: &str| {
            format!("biller {code}: `{field}` is needed for a biller outside the demo network")
        };
        let name = match (&entry.name, demo) {
            (Some(n), _) => n.clone(),
            (None, Some(d)) => d.1.to_string(),
            (None, None) => return Err(missing("name").into()),
        };
        let number = match (entry.number, demo) {
            (Some(n), _) => n,
            (None, Some(d)) => d.2,
            (None, None) => return Err(missing("number").into()),
        };
        if number == 0 || !numbers.insert(number) {
            return Err(
                format!("biller {code}: number {number} is zero or another biller's").into(),
            );
        }
        let partial_allowed = match (entry.partial_allowed, demo) {
            (Some(p), _) => p,
            (None, Some(d)) => d.3,
            (None, None) => return Err(missing("partial_allowed").into()),
        };
        let collection_bin = match (&entry.collection_bin, demo) {
            (Some(b), _) => b.clone(),
            (None, Some(_)) => crate::demo::DEMO_BANKS[0].to_string(),
            (None, None) => return Err(missing("collection_bin").into()),
        };
        let collection_account = match (&entry.collection_account, demo) {
            (Some(a), _) => a.clone(),
            (None, Some(_)) => format!("99900{number:05}"),
            (None, None) => return Err(missing("collection_account").into()),
        };
        let tls_given = entry.tls_ca_file.is_some()
            || entry.tls_client_cert_file.is_some()
            || entry.tls_client_key_file.is_some();
        if entry.remote.is_none() && tls_given {
            return Err(format!(
                "biller {code}: TLS files are given but no remote address to use them on"
            )
            .into());
        }
        let adapter: Arc<dyn BillerAdapter> = match (&entry.remote, demo) {
            (Some(address), _) => Arc::new(crate::adapters::remote_biller::RemoteBiller::new(
                address,
                config.bank_timeout_ms,
                &proto::tls::ClientTls {
                    ca_file: entry.tls_ca_file.as_deref(),
                    cert_file: entry.tls_client_cert_file.as_deref(),
                    key_file: entry.tls_client_key_file.as_deref(),
                },
                entry.insecure,
            )?),
            (None, Some(_)) => {
                let sim = Arc::new(SimBiller::open(
                    code,
                    partial_allowed,
                    config.biller_sim.clone(),
                    store.sim_tree(&format!("biller/{code}"))?,
                )?);
                sims.billers.insert(code.to_string(), sim.clone());
                sim
            }
            (None, None) => return Err(missing("remote").into()),
        };
        let category = match (&entry.category, demo) {
            (Some(c), _) => crate::adapters::biller::category(c).ok_or_else(|| {
                format!(
                    "biller {code}: category {c:?} is not one of {:?}",
                    crate::adapters::biller::CATEGORIES
                )
            })?,
            (None, Some(_)) => crate::demo::demo_biller_category(code),
            (None, None) => "other",
        };
        out.add(Biller {
            code: code.to_string(),
            name,
            number,
            category,
            partial_allowed,
            collection_bin,
            collection_account,
            adapter,
            breaker: Breaker::new(code, config.breaker.clone()),
        });
    }
    Ok(out)
}

/// The listener's TLS from `config`, or the reason it cannot be had; in
/// clear only on loopback, unless `insecure`. Also `bank-sim`'s.
pub fn listener_tls(
    config: &crate::config::TlsConfig,
    address: std::net::SocketAddr,
) -> Result<Option<tonic::transport::ServerTlsConfig>, BoxError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
    };
    match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => {
            let mut tls =
                ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
            if let Some(ca) = &config.client_ca_file {
                tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
            }
            Ok(Some(tls))
        }
        (None, None) if config.client_ca_file.is_some() => {
            Err("a client CA needs TLS: give the listener's certificate and key too".into())
        }
        (None, None) if address.ip().is_loopback() || config.insecure => Ok(None),
        (None, None) => Err(format!(
            "refusing to listen in clear on {address}: give --tls-cert and --tls-key, \
             or --insecure (behind a proxy that terminates TLS)"
        )
        .into()),
        _ => Err("TLS needs both the certificate (--tls-cert) and its key (--tls-key)".into()),
    }
}

/// Open everything under `config.data_dir`, provisioning the demo network
/// the first time.
pub async fn open(config: Config, address: std::net::SocketAddr) -> Result<Opened, BoxError> {
    // Requests signed from now on cannot have reached a previous run of
    // the switch, so they may pass the replay check even when they arrive
    // while recovery below is still running (they wait in the listener's
    // backlog until it is done).
    let started_ms = crate::clock::now_ms();
    let tls = listener_tls(&config.tls, address)?;
    std::fs::create_dir_all(&config.data_dir)?;
    let (ledger, store) = match &config.store.url {
        None => {
            // One log per node: the switch's records ride in the ledger's
            // journal records (issue #26).
            let link = crate::store::LedgerLink::new();
            let (ledger, report) = Ledger::open_attached(
                LedgerConfig::new(config.data_dir.join("ledger")),
                Arc::new(crate::clock::SwitchClock),
                Some(Arc::new(crate::telemetry::LedgerMetrics)),
                Some(link.clone()),
            )?;
            tracing::info!(%report, "ledger opened");
            if report.dropped.is_some() || report.index_rebuilt.is_some() {
                tracing::error!(%report, "ledger recovery dropped or rebuilt data; check it");
            }
            let ledger = Arc::new(ledger);
            let store = Store::open_logged(&config.data_dir.join("switch"), ledger.clone(), &link)?;
            (LedgerStore::Embedded(ledger), store)
        }
        Some(url) => {
            // Every migration is applied (once) before anything is read.
            let ledger = PgLedger::open(url).await?;
            let store = Store::open_postgres(url, &config.data_dir.join("switch"))?;
            tracing::info!("ledger and records in postgres");
            (LedgerStore::Postgres(Arc::new(ledger)), store)
        }
    };
    store.adopt_legacy_recon().await?;
    // Records an earlier version wrote, in today's formats (crash-safe:
    // a start cut short goes on at the next).
    let upgraded = store.upgrade_records(1_000, usize::MAX)?;
    store.durable().await?;
    if upgraded.rewritten > 0 {
        tracing::info!(
            records = upgraded.rewritten,
            "transactions rewritten in the binary schema"
        );
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let master_key = crate::secrets::MasterKey::load_or_create(&config.master_key_path())?;
    let mut routes = Routes::default();
    let mut sims = Simulators::default();
    for b in &config.banks {
        if b.bin.len() != 6 || !b.bin.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("bank BIN {:?} is not six digits", b.bin).into());
        }
        let tls_given = b.tls_ca_file.is_some()
            || b.tls_client_cert_file.is_some()
            || b.tls_client_key_file.is_some();
        if b.remote.is_none() && tls_given {
            return Err(format!(
                "bank {}: TLS files are given but no remote address to use them on",
                b.bin
            )
            .into());
        }
        let adapter: Arc<dyn crate::adapters::bank::BankAdapter> = match &b.remote {
            Some(address) => Arc::new(crate::adapters::remote_bank::RemoteBank::new(
                address,
                config.bank_timeout_ms,
                &proto::tls::ClientTls {
                    ca_file: b.tls_ca_file.as_deref(),
                    cert_file: b.tls_client_cert_file.as_deref(),
                    key_file: b.tls_client_key_file.as_deref(),
                },
                b.insecure,
            )?),
            None => {
                let sim = Arc::new(
                    SimBank::open(
                        &b.bin,
                        config.sim.clone(),
                        store.sim_tree(&b.bin)?,
                        &crate::sim::demo_accounts(&b.bin),
                    )?
                    .with_pin_key(master_key.zone_pin_key(&b.bin)),
                );
                sims.banks.insert(b.bin.clone(), sim.clone());
                sim
            }
        };
        // Cards' PINs reach a bank under the zone key it shares with the
        // switch: configured for a remote bank, derived for a simulated one.
        let pin_key = match (&b.pin_key_file, &b.remote) {
            (Some(path), _) => {
                Some(read_pin_key(path).map_err(|e| format!("bank {}: {e}", b.bin))?)
            }
            (None, Some(_)) => None,
            (None, None) => Some(master_key.zone_pin_key(&b.bin)),
        };
        let name = qr::bank_by_bin(&b.bin)
            .map_or(b.bin.as_str(), |k| k.short_name)
            .to_string();
        routes.add(Bank {
            bin: b.bin.clone(),
            name,
            adapter,
            breaker: Breaker::new(&b.bin, config.breaker.clone()),
            pin_key,
        });
    }
    let billers = billers(&config, &store, &mut sims)?;
    let switch = Arc::new(Switch::new(
        config.clone(),
        store,
        ledger,
        routes,
        billers,
        master_key,
    ));
    {
        // Nodes starting together on an empty store take turns: the first
        // provisions the demo network and opens the first window, the
        // others find them.
        let _one_at_a_time = switch
            .store
            .node_lock(crate::flows::turn::PROVISIONING)
            .await?;
        if !switch.store.is_provisioned()? {
            provision::demo(&switch, &config.data_dir.join("profiles"), address).await?;
        }
        provision::party_accounts(&switch).await?;
        if switch.store.windows()?.is_empty() {
            switch
                .store
                .put_window(&crate::settlement::WindowRecord::first(
                    crate::clock::now_ms(),
                ))?;
            switch.store.durable().await?;
        }
        seal_secrets(&switch).await?;
    }
    let (post_offices, terminals) = (switch.store.post_offices()?, switch.store.terminals()?);
    switch.add_numbers(&post_offices, &terminals);
    let keys = Arc::new(Keys::new(
        config.signature_skew_ms,
        started_ms,
        config.rate_limit.clone(),
    ));
    let open = |id: &str, sealed: &crate::secrets::SealedSecret| switch.master_key.open(id, sealed);
    for t in &terminals {
        let role = Role::Teller {
            post_office_id: t.post_office_id.clone(),
        };
        let principal = Principal {
            id: t.id.clone(),
            role,
        };
        keys.insert(principal, &open(&t.id, &t.secret)?);
    }
    for o in switch.store.operators()? {
        let secret = open(&o.id, &o.secret)?;
        keys.insert(
            Principal {
                id: o.id,
                role: Role::Operator,
            },
            &secret,
        );
    }
    for m in switch.store.merchants()? {
        let secret = open(&m.id, &m.secret)?;
        keys.insert(
            Principal {
                id: m.id,
                role: Role::Merchant,
            },
            &secret,
        );
    }
    for b in switch.store.bank_clients()? {
        let secret = open(&b.bin, &b.secret)?;
        keys.insert(
            Principal {
                id: b.bin,
                role: Role::Bank,
            },
            &secret,
        );
    }
    // Previous secrets still within their rotation's grace.
    let store_keys = StoreKeys {
        switch: switch.clone(),
    };
    for r in switch.store.rotations()? {
        if r.until_ms <= crate::clock::now_ms() {
            continue;
        }
        if let crate::caller::KeyState::Active(p, secret, Some((previous, until_ms))) =
            crate::caller::SharedKeys::lookup(&store_keys, &r.key_id)?
        {
            crate::caller::Credentials::rotate(keys.as_ref(), p, &secret, &previous, until_ms);
        }
    }
    // Revoked keys stay refused across restarts.
    for r in switch.store.revocations()? {
        crate::caller::Credentials::revoke(keys.as_ref(), &r.key_id);
    }
    if config.store.url.is_some() {
        keys.share(Arc::new(StoreKeys {
            switch: switch.clone(),
        }));
    }
    // Payments stored through other nodes wake this node's watchers.
    let weak = Arc::downgrade(&switch);
    switch.store.listen_payments(move || {
        weak.upgrade()
            .map(|s| s.notifier.stored_elsewhere())
            .is_some()
    });
    // The report's aggregates of what an earlier version finished.
    let seeded = switch.seed_pilot_report().await?;
    if seeded > 0 {
        tracing::info!(
            aggregates = seeded,
            "pilot report aggregates made from earlier transactions"
        );
    }
    let resolved = switch.recover().await?;
    if resolved > 0 {
        tracing::warn!(
            transactions = resolved,
            "finished transactions a previous run left unfinished"
        );
    }
    Ok(Opened {
        switch,
        keys,
        sims,
        tls,
    })
}

/// Check that this node's master key is the one the store's secrets are
/// sealed with (recording it on first use), then seal any secret an
/// earlier version stored in the clear. Run under the provisioning turn.
async fn seal_secrets(switch: &Switch) -> Result<(), BoxError> {
    use crate::secrets::{CHECK_KEY_ID, check_secret};
    let key = &switch.master_key;
    let store = &switch.store;
    match store.master_key_check()? {
        Some(sealed) => {
            if key.open(CHECK_KEY_ID, &sealed)? != check_secret() {
                return Err("the master key check value is wrong".into());
            }
        }
        None => store.put_master_key_check(&key.seal(CHECK_KEY_ID, &check_secret()))?,
    }
    // Each caller's secret as it should be stored: sealed under its own id.
    // `None` when it is sealed already (the usual case after the first start).
    let reseal = |id: &str, secret: &crate::secrets::SealedSecret| -> Result<_, BoxError> {
        if secret.is_sealed() {
            return Ok(None);
        }
        Ok(Some(key.seal(id, &key.open(id, secret)?)))
    };
    let mut sealed = 0;
    for mut t in store.terminals()? {
        if let Some(s) = reseal(&t.id, &t.secret)? {
            t.secret = s;
            store.put_terminal(&t)?;
            sealed += 1;
        }
    }
    for mut o in store.operators()? {
        if let Some(s) = reseal(&o.id, &o.secret)? {
            o.secret = s;
            store.put_operator(&o)?;
            sealed += 1;
        }
    }
    for mut m in store.merchants()? {
        if let Some(s) = reseal(&m.id, &m.secret)? {
            m.secret = s;
            store.put_merchant(&m)?;
            sealed += 1;
        }
    }
    for mut b in store.bank_clients()? {
        if let Some(s) = reseal(&b.bin, &b.secret)? {
            b.secret = s;
            store.put_bank_client(&b)?;
            sealed += 1;
        }
    }
    store.durable().await?;
    if sealed > 0 {
        tracing::warn!(
            secrets = sealed,
            "sealed secrets an earlier version stored in the clear"
        );
    }
    Ok(())
}

/// With several nodes: callers provisioned on another node, and the
/// nonces every node has seen, from the shared store.
struct StoreKeys {
    /// A terminal learnt here also brings its ledger numbers (and its post
    /// office's) to this node's flows.
    switch: Arc<Switch>,
}

impl crate::caller::SharedKeys for StoreKeys {
    fn lookup(&self, id: &str) -> Result<crate::caller::KeyState, String> {
        use crate::caller::KeyState;
        let store = &self.switch.store;
        let e = |e: crate::store::StoreError| e.to_string();
        if store.revocation(id).map_err(e)?.is_some() {
            return Ok(KeyState::Revoked);
        }
        let active = |id: String, role: Role, sealed: &crate::secrets::SealedSecret| {
            let key = &self.switch.master_key;
            let secret = key.open(&id, sealed)?;
            let previous = match store.rotation(&id).map_err(e)? {
                Some(r) if r.until_ms > crate::clock::now_ms() => {
                    Some((key.open(&id, &r.previous)?, r.until_ms))
                }
                _ => None,
            };
            Ok(KeyState::Active(Principal { id, role }, secret, previous))
        };
        if let Some(t) = store.terminal(id).map_err(e)? {
            // A terminal new to this node brings its numbers (a known one
            // is only being checked again: nothing to scan).
            if !self.switch.knows_terminal(&t.id) {
                let offices = store.post_offices().map_err(e)?;
                self.switch.add_numbers(&offices, std::slice::from_ref(&t));
            }
            let role = Role::Teller {
                post_office_id: t.post_office_id.clone(),
            };
            return active(t.id, role, &t.secret);
        }
        if let Some(m) = store.merchant(id).map_err(e)? {
            return active(m.id, Role::Merchant, &m.secret);
        }
        if let Some(o) = store.operator(id).map_err(e)? {
            return active(o.id, Role::Operator, &o.secret);
        }
        if let Some(b) = store.bank_client(id).map_err(e)? {
            return active(b.bin, Role::Bank, &b.secret);
        }
        Ok(KeyState::Unknown)
    }

    fn first_use(&self, key_id: &str, nonce: &str, expires_ms: i64) -> Result<bool, String> {
        self.switch
            .store
            .first_use_nonce(&format!("{key_id}\n{nonce}"), expires_ms)
            .map_err(|e| e.to_string())
    }
}

/// Serve on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BoxError> {
    let address = listener.local_addr()?;
    let opened = open(config, address).await?;
    serve(listener, opened, shutdown).await
}

/// Serve an opened switch on `listener` until `shutdown` resolves, then
/// drain in-flight requests and flush.
pub async fn serve(
    listener: TcpListener,
    opened: Opened,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BoxError> {
    let Opened {
        switch,
        keys,
        sims,
        tls,
    } = opened;
    let address = listener.local_addr()?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let console = match switch.config.console_listen {
        Some(at) => {
            // The console takes the listener's TLS (its certificate), and
            // its rule: clear text only on loopback unless `insecure`.
            let tls = match (&switch.config.tls.cert_file, &switch.config.tls.key_file) {
                (Some(cert), Some(key)) => Some(crate::edge::console::tls_acceptor(cert, key)?),
                _ if at.ip().is_loopback() || switch.config.tls.insecure => None,
                _ => {
                    return Err(format!(
                        "refusing to serve the console in clear on {at}: give the switch a \
                         certificate (--tls-cert, --tls-key), or --insecure behind a TLS proxy"
                    )
                    .into());
                }
            };
            let listener = TcpListener::bind(at)
                .await
                .map_err(|e| format!("the console cannot listen on {at}: {e}"))?;
            tracing::info!(address = %listener.local_addr()?, tls = tls.is_some(), "console serving");
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(crate::edge::console::serve(
                listener,
                switch.clone(),
                tls,
                switch.config.console_secure_cookies,
                async move {
                    let _ = stop.changed().await;
                },
            )))
        }
        None => None,
    };

    let worker = {
        let switch = switch.clone();
        tokio::spawn(async move {
            let operator = Principal {
                id: "worker".into(),
                role: Role::Operator,
            };
            let mut pass: u64 = 0;
            // Post offices below the low-float threshold (logged on change).
            let mut low_now = std::collections::BTreeSet::new();
            loop {
                pass += 1;
                // Every pass, on every node: has the wall clock been stepped?
                crate::clock::observe_wall();
                // Every ~10 s: post offices' e-float and low-float gauges.
                if pass % 20 == 1 {
                    let low = switch.liquidity(&operator, "").await;
                    if let Err(e) = &low {
                        pass_failed("the low-float pass could not read the floats", e);
                    }
                    if let Ok(all) = low {
                        for l in &all {
                            if l.low_float && low_now.insert(l.post_office_id.clone()) {
                                tracing::warn!(post_office = %l.post_office_id, efloat = l.efloat, "e-float fell below the low-float threshold");
                            } else if !l.low_float && low_now.remove(&l.post_office_id) {
                                tracing::info!(post_office = %l.post_office_id, efloat = l.efloat, "e-float back above the low-float threshold");
                            }
                        }
                    }
                }
                // With PostgreSQL, one node at a time runs the jobs below:
                // the holder of the worker lease (handed on when it dies).
                match switch.store.worker_lease().await {
                    Ok(true) => {}
                    Ok(false) => {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            _ = stop_rx.changed() => break,
                        }
                        continue;
                    }
                    Err(e) => {
                        pass_failed("the worker lease could not be asked for", &e);
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            _ = stop_rx.changed() => break,
                        }
                        continue;
                    }
                }
                if let Err(e) = switch.store.forget_nonces(crate::clock::now_ms()).await {
                    pass_failed("forgetting old nonces failed", &e);
                }
                if let Err(e) = switch.run_reversals().await {
                    pass_failed("reversal pass failed", &e);
                }
                // Every ~10 s: what a node that died left unfinished.
                if pass.is_multiple_of(20) {
                    match switch.recover_abandoned().await {
                        Ok(0) => {}
                        Ok(n) => tracing::warn!(
                            transactions = n,
                            "finished transactions a node left unfinished"
                        ),
                        Err(e) => pass_failed("the abandoned-transaction pass failed", &e),
                    }
                }
                match switch.expire_cash_outs().await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(cash_outs = n, "cancelled cash-outs not confirmed in time")
                    }
                    Err(e) => pass_failed("cash-out deadline pass failed", &e),
                }
                match switch.scheduled_close().await {
                    Ok(None) => {}
                    Ok(Some(id)) => {
                        tracing::info!(window = id, "settlement window closed on schedule")
                    }
                    Err(e) => pass_failed("scheduled settlement close failed", &e),
                }
                match switch.expire_bill_qrs().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(bill_payments = n, "bill codes expired unpaid"),
                    Err(e) => pass_failed("bill code expiry pass failed", &e),
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop_rx.changed() => break,
                }
            }
        })
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<proto::v1::teller_server::TellerServer<TellerService>>()
        .await;
    // Reflection in both versions: grpcurl and current clients speak v1,
    // Python's grpcio-reflection, Postman and older grpcurl v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    tracing::info!(%address, tls = switch.config.tls.cert_file.is_some(), "switch serving");
    let mut server = tonic::transport::Server::builder().timeout(Duration::from_secs(60));
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .layer(AuthLayer::new(keys.clone()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(proto::v1::teller_server::TellerServer::new(TellerService {
            switch: switch.clone(),
        }))
        .add_service(proto::v1::admin_server::AdminServer::new(AdminService {
            switch: switch.clone(),
            keys,
        }))
        .add_service(proto::v1::merchant_server::MerchantServer::new(
            MerchantService {
                switch: switch.clone(),
            },
        ))
        .add_service(proto::v1::payer_bank_server::PayerBankServer::new(
            PayerBankService {
                switch: switch.clone(),
            },
        ))
        .add_service(proto::v1::bills_server::BillsServer::new(BillsService {
            switch: switch.clone(),
        }))
        .add_service(proto::v1::settlement_server::SettlementServer::new(
            SettlementService {
                switch: switch.clone(),
            },
        ))
        .add_service(proto::v1::simulator_server::SimulatorServer::new(
            crate::sim::bank_app::SimulatorService { banks: sims.banks },
        ))
        // Small request/response exchanges: Nagle's algorithm would hold each
        // answer for a delayed ACK (tens of milliseconds).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    tracing::info!("draining");
    let _ = stop_tx.send(true);
    let _ = worker.await;
    if let Some(console) = console {
        let _ = console.await;
    }
    switch.store.durable().await?;
    tracing::info!("stopped");
    Ok(())
}

/// A background pass that failed, logged where it is handled: at ERROR (a
/// human must look), unless only the shared store was out of this node's
/// reach, which the store logged at ERROR once where it found it (and the
/// flows at WARN where they met it): then at DEBUG, or a cut node would
/// log a line per job every half second; the pass runs again either way.
fn pass_failed(what: &str, e: &impl crate::flows::fault::StorageFault) {
    if e.unreachable() {
        tracing::debug!(error = %e, pass = what, "a background pass waits for the store");
    } else {
        tracing::error!(error = %e, pass = what, "a background pass failed");
    }
}
