//! The gRPC edge: proto types in, proto types out. Nothing below this
//! module sees a proto type.

use std::sync::Arc;

use proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::auth::{Principal, Role};
use crate::error::{ErrorCode, SwitchError};
use crate::flows::{Outcome, Switch};
use crate::ids::{TxId, mask_account};
use crate::store::{self, Status as TxStatus, TxRecord};

fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("unauthenticated: no verified caller"))
}

fn status_of(s: TxStatus) -> pb::TxStatus {
    match s {
        TxStatus::Pending => pb::TxStatus::Pending,
        TxStatus::Completed => pb::TxStatus::Completed,
        TxStatus::Failed => pb::TxStatus::Failed,
        TxStatus::Reversed => pb::TxStatus::Reversed,
    }
}

fn bank_name(bin: &str) -> String {
    qr::bank_by_bin(bin).map_or_else(|| bin.to_string(), |b| b.short_name.to_string())
}

pub fn to_proto(t: &TxRecord) -> pb::Transaction {
    pb::Transaction {
        transaction_id: t.id.clone(),
        kind: match t.kind {
            store::Kind::CashIn => pb::TxKind::CashIn,
            store::Kind::CashOut => pb::TxKind::CashOut,
            store::Kind::QrPayment => pb::TxKind::QrPayment,
            store::Kind::BillPayment => pb::TxKind::BillPayment,
        } as i32,
        status: status_of(t.status) as i32,
        terminal_id: t.terminal_id.clone(),
        post_office_id: t.post_office_id.clone(),
        bank_bin: t.bank_bin.clone(),
        bank_name: bank_name(&t.bank_bin),
        account_masked: mask_account(&t.account),
        account_name: t.account_name.clone(),
        amount: t.amount,
        fee: t.fee.total,
        client_request_id: t.client_request_id.clone(),
        created_at_ms: t.created_at_ms,
        updated_at_ms: t.updated_at_ms,
        error_code: t.error_code.clone().unwrap_or_default(),
        error_message: t.error_message.clone().unwrap_or_default(),
        bank_reference: t.bank_reference.clone().unwrap_or_default(),
        qr_id: t
            .qr_id
            .clone()
            .or_else(|| t.merchant.as_ref().map(|m| m.qr_id.clone()))
            .unwrap_or_default(),
        qr_payload: String::new(),
        merchant_id: t
            .merchant
            .as_ref()
            .map(|m| m.merchant_id.clone())
            .unwrap_or_default(),
        biller: t
            .bill
            .as_ref()
            .map(|b| b.biller.clone())
            .unwrap_or_default(),
        bill_customer: t
            .bill
            .as_ref()
            .map(|b| b.customer.clone())
            .unwrap_or_default(),
        bill_ids: t
            .bill
            .as_ref()
            .map(|b| b.bills.iter().map(|x| x.id.clone()).collect())
            .unwrap_or_default(),
        funding: match t.bill.as_ref().map(|b| b.funding) {
            Some(store::Funding::Cash) => "cash",
            Some(store::Funding::Account) => "account",
            Some(store::Funding::Qr) => "qr",
            None => "",
        }
        .to_string(),
        deadline_ms: t.confirm_deadline_ms.unwrap_or(0),
        order_reference: t
            .merchant
            .as_ref()
            .and_then(|m| m.order_reference.clone())
            .unwrap_or_default(),
    }
}

/// A transaction with its QR payload filled in when one is shown.
fn to_proto_with_code(switch: &Switch, t: &TxRecord) -> pb::Transaction {
    let mut out = to_proto(t);
    if t.stage == store::Stage::AwaitingPayment
        && let Some(qr) = &t.qr_id
        && let Ok(Some(order)) = switch.store.order(qr)
    {
        out.qr_payload = order.payload;
    }
    out
}

