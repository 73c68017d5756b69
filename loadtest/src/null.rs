//! `--null-server`: the switch's services answering every call at once with
//! a reply of the size the switch sends (a transaction and its receipt), no
//! signature check, no storage. The same generator with the same flags
//! against it measures the ceiling of this machine, the generator and the
//! gRPC transport; the switch's figures are read against it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::auth::Credentials;
use proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::{BillCustomer, Customer, Target};

/// A receipt as long as the switch's.
const RECEIPT: &str = "BUU DIEN THO-TANG\nNOP TIEN VAO TAI KHOAN / CASH-IN\nMa GD / Tx:      00000000000000000000000000000000\nThoi gian:       2026-11-27 14:26:31 (UTC+7)\nNgan hang:       MB (970422)\nTai khoan:       ******6789\nChu tai khoan:   NGUYEN VAN AN\nSo tien:         50,000 VND\nPhi / Fee:       3,000 VND\nTong / Total:    53,000 VND\nTrang thai:      COMPLETED\nTham chieu/Ref:  9704220000000001\nQuay / Terminal: tho-tang-1\n";

/// Where a watcher's notices go.
type NoticeSender = tokio::sync::mpsc::Sender<Result<pb::PaymentNotice, Status>>;

#[derive(Default)]
struct State {
    next: AtomicU64,
    /// Live payment watchers by merchant.
    watchers: std::sync::Mutex<BTreeMap<String, Vec<NoticeSender>>>,
}

#[derive(Clone, Default)]
struct Null {
    state: Arc<State>,
}

impl Null {
    fn tx(&self, kind: pb::TxKind, status: pb::TxStatus, amount: u64) -> pb::TransactionResponse {
        let n = self.state.next.fetch_add(1, Ordering::Relaxed) + 1;
        pb::TransactionResponse {
            transaction: Some(pb::Transaction {
                transaction_id: format!("{:032x}", u128::from(n) << 8),
                kind: kind as i32,
                status: status as i32,
                terminal_id: "tho-tang-1".into(),
                post_office_id: "tho-tang".into(),
                bank_bin: "970422".into(),
                bank_name: "MB".into(),
                account_masked: "******6789".into(),
                account_name: "NGUYEN VAN AN".into(),
                amount,
                fee: 3_000,
                client_request_id: "lt1-1795764391465-123456".into(),
                created_at_ms: 1_795_764_391_465,
                updated_at_ms: 1_795_764_391_466,
                bank_reference: "9704220000000001".into(),
                ..Default::default()
            }),
            receipt: RECEIPT.into(),
        }
    }
}

