//! Bills at the counter: inquiry and payment; airtime top-ups.

use std::sync::Arc;

use proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::edge::auth::TerminalPinKey;
use crate::error::{ErrorCode, SwitchError};
use crate::flows::Switch;
use crate::flows::bills::Card;
use crate::store::{self};

use super::convert::*;

fn funding(wire: i32) -> Option<store::Funding> {
    match pb::Funding::try_from(wire) {
        Ok(pb::Funding::Cash) => Some(store::Funding::Cash),
        Ok(pb::Funding::Account) => Some(store::Funding::Account),
        Ok(pb::Funding::Qr) => Some(store::Funding::Qr),
        Ok(pb::Funding::Card) => Some(store::Funding::Card),
        _ => None,
    }
}

/// The card a request presents, its PIN block opened under the calling
/// terminal's PIN key: converted here, at the edge, so that no flow ever
/// sees a PIN block (nor a number that is not a card's). Neither is logged.
fn card<T>(
    req: &Request<T>,
    card_number: &str,
    pin_block: &str,
) -> Result<Option<Card>, SwitchError> {
    if card_number.is_empty() && pin_block.is_empty() {
        return Ok(None);
    }
    let pan = proto::pin::Pan::parse(card_number)
        .map_err(|e| SwitchError::new(ErrorCode::InvalidCard, e.to_string()))?;
    let key = req
        .extensions()
        .get::<TerminalPinKey>()
        .ok_or_else(|| SwitchError::new(ErrorCode::Unauthenticated, "no verified terminal key"))?;
    let pin = proto::pin::decipher(&key.0, pin_block, &pan)
        .map_err(|e| SwitchError::new(ErrorCode::InvalidPinBlock, e.to_string()))?;
    Ok(Some(Card { pan, pin }))
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

    async fn top_up(
        &self,
        req: Request<pb::TopUpRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        crate::telemetry::observe("top_up", async move {
            let p = principal(&req)?;
            let card = card(&req, &req.get_ref().card_number, &req.get_ref().pin_block)?;
            let r = req.into_inner();
            answer(
                &self.switch,
                self.switch
                    .top_up(
                        &p,
                        &r.client_request_id,
                        &r.provider,
                        &r.phone,
                        r.amount,
                        funding(r.funding),
                        &r.bank_bin,
                        &r.account,
                        card,
                        taken(&r.teller, r.offline_taken_at_ms),
                    )
                    .await,
            )
        })
        .await
    }

    async fn pay_bills(
        &self,
        req: Request<pb::PayBillsRequest>,
    ) -> Result<Response<pb::TransactionResponse>, Status> {
        crate::telemetry::observe("pay_bills", async move {
            let p = principal(&req)?;
            let card = card(&req, &req.get_ref().card_number, &req.get_ref().pin_block)?;
            let r = req.into_inner();
            let funding = funding(r.funding);
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
                        card,
                        taken(&r.teller, r.offline_taken_at_ms),
                    )
                    .await,
            )
        })
        .await
    }

    async fn list_billers(
        &self,
        req: Request<pb::ListBillersRequest>,
    ) -> Result<Response<pb::ListBillersResponse>, Status> {
        crate::telemetry::observe("list_billers", async move {
            let p = principal(&req)?;
            Switch::teller_post_office(&p)?;
            let mut billers: Vec<pb::BillerInfo> = self
                .switch
                .billers
                .all()
                .map(|b| pb::BillerInfo {
                    code: b.code.clone(),
                    name: b.name.clone(),
                    category: b.category.to_string(),
                    partial_allowed: b.partial_allowed,
                })
                .collect();
            billers.sort_by(|a, b| a.code.cmp(&b.code));
            Ok(Response::new(pb::ListBillersResponse { billers }))
        })
        .await
    }
}