/// `1234567` → `1,234,567`.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Civil date and time (UTC+7) of a UNIX time in milliseconds.
fn local_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000) + 7 * 3600;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} (UTC+7)",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A printable receipt.
pub fn receipt(t: &TxRecord) -> String {
    let title = match t.kind {
        store::Kind::CashIn => "NOP TIEN VAO TAI KHOAN / CASH-IN",
        store::Kind::CashOut => "RUT TIEN MAT / CASH-OUT",
        store::Kind::QrPayment => "THANH TOAN QR / QR PAYMENT",
        store::Kind::BillPayment => "THANH TOAN HOA DON / BILL PAYMENT",
    };
    let header = if t.post_office_id.is_empty() {
        "VIETQR".to_string()
    } else {
        format!("BUU DIEN {}", t.post_office_id.to_uppercase())
    };
    let mut r = format!(
        "{header}\n{title}\nMa GD / Tx:      {}\nThoi gian:       {}\n",
        t.id,
        local_time(t.created_at_ms),
    );
    if !t.bank_bin.is_empty() {
        r.push_str(&format!(
            "Ngan hang:       {} ({})\nTai khoan:       {}\n",
            bank_name(&t.bank_bin),
            t.bank_bin,
            mask_account(&t.account),
        ));
    }
    if let Some(m) = &t.merchant {
        r.push_str(&format!("Don vi / Merchant: {}\n", m.merchant_id));
        if let Some(o) = &m.order_reference {
            r.push_str(&format!("Don hang / Order: {o}\n"));
        }
    }
    if let Some(b) = &t.bill {
        r.push_str(&format!(
            "Nha cung cap:    {}\nMa KH / Customer: {} {}\n",
            b.biller, b.customer, b.customer_name
        ));
        for x in &b.bills {
            r.push_str(&format!(
                "  Ky {}:      {} VND\n",
                x.period,
                grouped(x.amount)
            ));
        }
    }
    if !t.account_name.is_empty() && t.bill.is_none() {
        r.push_str(&format!("Chu tai khoan:   {}\n", t.account_name));
    }
    r.push_str(&format!(
        "So tien:         {} VND\nPhi / Fee:       {} VND\nTong / Total:    {} VND\nTrang thai:      {}\n",
        grouped(t.amount),
        grouped(t.fee.total),
        grouped(t.amount + t.fee.total),
        crate::flows::status_label(t.status).to_uppercase()
    ));
    if let Some(reference) = &t.bank_reference {
        r.push_str(&format!("Tham chieu/Ref:  {reference}\n"));
    }
    if let Some(m) = &t.error_message {
        r.push_str(&format!("Ly do / Reason:  {m}\n"));
    }
    r.push_str(&format!("Quay / Terminal: {}\n", t.terminal_id));
    r
}

fn respond(switch: &Switch, t: &TxRecord) -> Response<pb::TransactionResponse> {
    Response::new(pb::TransactionResponse {
        receipt: receipt(t),
        transaction: Some(to_proto_with_code(switch, t)),
    })
}

/// Completed and pending transactions answer; failed and reversed ones are
/// errors carrying the transaction id (a retry answers the same).
fn answer(switch: &Switch, outcome: Outcome) -> Result<Response<pb::TransactionResponse>, Status> {
    let t = outcome.map_err(Status::from)?;
    match t.status {
        TxStatus::Completed | TxStatus::Pending => Ok(respond(switch, &t)),
        TxStatus::Failed | TxStatus::Reversed => {
            let code = t
                .error_code
                .as_deref()
                .and_then(ErrorCode::parse)
                .unwrap_or(ErrorCode::Internal);
            let mut s = Status::from(SwitchError::new(
                code,
                t.error_message.clone().unwrap_or_default(),
            ));
            if let Ok(v) = t.id.parse() {
                s.metadata_mut().insert("x-transaction-id", v);
            }
            if let Ok(v) = crate::flows::status_label(t.status).parse() {
                s.metadata_mut().insert("x-transaction-status", v);
            }
            Err(s)
        }
    }
}

fn shift_to_proto(s: &store::ShiftRecord) -> pb::Shift {
    pb::Shift {
        shift_id: s.id.clone(),
        terminal_id: s.terminal_id.clone(),
        status: if s.is_open() { "open" } else { "closed" }.into(),
        opened_at_ms: s.opened_at_ms,
        opening_cash: s.opening_cash,
        opening_expected: s.opening_expected,
        closed_at_ms: s.closed_at_ms.unwrap_or(0),
        expected_cash: s.expected_cash.unwrap_or(0),
        counted_cash: s.counted_cash.unwrap_or(0),
        variance: s.variance.unwrap_or(0),
    }
}

/// Who may see a transaction: its terminal (or bank, or merchant), the
/// bank that paid it, an operator.
fn visible(p: &Principal, t: &TxRecord) -> bool {
    match p.role {
        Role::Operator => true,
        Role::Bank => t.terminal_id == p.id || t.bank_bin == p.id,
        Role::Merchant => t.merchant.as_ref().is_some_and(|m| m.merchant_id == p.id),
        Role::Teller { .. } => t.terminal_id == p.id,
    }
}

pub struct TellerService {
    pub switch: Arc<Switch>,
}

