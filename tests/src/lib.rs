//! A harness for end-to-end tests: the switch in-process on an ephemeral
//! port and a temporary data directory, with clients that sign as any
//! provisioned terminal or the operator.
//!
//! The same tests run on either backend: the embedded engine (the
//! default), or PostgreSQL when `SWITCH_TEST_STORE=postgres` (a throw-away
//! cluster per test, kept across a restart). The PostgreSQL store waits for
//! the server from the runtime's workers, so the tests run on the
//! multi-threaded runtime.

pub mod console;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proto::auth::Credentials;
use proto::v1 as pb;
use proto::v1::admin_client::AdminClient;
use proto::v1::bills_client::BillsClient;
use proto::v1::merchant_client::MerchantClient;
use proto::v1::payer_bank_client::PayerBankClient;
use proto::v1::settlement_client::SettlementClient;
use proto::v1::teller_client::TellerClient;
use serde::Deserialize;
use switch::Config;
use switch::flows::Switch;
use tonic::transport::Channel;

pub struct Harness {
    /// Keeps the data directory (unless `keep` took it).
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    pub addr: std::net::SocketAddr,
    pub switch: Arc<Switch>,
    /// The in-process simulated banks and billers.
    pub sims: switch::sim::Simulators,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
    channel: Channel,
    /// The PostgreSQL cluster, when the tests run on that backend.
    pub postgres: Option<Arc<pgtest::Cluster>>,
}

/// Do the tests run on PostgreSQL (`SWITCH_TEST_STORE=postgres`)?
pub fn on_postgres() -> bool {
    std::env::var("SWITCH_TEST_STORE").is_ok_and(|s| s == "postgres")
}

#[derive(Deserialize)]
struct Profile {
    id: String,
    secret: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Customer {
    pub bank: String,
    pub account: String,
    pub name: String,
    pub balance: u64,
    /// The simulated issuer's card for the account, and its PIN.
    #[serde(default)]
    pub card: String,
    #[serde(default)]
    pub pin: String,
}

impl Harness {
    /// A fresh switch with the default configuration changed by `tune`.
    pub async fn start(tune: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().to_path_buf();
        let postgres = on_postgres().then(|| Arc::new(pgtest::Cluster::start()));
        let mut h = Harness::start_at(&path, postgres, tune).await;
        h.dir = Some(dir);
        h
    }

    /// A fresh switch on the embedded backend whatever the suite runs on:
    /// for what only that backend has (its own journals' fsyncs).
    pub async fn start_embedded(tune: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().to_path_buf();
        let mut h = Harness::start_at(&path, None, tune).await;
        h.dir = Some(dir);
        h
    }

    /// A node on `postgres` with its own data directory `dir` (several
    /// nodes may share one cluster; the first provisions the demo network,
    /// and a later one reads the client profiles from `profiles`).
    pub async fn start_node(
        dir: tempfile::TempDir,
        postgres: Arc<pgtest::Cluster>,
        profiles: Option<&Path>,
        tune: impl FnOnce(&mut Config),
    ) -> Harness {
        if let Some(from) = profiles {
            let to = dir.path().join("profiles");
            std::fs::create_dir_all(&to).expect("profiles directory");
            for entry in std::fs::read_dir(from).expect("profiles") {
                let entry = entry.expect("a profile");
                std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copied");
            }
            // Every node sharing a store needs its master key.
            let key = from.parent().expect("a data directory").join("master.key");
            std::fs::copy(key, dir.path().join("master.key")).expect("master key copied");
        }
        let path = dir.path().to_path_buf();
        let mut h = Harness::start_at(&path, Some(postgres), tune).await;
        h.dir = Some(dir);
        h
    }

