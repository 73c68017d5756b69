//! A merchant's QR codes and the payments made to them.

use std::sync::Arc;

use proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::caller::Role;
use crate::error::{ErrorCode, SwitchError};
use crate::flows::Switch;
use crate::store::{self};

use super::convert::*;
use super::receipt::bank_name;

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

fn fee_item_to_proto(i: &store::FeeItem) -> pb::FeeItem {
    pb::FeeItem {
        code: i.code.clone(),
        name: i.name.clone(),
        unit_price: i.unit_price,
        unit: i.unit.clone(),
        legal_basis: i.legal_basis.clone(),
    }
}

pub fn fee_item_from_proto(i: pb::FeeItem) -> store::FeeItem {
    store::FeeItem {
        code: i.code,
        name: i.name,
        unit_price: i.unit_price,
        unit: i.unit,
        legal_basis: i.legal_basis,
    }
}

/// A catalogue as the desk and the console see it.
pub fn catalogue_to_proto(m: &store::Merchant, c: &store::FeeCatalogue) -> pb::FeeCatalogue {
    pb::FeeCatalogue {
        collector_id: m.id.clone(),
        collector_name: m.name.clone(),
        commune: m.commune.clone(),
        items: c.items.iter().map(fee_item_to_proto).collect(),
    }
}

fn fee_request_to_proto(
    commune_name: String,
    m: &store::Merchant,
    r: &store::FeeRequest,
    o: &store::Order,
    paid: Option<&store::TxRecord>,
) -> pb::FeeRequest {
    pb::FeeRequest {
        qr: Some(order_to_proto(o)),
        dossier_code: r.dossier_code.clone(),
        lines: r
            .lines
            .iter()
            .map(|l| pb::FeeLine {
                code: l.item.code.clone(),
                name: l.item.name.clone(),
                quantity: l.quantity,
                unit_price: l.item.unit_price,
                unit: l.item.unit.clone(),
                amount: l.amount,
                legal_basis: l.item.legal_basis.clone(),
            })
            .collect(),
        total: r.total,
        collector_id: m.id.clone(),
        collector_name: m.name.clone(),
        commune: m.commune.clone(),
        commune_name,
        created_at_ms: r.created_at_ms,
        transaction_id: paid.map(|t| t.id.clone()).unwrap_or_default(),
        paid_at_ms: paid.map_or(0, |t| t.updated_at_ms),
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
    async fn get_fee_catalogue(
        &self,
        req: Request<pb::GetFeeCatalogueRequest>,
    ) -> Result<Response<pb::FeeCatalogue>, Status> {
        crate::telemetry::observe("get_fee_catalogue", async move {
            let p = principal(&req)?;
            let (m, c) = self.switch.collector_of(&p)?;
            Ok(Response::new(catalogue_to_proto(&m, &c)))
        })
        .await
    }

    async fn create_fee_request(
        &self,
        req: Request<pb::CreateFeeRequestRequest>,
    ) -> Result<Response<pb::FeeRequest>, Status> {
        crate::telemetry::observe("create_fee_request", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let lines: Vec<(String, u32)> =
                r.lines.into_iter().map(|l| (l.code, l.quantity)).collect();
            let (request, order) = self
                .switch
                .create_fee_request(
                    &p,
                    &r.client_request_id,
                    &r.dossier_code,
                    &lines,
                    u64::from(r.expires_in_s) * 1_000,
                )
                .await?;
            let (m, _) = self.switch.collector_of(&p)?;
            let commune = self.switch.commune_name(&m.commune)?;
            Ok(Response::new(fee_request_to_proto(
                commune, &m, &request, &order, None,
            )))
        })
        .await
    }

    async fn get_fee_request(
        &self,
        req: Request<pb::GetFeeRequestRequest>,
    ) -> Result<Response<pb::FeeRequest>, Status> {
        crate::telemetry::observe("get_fee_request", async move {
            let p = principal(&req)?;
            let (request, order, paid) = self.switch.fee_request(&p, &req.get_ref().qr_id)?;
            let (m, _) = self.switch.collector_of(&p)?;
            let commune = self.switch.commune_name(&m.commune)?;
            Ok(Response::new(fee_request_to_proto(
                commune,
                &m,
                &request,
                &order,
                paid.as_ref(),
            )))
        })
        .await
    }

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
    /// the store again. On a store several nodes share, the store is the
    /// stream: read again when a notice is stored (here, or on another node
    /// as PostgreSQL notifies), and every `watch_rescan_ms` in case a
    /// notification was lost with its connection.
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
                crate::flows::notify::WATCHERS_PER_MERCHANT_MAX
            )));
        };
        let mut live = self.switch.notifier.subscribe();
        let mut stored = self.switch.notifier.stored_changes();
        let rescan = std::time::Duration::from_millis(self.switch.config.watch_rescan_ms);
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_QUEUE_MAX);
        let switch = self.switch.clone();
        let shared = switch.notices_numbered_by_store();
        tokio::spawn(async move {
            let _place = place;
            metrics::gauge!("switch_payment_watchers").increment(1.0);
            'catch_up: loop {
                loop {
                    // Only what is durable and published: anything later
                    // comes live, in order.
                    let published = if shared {
                        u64::MAX // committed in number order
                    } else {
                        switch.notifier.published()
                    };
                    let page = match switch.payments_after(&p.id, last, WATCH_PAGE_MAX) {
                        Ok(page) => page,
                        Err(e) => {
                            // Logged where it is sorted: out of reach (the
                            // merchant may watch again, on another node) or
                            // an operator's problem.
                            let _ = tx.send(Err(e.into())).await;
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
                if shared {
                    // Woken by a notice stored here or elsewhere, or look
                    // again after a while.
                    tokio::select! {
                        _ = tx.closed() => break 'catch_up,
                        changed = stored.changed() => {
                            if changed.is_err() {
                                break 'catch_up;
                            }
                        }
                        _ = tokio::time::sleep(rescan) => {}
                    }
                    continue 'catch_up;
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
            let page = self.switch.payments_before(&p.id, before, size)?;
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