#[tonic::async_trait]
impl pb::teller_server::Teller for TellerService {
    async fn name_inquiry(
        &self,
        req: Request<pb::NameInquiryRequest>,
    ) -> Result<Response<pb::NameInquiryResponse>, Status> {
        crate::telemetry::observe("name_inquiry", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let (bank_name, account_name) = self
                .switch
                .name_inquiry(&p, &r.bank_bin, &r.account)
                .await?;
            Ok(Response::new(pb::NameInquiryResponse {
                bank_bin: r.bank_bin,
                bank_name,
                account_masked: mask_account(&r.account),
                account_name,
            }))
        })
        .await
    }

    async fn cash_in(
        &self,
        req: Request<pb::CashInRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        crate::telemetry::observe("cash_in", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            answer(
                &self.switch,
                self.switch
                    .cash_in(&p, &r.client_request_id, &r.bank_bin, &r.account, r.amount)
                    .await,
            )
        })
        .await
    }

    async fn cash_out_start(
        &self,
        req: Request<pb::CashOutStartRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        crate::telemetry::observe("cash_out_start", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            answer(
                &self.switch,
                self.switch
                    .cash_out_start(
                        &p,
                        &r.client_request_id,
                        &r.bank_bin,
                        &r.account,
                        &r.code,
                        r.amount,
                    )
                    .await,
            )
        })
        .await
    }

    async fn cash_out_confirm(
        &self,
        req: Request<pb::CashOutConfirmRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        crate::telemetry::observe("cash_out_confirm", async move {
            let p = principal(&req)?;
            answer(
                &self.switch,
                self.switch
                    .cash_out_confirm(&p, &req.get_ref().transaction_id)
                    .await,
            )
        })
        .await
    }

    /// A cancellation is what the teller asked for: it answers with the
    /// REVERSED transaction, not an error.
    async fn cash_out_cancel(
        &self,
        req: Request<pb::CashOutCancelRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        crate::telemetry::observe("cash_out_cancel", async move {
            let p = principal(&req)?;
            let t = self
                .switch
                .cash_out_cancel(&p, &req.get_ref().transaction_id)
                .await?;
            Ok(respond(&self.switch, &t))
        })
        .await
    }

    async fn open_shift(
        &self,
        req: Request<pb::OpenShiftRequest>,
    ) -> Result<Response<pb::Shift>, Status> {
        crate::telemetry::observe("open_shift", async move {
            let p = principal(&req)?;
            let s = self
                .switch
                .open_shift(&p, req.get_ref().counted_cash)
                .await?;
            Ok(Response::new(shift_to_proto(&s)))
        })
        .await
    }

    async fn close_shift(
        &self,
        req: Request<pb::CloseShiftRequest>,
    ) -> Result<Response<pb::Shift>, Status> {
        crate::telemetry::observe("close_shift", async move {
            let p = principal(&req)?;
            let s = self
                .switch
                .close_shift(&p, req.get_ref().counted_cash)
                .await?;
            Ok(Response::new(shift_to_proto(&s)))
        })
        .await
    }

    async fn get_transaction(
        &self,
        req: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        crate::telemetry::observe("get_transaction", async move {
            let p = principal(&req)?;
            let id = TxId::parse(&req.get_ref().transaction_id).ok_or_else(|| {
                Status::from(SwitchError::invalid("transaction_id must be 32 hex digits"))
            })?;
            let t = self
                .switch
                .store
                .get_tx(id)
                .map_err(|_| Status::internal("store unreadable"))?;
            // Another terminal's transaction is as good as absent.
            match t.filter(|t| visible(&p, t)) {
                Some(t) => Ok(respond(&self.switch, &t)),
                None => Err(SwitchError::new(
                    ErrorCode::TransactionNotFound,
                    "no such transaction at this terminal",
                )
                .into()),
            }
        })
        .await
    }

    async fn list_transactions(
        &self,
        req: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        crate::telemetry::observe("list_transactions", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let size = match r.page_size {
                0 => 20,
                n => n.min(100),
            } as usize;
            let before = if r.page_token.is_empty() {
                None
            } else {
                let parsed = r
                    .page_token
                    .split_once(':')
                    .and_then(|(ms, id)| Some((ms.parse().ok()?, TxId::parse(id)?)));
                Some(parsed.ok_or_else(|| {
                    Status::from(SwitchError::invalid(
                        "page_token is not one this switch gave",
                    ))
                })?)
            };
            let txs = self
                .switch
                .store
                .list_terminal(&p.id, before, size)
                .map_err(|_| Status::internal("store unreadable"))?;
            let next_page_token = match txs.last() {
                Some(t) if txs.len() == size => format!("{}:{}", t.created_at_ms, t.id),
                _ => String::new(),
            };
            Ok(Response::new(pb::ListTransactionsResponse {
                transactions: txs.iter().map(to_proto).collect(),
                next_page_token,
            }))
        })
        .await
    }
}

