//! Records to messages, errors to statuses, and the caller a handler
//! serves: what every service of the edge shares.

use proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::caller::{Principal, Role};
use crate::error::{ErrorCode, SwitchError};
use crate::flows::{Outcome, Switch};
use crate::store::{self, Status as TxStatus, TxRecord};

use super::receipt::{bank_name, receipt};

pub(crate) fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("unauthenticated: no verified caller"))
}

pub(crate) fn status_of(s: TxStatus) -> pb::TxStatus {
    match s {
        TxStatus::Pending => pb::TxStatus::Pending,
        TxStatus::Completed => pb::TxStatus::Completed,
        TxStatus::Failed => pb::TxStatus::Failed,
        TxStatus::Reversed => pb::TxStatus::Reversed,
    }
}

pub fn to_proto(t: &TxRecord) -> pb::Transaction {
    pb::Transaction {
        transaction_id: t.id.clone(),
        kind: match t.kind {
            store::Kind::CashIn => pb::TxKind::CashIn,
            store::Kind::CashOut => pb::TxKind::CashOut,
            store::Kind::QrPayment => pb::TxKind::QrPayment,
            store::Kind::BillPayment => pb::TxKind::BillPayment,
            store::Kind::TopUp => pb::TxKind::TopUp,
        } as i32,
        status: status_of(t.status) as i32,
        terminal_id: t.terminal_id.clone(),
        post_office_id: t.post_office_id.clone(),
        bank_bin: t.bank_bin.clone(),
        bank_name: bank_name(&t.bank_bin),
        account_masked: t.account_shown(),
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
        teller: t.teller.clone().unwrap_or_default(),
        taken_at_ms: t.taken_at_ms.unwrap_or(0),
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
            Some(store::Funding::Card) => "card",
            None => "",
        }
        .to_string(),
        deadline_ms: t.confirm_deadline_ms.unwrap_or(0),
        order_reference: t
            .merchant
            .as_ref()
            .and_then(|m| m.order_reference.clone())
            .unwrap_or_default(),
        paid_by_transaction_id: t.paid_by.clone().unwrap_or_default(),
        pays_for_transaction_id: t.pays_for.clone().unwrap_or_default(),
        card_token: t.card_token.clone().unwrap_or_default(),
    }
}

/// A transaction with its QR payload filled in when one is shown.
pub(crate) fn to_proto_with_code(switch: &Switch, t: &TxRecord) -> pb::Transaction {
    let mut out = to_proto(t);
    if t.stage == store::Stage::AwaitingPayment
        && let Some(qr) = &t.qr_id
    {
        match switch.qr_payload(qr) {
            Ok(Some(payload)) => out.qr_payload = payload,
            Ok(None) => {
                tracing::error!(tx = %t.id, qr, "a transaction awaiting payment names no stored code")
            }
            // The transaction itself is answered; the code is shown again
            // by the next look-up once the store reads.
            Err(e) => {
                tracing::error!(tx = %t.id, qr, error = %e, "the code shown for a transaction does not read")
            }
        }
    }
    out
}

pub(crate) fn respond(switch: &Switch, t: &TxRecord) -> Response<pb::TransactionResponse> {
    Response::new(pb::TransactionResponse {
        receipt: receipt(t),
        transaction: Some(to_proto_with_code(switch, t)),
    })
}

/// Completed and pending transactions answer; failed and reversed ones are
/// errors carrying the transaction id (a retry answers the same).
pub(crate) fn answer(
    switch: &Switch,
    outcome: Outcome,
) -> Result<Response<pb::TransactionResponse>, Status> {
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

pub(crate) fn shift_to_proto(s: &store::ShiftRecord) -> pb::Shift {
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
pub(crate) fn visible(p: &Principal, t: &TxRecord) -> bool {
    match p.role {
        Role::Operator => true,
        Role::Bank => t.terminal_id == p.id || t.bank_bin == p.id,
        Role::Merchant => t.merchant.as_ref().is_some_and(|m| m.merchant_id == p.id),
        Role::Teller { .. } => t.terminal_id == p.id,
    }
}

/// Who took a counter request: its teller, and when it was taken if the
/// counter forwards it from its offline queue (0 on the wire: now).
pub fn taken(teller: &str, offline_taken_at_ms: i64) -> crate::flows::engine::Taken<'_> {
    crate::flows::engine::Taken {
        teller,
        offline_at_ms: (offline_taken_at_ms != 0).then_some(offline_taken_at_ms),
    }
}