    async fn start_at(
        path: &Path,
        postgres: Option<Arc<pgtest::Cluster>>,
        tune: impl FnOnce(&mut Config),
    ) -> Harness {
        let mut config = Config {
            data_dir: path.to_path_buf(),
            ..Config::default()
        };
        config.store.url = postgres.as_ref().map(|pg| pg.url("switch"));
        // Tests need quick answers and no stray metrics listeners; windows
        // close only when a test closes them.
        config.bank_timeout_ms = 500;
        config.settlement = Default::default();
        tune(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("ephemeral port");
        let addr = listener.local_addr().unwrap();
        let opened = switch::server::open(config, addr)
            .await
            .expect("switch opens");
        let (switch, sims) = (opened.switch.clone(), opened.sims.clone());
        assert_eq!(
            matches!(
                switch.ledger,
                switch::store::ledger::LedgerStore::Postgres(_)
            ),
            postgres.is_some(),
            "the switch runs on the backend the tests asked for"
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn({
            async move {
                switch::server::serve(listener, opened, async {
                    let _ = stopped.await;
                })
                .await
                .expect("switch serves");
            }
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connects");
        Harness {
            dir: None,
            path: path.to_path_buf(),
            addr,
            switch,
            sims,
            stop: Some(stop),
            served: Some(served),
            channel,
            postgres,
        }
    }

    /// Stop (draining) and start again on the same data.
    pub async fn restart(mut self, tune: impl FnOnce(&mut Config)) -> Harness {
        let dir = self.dir.take();
        let path = self.path.clone();
        let postgres = self.postgres.take();
        self.stop_now().await;
        drop(self);
        let mut h = Harness::start_at(&path, postgres, tune).await;
        h.dir = dir;
        h
    }

    async fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.expect("server task");
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.path
    }

    pub fn credentials(&self, id: &str) -> Credentials {
        let text = std::fs::read_to_string(self.path.join("profiles").join(format!("{id}.toml")))
            .expect("profile");
        let p: Profile = toml::from_str(&text).expect("profile parses");
        Credentials::from_hex(p.id, &p.secret).expect("hex secret")
    }

    pub fn customers(&self) -> Vec<Customer> {
        serde_json::from_str(
            &std::fs::read_to_string(self.path.join("profiles/customers.json")).unwrap(),
        )
        .unwrap()
    }

    /// A simulated customer of `bank` holding at least `balance_min`.
    pub fn customer(&self, bank: &str, balance_min: u64) -> Customer {
        self.customers()
            .into_iter()
            .find(|c| c.bank == bank && c.balance >= balance_min)
            .unwrap_or_else(|| panic!("no customer of {bank} holds {balance_min}"))
    }

    pub fn teller(&self, id: &str) -> Teller {
        Teller {
            client: TellerClient::new(self.channel.clone()),
            bills: BillsClient::new(self.channel.clone()),
            credentials: self.credentials(id),
            teller: String::new(),
        }
    }

    /// A merchant's device.
    pub fn merchant(&self, id: &str) -> Merchant {
        Merchant {
            client: MerchantClient::new(self.channel.clone()),
            credentials: self.credentials(id),
        }
    }

    /// A bank paying codes for its customers (profile `bank-{bin}`).
    pub fn bank(&self, bin: &str) -> PayerBank {
        PayerBank {
            client: PayerBankClient::new(self.channel.clone()),
            teller: TellerClient::new(self.channel.clone()),
            credentials: self.credentials(&format!("bank-{bin}")),
        }
    }

    /// The simulated bill customers the demo network lists.
    pub fn bill_customers(&self) -> Vec<BillCustomer> {
        serde_json::from_str(
            &std::fs::read_to_string(self.path.join("profiles/bill-customers.json")).unwrap(),
        )
        .unwrap()
    }

    /// A bill customer of `biller` with `bills` bills due.
    pub fn bill_customer(&self, biller: &str, bills: usize) -> BillCustomer {
        self.bill_customers()
            .into_iter()
            .find(|c| c.biller == biller && c.bills_due == bills)
            .unwrap_or_else(|| panic!("no customer of {biller} with {bills} bills due"))
    }

    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone())
    }

    /// Settlement calls signed with profile `id` (`operator`, `bank-<BIN>`,
    /// a terminal).
    pub fn settlement(&self, id: &str) -> Settlement {
        Settlement {
            client: SettlementClient::new(self.channel.clone()),
            credentials: self.credentials(id),
        }
    }

    pub fn raw_teller(&self) -> TellerClient<Channel> {
        TellerClient::new(self.channel.clone())
    }

    /// A teller client signing with `credentials` (a terminal provisioned
    /// during the test).
    pub fn teller_with(&self, credentials: Credentials) -> Teller {
        Teller {
            client: TellerClient::new(self.channel.clone()),
            bills: BillsClient::new(self.channel.clone()),
            credentials,
            teller: String::new(),
        }
    }

    /// The ledger's invariants hold (asked over gRPC as an operator).
    pub async fn assert_ledger_clean(&self) {
        let creds = self.credentials("operator");
        let r = AdminClient::new(self.channel.clone())
            .check_ledger(creds.sign(
                "/paymentswitch.v1.Admin/CheckLedger",
                pb::CheckLedgerRequest {},
            ))
            .await
            .expect("check runs")
            .into_inner();
        assert!(r.balanced, "ledger invariants broken: {:?}", r.violations);
    }

    /// A one-time withdrawal code from a simulated customer's bank app.
    pub fn withdrawal_code(&self, bin: &str, account: &str, amount: u64) -> String {
        self.sims.banks[bin]
            .issue_withdrawal_code(account, amount, proto::auth::now_ms())
            .expect("code issued")
            .0
    }

    /// Wait until `f` holds, or fail after `seconds`.
    pub async fn eventually(&self, seconds: u64, what: &str, mut f: impl FnMut(&Harness) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        while !f(self) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// A simulated customer's balance at their bank.
    pub fn bank_balance(&self, bin: &str, account: &str) -> u64 {
        self.sims.banks[bin]
            .account(account)
            .expect("customer exists")
            .balance
    }

    /// A ledger account's posted balance (credits minus debits).
    pub async fn ledger_balance(&self, id: u128) -> i128 {
        self.switch
            .ledger
            .account(id)
            .await
            .expect("ledger readable")
            .expect("account exists")
            .balance_posted()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct BillCustomer {
    pub biller: String,
    pub customer: String,
    pub name: String,
    pub bills_due: usize,
    pub amount_due: u64,
}

/// A merchant's signed client.
pub struct Merchant {
    pub client: MerchantClient<Channel>,
    pub credentials: Credentials,
}

impl Merchant {
    pub async fn create_qr(
        &mut self,
        request_id: &str,
        amount: u64,
        reference: &str,
        expires_in_s: u32,
    ) -> Result<pb::QrCode, tonic::Status> {
        let m = pb::CreateQrRequest {
            client_request_id: request_id.into(),
            amount,
            reference: reference.into(),
            purpose: "thanh toan don hang".into(),
            expires_in_s,
        };
        self.client
            .create_qr(
                self.credentials
                    .sign("/paymentswitch.v1.Merchant/CreateQr", m),
            )
            .await
            .map(|r| r.into_inner())
    }

    pub async fn static_qr(&mut self) -> pb::QrCode {
        self.client
            .static_qr(self.credentials.sign(
                "/paymentswitch.v1.Merchant/StaticQr",
                pb::StaticQrRequest {},
            ))
            .await
            .expect("static code")
            .into_inner()
    }

    pub async fn watch(&mut self, after_seq: u64) -> tonic::Streaming<pb::PaymentNotice> {
        self.client
            .watch_payments(self.credentials.sign(
                "/paymentswitch.v1.Merchant/WatchPayments",
                pb::WatchPaymentsRequest { after_seq },
            ))
            .await
            .expect("watching")
            .into_inner()
    }

    pub async fn list(&mut self, page_size: u32, page_token: &str) -> pb::ListPaymentsResponse {
        let m = pb::ListPaymentsRequest {
            page_size,
            page_token: page_token.into(),
        };
        self.client
            .list_payments(
                self.credentials
                    .sign("/paymentswitch.v1.Merchant/ListPayments", m),
            )
            .await
            .expect("list")
            .into_inner()
    }
}

/// Settlement calls, signed.
pub struct Settlement {
    pub client: SettlementClient<Channel>,
    pub credentials: Credentials,
}

impl Settlement {
    /// The pilot report of `period` (and `commune`, or every one).
    pub async fn pilot_report(
        &mut self,
        period: &str,
        commune: &str,
    ) -> Result<pb::PilotReport, tonic::Status> {
        let m = pb::GetPilotReportRequest {
            period: period.into(),
            commune: commune.into(),
        };
        self.client
            .get_pilot_report(
                self.credentials
                    .sign("/paymentswitch.v1.Settlement/GetPilotReport", m),
            )
            .await
            .map(|r| r.into_inner())
    }

    /// The aggregates' keys that differ from a rebuild.
    pub async fn check_pilot_report(&mut self, repair: bool) -> pb::CheckPilotReportResponse {
        let m = pb::CheckPilotReportRequest { repair };
        self.client
            .check_pilot_report(
                self.credentials
                    .sign("/paymentswitch.v1.Settlement/CheckPilotReport", m),
            )
            .await
            .expect("check")
            .into_inner()
    }

    pub async fn windows(&mut self) -> Vec<pb::Window> {
        self.client
            .list_windows(self.credentials.sign(
                "/paymentswitch.v1.Settlement/ListWindows",
                pb::ListWindowsRequest {},
            ))
            .await
            .expect("windows")
            .into_inner()
            .windows
    }

    /// Close the open window.
    pub async fn close(&mut self) -> pb::Window {
        let open = self
            .windows()
            .await
            .last()
            .expect("an open window")
            .window_id;
        self.close_id(open).await.expect("closes")
    }

    pub async fn close_id(&mut self, window_id: u64) -> Result<pb::Window, tonic::Status> {
        self.client
            .close_window(self.credentials.sign(
                "/paymentswitch.v1.Settlement/CloseWindow",
                pb::CloseWindowRequest { window_id },
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn report(
        &mut self,
        window_id: u64,
        participant: &str,
    ) -> Result<pb::SettlementReport, tonic::Status> {
        self.client
            .get_report(self.credentials.sign(
                "/paymentswitch.v1.Settlement/GetReport",
                pb::GetReportRequest {
                    window_id,
                    participant: participant.into(),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn settle(
        &mut self,
        window_id: u64,
        reference: &str,
    ) -> Result<pb::Window, tonic::Status> {
        self.client
            .settle(self.credentials.sign(
                "/paymentswitch.v1.Settlement/Settle",
                pb::SettleRequest {
                    window_id,
                    reference: reference.into(),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    /// Stream `statement` in `chunk_bytes` pieces, signed over its SHA-256
    /// (or over `signed_digest` when a test lies about it).
    pub async fn reconcile(
        &mut self,
        window_id: u64,
        statement: &[u8],
        chunk_bytes: usize,
        signed_digest: Option<&str>,
    ) -> Result<pb::ReconciliationReport, tonic::Status> {
        self.reconcile_for("", window_id, statement, chunk_bytes, signed_digest)
            .await
    }

    /// A biller's statement, as an operator submits it.
    pub async fn reconcile_biller(
        &mut self,
        biller: &str,
        window_id: u64,
        statement: &[u8],
    ) -> Result<pb::ReconciliationReport, tonic::Status> {
        self.reconcile_for(biller, window_id, statement, 4096, None)
            .await
    }

    /// A biller's statement signed over `digest` (a test lying about it).
    pub async fn reconcile_for_test(
        &mut self,
        biller: &str,
        window_id: u64,
        statement: &[u8],
        digest: &str,
    ) -> Result<pb::ReconciliationReport, tonic::Status> {
        self.reconcile_for(biller, window_id, statement, 4096, Some(digest))
            .await
    }

    async fn reconcile_for(
        &mut self,
        biller: &str,
        window_id: u64,
        statement: &[u8],
        chunk_bytes: usize,
        signed_digest: Option<&str>,
    ) -> Result<pb::ReconciliationReport, tonic::Status> {
        let digest = signed_digest.map(str::to_string).unwrap_or_else(|| {
            let mut d = if biller.is_empty() {
                proto::auth::StatementDigest::new(window_id)
            } else {
                proto::auth::StatementDigest::for_biller(window_id, biller)
            };
            d.update(statement);
            d.finish()
        });
        let mut chunks: Vec<pb::StatementChunk> = statement
            .chunks(chunk_bytes.max(1))
            .map(|c| pb::StatementChunk {
                data: c.to_vec(),
                ..Default::default()
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(pb::StatementChunk::default());
        }
        chunks[0].window_id = window_id;
        chunks[0].biller = biller.to_string();
        let stream = tokio_stream::iter(chunks);
        self.client
            .reconcile(self.credentials.sign_stream(
                "/paymentswitch.v1.Settlement/Reconcile",
                &digest,
                stream,
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn resolve(
        &mut self,
        window_id: u64,
        bank_bin: &str,
        exception_id: &str,
        note: &str,
    ) -> Result<pb::ReconciliationException, tonic::Status> {
        self.client
            .resolve_exception(self.credentials.sign(
                "/paymentswitch.v1.Settlement/ResolveException",
                pb::ResolveExceptionRequest {
                    window_id,
                    exception_id: exception_id.into(),
                    note: note.into(),
                    ..party(bank_bin)
                },
            ))
            .await
            .map(|r| r.into_inner())
    }
}

/// Whose exception: a BIN, or `biller:CODE`.
fn party(who: &str) -> pb::ResolveExceptionRequest {
    match who.strip_prefix("biller:") {
        Some(code) => pb::ResolveExceptionRequest {
            biller: code.into(),
            ..Default::default()
        },
        None => pb::ResolveExceptionRequest {
            bank_bin: who.into(),
            ..Default::default()
        },
    }
}

/// The count of a reconciliation class.
pub fn class_count(r: &pb::ReconciliationReport, class: &str) -> u64 {
    r.classes
        .iter()
        .find(|c| c.class == class)
        .map_or(0, |c| c.count)
}

/// A payer bank's signed client.
pub struct PayerBank {
    pub client: PayerBankClient<Channel>,
    pub teller: TellerClient<Channel>,
    pub credentials: Credentials,
}

impl PayerBank {
    pub async fn pay_qr(
        &mut self,
        request_id: &str,
        payload: &str,
        payer_account: &str,
        amount: u64,
    ) -> Result<pb::Transaction, tonic::Status> {
        let m = pb::PayQrRequest {
            client_request_id: request_id.into(),
            payload: payload.into(),
            payer_account: payer_account.into(),
            amount,
        };
        self.client
            .pay_qr(
                self.credentials
                    .sign("/paymentswitch.v1.PayerBank/PayQr", m),
            )
            .await
            .map(|r| r.into_inner().transaction.expect("a transaction"))
    }

    pub async fn get(&mut self, id: &str) -> Result<pb::Transaction, tonic::Status> {
        let m = pb::GetTransactionRequest {
            transaction_id: id.into(),
        };
        self.teller
            .get_transaction(
                self.credentials
                    .sign("/paymentswitch.v1.Teller/GetTransaction", m),
            )
            .await
            .map(|r| r.into_inner().transaction.expect("a transaction"))
    }
}

/// A terminal's signed client.
pub struct Teller {
    pub client: TellerClient<Channel>,
    pub bills: BillsClient<Channel>,
    pub credentials: Credentials,
    /// The teller's name sent with cash-in, cash-out, bills and top-ups
    /// (empty: none).
    pub teller: String,
}

impl Teller {
    pub async fn inquire_bills(
        &mut self,
        biller: &str,
        customer: &str,
    ) -> Result<pb::InquireBillsResponse, tonic::Status> {
        let m = pb::InquireBillsRequest {
            biller: biller.into(),
            customer: customer.into(),
        };
        self.bills
            .inquire_bills(
                self.credentials
                    .sign("/paymentswitch.v1.Bills/InquireBills", m),
            )
            .await
            .map(|r| r.into_inner())
    }

    /// Pay every due bill of `customer` by card: the number and a PIN block
    /// made the way a terminal makes it (`pin_block` overrides it).
    pub async fn pay_bills_by_card(
        &mut self,
        request_id: &str,
        biller: &str,
        customer: &str,
        card: &str,
        pin: &str,
        pin_block: Option<&str>,
    ) -> Result<pb::Transaction, tonic::Status> {
        let (card_number, block) = self
            .credentials
            .card(card, pin)
            .expect("a well-formed card");
        let m = pb::PayBillsRequest {
            client_request_id: request_id.into(),
            biller: biller.into(),
            customer: customer.into(),
            funding: pb::Funding::Card as i32,
            card_number,
            pin_block: pin_block.map_or(block, str::to_string),
            teller: self.teller.clone(),
            ..Default::default()
        };
        self.bills
            .pay_bills(self.credentials.sign("/paymentswitch.v1.Bills/PayBills", m))
            .await
            .map(|r| r.into_inner().transaction.expect("a transaction"))
    }

    /// Send a bills payment as given (tests of what the edge refuses).
    pub async fn raw_pay_bills(
        &mut self,
        m: pb::PayBillsRequest,
    ) -> Result<pb::Transaction, tonic::Status> {
        self.bills
            .pay_bills(self.credentials.sign("/paymentswitch.v1.Bills/PayBills", m))
            .await
            .map(|r| r.into_inner().transaction.expect("a transaction"))
    }

    /// Top up `phone` by card.
    pub async fn top_up_by_card(
        &mut self,
        request_id: &str,
        provider: &str,
        phone: &str,
        amount: u64,
        card: &str,
        pin: &str,
    ) -> Result<pb::Transaction, tonic::Status> {
        let (card_number, pin_block) = self
            .credentials
            .card(card, pin)
            .expect("a well-formed card");
        let m = pb::TopUpRequest {
            client_request_id: request_id.into(),
            provider: provider.into(),
            phone: phone.into(),
            amount,
            funding: pb::Funding::Card as i32,
            card_number,
            pin_block,
            teller: self.teller.clone(),
            ..Default::default()
        };
        self.bills
            .top_up(self.credentials.sign("/paymentswitch.v1.Bills/TopUp", m))
            .await
            .map(|r| r.into_inner().transaction.expect("a transaction"))
    }

    /// Top up `phone`; `account` is `(bin, account)` for account funding.
    pub async fn top_up(
        &mut self,
        request_id: &str,
        provider: &str,
        phone: &str,
        amount: u64,
        funding: pb::Funding,
        account: Option<(&str, &str)>,
    ) -> Result<pb::TransactionResponse, tonic::Status> {
        let m = pb::TopUpRequest {
            client_request_id: request_id.into(),
            provider: provider.into(),
            phone: phone.into(),
            amount,
            funding: funding as i32,
            bank_bin: account.map(|a| a.0.to_string()).unwrap_or_default(),
            account: account.map(|a| a.1.to_string()).unwrap_or_default(),
            teller: self.teller.clone(),
            ..Default::default()
        };
        self.bills
            .top_up(self.credentials.sign("/paymentswitch.v1.Bills/TopUp", m))
            .await
            .map(|r| r.into_inner())
    }

    /// Pay bills; `account` is `(bin, account)` for account funding.
    pub async fn pay_bills(
        &mut self,
        request_id: &str,
        biller: &str,
        customer: &str,
        bill_ids: &[&str],
        funding: pb::Funding,
        account: Option<(&str, &str)>,
    ) -> Result<pb::Transaction, tonic::Status> {
        let m = pb::PayBillsRequest {
            client_request_id: request_id.into(),
            biller: biller.into(),
            customer: customer.into(),
            bill_ids: bill_ids.iter().map(|s| s.to_string()).collect(),
            funding: funding as i32,
            bank_bin: account.map(|a| a.0.to_string()).unwrap_or_default(),
            account: account.map(|a| a.1.to_string()).unwrap_or_default(),
            teller: self.teller.clone(),
            ..Default::default()
        };
        self.bills
            .pay_bills(self.credentials.sign("/paymentswitch.v1.Bills/PayBills", m))
            .await
            .map(|r| r.into_inner().transaction.expect("a transaction"))
    }

    pub async fn name_inquiry(
        &mut self,
        bin: &str,
        account: &str,
    ) -> Result<pb::NameInquiryResponse, tonic::Status> {
        let m = pb::NameInquiryRequest {
            bank_bin: bin.into(),
            account: account.into(),
        };
        self.client
            .name_inquiry(
                self.credentials
                    .sign("/paymentswitch.v1.Teller/NameInquiry", m),
            )
            .await
            .map(|r| r.into_inner())
    }

    pub async fn cash_in(
        &mut self,
        request_id: &str,
        bin: &str,
        account: &str,
        amount: u64,
    ) -> Result<pb::Transaction, tonic::Status> {
        let m = pb::CashInRequest {
            client_request_id: request_id.into(),
            bank_bin: bin.into(),
            account: account.into(),
            amount,
            teller: self.teller.clone(),
            offline_taken_at_ms: 0,
        };
        self.client
            .cash_in(self.credentials.sign("/paymentswitch.v1.Teller/CashIn", m))
            .await
            .map(|r| r.into_inner().transaction.expect("a transaction"))
    }

    pub async fn cash_out_start(
        &mut self,
        request_id: &str,
        bin: &str,
        account: &str,
        code: &str,
        amount: u64,
    ) -> Result<pb::Transaction, tonic::Status> {
        let m = pb::CashOutStartRequest {
            client_request_id: request_id.into(),
            bank_bin: bin.into(),
            account: account.into(),
            code: code.into(),
            amount,
            teller: self.teller.clone(),
        };
        self.client
            .cash_out_start(
                self.credentials
                    .sign("/paymentswitch.v1.Teller/CashOutStart", m),
            )
            .await
            .map(|r| r.into_inner().transaction.expect("a transaction"))
    }

    pub async fn cash_out_confirm(&mut self, id: &str) -> Result<pb::Transaction, tonic::Status> {
        let m = pb::CashOutConfirmRequest {
            transaction_id: id.into(),
        };
        self.client
            .cash_out_confirm(
                self.credentials
                    .sign("/paymentswitch.v1.Teller/CashOutConfirm", m),
            )
            .await
            .map(|r| r.into_inner().transaction.expect("a transaction"))
    }

    pub async fn cash_out_cancel(&mut self, id: &str) -> Result<pb::Transaction, tonic::Status> {
        let m = pb::CashOutCancelRequest {
            transaction_id: id.into(),
        };
        self.client
            .cash_out_cancel(
                self.credentials
                    .sign("/paymentswitch.v1.Teller/CashOutCancel", m),
            )
            .await
            .map(|r| r.into_inner().transaction.expect("a transaction"))
    }

    pub async fn open_shift(&mut self, counted_cash: u64) -> Result<pb::Shift, tonic::Status> {
        let m = pb::OpenShiftRequest { counted_cash };
        self.client
            .open_shift(
                self.credentials
                    .sign("/paymentswitch.v1.Teller/OpenShift", m),
            )
            .await
            .map(|r| r.into_inner())
    }

    pub async fn close_shift(&mut self, counted_cash: u64) -> Result<pb::Shift, tonic::Status> {
        let m = pb::CloseShiftRequest { counted_cash };
        self.client
            .close_shift(
                self.credentials
                    .sign("/paymentswitch.v1.Teller/CloseShift", m),
            )
            .await
            .map(|r| r.into_inner())
    }

    pub async fn get(&mut self, id: &str) -> Result<pb::TransactionResponse, tonic::Status> {
        let m = pb::GetTransactionRequest {
            transaction_id: id.into(),
        };
        self.client
            .get_transaction(
                self.credentials
                    .sign("/paymentswitch.v1.Teller/GetTransaction", m),
            )
            .await
            .map(|r| r.into_inner())
    }

    /// What is left of each limit, by name (`post_office_daily`, ...);
    /// with `customer` (BIN, account), the customer's too.
    pub async fn limits(
        &mut self,
        customer: Option<(&str, &str)>,
    ) -> Result<std::collections::BTreeMap<String, pb::Limit>, tonic::Status> {
        let (bank_bin, account) = customer.unwrap_or_default();
        let m = pb::GetLimitsRequest {
            bank_bin: bank_bin.into(),
            account: account.into(),
        };
        let r = self
            .client
            .get_limits(
                self.credentials
                    .sign("/paymentswitch.v1.Teller/GetLimits", m),
            )
            .await?
            .into_inner();
        Ok(r.limits.into_iter().map(|l| (l.limit.clone(), l)).collect())
    }

    pub async fn list(&mut self, page_size: u32, page_token: &str) -> pb::ListTransactionsResponse {
        let m = pb::ListTransactionsRequest {
            page_size,
            page_token: page_token.into(),
        };
        self.client
            .list_transactions(
                self.credentials
                    .sign("/paymentswitch.v1.Teller/ListTransactions", m),
            )
            .await
            .expect("list")
            .into_inner()
    }
}

/// Every file under `dir`, with its bytes: to search a data directory for
/// what must not be stored in it.
pub fn files(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p, b));
        }
    }
}

/// The stable error code a status carries.
pub fn error_code(s: &tonic::Status) -> String {
    s.metadata()
        .get("x-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}