pub struct AdminService {
    pub switch: Arc<Switch>,
    /// New terminals' credentials take effect at once.
    pub keys: Arc<crate::auth::Keys>,
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn provision_post_office(
        &self,
        req: Request<pb::ProvisionPostOfficeRequest>,
    ) -> Result<Response<pb::PostOfficeInfo>, Status> {
        crate::telemetry::observe("provision_post_office", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let o = crate::admin::provision_post_office(
                &self.switch,
                &p,
                &r.post_office_id,
                &r.name,
                r.initial_float,
            )
            .await?;
            Ok(Response::new(pb::PostOfficeInfo {
                post_office_id: o.id,
                name: o.name,
            }))
        })
        .await
    }

    async fn provision_terminal(
        &self,
        req: Request<pb::ProvisionTerminalRequest>,
    ) -> Result<Response<pb::ProvisionTerminalResponse>, Status> {
        crate::telemetry::observe("provision_terminal", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let (t, secret) = crate::admin::provision_terminal(
                &self.switch,
                &self.keys,
                &p,
                &r.terminal_id,
                &r.post_office_id,
                r.opening_cash,
            )
            .await?;
            Ok(Response::new(pb::ProvisionTerminalResponse {
                terminal_id: t.id,
                post_office_id: t.post_office_id,
                secret: secret.expose_hex(),
            }))
        })
        .await
    }

    async fn provision_merchant(
        &self,
        req: Request<pb::ProvisionMerchantRequest>,
    ) -> Result<Response<pb::ProvisionMerchantResponse>, Status> {
        crate::telemetry::observe("provision_merchant", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let (m, secret, payload) = crate::admin::provision_merchant(
                &self.switch,
                &self.keys,
                &p,
                crate::admin::NewMerchant {
                    id: &r.merchant_id,
                    name: &r.name,
                    city: &r.city,
                    mcc: &r.mcc,
                    bank_bin: &r.bank_bin,
                    account: &r.account,
                },
            )
            .await?;
            Ok(Response::new(pb::ProvisionMerchantResponse {
                merchant_id: m.id,
                secret: secret.expose_hex(),
                static_qr_payload: payload,
            }))
        })
        .await
    }

    async fn check_ledger(
        &self,
        req: Request<pb::CheckLedgerRequest>,
    ) -> Result<Response<pb::CheckLedgerResponse>, Status> {
        crate::telemetry::observe("check_ledger", async move {
            if principal(&req)?.role != Role::Operator {
                return Err(SwitchError::new(
                    ErrorCode::PermissionDenied,
                    "only an operator may check the ledger",
                )
                .into());
            }
            let ledger = self.switch.ledger.clone();
            let report = tokio::task::spawn_blocking(move || ledger.check())
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::internal(format!("ledger check failed: {e}")))?;
            Ok(Response::new(pb::CheckLedgerResponse {
                balanced: report.violations.is_empty(),
                violations: report.violations,
                accounts: report.accounts as u64,
                pending_transfers: report.pending_transfers as u64,
                currencies: report
                    .currencies
                    .iter()
                    .map(|c| pb::CurrencyTotals {
                        currency: u32::from(c.currency),
                        debits_pending: c.debits_pending.to_string(),
                        debits_posted: c.debits_posted.to_string(),
                        credits_pending: c.credits_pending.to_string(),
                        credits_posted: c.credits_posted.to_string(),
                    })
                    .collect(),
            }))
        })
        .await
    }
}

fn order_to_proto(o: &store::Order) -> pb::QrCode {
    pb::QrCode {
        qr_id: o.qr_id.clone(),
        payload: o.payload.clone(),
        amount: o.amount.unwrap_or(0),
        reference: o.reference.clone().unwrap_or_default(),
        purpose: o.purpose.clone().unwrap_or_default(),
        expires_at_ms: o.expires_at_ms.unwrap_or(0),
        is_static: o.amount.is_none(),
    }
}

fn payment_to_proto(p: &store::Payment) -> pb::PaymentNotice {
    pb::PaymentNotice {
        seq: p.seq,
        transaction_id: p.transaction_id.clone(),
        qr_id: p.qr_id.clone().unwrap_or_default(),
        order_reference: p.order_reference.clone().unwrap_or_default(),
        amount: p.amount,
        fee: p.fee,
        net_amount: p.amount - p.fee,
        payer_bank_bin: p.payer_bank_bin.clone(),
        payer_bank_name: bank_name(&p.payer_bank_bin),
        paid_at_ms: p.paid_at_ms,
    }
}