fn key_id<T>(r: &Request<T>) -> String {
    r.metadata()
        .get(proto::auth::HEADER_KEY_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn unused() -> Status {
    Status::unimplemented("the null server answers only what the load generator calls")
}

#[tonic::async_trait]
impl pb::teller_server::Teller for Null {
    async fn name_inquiry(
        &self,
        _: Request<pb::NameInquiryRequest>,
    ) -> Result<Response<pb::NameInquiryResponse>, Status> {
        Err(unused())
    }
    async fn cash_in(
        &self,
        r: Request<pb::CashInRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        Ok(Response::new(self.tx(
            pb::TxKind::CashIn,
            pb::TxStatus::Completed,
            r.get_ref().amount,
        )))
    }
    async fn cash_out_start(
        &self,
        r: Request<pb::CashOutStartRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        Ok(Response::new(self.tx(
            pb::TxKind::CashOut,
            pb::TxStatus::Pending,
            r.get_ref().amount,
        )))
    }
    async fn cash_out_confirm(
        &self,
        _: Request<pb::CashOutConfirmRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        Ok(Response::new(self.tx(
            pb::TxKind::CashOut,
            pb::TxStatus::Completed,
            50_000,
        )))
    }
    async fn cash_out_cancel(
        &self,
        _: Request<pb::CashOutCancelRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        Err(unused())
    }
    async fn get_limits(
        &self,
        _: Request<pb::GetLimitsRequest>,
    ) -> Result<Response<pb::GetLimitsResponse>, Status> {
        Err(unused())
    }
    async fn get_offline_policy(
        &self,
        _: Request<pb::GetOfflinePolicyRequest>,
    ) -> Result<Response<pb::OfflinePolicy>, Status> {
        Err(unused())
    }
    async fn report_outbox(
        &self,
        _: Request<pb::OutboxReport>,
    ) -> Result<Response<pb::OutboxReport>, Status> {
        Err(unused())
    }
    async fn quote_fee(
        &self,
        _: Request<pb::QuoteFeeRequest>,
    ) -> Result<Response<pb::QuoteFeeResponse>, Status> {
        Err(unused())
    }
    async fn open_shift(
        &self,
        _: Request<pb::OpenShiftRequest>,
    ) -> Result<Response<pb::Shift>, Status> {
        Err(unused())
    }
    async fn close_shift(
        &self,
        _: Request<pb::CloseShiftRequest>,
    ) -> Result<Response<pb::Shift>, Status> {
        Err(unused())
    }
    async fn get_transaction(
        &self,
        r: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        let mut t = self.tx(pb::TxKind::CashIn, pb::TxStatus::Completed, 50_000);
        if let Some(tx) = &mut t.transaction {
            tx.transaction_id = r.get_ref().transaction_id.clone();
        }
        Ok(Response::new(t))
    }
    async fn list_transactions(
        &self,
        _: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        Err(unused())
    }
}

#[tonic::async_trait]
impl pb::simulator_server::Simulator for Null {
    async fn issue_withdrawal_code(
        &self,
        _: Request<pb::IssueWithdrawalCodeRequest>,
    ) -> Result<Response<pb::IssueWithdrawalCodeResponse>, Status> {
        Ok(Response::new(pb::IssueWithdrawalCodeResponse {
            code: "12345678".into(),
            expires_at_ms: 1_795_764_391_465,
        }))
    }
}

#[tonic::async_trait]
impl pb::bills_server::Bills for Null {
    async fn inquire_bills(
        &self,
        r: Request<pb::InquireBillsRequest>,
    ) -> Result<Response<pb::InquireBillsResponse>, Status> {
        let r = r.into_inner();
        Ok(Response::new(pb::InquireBillsResponse {
            biller: r.biller,
            biller_name: "EVNNPC Vinh Phuc (electricity)".into(),
            customer: r.customer,
            customer_name: "NGUYEN THI MAI".into(),
            bills: vec![pb::BillItem {
                bill_id: "EVN-202610-1".into(),
                period: "2026-10".into(),
                amount: 87_000,
                due_date: "2026-11-20".into(),
            }],
            nothing_due: false,
            partial_allowed: false,
            total: 87_000,
            fee: 2_000,
        }))
    }
    async fn pay_bills(
        &self,
        _: Request<pb::PayBillsRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        Ok(Response::new(self.tx(
            pb::TxKind::BillPayment,
            pb::TxStatus::Completed,
            87_000,
        )))
    }
    async fn top_up(
        &self,
        _: Request<pb::TopUpRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        Ok(Response::new(self.tx(
            pb::TxKind::TopUp,
            pb::TxStatus::Completed,
            50_000,
        )))
    }
    async fn list_billers(
        &self,
        _: Request<pb::ListBillersRequest>,
    ) -> Result<Response<pb::ListBillersResponse>, Status> {
        Err(unused())
    }
}

#[tonic::async_trait]
impl pb::merchant_server::Merchant for Null {
    async fn get_fee_catalogue(
        &self,
        _: Request<pb::GetFeeCatalogueRequest>,
    ) -> Result<Response<pb::FeeCatalogue>, Status> {
        Err(unused())
    }
    async fn create_fee_request(
        &self,
        _: Request<pb::CreateFeeRequestRequest>,
    ) -> Result<Response<pb::FeeRequest>, Status> {
        Err(unused())
    }
    async fn get_fee_request(
        &self,
        _: Request<pb::GetFeeRequestRequest>,
    ) -> Result<Response<pb::FeeRequest>, Status> {
        Err(unused())
    }
    async fn create_qr(
        &self,
        r: Request<pb::CreateQrRequest>,
    ) -> Result<Response<pb::QrCode>, Status> {
        // The merchant's id rides in the code's reference label, so that
        // the payment can notify it.
        let merchant = key_id(&r);
        let r = r.into_inner();
        let mut spec = qr::Spec::new("970422", "8100000001");
        spec.amount = Some(r.amount);
        spec.bill_number = Some(&r.reference);
        let label: String = merchant.chars().take(25).collect();
        spec.reference = Some(&label);
        let payload = qr::encode(&spec).map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(pb::QrCode {
            qr_id: "Q00000000000000000001".into(),
            payload,
            amount: r.amount,
            reference: r.reference,
            purpose: r.purpose,
            expires_at_ms: 1_795_764_391_465,
            is_static: false,
        }))
    }
    async fn static_qr(
        &self,
        _: Request<pb::StaticQrRequest>,
    ) -> Result<Response<pb::QrCode>, Status> {
        Err(unused())
    }
    type WatchPaymentsStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::PaymentNotice, Status>>;
    async fn watch_payments(
        &self,
        r: Request<pb::WatchPaymentsRequest>,
    ) -> Result<Response<Self::WatchPaymentsStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(1 << 16);
        self.state
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key_id(&r))
            .or_default()
            .push(tx);
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }
    async fn list_payments(
        &self,
        _: Request<pb::ListPaymentsRequest>,
    ) -> Result<Response<pb::ListPaymentsResponse>, Status> {
        Ok(Response::new(pb::ListPaymentsResponse::default()))
    }
}

