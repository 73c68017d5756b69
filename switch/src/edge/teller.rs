//! The teller's service: name inquiry, cash-in and cash-out, shifts, and a terminal's transactions.

use std::sync::Arc;

use proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::error::{ErrorCode, SwitchError};
use crate::flows::Switch;
use crate::ids::{TxId, mask_account};

use super::convert::*;

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
                    .cash_in(
                        &p,
                        &r.client_request_id,
                        &r.bank_bin,
                        &r.account,
                        r.amount,
                        taken(&r.teller, r.offline_taken_at_ms),
                    )
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
                        taken(&r.teller, 0),
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
            let t = self.switch.transaction(id)?;
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
            let txs = self.switch.terminal_transactions(&p.id, before, size)?;
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

    async fn get_limits(
        &self,
        req: Request<pb::GetLimitsRequest>,
    ) -> Result<Response<pb::GetLimitsResponse>, Status> {
        crate::telemetry::observe("get_limits", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let customer = match (r.bank_bin.is_empty(), r.account.is_empty()) {
                (true, true) => None,
                (false, false) => Some((r.bank_bin.as_str(), r.account.as_str())),
                _ => {
                    return Err(
                        SwitchError::invalid("give both bank_bin and account, or neither").into(),
                    );
                }
            };
            let limits = self.switch.limits_left(&p, customer).await?;
            let e_float = self
                .switch
                .liquidity(&p, "")
                .await?
                .first()
                .map_or(0, |l| l.efloat);
            Ok(Response::new(pb::GetLimitsResponse {
                e_float,
                limits: limits
                    .iter()
                    .map(|h| pb::Limit {
                        limit: h.kind.label().to_string(),
                        max: h.max,
                        used: h.used,
                        left: h.left(),
                        period: h.period.clone(),
                    })
                    .collect(),
            }))
        })
        .await
    }

    async fn quote_fee(
        &self,
        req: Request<pb::QuoteFeeRequest>,
    ) -> Result<Response<pb::QuoteFeeResponse>, Status> {
        crate::telemetry::observe("quote_fee", async move {
            let p = principal(&req)?;
            Switch::teller_post_office(&p)?;
            let r = req.into_inner();
            let config = &self.switch.config;
            let product = match pb::TxKind::try_from(r.kind) {
                Ok(pb::TxKind::CashIn) => &config.cash_in,
                Ok(pb::TxKind::CashOut) => &config.cash_out,
                Ok(pb::TxKind::BillPayment) => &config.bill,
                Ok(pb::TxKind::TopUp) => &config.topup,
                _ => {
                    return Err(SwitchError::invalid(
                        "a fee is quoted for a cash-in, cash-out, bill payment or top-up",
                    )
                    .into());
                }
            };
            Ok(Response::new(pb::QuoteFeeResponse {
                fee: crate::fees::fee(&product.fee, r.amount).total,
                amount_min: product.amount_min,
                amount_max: product.amount_max,
            }))
        })
        .await
    }

    async fn get_offline_policy(
        &self,
        req: Request<pb::GetOfflinePolicyRequest>,
    ) -> Result<Response<pb::OfflinePolicy>, Status> {
        crate::telemetry::observe("get_offline_policy", async move {
            let p = principal(&req)?;
            Switch::teller_post_office(&p)?;
            let key = req
                .extensions()
                .get::<crate::edge::auth::TerminalPinKey>()
                .ok_or_else(|| {
                    SwitchError::new(ErrorCode::Unauthenticated, "no verified terminal key")
                })?;
            let config = &self.switch.config;
            let o = &config.offline;
            // A fee the counter cannot compute exactly (a percent finer than
            // a basis point) keeps its product from waiting.
            let fee = |kind: pb::TxKind, rule: &crate::config::FeeRule| {
                use rust_decimal::prelude::ToPrimitive;
                let bp = (rule.percent * rust_decimal::Decimal::ONE_HUNDRED).normalize();
                let percent_bp = if bp.scale() == 0 { bp.to_u32() } else { None }?;
                Some(pb::OfflineFee {
                    kind: kind as i32,
                    flat: rule.flat,
                    percent_bp,
                    min: rule.min,
                    max: rule.max,
                })
            };
            let fees: Vec<pb::OfflineFee> = [
                (o.top_up, pb::TxKind::TopUp, &config.topup.fee),
                (o.bills, pb::TxKind::BillPayment, &config.bill.fee),
                (o.cash_in, pb::TxKind::CashIn, &config.cash_in.fee),
            ]
            .into_iter()
            .filter(|(on, _, _)| *on)
            .filter_map(|(_, kind, rule)| fee(kind, rule))
            .collect();
            let has = |k: pb::TxKind| fees.iter().any(|f| f.kind == k as i32);
            let mut policy = pb::OfflinePolicy {
                top_up: has(pb::TxKind::TopUp),
                bills: has(pb::TxKind::BillPayment),
                cash_in: has(pb::TxKind::CashIn),
                fees,
                one_max: o.one_max,
                total_max: o.total_max,
                count_max: o.count_max,
                max_age_ms: o.max_age_ms,
                bill_inquiry_max_age_ms: o.bill_inquiry_max_age_ms,
                name_inquiry_max_age_ms: o.name_inquiry_max_age_ms,
                terminal_id: p.id.clone(),
                issued_at_ms: crate::clock::now_ms(),
                signature: String::new(),
            };
            proto::offline::sign(&mut policy, &key.0);
            Ok(Response::new(policy))
        })
        .await
    }

    async fn report_outbox(
        &self,
        req: Request<pb::OutboxReport>,
    ) -> Result<Response<pb::OutboxReport>, Status> {
        crate::telemetry::observe("report_outbox", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let kept = self
                .switch
                .report_outbox(
                    &p,
                    crate::store::OutboxReport {
                        terminal_id: String::new(),
                        reported_at_ms: 0,
                        queued: r.queued,
                        queued_total: r.queued_total,
                        oldest_taken_at_ms: r.oldest_taken_at_ms,
                        forwarded: r.forwarded,
                        refused: r.refused,
                        refunds_due: r.refunds_due,
                    },
                )
                .await?;
            Ok(Response::new(pb::OutboxReport {
                queued: kept.queued,
                queued_total: kept.queued_total,
                oldest_taken_at_ms: kept.oldest_taken_at_ms,
                forwarded: kept.forwarded,
                refused: kept.refused,
                refunds_due: kept.refunds_due,
                terminal_id: kept.terminal_id,
                reported_at_ms: kept.reported_at_ms,
            }))
        })
        .await
    }
}