/// Notifications read from the store per round while catching up.
const WATCH_PAGE_MAX: usize = 256;
/// Notifications queued for one watcher before it must read them.
const WATCH_QUEUE_MAX: usize = 64;

pub struct MerchantService {
    pub switch: Arc<Switch>,
}

#[tonic::async_trait]
impl pb::merchant_server::Merchant for MerchantService {
    async fn create_qr(
        &self,
        req: Request<pb::CreateQrRequest>,
    ) -> Result<Response<pb::QrCode>, Status> {
        crate::telemetry::observe("create_qr", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let o = self.switch.create_qr(
                &p,
                &r.client_request_id,
                r.amount,
                &r.reference,
                &r.purpose,
                u64::from(r.expires_in_s) * 1_000,
            )?;
            Ok(Response::new(order_to_proto(&o)))
        })
        .await
    }

    async fn static_qr(
        &self,
        req: Request<pb::StaticQrRequest>,
    ) -> Result<Response<pb::QrCode>, Status> {
        crate::telemetry::observe("static_qr", async move {
            let p = principal(&req)?;
            Ok(Response::new(order_to_proto(&self.switch.static_qr(&p)?)))
        })
        .await
    }

    type WatchPaymentsStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::PaymentNotice, Status>>;

    /// Subscribe first, then catch up from the store, then forward live
    /// notifications, skipping any already sent: nothing is missed or sent
    /// twice. A watcher that falls behind the live buffer catches up from
    /// the store again.
    async fn watch_payments(
        &self,
        req: Request<pb::WatchPaymentsRequest>,
    ) -> Result<Response<Self::WatchPaymentsStream>, Status> {
        let p = principal(&req)?;
        if p.role != Role::Merchant {
            return Err(SwitchError::new(
                ErrorCode::PermissionDenied,
                "only a merchant may watch its payments",
            )
            .into());
        }
        let mut last = req.get_ref().after_seq;
        let Some(place) = self.switch.notifier.watch(&p.id) else {
            return Err(Status::resource_exhausted(format!(
                "at most {} payment streams per merchant are open at once",
                crate::notify::WATCHERS_PER_MERCHANT_MAX
            )));
        };
        let mut live = self.switch.notifier.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_QUEUE_MAX);
        let switch = self.switch.clone();
        tokio::spawn(async move {
            let _place = place;
            metrics::gauge!("switch_payment_watchers").increment(1.0);
            'catch_up: loop {
                loop {
                    // Only what is durable and published: anything later
                    // comes live, in order.
                    let published = switch.notifier.published();
                    let page = match switch.store.payments_after(&p.id, last, WATCH_PAGE_MAX) {
                        Ok(page) => page,
                        Err(e) => {
                            tracing::error!(error = %e, "reading payments failed");
                            let _ = tx.send(Err(Status::internal("store unreadable"))).await;
                            break 'catch_up;
                        }
                    };
                    let n = page.len();
                    for pay in page.into_iter().take_while(|x| x.seq <= published) {
                        last = pay.seq;
                        if tx.send(Ok(payment_to_proto(&pay))).await.is_err() {
                            break 'catch_up;
                        }
                    }
                    if n < WATCH_PAGE_MAX {
                        break;
                    }
                }
                loop {
                    tokio::select! {
                        _ = tx.closed() => break 'catch_up,
                        got = live.recv() => match got {
                            Ok(pay) if pay.merchant_id == p.id && pay.seq > last => {
                                last = pay.seq;
                                if tx.send(Ok(payment_to_proto(&pay))).await.is_err() {
                                    break 'catch_up;
                                }
                            }
                            Ok(_) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                continue 'catch_up;
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                break 'catch_up;
                            }
                        }
                    }
                }
            }
            metrics::gauge!("switch_payment_watchers").decrement(1.0);
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn list_payments(
        &self,
        req: Request<pb::ListPaymentsRequest>,
    ) -> Result<Response<pb::ListPaymentsResponse>, Status> {
        crate::telemetry::observe("list_payments", async move {
            let p = principal(&req)?;
            if p.role != Role::Merchant {
                return Err(SwitchError::new(
                    ErrorCode::PermissionDenied,
                    "only a merchant may list its payments",
                )
                .into());
            }
            let r = req.into_inner();
            let size = match r.page_size {
                0 => 20,
                n => n.min(100),
            } as usize;
            let before = if r.page_token.is_empty() {
                u64::MAX
            } else {
                r.page_token.parse().map_err(|_| {
                    Status::from(SwitchError::invalid(
                        "page_token is not one this switch gave",
                    ))
                })?
            };
            let page = self
                .switch
                .store
                .payments_before(&p.id, before, size)
                .map_err(|_| Status::internal("store unreadable"))?;
            let next_page_token = match page.last() {
                Some(x) if page.len() == size => x.seq.to_string(),
                _ => String::new(),
            };
            Ok(Response::new(pb::ListPaymentsResponse {
                payments: page.iter().map(payment_to_proto).collect(),
                next_page_token,
            }))
        })
        .await
    }
}