#[tonic::async_trait]
impl pb::payer_bank_server::PayerBank for Null {
    async fn pay_qr(
        &self,
        r: Request<pb::PayQrRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        let code = qr::decode(&r.get_ref().payload)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let merchant = code.reference.unwrap_or_default().to_string();
        let t = self.tx(
            pb::TxKind::QrPayment,
            pb::TxStatus::Completed,
            code.amount_vnd().unwrap_or(0),
        );
        let tx = t.transaction.clone().unwrap_or_default();
        let notice = pb::PaymentNotice {
            seq: self.state.next.load(Ordering::Relaxed),
            transaction_id: tx.transaction_id,
            qr_id: "Q00000000000000000001".into(),
            order_reference: code.bill_number.unwrap_or_default().to_string(),
            amount: tx.amount,
            fee: 120,
            net_amount: tx.amount - 120,
            payer_bank_bin: "970436".into(),
            payer_bank_name: "Vietcombank".into(),
            paid_at_ms: 1_795_764_391_465,
        };
        let senders = self
            .state
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&merchant)
            .cloned()
            .unwrap_or_default();
        for s in senders {
            let _ = s.try_send(Ok(notice.clone()));
        }
        Ok(Response::new(t))
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for Null {
    async fn set_fee_catalogue(
        &self,
        _: Request<pb::SetFeeCatalogueRequest>,
    ) -> Result<Response<pb::FeeCatalogue>, Status> {
        Err(unused())
    }
    async fn check_ledger(
        &self,
        _: Request<pb::CheckLedgerRequest>,
    ) -> Result<Response<pb::CheckLedgerResponse>, Status> {
        Ok(Response::new(pb::CheckLedgerResponse {
            balanced: true,
            ..Default::default()
        }))
    }
    async fn provision_post_office(
        &self,
        _: Request<pb::ProvisionPostOfficeRequest>,
    ) -> Result<Response<pb::PostOfficeInfo>, Status> {
        Err(unused())
    }
    async fn provision_commune(
        &self,
        _: Request<pb::ProvisionCommuneRequest>,
    ) -> Result<Response<pb::CommuneInfo>, Status> {
        Err(unused())
    }
    async fn provision_terminal(
        &self,
        _: Request<pb::ProvisionTerminalRequest>,
    ) -> Result<Response<pb::ProvisionTerminalResponse>, Status> {
        Err(unused())
    }
    async fn provision_merchant(
        &self,
        _: Request<pb::ProvisionMerchantRequest>,
    ) -> Result<Response<pb::ProvisionMerchantResponse>, Status> {
        Err(unused())
    }
    async fn revoke_key(
        &self,
        _: Request<pb::RevokeKeyRequest>,
    ) -> Result<Response<pb::RevokeKeyResponse>, Status> {
        Err(unused())
    }
    async fn rotate_key(
        &self,
        _: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::RotateKeyResponse>, Status> {
        Err(unused())
    }
    async fn create_console_user(
        &self,
        _: Request<pb::CreateConsoleUserRequest>,
    ) -> Result<Response<pb::CreateConsoleUserResponse>, Status> {
        Err(unused())
    }
    async fn list_console_users(
        &self,
        _: Request<pb::ListConsoleUsersRequest>,
    ) -> Result<Response<pb::ListConsoleUsersResponse>, Status> {
        Err(unused())
    }
    async fn disable_console_user(
        &self,
        _: Request<pb::DisableConsoleUserRequest>,
    ) -> Result<Response<pb::ConsoleUserInfo>, Status> {
        Err(unused())
    }
    async fn reset_console_user_password(
        &self,
        _: Request<pb::ResetConsoleUserPasswordRequest>,
    ) -> Result<Response<pb::CreateConsoleUserResponse>, Status> {
        Err(unused())
    }
}

/// A running null server.
pub struct NullServer {
    server: crate::ServerThread,
}

impl NullServer {
    /// Serve on a runtime of its own (as the embedded switch does); the
    /// target has the demo network's shape with made-up credentials.
    pub async fn start() -> Result<(NullServer, Target), String> {
        let (server, address) =
            crate::ServerThread::start("null server", |listener, ready, stopped| async move {
                let _ = ready.send(Ok(listener.local_addr().expect("bound")));
                let null = Null::default();
                let _ = tonic::transport::Server::builder()
                    .add_service(pb::teller_server::TellerServer::new(null.clone()))
                    .add_service(pb::simulator_server::SimulatorServer::new(null.clone()))
                    .add_service(pb::bills_server::BillsServer::new(null.clone()))
                    .add_service(pb::merchant_server::MerchantServer::new(null.clone()))
                    .add_service(pb::payer_bank_server::PayerBankServer::new(null.clone()))
                    .add_service(pb::admin_server::AdminServer::new(null))
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(listener)
                            .with_nodelay(Some(true)),
                        async {
                            let _ = stopped.await;
                        },
                    )
                    .await;
            })
            .await?;
        let creds = |id: &str| Credentials::new(id, vec![7u8; 32]);
        let banks = switch::demo::DEMO_BANKS;
        let target = Target {
            addresses: vec![format!("http://{address}")],
            tls: crate::TargetTls::default(),
            tellers: switch::demo::DEMO_POST_OFFICES
                .iter()
                .flat_map(|(po, _)| (1..=2).map(move |t| format!("{po}-{t}")))
                .map(|id| {
                    let c = creds(&id);
                    (id, c)
                })
                .collect(),
            operator: creds("operator"),
            merchants: switch::demo::DEMO_MERCHANTS
                .iter()
                .map(|m| (m.0.to_string(), creds(m.0)))
                .collect(),
            banks: banks.iter().map(|b| (b.to_string(), creds(b))).collect(),
            customers: banks
                .iter()
                .flat_map(|b| {
                    switch::sim::demo_customers(b)
                        .into_iter()
                        .map(move |c| Customer {
                            bank: b.to_string(),
                            account: c.account,
                        })
                })
                .collect(),
            bill_customers: (0..2000)
                .map(|i| BillCustomer {
                    biller: "EVN".into(),
                    customer: format!("PD01{i:09}"),
                    bills_due: 1,
                })
                .collect(),
        };
        Ok((NullServer { server }, target))
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}