pub struct PayerBankService {
    pub switch: Arc<Switch>,
}

#[tonic::async_trait]
impl pb::payer_bank_server::PayerBank for PayerBankService {
    async fn pay_qr(
        &self,
        req: Request<pb::PayQrRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        crate::telemetry::observe("pay_qr", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            answer(
                &self.switch,
                self.switch
                    .pay_qr(
                        &p,
                        &r.client_request_id,
                        &r.payload,
                        &r.payer_account,
                        r.amount,
                    )
                    .await,
            )
        })
        .await
    }
}

pub struct BillsService {
    pub switch: Arc<Switch>,
}

#[tonic::async_trait]
impl pb::bills_server::Bills for BillsService {
    async fn inquire_bills(
        &self,
        req: Request<pb::InquireBillsRequest>,
    ) -> Result<Response<pb::InquireBillsResponse>, Status> {
        crate::telemetry::observe("inquire_bills", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let (biller, s) = self
                .switch
                .inquire_bills(&p, &r.biller, &r.customer)
                .await?;
            let total: u64 = s.bills.iter().map(|b| b.amount).sum();
            Ok(Response::new(pb::InquireBillsResponse {
                biller: biller.code.clone(),
                biller_name: biller.name.clone(),
                customer: r.customer,
                customer_name: s.customer_name,
                nothing_due: s.bills.is_empty(),
                partial_allowed: biller.partial_allowed,
                total,
                fee: if total == 0 {
                    0
                } else {
                    crate::fees::fee(&self.switch.config.bill.fee, total).total
                },
                bills: s
                    .bills
                    .iter()
                    .map(|b| pb::BillItem {
                        bill_id: b.id.clone(),
                        period: b.period.clone(),
                        amount: b.amount,
                        due_date: b.due_date.clone(),
                    })
                    .collect(),
            }))
        })
        .await
    }

    async fn pay_bills(
        &self,
        req: Request<pb::PayBillsRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        crate::telemetry::observe("pay_bills", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let funding = match pb::Funding::try_from(r.funding) {
                Ok(pb::Funding::Cash) => Some(store::Funding::Cash),
                Ok(pb::Funding::Account) => Some(store::Funding::Account),
                Ok(pb::Funding::Qr) => Some(store::Funding::Qr),
                _ => None,
            };
            answer(
                &self.switch,
                self.switch
                    .pay_bills(
                        &p,
                        &r.client_request_id,
                        &r.biller,
                        &r.customer,
                        &r.bill_ids,
                        funding,
                        &r.bank_bin,
                        &r.account,
                    )
                    .await,
            )
        })
        .await
    }
}

fn window_to_proto(w: &crate::settlement::WindowRecord) -> pb::Window {
    pb::Window {
        window_id: w.id,
        state: w.state.label().to_string(),
        opened_at_ms: w.opened_at_ms,
        closed_at_ms: w.closed_at_ms.unwrap_or(0),
        cutoff_timestamp: w.cutoff_timestamp.unwrap_or(0),
        report_sha256: w.report_sha256.clone().unwrap_or_default(),
        settlement_reference: w.settlement_reference.clone().unwrap_or_default(),
        settled_at_ms: w.settled_at_ms.unwrap_or(0),
        transactions: w.report.as_ref().map_or(0, |r| r.transactions),
    }
}

fn liquidity_to_proto(l: &crate::settlement::Liquidity, threshold: u64) -> pb::Liquidity {
    pb::Liquidity {
        post_office_id: l.post_office_id.clone(),
        efloat: l.efloat,
        low_float_threshold: threshold,
        low_float: l.low_float,
        drawers: l
            .drawers
            .iter()
            .map(|(t, cash)| pb::DrawerCash {
                terminal_id: t.clone(),
                cash: *cash,
            })
            .collect(),
    }
}

fn exception_to_proto(e: &crate::recon::Exception) -> pb::ReconciliationException {
    let r = e.resolution.as_ref();
    pb::ReconciliationException {
        exception_id: e.id.clone(),
        class: e.class.clone(),
        transaction_id: e.transaction_id.clone(),
        line: e.line,
        reason: e.reason.clone(),
        switch_amount: e.switch_amount,
        bank_amount: e.bank_amount,
        resolution_note: r.map(|r| r.note.clone()).unwrap_or_default(),
        resolved_by: r.map(|r| r.by.clone()).unwrap_or_default(),
        resolved_at_ms: r.map_or(0, |r| r.at_ms),
    }
}

/// The largest statement chunk accepted.
const STATEMENT_CHUNK_BYTES_MAX: usize = 1 << 20;

pub struct SettlementService {
    pub switch: Arc<Switch>,
}

#[tonic::async_trait]
impl pb::settlement_server::Settlement for SettlementService {
    async fn list_windows(
        &self,
        req: Request<pb::ListWindowsRequest>,
    ) -> Result<Response<pb::ListWindowsResponse>, Status> {
        crate::telemetry::observe("list_windows", async move {
            let p = principal(&req)?;
            let windows = self.switch.list_windows(&p)?;
            Ok(Response::new(pb::ListWindowsResponse {
                windows: windows.iter().map(window_to_proto).collect(),
            }))
        })
        .await
    }

    async fn close_window(
        &self,
        req: Request<pb::CloseWindowRequest>,
    ) -> Result<Response<pb::Window>, Status> {
        crate::telemetry::observe("close_window", async move {
            let p = principal(&req)?;
            let w = self
                .switch
                .close_window(&p, req.get_ref().window_id)
                .await?;
            Ok(Response::new(window_to_proto(&w)))
        })
        .await
    }

    async fn get_report(
        &self,
        req: Request<pb::GetReportRequest>,
    ) -> Result<Response<pb::SettlementReport>, Status> {
        crate::telemetry::observe("get_report", async move {
            let p = principal(&req)?;
            let r = req.get_ref();
            let (w, positions) = self.switch.window_report(&p, r.window_id, &r.participant)?;
            let report = w.report.as_ref().expect("a reported window");
            Ok(Response::new(pb::SettlementReport {
                window_id: w.id,
                state: w.state.label().to_string(),
                from_timestamp: report.from_timestamp,
                cutoff_timestamp: report.cutoff_timestamp,
                csv: crate::settlement::Report::csv(&positions),
                participants: positions
                    .iter()
                    .map(|x| pb::ParticipantPosition {
                        participant: x.participant.clone(),
                        kind: x.kind.clone(),
                        count: x.count,
                        gross_debits: x.gross_debits,
                        gross_credits: x.gross_credits,
                        fees: x.fees,
                        net: x.net,
                    })
                    .collect(),
                sha256: w.report_sha256.clone().unwrap_or_default(),
            }))
        })
        .await
    }

    async fn settle(
        &self,
        req: Request<pb::SettleRequest>,
    ) -> Result<Response<pb::Window>, Status> {
        crate::telemetry::observe("settle", async move {
            let p = principal(&req)?;
            let r = req.get_ref();
            let w = self
                .switch
                .settle_window(&p, r.window_id, &r.reference)
                .await?;
            Ok(Response::new(window_to_proto(&w)))
        })
        .await
    }

    async fn reconcile(
        &self,
        req: Request<tonic::Streaming<pb::StatementChunk>>,
    ) -> Result<Response<pb::ReconciliationReport>, Status> {
        crate::telemetry::observe("reconcile", async move {
            let p = principal(&req)?;
            let declared = req
                .extensions()
                .get::<crate::auth::DeclaredDigest>()
                .map(|d| d.0.clone())
                .ok_or_else(|| Status::unauthenticated("unauthenticated: no content digest"))?;
            let mut stream = req.into_inner();
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                let mut first = true;
                loop {
                    let item = match stream.message().await {
                        Ok(Some(c)) if c.data.len() > STATEMENT_CHUNK_BYTES_MAX => {
                            Err(SwitchError::new(
                                ErrorCode::StatementInvalid,
                                "a statement chunk is over 1 MiB",
                            ))
                        }
                        Ok(Some(c)) if first && c.window_id == 0 => {
                            Err(SwitchError::invalid("the first chunk must name the window"))
                        }
                        Ok(Some(c)) => Ok(crate::recon::Chunk {
                            window_id: c.window_id,
                            data: c.data,
                        }),
                        Ok(None) => break,
                        Err(s) => Err(SwitchError::invalid(format!(
                            "the statement stream broke: {}",
                            s.message()
                        ))),
                    };
                    first = false;
                    let stop = item.is_err();
                    if tx.send(item).await.is_err() || stop {
                        break;
                    }
                }
            });
            let r = self.switch.reconcile(&p, &declared, rx).await?;
            Ok(Response::new(pb::ReconciliationReport {
                window_id: r.window_id,
                bank_bin: r.bank_bin.clone(),
                statement_sha256: r.statement_sha256.clone(),
                lines: r.lines,
                classes: r
                    .classes
                    .iter()
                    .map(|(c, (count, amount))| pb::ClassTotal {
                        class: c.clone(),
                        count: *count,
                        amount: *amount,
                    })
                    .collect(),
                exceptions: r.exceptions.iter().map(exception_to_proto).collect(),
                exceptions_total: r.exceptions_total,
            }))
        })
        .await
    }

    async fn resolve_exception(
        &self,
        req: Request<pb::ResolveExceptionRequest>,
    ) -> Result<Response<pb::ReconciliationException>, Status> {
        crate::telemetry::observe("resolve_exception", async move {
            let p = principal(&req)?;
            let r = req.get_ref();
            let e = self
                .switch
                .resolve_exception(&p, r.window_id, &r.bank_bin, &r.exception_id, &r.note)
                .await?;
            Ok(Response::new(exception_to_proto(&e)))
        })
        .await
    }

    async fn top_up_float(
        &self,
        req: Request<pb::TopUpFloatRequest>,
    ) -> Result<Response<pb::Liquidity>, Status> {
        crate::telemetry::observe("top_up_float", async move {
            let p = principal(&req)?;
            let r = req.get_ref();
            let l = self
                .switch
                .top_up_float(&p, &r.client_request_id, &r.post_office_id, r.amount)
                .await?;
            Ok(Response::new(liquidity_to_proto(
                &l,
                self.switch.config.low_float_threshold,
            )))
        })
        .await
    }

    async fn sweep_cash(
        &self,
        req: Request<pb::SweepCashRequest>,
    ) -> Result<Response<pb::Liquidity>, Status> {
        crate::telemetry::observe("sweep_cash", async move {
            let p = principal(&req)?;
            let r = req.get_ref();
            let l = self
                .switch
                .sweep_cash(&p, &r.client_request_id, &r.terminal_id, r.amount)
                .await?;
            Ok(Response::new(liquidity_to_proto(
                &l,
                self.switch.config.low_float_threshold,
            )))
        })
        .await
    }

    async fn get_liquidity(
        &self,
        req: Request<pb::GetLiquidityRequest>,
    ) -> Result<Response<pb::LiquidityResponse>, Status> {
        crate::telemetry::observe("get_liquidity", async move {
            let p = principal(&req)?;
            let all = self.switch.liquidity(&p, &req.get_ref().post_office_id)?;
            let threshold = self.switch.config.low_float_threshold;
            Ok(Response::new(pb::LiquidityResponse {
                post_offices: all
                    .iter()
                    .map(|l| liquidity_to_proto(l, threshold))
                    .collect(),
            }))
        })
        .await
    }
}

/// What a customer's bank app would do, for the demo and tests (served only
/// with simulated banks).
pub struct SimulatorService {
    pub switch: Arc<Switch>,
}

#[tonic::async_trait]
impl pb::simulator_server::Simulator for SimulatorService {
    async fn issue_withdrawal_code(
        &self,
        req: Request<pb::IssueWithdrawalCodeRequest>,
    ) -> Result<Response<pb::IssueWithdrawalCodeResponse>, Status> {
        crate::telemetry::observe("issue_withdrawal_code", async move {
            principal(&req)?;
            let r = req.into_inner();
            let sim = self.switch.sims.get(&r.bank_bin).ok_or_else(|| {
                Status::from(SwitchError::new(
                    ErrorCode::UnknownBank,
                    format!("no simulated bank with BIN {}", r.bank_bin),
                ))
            })?;
            match sim.issue_withdrawal_code(&r.account, r.amount, crate::auth::now_ms()) {
                Ok((code, expires_at_ms)) => Ok(Response::new(pb::IssueWithdrawalCodeResponse {
                    code,
                    expires_at_ms,
                })),
                Err(crate::bank::BankError::Rejected {
                    reason: crate::bank::RejectReason::AccountNotFound,
                    ..
                }) => Err(SwitchError::new(
                    ErrorCode::AccountNotFound,
                    "no such account at that bank",
                )
                .into()),
                Err(e) => Err(SwitchError::invalid(format!("{e:?}")).into()),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_dates_print_for_a_receipt() {
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(100), "100");
        assert_eq!(local_time(0), "1970-01-01 07:00:00 (UTC+7)");
        assert_eq!(local_time(1_795_780_800_000), "2026-11-27 19:00:00 (UTC+7)");
    }
}
